"""The Anthropic Messages client through a service actor, against the mock's
Anthropic-compatible endpoint: over hypercorn on 127.0.0.1, and in process on virtual
time for the timing cases (both backends)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx2
import pytest

from actors import InvalidRequest, Secret, Service, ServiceConfig, ServiceResponseError, open_actor
from actors.resilience import RetryPolicy, TokenBucket
from actors.services import ChatRequest, ChatResponse
from actors.services.anthropic import AnthropicClient
from actors.testing import Behaviour, MockLLM, MockLLMServer, Quota, ToolRule, serve_mock_llm

pytestmark = pytest.mark.anyio

API_KEY = "sk-ant-test-0123456789-do-not-log"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture
async def server() -> AsyncIterator[MockLLMServer]:
    async with serve_mock_llm() as running:
        yield running


def service(
    base_url: str, *, transport: httpx2.AsyncBaseTransport | None = None, **changes: Any
) -> Service[ChatRequest, ChatResponse]:
    config = ServiceConfig.for_llm(
        retry=RetryPolicy.for_llm(
            backoff_initial=0.01, backoff_max=0.05, max_server_delay=5.0, budget_ratio=None
        ),
    )
    config = attrs.evolve(config, **changes)
    return Service(
        "claude",
        lambda: AnthropicClient(
            "claude",
            base_url,
            model="claude-mock",
            api_key=Secret(API_KEY),
            max_tokens=300,
            transport=transport,
        ),
        config,
    )


async def test_message_round_trip_sends_anthropic_headers(server: MockLLMServer) -> None:
    """A plain message: x-api-key, anthropic-version, the system prompt lifted, usage back."""
    svc = service(server.base_url)
    request = ChatRequest.create(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    )
    async with open_actor(svc.actor()) as ref:
        reply = await ref.call(request)
    sent = server.control.last_request
    headers = server.control.last_headers
    assert (headers["x-api-key"], headers["anthropic-version"]) == (API_KEY, "2023-06-01")
    assert "authorization" not in headers
    assert sent["system"] == "be brief"
    assert sent["max_tokens"] == 300
    assert sent["messages"] == [{"role": "user", "content": "hello"}]
    assert (reply.content, reply.finish_reason, reply.wire) == (
        "echo: hello",
        "end_turn",
        "anthropic",
    )
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 0


async def test_streamed_message_is_assembled(server: MockLLMServer) -> None:
    """A streamed message is assembled from its events, text handed to on_chunk."""
    server.control.script(Behaviour.ok("one two three", prompt_tokens=9, completion_tokens=3))
    seen: list[str] = []
    svc = service(server.base_url)
    async with open_actor(svc.actor()) as ref:
        reply = await ref.call(ChatRequest.user("go", stream=True, on_chunk=seen.append))
    assert reply.content == "one two three" == "".join(seen)
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (9, 3)
    assert reply.chunks > 5
    assert reply.raw["type"] == "message"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_tool_use_round_trip(server: MockLLMServer, stream: bool) -> None:
    """tool_use comes back as a ToolCall; its tool_result gets a final answer."""
    server.control.tools = [
        ToolRule(when="weather", tool="get_weather", arguments={"city": "Oslo"})
    ]
    svc = service(server.base_url)
    ask = ChatRequest.user("weather in Oslo?", tools=[WEATHER_TOOL], stream=stream)
    async with open_actor(svc.actor()) as ref:
        first = await ref.call(ask)
        (call,) = first.tool_calls
        assert (first.finish_reason, call.name) == ("tool_use", "get_weather")
        assert call.parsed_arguments() == {"city": "Oslo"}
        final = await ref.call(
            ask.followed_by(first.message, *first.tool_results({call.id: "snow"}))
        )
    assert final.content == "get_weather returned: snow"
    last = server.control.last_request["messages"][-1]
    assert last["content"][0]["type"] == "tool_result"


async def test_cache_tokens_are_reported(server: MockLLMServer) -> None:
    """Cache reads count in the prompt and are reported apart."""
    server.control.script(
        Behaviour.ok("x", prompt_tokens=100, completion_tokens=1, cached_tokens=80)
    )
    svc = service(server.base_url)
    async with open_actor(svc.actor()) as ref:
        reply = await ref.call(ChatRequest.user("hi"))
    assert (reply.usage.prompt_tokens, reply.usage.cached_tokens) == (100, 80)
    assert reply.raw["usage"]["cache_read_input_tokens"] == 80


@pytest.mark.parametrize(
    "failure",
    [Behaviour.overloaded(), Behaviour.stream_error(), Behaviour.error(500), Behaviour.drop()],
    ids=["529", "overloaded-mid-stream", "500", "drop"],
)
async def test_transient_failures_are_retried(server: MockLLMServer, failure: Behaviour) -> None:
    """529, an overloaded_error event mid-stream, 500 and a drop are retried."""
    server.control.script(failure, Behaviour.ok("fine"))
    svc = service(server.base_url)
    async with open_actor(svc.actor()) as ref:
        reply = await ref.call(ChatRequest.user("x", stream=True), timeout=10)
    assert reply.content == "fine"
    assert svc.stats.attempts == 2


async def test_overloaded_event_mid_stream_is_a_529(server: MockLLMServer) -> None:
    """Without retries, the in-stream overloaded_error reaches the caller as a 529."""
    server.control.script(Behaviour.stream_error())
    svc = service(server.base_url, retry=None)
    async with open_actor(svc.actor()) as ref:
        with pytest.raises(ServiceResponseError) as info:
            await ref.call(ChatRequest.user("x", stream=True))
    assert (info.value.status_code, info.value.code) == (529, "overloaded_error")


async def test_authentication_error_is_permanent(server: MockLLMServer) -> None:
    """A 401 authentication_error is raised after one attempt with its type as code."""
    server.control.api_keys = frozenset({"another-key"})
    svc = service(server.base_url)
    async with open_actor(svc.actor()) as ref:
        with pytest.raises(ServiceResponseError) as info:
            await ref.call(ChatRequest.user("x"))
    assert (info.value.status_code, info.value.code) == (401, "authentication_error")
    assert svc.stats.attempts == 1


async def test_missing_user_turn_is_refused_before_sending(server: MockLLMServer) -> None:
    """A conversation of system messages only fails the caller; nothing is sent."""
    svc = service(server.base_url)
    async with open_actor(svc.actor()) as ref:
        with pytest.raises(InvalidRequest):
            await ref.call(ChatRequest(messages=[{"role": "system", "content": "x"}]))
    assert server.control.chat_requests == 0


async def test_rate_limit_headers_are_kept(server: MockLLMServer) -> None:
    """anthropic-ratelimit-* headers come back on the answer for the limits to read."""
    server.control.quota = Quota(requests_per_minute=5, tokens_per_minute=10_000)
    svc = service(server.base_url)
    async with open_actor(svc.actor()) as ref:
        reply = await ref.call(ChatRequest.user("x"))
    assert reply.headers["anthropic-ratelimit-requests-limit"] == "5"
    assert reply.headers["anthropic-ratelimit-requests-remaining"] == "4"
    assert reply.headers["anthropic-ratelimit-tokens-reset"].endswith("Z")
    assert "date" in reply.headers


@pytest.mark.virtual_time
async def test_retry_after_is_honoured_exactly() -> None:
    """A 429 with retry-after: 2 is retried 2 s later (virtual time, in process)."""
    mock = MockLLM()
    mock.script(Behaviour.error(429, "slow down", headers={"retry-after": "2"}), Behaviour.ok("ok"))
    svc = service("http://mock/v1", transport=httpx2.ASGITransport(app=mock))
    async with open_actor(svc.actor()) as ref:
        reply = await ref.call(ChatRequest.user("x"), timeout=10)
    assert reply.content == "ok"
    assert [s.status for s in mock.served] == [429, 200]
    assert mock.served[1].at - mock.served[0].at == pytest.approx(2.0, abs=0.01)


@pytest.mark.virtual_time
async def test_quota_answers_feed_the_limits() -> None:
    """The mock's anthropic-ratelimit headers lower the local requests limit to match."""
    mock = MockLLM(quota=Quota(requests_per_minute=3))
    svc = service(
        "http://mock/v1",
        transport=httpx2.ASGITransport(app=mock),
        limits={"requests": TokenBucket(rate=100, period=60.0, capacity=100)},
    )
    async with open_actor(svc.actor()) as ref:
        await ref.call(ChatRequest.user("x"))
    assert svc.limits is not None
    assert svc.limits.metrics().available["requests"] == pytest.approx(2, abs=0.01)


@pytest.mark.virtual_time
async def test_a_spend_limit_429_is_permanent_and_not_retried() -> None:
    """A 429 naming a spend limit in error.details.error_code is a quota: no retry."""

    def spend_limit(request: httpx2.Request) -> httpx2.Response:
        body = {
            "type": "error",
            "error": {
                "type": "rate_limit_error",
                "message": "spend limit reached",
                "details": {"error_code": "enforced_spend_limit_reached"},
            },
        }
        return httpx2.Response(429, json=body, headers={"retry-after": "1"})

    svc = service("http://mock/v1", transport=httpx2.MockTransport(spend_limit))
    async with open_actor(svc.actor()) as ref:
        with pytest.raises(ServiceResponseError) as info:
            await ref.call(ChatRequest.user("x"), timeout=10)
    assert info.value.code == "enforced_spend_limit_reached"
    assert svc.stats.attempts == 1
    assert svc.stats.verdicts == {"permanent": 1}
