"""The official `openai` and `anthropic` SDKs against our mock LLM server on 127.0.0.1:
everything the mock sends must parse, and validate against the SDKs' own types
(plain, streamed, 429 with retry-after, insufficient_quota, 529, mid-stream errors,
tool calls), on both backends."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from actors.testing import Behaviour, MockLLMServer, ToolRule, serve_mock_llm

pytestmark = pytest.mark.anyio

USER = [{"role": "user", "content": "hello"}]
RULE = ToolRule(when="weather", tool="get_weather", arguments={"city": "Paris"})
OPENAI_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
ANTHROPIC_TOOLS: list[Any] = [
    {
        "name": "get_weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
STREAM_EVENTS = TypeAdapter(RawMessageStreamEvent)

# openai's AsyncStream breaks out of its chain of event generators at [DONE] without
# closing them (after draining the body); trio reports each one when it is collected.
# The SDK's behaviour, not ours: our stream ends right after [DONE].
SDK_LEAVES_ITS_GENERATOR = pytest.mark.filterwarnings(
    "ignore:Async generator .* was garbage collected:ResourceWarning"
)


@pytest.fixture
async def server() -> AsyncIterator[MockLLMServer]:
    async with serve_mock_llm() as running:
        running.control.tools = [RULE]
        yield running


@pytest.fixture
async def oai(server: MockLLMServer) -> AsyncIterator[Any]:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    async with client:
        yield client


@pytest.fixture
async def claude(server: MockLLMServer) -> AsyncIterator[Any]:
    client = anthropic.AsyncAnthropic(base_url=server.url, api_key="sk-ant-test", max_retries=0)
    async with client:
        yield client


# --------------------------------------------------------------------------- openai


async def test_openai_completion_validates(oai: Any) -> None:
    """A plain completion parses and validates as the SDK's ChatCompletion."""
    raw = await oai.chat.completions.with_raw_response.create(model="m", messages=USER)
    completion = ChatCompletion.model_validate(json.loads(raw.http_response.text))
    assert completion.choices[0].message.content == "echo: hello"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 3


@SDK_LEAVES_ITS_GENERATOR
async def test_openai_stream_validates(oai: Any, server: MockLLMServer) -> None:
    """Every streamed chunk validates as ChatCompletionChunk; the last carries usage."""
    server.control.script(Behaviour.ok("one two three"))
    stream = await oai.chat.completions.create(
        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = [ChatCompletionChunk.model_validate(chunk.model_dump()) async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert chunks[-1].usage is not None


async def test_openai_tool_call_round_trip(oai: Any) -> None:
    """tool_calls parse; after the tool message the answer uses the result."""
    first = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "weather?"}], tools=OPENAI_TOOLS
    )
    message = first.choices[0].message
    (call,) = message.tool_calls
    assert (first.choices[0].finish_reason, call.function.name) == ("tool_calls", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    final = await oai.chat.completions.create(
        model="m",
        tools=OPENAI_TOOLS,
        messages=[
            {"role": "user", "content": "weather?"},
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
    )
    assert final.choices[0].message.content == "get_weather returned: sunny"


@SDK_LEAVES_ITS_GENERATOR
async def test_openai_streamed_tool_call_is_assembled_by_the_sdk(oai: Any) -> None:
    """The SDK's stream helper assembles our argument fragments into the call."""
    async with oai.chat.completions.stream(
        model="m", messages=[{"role": "user", "content": "weather"}], tools=OPENAI_TOOLS
    ) as stream:
        final = await stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    assert json.loads(call.function.arguments) == {"city": "Paris"}


async def test_openai_sdk_honours_retry_after(server: MockLLMServer) -> None:
    """With retries on, the SDK waits retry-after-ms after our 429 and succeeds."""
    server.control.script(Behaviour.rate_limited(retry_after=None, retry_after_ms=50))
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=1)
    async with client:
        completion = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hello"}]
        )
    assert completion.choices[0].message.content == "echo: hello"
    limited, answered = server.control.served
    assert (limited.status, answered.status) == (429, 200)
    assert answered.at - limited.at >= 0.05


async def test_openai_rate_limit_error_carries_the_headers(oai: Any, server: MockLLMServer) -> None:
    """Our 429 is the SDK's RateLimitError, with retry-after and rate_limit_exceeded."""
    server.control.script(Behaviour.rate_limited(retry_after=2))
    with pytest.raises(openai.RateLimitError) as info:
        await oai.chat.completions.create(model="m", messages=USER)
    assert info.value.response.headers["retry-after"] == "2"
    assert info.value.code == "rate_limit_exceeded"


async def test_openai_insufficient_quota(oai: Any, server: MockLLMServer) -> None:
    """insufficient_quota parses as a RateLimitError with that code and type."""
    server.control.script(Behaviour.quota_exceeded())
    with pytest.raises(openai.RateLimitError) as info:
        await oai.chat.completions.create(model="m", messages=USER)
    assert (info.value.code, info.value.type) == ("insufficient_quota", "insufficient_quota")


async def test_openai_server_errors(oai: Any, server: MockLLMServer) -> None:
    """500 and 529 are the SDK's InternalServerError; a 400 is BadRequestError."""
    server.control.script(Behaviour.error(500), Behaviour.overloaded(), Behaviour.error(400))
    for error in (openai.InternalServerError, openai.InternalServerError, openai.BadRequestError):
        with pytest.raises(error):
            await oai.chat.completions.create(model="m", messages=USER)


async def test_openai_models_list(oai: Any) -> None:
    """GET /v1/models parses as the SDK's model page."""
    models = [model.id async for model in oai.models.list()]
    assert models == ["mock-gpt"]


# --------------------------------------------------------------------------- anthropic


async def test_anthropic_message_validates(claude: Any) -> None:
    """A plain message parses and validates as the SDK's Message."""
    raw = await claude.messages.with_raw_response.create(model="m", max_tokens=20, messages=USER)
    message = Message.model_validate(json.loads(raw.http_response.text))
    assert message.content[0].type == "text"
    assert message.stop_reason == "end_turn"


async def test_anthropic_stream_validates(claude: Any, server: MockLLMServer) -> None:
    """Every streamed event validates as RawMessageStreamEvent; the SDK assembles them."""
    server.control.script(Behaviour.ok("a b c", cached_tokens=1))
    async with claude.messages.stream(model="m", max_tokens=20, messages=USER) as stream:
        events = [
            STREAM_EVENTS.validate_python(event.model_dump())
            async for event in stream
            if event.type in {"message_start", "content_block_delta", "message_delta"}
        ]
        final = await stream.get_final_message()
    assert final.content[0].text == "a b c"
    assert final.usage.cache_read_input_tokens == 1
    assert events[0].type == "message_start"


async def test_anthropic_tool_use_round_trip(claude: Any) -> None:
    """tool_use parses (also streamed); the tool_result gets the final answer."""
    ask = [{"role": "user", "content": "weather?"}]
    async with claude.messages.stream(
        model="m", max_tokens=50, messages=ask, tools=ANTHROPIC_TOOLS
    ) as stream:
        first = await stream.get_final_message()
    (block,) = first.content
    assert (first.stop_reason, block.name, block.input) == (
        "tool_use",
        "get_weather",
        {"city": "Paris"},
    )
    final = await claude.messages.create(
        model="m",
        max_tokens=50,
        tools=ANTHROPIC_TOOLS,
        messages=[
            *ask,
            {"role": "assistant", "content": [block.model_dump(exclude_none=True)]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "rain"}],
            },
        ],
    )
    assert final.content[0].text == "get_weather returned: rain"


async def test_anthropic_overloaded_and_rate_limited(claude: Any, server: MockLLMServer) -> None:
    """529 is OverloadedError; 429 is RateLimitError with retry-after."""
    server.control.script(Behaviour.overloaded(), Behaviour.rate_limited(retry_after=3))
    with pytest.raises(anthropic.OverloadedError):
        await claude.messages.create(model="m", max_tokens=10, messages=USER)
    with pytest.raises(anthropic.RateLimitError) as info:
        await claude.messages.create(model="m", max_tokens=10, messages=USER)
    assert info.value.response.headers["retry-after"] == "3"


async def test_anthropic_error_event_mid_stream(claude: Any, server: MockLLMServer) -> None:
    """The SDK raises our in-stream overloaded_error event as an APIStatusError."""
    server.control.script(Behaviour.stream_error())
    with pytest.raises(anthropic.APIStatusError) as info:
        async with claude.messages.stream(model="m", max_tokens=10, messages=USER) as stream:
            await stream.get_final_message()
    body = info.value.body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "overloaded_error"


async def test_anthropic_sdk_honours_retry_after(server: MockLLMServer) -> None:
    """With retries on, the SDK retries our 429 after its retry-after and succeeds."""
    server.control.script(Behaviour.error(429, "slow down", headers={"retry-after-ms": "50"}))
    client = anthropic.AsyncAnthropic(base_url=server.url, api_key="k", max_retries=1)
    async with client:
        message = await client.messages.create(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "hello"}]
        )
    block = message.content[0]
    assert isinstance(block, anthropic.types.TextBlock)
    assert block.text == "echo: hello"
    limited, answered = server.control.served
    assert answered.at - limited.at >= 0.05


async def test_anthropic_models_list(claude: Any) -> None:
    """GET /v1/models parses as the SDK's model page."""
    models = [model.id async for model in claude.models.list()]
    assert models == ["mock-gpt"]
