"""A tool-calling agent on the official `openai` SDK, every request through a service
actor, its tools from an MCP server through an MCP service actor.

Run: python examples/openai_agent.py [--backend asyncio|trio]

A supervisor runs two service actors: "gpt", whose client sends the SDK's own requests
(`SDKClient` around our `LLMClient`: the actor holds the URL and the API key, its
limits, breaker and retries apply to every request), and "tools", the test MCP server
over stdio. The model is the local mock in its scripted tool-calling mode: it answers
the question with tool calls (add, then echo), then with an answer quoting the
results. The agent loop is plain SDK code: `openai_client(ref)` is an `AsyncOpenAI`
with its retries off. Then a rate-limited answer is waited out by the actor's limiter
(the SDK never sees it), and the final answer is streamed.
"""

from __future__ import annotations

import argparse
from typing import Any

import anyio

import supervisor as sv
from actors import Secret, Service, ServiceConfig
from actors.integrations import SDKClient, openai_client
from actors.resilience import RetryPolicy
from actors.services import MCPToolbox
from actors.services.llm import LLMClient
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
    tools = toolbox.openai_tools()
    while True:
        completion = await client.chat.completions.create(
            model="mock-gpt", messages=messages, tools=tools, max_tokens=200
        )
        message = completion.choices[0].message
        if not message.tool_calls:
            return str(message.content)
        print("  model called:", ", ".join(call.function.name for call in message.tool_calls))
        messages.append(message.model_dump(exclude_none=True))
        messages.extend(await toolbox.run_openai(message))


async def main() -> None:
    async with serve_mock_llm() as server:
        server.control.tools = list(RULES)
        gpt = Service(
            "gpt",
            lambda: SDKClient(
                LLMClient("gpt", server.base_url, model="mock-gpt", api_key=Secret("sk-demo"))
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
                sv.ChildSpec(id="gpt", factory=gpt.actor, config=gpt.config.actor),
                sv.ChildSpec(id="tools", factory=tools.actor, config=tools.config.actor),
            ],
        )
        async with sv.start(tree) as sup, openai_client(sup.ref("gpt")) as client:
            toolbox = await MCPToolbox.load(sup.ref("tools"))
            print("tools offered:", [tool["function"]["name"] for tool in toolbox.openai_tools()])
            answer = await agent(client, toolbox, QUESTION)
            print(f"agent answer: {answer!r}")

            server.control.script(Behaviour.rate_limited(retry_after=0.3))
            completion = await client.chat.completions.create(
                model="mock-gpt", messages=[{"role": "user", "content": "still there?"}]
            )
            print(
                f"after a 429 the limiter waited out: {completion.choices[0].message.content!r}"
                f" ({gpt.stats.attempts} attempts for {gpt.stats.requests} requests)"
            )

            stream = await client.chat.completions.create(
                model="mock-gpt",
                messages=[{"role": "user", "content": "stream a short reply"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            async with stream:
                pieces = [
                    chunk.choices[0].delta.content
                    async for chunk in stream
                    if chunk.choices and chunk.choices[0].delta.content
                ]
            print(f"streamed in {len(pieces)} pieces: {''.join(pieces)!r}")
            assert gpt.limits is not None
            used = 60_000 - gpt.limits.metrics().available["tokens"]
            print(f"tokens charged to the limit (reconciled with usage): {used:.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, backend=args.backend)
