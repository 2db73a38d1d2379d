"""A tool-calling agent on the official `anthropic` SDK, every request through a
service actor, its tools from an MCP server through an MCP service actor.

Run: python examples/anthropic_agent.py [--backend asyncio|trio]

A supervisor runs two service actors: "claude", whose client sends the SDK's own
requests (`SDKClient` around our `AnthropicClient`: the actor holds the URL and the
API key, its limits, breaker and retries apply to every request), and "tools", the
test MCP server over stdio. The model is the local mock in its scripted tool-calling
mode: it answers the question with tool_use blocks (add, then echo), then with an
answer quoting the results. The agent loop is plain SDK code: `anthropic_client(ref)`
is an `AsyncAnthropic` with its retries off. Then a 529 overloaded answer is retried
by the actor (the SDK never sees it), and the final answer is streamed.
"""

from __future__ import annotations

import argparse
from typing import Any

import anthropic
import anyio

import supervisor as sv
from actors import Secret, Service, ServiceConfig
from actors.integrations import SDKClient, anthropic_client
from actors.resilience import RetryPolicy
from actors.services import MCPToolbox
from actors.services.anthropic import AnthropicClient
from actors.services.mcp import MCPClient, server_command
from actors.testing import Behaviour, ToolRule, serve_mock_llm

QUESTION = "What is the sum of 2 and 3? Then echo it back."
RULES = [
    ToolRule(when="sum", tool="add", arguments={"a": 2, "b": 3}),
    ToolRule(when="echo", tool="echo", arguments={"text": "the sum is 5"}),
]


async def agent(client: Any, toolbox: MCPToolbox, question: str) -> str:
    """Asks, runs every tool the model calls through the MCP actor, answers back, until
    the model answers in text."""
    messages: list[Any] = [{"role": "user", "content": question}]
    tools = toolbox.anthropic_tools()
    while True:
        message = await client.messages.create(
            model="mock-claude", messages=messages, tools=tools, max_tokens=200
        )
        calls = [block.name for block in message.content if block.type == "tool_use"]
        if not calls:
            return text_of(message)
        print("  model called:", ", ".join(calls))
        content = [block.model_dump(exclude_none=True) for block in message.content]
        messages.append({"role": "assistant", "content": content})
        messages.append(await toolbox.run_anthropic(message.content))


def text_of(message: anthropic.types.Message) -> str:
    """The text blocks of a reply, joined."""
    return "".join(block.text for block in message.content if block.type == "text")


async def main() -> None:
    async with serve_mock_llm() as server:
        server.control.tools = list(RULES)
        claude = Service(
            "claude",
            lambda: SDKClient(
                AnthropicClient(
                    "claude", server.base_url, model="mock-claude", api_key=Secret("sk-ant-demo")
                )
            ),
            ServiceConfig.for_llm(
                requests_per_minute=600,
                tokens_per_minute=60_000,
                retry=RetryPolicy.for_llm(backoff_initial=0.05),
            ),
        )
        tools = Service(
            "tools", lambda: MCPClient("tools", command=server_command()), ServiceConfig.for_mcp()
        )
        tree = sv.SupervisorSpec(
            id="agent",
            children=[
                sv.ChildSpec(id="claude", factory=claude.actor, config=claude.config.actor),
                sv.ChildSpec(id="tools", factory=tools.actor, config=tools.config.actor),
            ],
        )
        async with sv.start(tree) as sup, anthropic_client(sup.ref("claude")) as client:
            toolbox = await MCPToolbox.load(sup.ref("tools"))
            print("tools offered:", [tool["name"] for tool in toolbox.anthropic_tools()])
            answer = await agent(client, toolbox, QUESTION)
            print(f"agent answer: {answer!r}")

            server.control.script(Behaviour.overloaded(repeat=2))
            message = await client.messages.create(
                model="mock-claude",
                messages=[{"role": "user", "content": "still there?"}],
                max_tokens=50,
            )
            print(
                f"after two 529s, retried by the actor: {text_of(message)!r}"
                f" ({claude.stats.attempts} attempts for {claude.stats.requests} requests)"
            )

            async with client.messages.stream(
                model="mock-claude",
                messages=[{"role": "user", "content": "stream a short reply"}],
                max_tokens=50,
            ) as stream:
                pieces = [piece async for piece in stream.text_stream]
            print(f"streamed in {len(pieces)} pieces: {''.join(pieces)!r}")
            assert claude.limits is not None
            used = 60_000 - claude.limits.metrics().available["tokens"]
            print(f"tokens charged to the limit (reconciled with usage): {used:.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, backend=args.backend)
