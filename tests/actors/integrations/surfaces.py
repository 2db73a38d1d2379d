"""The four ways an agent reaches an LLM service actor, behind one small interface so
each contract is tested on all of them: the official `openai` and `anthropic` SDKs
through `ActorTransport`, and our own `ChatRequest` on each wire format."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
import httpx2
import pytest
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionMessageParam

from actors import Secret, Service, ServiceConfig
from actors.integrations import SDKClient, anthropic_client, openai_client
from actors.resilience import RetryPolicy
from actors.services import ChatRequest, MCPToolbox
from actors.services.anthropic import AnthropicClient
from actors.services.llm import LLMClient

API_KEY = "sk-test-held-by-the-actor-0123456789"
FAST = RetryPolicy.for_llm(
    backoff_initial=0.01, backoff_max=0.05, max_server_delay=5.0, budget_ratio=None
)
TOKENS_PER_MINUTE = 100_000.0


async def until(condition: Callable[[], bool], seconds: float = 2.0) -> None:
    """Waits (polling) until `condition` holds; fails after `seconds`."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await anyio.sleep(0.01)
    pytest.fail("the condition never held")


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def openai_user(text: str) -> list[ChatCompletionMessageParam]:
    """`user(text)` typed for the openai SDK."""
    return [{"role": "user", "content": text}]


def anthropic_user(text: str) -> list[MessageParam]:
    """`user(text)` typed for the anthropic SDK."""
    return [{"role": "user", "content": text}]


@attrs.frozen
class Surface:
    """One way of asking: `sdk` (through the transport) or not, on `wire`."""

    wire: str  # "openai" or "anthropic"
    sdk: bool

    @property
    def id(self) -> str:
        return f"{self.wire}-{'sdk' if self.sdk else 'chat-request'}"

    def service(
        self,
        base_url: str,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        **changes: Any,
    ) -> Service[Any, Any]:
        """The service (LLM presets, fast retries, requests and tokens per minute)."""
        config = ServiceConfig.for_llm(
            requests_per_minute=600, tokens_per_minute=TOKENS_PER_MINUTE, retry=FAST
        )
        config = attrs.evolve(config, **changes)
        name = f"{self.wire}-llm"
        make_chat: Callable[[], Any]
        if self.wire == "openai":

            def make_chat() -> Any:
                return LLMClient(
                    name, base_url, model="mock-gpt", api_key=Secret(API_KEY), transport=transport
                )
        else:

            def make_chat() -> Any:
                return AnthropicClient(
                    name,
                    base_url,
                    model="mock-claude",
                    api_key=Secret(API_KEY),
                    transport=transport,
                )

        factory = (lambda: SDKClient(make_chat())) if self.sdk else make_chat
        return Service(name, factory, config)

    @asynccontextmanager
    async def asker(self, ref: Any) -> AsyncIterator[Asker]:
        if not self.sdk:
            yield Asker(self, ref, None)
            return
        client = openai_client(ref) if self.wire == "openai" else anthropic_client(ref)
        async with client:
            yield Asker(self, ref, client)


SURFACES = [Surface(wire, sdk) for wire in ("openai", "anthropic") for sdk in (True, False)]
SDK_SURFACES = [surface for surface in SURFACES if surface.sdk]


@attrs.define
class Asker:
    """Asks through one surface; every method returns the answer's text."""

    surface: Surface
    ref: Any
    client: Any

    async def ask(self, text: str, *, max_tokens: int = 64, timeout: float | None = None) -> str:
        if self.client is None:
            reply = await self.ref.call(
                ChatRequest.user(text, max_tokens=max_tokens), timeout=timeout
            )
            return str(reply.content)
        options = {} if timeout is None else {"timeout": timeout}
        if self.surface.wire == "openai":
            completion = await self.client.chat.completions.create(
                model="mock-gpt", messages=user(text), max_tokens=max_tokens, **options
            )
            return str(completion.choices[0].message.content)
        message = await self.client.messages.create(
            model="mock-claude", messages=user(text), max_tokens=max_tokens, **options
        )
        return "".join(block.text for block in message.content if block.type == "text")

    async def stream(self, text: str, pieces: list[str] | None = None) -> str:
        """A streamed answer, read to its end (each text delta appended to `pieces`)."""
        pieces = [] if pieces is None else pieces
        if self.client is None:
            request = ChatRequest.user(text, max_tokens=64, stream=True, on_chunk=pieces.append)
            reply = await self.ref.call(request)
            return str(reply.content)
        if self.surface.wire == "openai":
            stream = await self.client.chat.completions.create(
                model="mock-gpt",
                messages=user(text),
                max_tokens=64,
                stream=True,
                stream_options={"include_usage": True},
            )
            async with stream:
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        pieces.append(chunk.choices[0].delta.content)
            return "".join(pieces)
        async with self.client.messages.stream(
            model="mock-claude", messages=user(text), max_tokens=64
        ) as stream:
            async for piece in stream.text_stream:
                pieces.append(piece)
        return "".join(pieces)

    async def tool_turn(self, toolbox: MCPToolbox, text: str) -> tuple[list[str], str]:
        """Asks with the toolbox's tools, runs the tool calls through the MCP actor,
        sends the results back; returns the tools called and the final answer."""
        if self.client is None:
            tools = (
                toolbox.openai_tools()
                if self.surface.wire == "openai"
                else toolbox.anthropic_tools()
            )
            ask = ChatRequest.user(text, tools=tools, max_tokens=200)
            reply = await self.ref.call(ask)
            called = [call.name for call in reply.tool_calls]
            results = (
                await toolbox.run_openai(reply)
                if self.surface.wire == "openai"
                else [await toolbox.run_anthropic(reply)]
            )
            final = await self.ref.call(ask.followed_by(reply.message, *results))
            return called, str(final.content)
        if self.surface.wire == "openai":
            messages: list[Any] = user(text)
            tools = toolbox.openai_tools()
            first = await self.client.chat.completions.create(
                model="mock-gpt", messages=messages, tools=tools
            )
            message = first.choices[0].message
            called = [call.function.name for call in message.tool_calls or ()]
            messages += [message.model_dump(exclude_none=True), *await toolbox.run_openai(message)]
            final = await self.client.chat.completions.create(
                model="mock-gpt", messages=messages, tools=tools
            )
            return called, str(final.choices[0].message.content)
        messages = user(text)
        tools = toolbox.anthropic_tools()
        first = await self.client.messages.create(
            model="mock-claude", messages=messages, tools=tools, max_tokens=200
        )
        called = [block.name for block in first.content if block.type == "tool_use"]
        messages += [
            {
                "role": "assistant",
                "content": [b.model_dump(exclude_none=True) for b in first.content],
            },
            await toolbox.run_anthropic(first.content),
        ]
        final = await self.client.messages.create(
            model="mock-claude", messages=messages, tools=tools, max_tokens=200
        )
        return called, "".join(block.text for block in final.content if block.type == "text")
