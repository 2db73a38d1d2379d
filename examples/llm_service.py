"""LLM service actors (OpenAI-compatible and Anthropic) under a supervisor, against the
local mock server that speaks both wire formats.

Run: python examples/llm_service.py [--backend asyncio|trio]

Starts the mock server on 127.0.0.1 (no API key, no network), then shows on each client
a plain call, a streamed call and a tool-calling turn (the mock answers the weather
question with a tool call, then uses the tool's result); then a burst of 429s absorbed
by retries (honouring retry-after-ms), an overloaded_error in the middle of a stream
retried, and a malformed request refused before it is queued.
"""

from __future__ import annotations

import argparse
from typing import Any

import anyio
import attrs

import supervisor as sv
from actors import InvalidRequest, Secret, Service, ServiceConfig
from actors.resilience import RetryPolicy
from actors.services import ChatRequest, ChatResponse
from actors.services.anthropic import AnthropicClient
from actors.services.llm import LLMClient
from actors.testing import Behaviour, ToolRule, serve_mock_llm

OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
ANTHROPIC_TOOLS = [
    {
        "name": "get_weather",
        "description": "The current weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


def get_weather(city: str) -> str:
    """The tool the model asks for (a real agent would call an MCP server here)."""
    return f"sunny and 21 C in {city}"


async def agent_turn(ref: Any, question: str, tools: list[dict[str, Any]]) -> ChatResponse:
    """Asks, runs the tools the model calls, sends their results back, until it answers."""
    ask = ChatRequest.user(question, tools=tools)
    reply: ChatResponse = await ref.call(ask)
    while reply.tool_calls:
        outputs = {call.id: get_weather(**call.parsed_arguments()) for call in reply.tool_calls}
        print(f"  model called {[call.name for call in reply.tool_calls]}")
        ask = ask.followed_by(reply.message, *reply.tool_results(outputs))
        reply = await ref.call(ask)
    return reply


async def main() -> None:
    async with serve_mock_llm() as server:
        server.control.tools = [
            ToolRule(when="weather", tool="get_weather", arguments={"city": "Paris"})
        ]
        config = ServiceConfig.for_llm(requests_per_minute=600, tokens_per_minute=50_000)
        config = attrs.evolve(config, retry=RetryPolicy.for_llm(backoff_initial=0.05))
        gpt = Service(
            "gpt",
            lambda: LLMClient("gpt", server.base_url, model="mock-gpt", api_key=Secret("sk-demo")),
            config,
        )
        claude = Service(
            "claude",
            lambda: AnthropicClient(
                "claude", server.base_url, model="mock-claude", api_key=Secret("sk-ant-demo")
            ),
            config,
        )
        tree = sv.SupervisorSpec(
            id="agent",
            children=[
                sv.ChildSpec(id="gpt", factory=gpt.actor, config=config.actor),
                sv.ChildSpec(id="claude", factory=claude.actor, config=config.actor),
            ],
        )
        async with sv.start(tree) as sup:
            for name, tools in (("gpt", OPENAI_TOOLS), ("claude", ANTHROPIC_TOOLS)):
                ref = sup.ref(name)
                print(f"== {name}")
                reply = await ref.call(ChatRequest.user("Say hello"))
                print(f"reply: {reply.content!r} ({reply.usage.total_tokens} tokens)")

                chunks: list[str] = []
                reply = await ref.call(
                    ChatRequest.user("Stream a story", stream=True, on_chunk=chunks.append)
                )
                print(f"streamed {len(chunks)} chunks: {reply.content!r}")

                reply = await agent_turn(ref, "What is the weather in Paris?", tools)
                print(f"agent answer: {reply.content!r}")

            server.control.script(
                Behaviour.rate_limited(retry_after=None, retry_after_ms=50, repeat=2)
            )
            reply = await sup.ref("gpt").call(ChatRequest.user("Under rate limiting"))
            print(f"after two 429s: {reply.content!r}; gpt attempts: {gpt.stats.attempts}")

            server.control.script(Behaviour.stream_error())  # overloaded_error mid-stream
            reply = await sup.ref("claude").call(ChatRequest.user("Overloaded?", stream=True))
            print(f"after an overloaded_error event: {reply.content!r}")

            try:
                await sup.ref("gpt").call(ChatRequest.user("x", max_tokens=-5))
            except InvalidRequest as exc:
                print(f"refused before it was queued: {exc}")

            assert gpt.limits is not None
            available = {k: round(v) for k, v in gpt.limits.metrics().available.items()}
            # The 429s said "remaining 0": the limits follow the provider, then refill.
            print(f"gpt limits available (resynced by the 429s' headers): {available}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, backend=args.backend)
