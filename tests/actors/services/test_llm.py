"""The LLM service against a real hypercorn serving the mock OpenAI-compatible API on
127.0.0.1 (both backends, real time, short durations)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import attrs
import pytest

from actors import (
    CallTimeout,
    CircuitOpen,
    InvalidRequest,
    MalformedResponse,
    RateLimited,
    Secret,
    Service,
    ServiceConfig,
    ServiceResponseError,
    ServiceUnavailable,
    open_actor,
)
from actors.resilience import BreakerConfig, RetryPolicy, TokenBucket
from actors.services import ChatRequest, ChatResponse
from actors.services.llm import LLMClient
from actors.testing import Behaviour, MockLLMServer, ToolRule, capture_events, serve_mock_llm

pytestmark = pytest.mark.anyio

API_KEY = "sk-test-0123456789-do-not-log"


@pytest.fixture
async def server() -> AsyncIterator[MockLLMServer]:
    async with serve_mock_llm() as running:
        yield running


def llm_service(server: MockLLMServer, **changes: Any) -> Service[ChatRequest, ChatResponse]:
    config = ServiceConfig.for_llm(
        retry=RetryPolicy.for_llm(
            backoff_initial=0.01, backoff_max=0.05, max_server_delay=2.0, budget_ratio=None
        ),
    )
    config = attrs.evolve(config, **changes)
    return Service(
        "llm",
        lambda: LLMClient(
            "llm", server.base_url, model="mock-small", api_key=Secret(API_KEY), max_connections=8
        ),
        config,
    )


async def test_chat_completion_round_trip(server: MockLLMServer) -> None:
    """A JSON completion comes back with content and token usage."""
    svc = llm_service(server)
    async with open_actor(svc.actor()) as ref:
        reply = await ref.call(ChatRequest.user("hello there"))
    assert isinstance(reply, ChatResponse)
    assert "hello there" in reply.content
    assert reply.usage.total_tokens > 0
    assert server.control.counters()["requests"] >= 1


async def test_streamed_completion_is_assembled(server: MockLLMServer) -> None:
    """A streamed answer is assembled from its chunks, with the final usage."""
    svc = llm_service(server)
    seen: list[str] = []
    async with open_actor(svc.actor()) as ref:
        server.control.script(Behaviour.ok("one two three four"))
        reply = await ref.call(ChatRequest.user("stream it", stream=True, on_chunk=seen.append))
    assert reply.content == "one two three four"
    assert "".join(seen) == reply.content
    assert reply.chunks >= 2
    assert reply.usage.total_tokens > 0


@pytest.mark.parametrize(
    "failure",
    [
        Behaviour.error(500),
        Behaviour.error(503),
        Behaviour.overloaded(),
        Behaviour.error(408),
        Behaviour.rate_limited(retry_after=None, retry_after_ms=20),
        Behaviour.drop(),
        Behaviour.truncated(),
        Behaviour.malformed(),
    ],
    ids=["500", "503", "529", "408", "429", "drop", "truncated", "malformed"],
)
async def test_retryable_failures_recover(server: MockLLMServer, failure: Behaviour) -> None:
    """Each retryable failure is retried and the call recovers on the next attempt."""
    svc = llm_service(server)
    async with open_actor(svc.actor()) as ref:
        server.control.script(failure, Behaviour.ok("fine"))
        reply = await ref.call(ChatRequest.user("x"), timeout=10)
    assert reply.content == "fine"
    assert svc.stats.attempts == 2


@pytest.mark.parametrize(
    ("failure", "status"),
    [(Behaviour.error(400), 400), (Behaviour.error(401), 401), (Behaviour.quota_exceeded(), 429)],
    ids=["400", "401", "quota-429"],
)
async def test_permanent_failures_surface_at_once(
    server: MockLLMServer, failure: Behaviour, status: int
) -> None:
    """Permanent failures reach the caller after one attempt, with status and code."""
    svc = llm_service(server)
    async with open_actor(svc.actor()) as ref:
        server.control.script(failure)
        with pytest.raises(ServiceResponseError) as info:
            await ref.call(ChatRequest.user("x"))
        assert ref.alive
    assert info.value.status_code == status
    assert info.value.service == "llm"
    assert info.value.correlation_id
    assert svc.stats.attempts == 1


async def test_server_delay_beyond_the_cap_fails_fast(server: MockLLMServer) -> None:
    """A 429 asking for longer than the retry cap is given up at once."""
    svc = llm_service(server)
    async with open_actor(svc.actor()) as ref:
        server.control.script(Behaviour.rate_limited(retry_after=30))
        start = time.monotonic()
        with pytest.raises(ServiceResponseError) as info:
            await ref.call(ChatRequest.user("x"), timeout=10)
        assert time.monotonic() - start < 2
    assert info.value.status_code == 429


async def test_hung_server_times_out_at_the_deadline(server: MockLLMServer) -> None:
    """A hung server yields CallTimeout at the caller's deadline; the actor keeps going."""
    svc = llm_service(server)
    async with open_actor(svc.actor()) as ref:
        server.control.script(Behaviour.hang())
        start = time.monotonic()
        with pytest.raises(CallTimeout):
            await ref.call(ChatRequest.user("x"), timeout=0.5)
        assert 0.45 < time.monotonic() - start < 1.5
        assert (await ref.call(ChatRequest.user("after"), timeout=5)).content


async def test_breaker_opens_and_recovers(server: MockLLMServer) -> None:
    """Under a failing server the breaker opens and calls fail fast without I/O; a
    half-open trial closes it once the server heals."""
    breaker = BreakerConfig(
        window="count",
        window_size=4,
        minimum_calls=4,
        failure_rate_threshold=0.5,
        open_duration=0.3,
        open_jitter=0.0,
        half_open_permits=1,
    )
    svc = llm_service(server, retry=None, breaker=breaker)
    async with open_actor(svc.actor()) as ref:
        server.control.script(Behaviour.error(503, repeat=4))
        for _ in range(4):
            with pytest.raises(ServiceResponseError):
                await ref.call(ChatRequest.user("x"))
        seen = server.control.counters()["requests"]
        with pytest.raises(CircuitOpen):
            await ref.call(ChatRequest.user("x"))
        assert server.control.counters()["requests"] == seen
        await anyio.sleep(0.35)
        assert (await ref.call(ChatRequest.user("trial"))).content
        assert svc.breaker is not None
        assert svc.breaker.state.value == "closed"


async def test_tokens_per_minute_budget_is_never_exceeded(server: MockLLMServer) -> None:
    """Concurrent calls never exceed the tokens budget; usage reconciles the estimate."""
    budget = 600.0
    svc = llm_service(
        server,
        limits={"tokens": TokenBucket(rate=budget, period=60.0, capacity=budget)},
    )
    used: list[int] = []
    async with open_actor(svc.actor()) as ref:

        async def one(i: int) -> None:
            try:
                reply = await ref.call(ChatRequest.user(f"q{i}", max_tokens=100), timeout=0.5)
            except (RateLimited, CallTimeout):
                return  # over budget: refused or still waiting at the deadline
            used.append(reply.usage.total_tokens)

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(one, i)
    assert used
    assert sum(used) <= budget  # one window: everything admitted fits the budget
    assert len(used) < 20  # the estimate (prompt/4 + 100) made some wait or be refused
    assert svc.limits is not None
    assert svc.limits.metrics().admitted == len(used)


async def test_unreachable_server_is_unavailable() -> None:
    """Nothing listening on the port: ServiceUnavailable after the retries."""
    svc = Service(
        "llm",
        lambda: LLMClient("llm", "http://127.0.0.1:9/v1", model="m"),
        ServiceConfig.for_llm(
            retry=RetryPolicy(attempts=2, backoff_initial=0.0, backoff_max=0.0, budget_ratio=None)
        ),
    )
    async with open_actor(svc.actor()) as ref:
        with pytest.raises(ServiceUnavailable):
            await ref.call(ChatRequest.user("x"))
    assert svc.stats.attempts == 2


async def test_api_key_never_appears_in_logs_reprs_or_errors(server: MockLLMServer) -> None:
    """The API key is sent, but is in no event, repr or error message."""
    svc = llm_service(server)
    errors: list[BaseException] = []
    with capture_events() as events:
        async with open_actor(svc.actor()) as ref:
            await ref.call(ChatRequest.user("hi"))
            server.control.script(
                Behaviour.error(401, message=f"Incorrect API key provided: {API_KEY}")
            )
            try:
                await ref.call(ChatRequest.user("x"))
            except ServiceResponseError as exc:
                errors.append(exc)
    assert errors
    assert API_KEY not in str(errors[0])
    assert API_KEY not in repr(svc.actor().client.__dict__)
    assert all(API_KEY not in repr(event) for event in events)


async def test_malformed_answer_is_classified(server: MockLLMServer) -> None:
    """A body that never parses ends as MalformedResponse once retries run out."""
    svc = llm_service(server)
    async with open_actor(svc.actor()) as ref:
        server.control.script(Behaviour.malformed(repeat=10))
        with pytest.raises(MalformedResponse):
            await ref.call(ChatRequest.user("x"), timeout=10)
        assert ref.alive


# --------------------------------------------------------------------------- full payloads

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_tool_calling_round_trip(server: MockLLMServer, stream: bool) -> None:
    """The model asks for a tool, gets its result back and answers with it."""
    server.control.tools = [
        ToolRule(when="weather", tool="get_weather", arguments={"city": "Paris"})
    ]
    svc = llm_service(server)
    async with open_actor(svc.actor()) as ref:
        ask = ChatRequest.user("What is the weather in Paris?", tools=[WEATHER_TOOL], stream=stream)
        first = await ref.call(ask)
        assert first.finish_reason == "tool_calls"
        (call,) = first.tool_calls
        assert (call.name, call.parsed_arguments()) == ("get_weather", {"city": "Paris"})
        follow_up = ask.followed_by(first.message, *first.tool_results({call.id: "sunny, 21 C"}))
        final = await ref.call(follow_up)
    assert final.content == "get_weather returned: sunny, 21 C"
    assert final.finish_reason == "stop"
    assert server.control.last_request["messages"][-1]["role"] == "tool"


async def test_extra_fields_reach_the_provider_untouched(server: MockLLMServer) -> None:
    """Fields in extra (tools, tool_choice, response_format, seed, stop) are sent as given."""
    extra = {
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "seed": 7,
        "stop": ["\n\n"],
        "metadata": {"k": "v"},
    }
    svc = llm_service(server)
    async with open_actor(svc.actor()) as ref:
        await ref.call(ChatRequest.user("hi", **extra))
    sent = server.control.last_request
    assert {key: sent[key] for key in extra} == extra


async def test_usage_reports_cached_tokens(server: MockLLMServer) -> None:
    """Cached prompt tokens and the raw body come back with the answer."""
    server.control.script(
        Behaviour.ok("hi", prompt_tokens=50, completion_tokens=2, cached_tokens=40)
    )
    svc = llm_service(server)
    async with open_actor(svc.actor()) as ref:
        reply = await ref.call(ChatRequest.user("x" * 400))
    assert (reply.usage.prompt_tokens, reply.usage.cached_tokens, reply.usage.total_tokens) == (
        50,
        40,
        52,
    )
    assert reply.raw["usage"]["prompt_tokens_details"]["cached_tokens"] == 40


async def test_absurd_usage_is_clamped_and_never_charged(server: MockLLMServer) -> None:
    """A reply claiming 10**12 tokens is clamped to the request's bound; later calls pass."""
    budget = 100_000.0
    svc = llm_service(
        server, limits={"tokens": TokenBucket(rate=budget, period=60.0, capacity=budget)}
    )
    server.control.script(Behaviour.ok("hi", prompt_tokens=10**12, completion_tokens=10**12))
    async with open_actor(svc.actor()) as ref:
        with capture_events() as events:
            first = await ref.call(ChatRequest.user("hello", max_tokens=10))
        second = await ref.call(ChatRequest.user("again", max_tokens=10), timeout=1)
    assert first.usage.completion_tokens == 10
    assert first.usage.total_tokens < 5_000
    assert {e["field"] for e in events if e["event"] == "llm.usage_clamped"} >= {
        "prompt_tokens",
        "completion_tokens",
    }
    assert second.content


async def test_malformed_request_fails_that_caller_only(server: MockLLMServer) -> None:
    """max_tokens=-5 fails the caller with InvalidRequest; nothing reaches the server."""
    svc = llm_service(server)
    async with open_actor(svc.actor()) as ref:
        with pytest.raises(InvalidRequest) as info:
            await ref.call(ChatRequest.user("x", max_tokens=-5))
        assert ref.alive
        assert (await ref.call(ChatRequest.user("still fine"))).content
    assert info.value.field == "max_tokens"
    assert server.control.chat_requests == 1


async def test_provider_400_is_the_callers_mistake(server: MockLLMServer) -> None:
    """A 400 is raised after one attempt and never counted by the breaker."""
    svc = llm_service(server)
    server.control.script(Behaviour.error(400, "bad tool schema", param="tools[0]"))
    async with open_actor(svc.actor()) as ref:
        with pytest.raises(ServiceResponseError) as info:
            await ref.call(ChatRequest.user("x"))
    assert info.value.status_code == 400
    assert "param tools[0]" in str(info.value)
    assert svc.stats.attempts == 1


async def test_error_event_mid_stream_is_retried(server: MockLLMServer) -> None:
    """An error event in the middle of a stream fails that attempt; the retry succeeds."""
    svc = llm_service(server)
    server.control.script(Behaviour.stream_error(status=503, message="busy"), Behaviour.ok("done"))
    async with open_actor(svc.actor()) as ref:
        reply = await ref.call(ChatRequest.user("x", stream=True))
    assert reply.content == "done"
    assert svc.stats.attempts == 2


async def test_json_answer_to_a_stream_request_is_read(server: MockLLMServer) -> None:
    """A server that answers stream=true with plain JSON is still understood."""
    client = LLMClient("llm", server.base_url, model="m")
    async with client.lifespan():
        conn = await client.connect()
        # The mock streams whenever asked; ask it for JSON but tell the client it streams.
        reply = await client.request(conn, ChatRequest.user("x"))
    assert reply.chunks == 0
    assert reply.content == "echo: x"


# --------------------------------------------------------------------------- probes


async def probe_with(server: MockLLMServer, probe: object) -> None:
    client = LLMClient("llm", server.base_url, model="m", probe=probe)  # type: ignore[arg-type]
    async with client.lifespan():
        await client.probe(await client.connect())


async def test_auto_probe_falls_back_to_chat_without_models(server: MockLLMServer) -> None:
    """A server without /models is healthy for the default probe (a 1-token chat)."""
    server.control.models_endpoint = False
    await probe_with(server, "auto")
    assert server.control.last_request["max_tokens"] == 1
    with pytest.raises(ServiceResponseError) as info:
        await probe_with(server, "models")
    assert info.value.status_code == 404


@pytest.mark.parametrize("probe", ["auto", "models", "chat", "connect"])
async def test_every_probe_reports_an_outage(server: MockLLMServer, probe: str) -> None:
    """During an outage every probe mode raises; when healthy none does."""
    await probe_with(server, probe)
    server.control.down = True
    with pytest.raises(ServiceResponseError):
        await probe_with(server, probe)


async def test_callable_probe_gets_the_http_client(server: MockLLMServer) -> None:
    """A callable probe is awaited with the HTTP client (base URL and auth set)."""
    seen: list[int] = []

    async def health(http: Any) -> None:
        seen.append((await http.get("models")).status_code)

    await probe_with(server, health)
    assert seen == [200]
