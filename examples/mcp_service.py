"""An MCP service actor over stdio: list and call tools, a tool error, a crashed server
subprocess restarted on the next request, and the tools offered to a model (OpenAI
schema, tool calls answered as tool messages).

Run: python examples/mcp_service.py [--backend asyncio|trio]
"""

from __future__ import annotations

import argparse

import anyio

from actors import Service, ServiceConfig, ServiceUnavailable, ToolError, open_actor
from actors.services import MCPToolbox
from actors.services.mcp import CallTool, ListTools, MCPClient, ToolResult, server_command


async def main() -> None:
    tools = Service(
        "tools",
        lambda: MCPClient("tools", command=server_command()),
        ServiceConfig.for_mcp(retry=None),
    )
    async with open_actor(tools.actor(), name="tools") as ref:
        listed = await ref.call(ListTools(), timeout=30)
        assert isinstance(listed, list)  # ListTools answers a list, CallTool a ToolResult
        print("tools:", ", ".join(f"{tool.name} ({tool.description})" for tool in listed))
        added = await ref.call(CallTool("add", {"a": 2, "b": 3}))
        assert isinstance(added, ToolResult)
        print("add(2, 3) =", added.text)
        try:
            await ref.call(CallTool("fail", {"message": "no such file"}))
        except ToolError as exc:
            print(f"tool error (not retried): {exc}")
        try:
            await ref.call(CallTool("crash", {}))
        except ServiceUnavailable as exc:
            print(f"server crashed: {exc}")
        reply = await ref.call(CallTool("echo", {"text": "back again"}), timeout=30)
        assert isinstance(reply, ToolResult)
        print(f"after a fresh server started: {reply.text!r}")

        toolbox = await MCPToolbox.load(ref)
        print("for the model:", [tool["function"]["name"] for tool in toolbox.openai_tools()])
        calls = [  # as a model would send them: one good, one with broken JSON
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'},
            },
            {
                "id": "c2",
                "type": "function",
                "function": {"name": "echo", "arguments": '{"text": '},
            },
        ]
        for message in await toolbox.run_openai(calls):
            print("tool message:", message)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, backend=args.backend)
