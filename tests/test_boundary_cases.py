"""Boundary cases end to end: a hostile provider on loopback sending the
exact bytes that once crashed the LLM service actor, and callers and configs that were
once accepted. Each failing call gets its documented error, no actor crashes, and the
same actor answers the next call (both backends)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import attrs
import pytest

from actors import (
    ActorConfig,
    ConfigError,
    InvalidRequest,
    MalformedResponse,
    Service,
    ServiceConfig,
    ServiceResponseError,
    open_actor,
    serve_asgi,
)
from actors.resilience import TokenBucket
from actors.services import ChatRequest, ChatResponse
from actors.services.anthropic import AnthropicClient
from actors.services.llm import LLMClient
from actors.testing import capture_events

pytestmark = pytest.mark.anyio

JSON = "application/json"
SSE = "text/event-stream"
NESTED = b"[" * 200_000

Answer = tuple[int, str, bytes]


def completion(usage: str = '{"prompt_tokens": 3, "completion_tokens": 2}') -> bytes:
    """An OpenAI completion whose usage object is the raw JSON text `usage`."""
    return (
        b'{"id": "c1", "model": "m", "choices": [{"index": 0, "finish_reason": "stop", '
        b'"message": {"role": "assistant", "content": "fine"}}], "usage": ' + usage.encode() + b"}"
    )


def events(*datas: bytes) -> bytes:
    return b"".join(b"data: " + data + b"\n\n" for data in datas)


GOOD = (200, JSON, completion())


@attrs.define
class HostileProvider:
    """An ASGI app answering each chat request with the next scripted raw answer (status,
    content type, body bytes), then with a well-formed completion."""

    script: list[Answer] = attrs.Factory(list)
    requests: int = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        while (await receive()).get("more_body"):
            pass
        self.requests += 1
        status, content_type, body = self.script.pop(0) if self.script else GOOD
        headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@attrs.define
class Provider:
    app: HostileProvider
    base_url: str


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    app = HostileProvider()
    async with serve_asgi(app) as url:
        yield Provider(app, f"{url}/v1")


def llm(provider: Provider, wire: str = "openai", **changes: Any) -> Service[ChatRequest, Any]:
    """An LLM service without retries or breaker: one scripted answer per call."""
    client: type[LLMClient] | type[AnthropicClient] = (
        AnthropicClient if wire == "anthropic" else LLMClient
    )
    config = attrs.evolve(ServiceConfig.for_llm(), retry=None, breaker=None, **changes)
    return Service("llm", lambda: client("llm", provider.base_url, model="m"), config)


async def answers_next(ref: Any, provider: Provider, wire: str = "openai") -> None:
    """The same actor answers the next call with a well-formed reply."""
    if wire == "anthropic":
        provider.app.script.append(
            (
                200,
                JSON,
                b'{"type": "message", "id": "m1", "model": "m", "role": "assistant", '
                b'"content": [{"type": "text", "text": "fine"}], "stop_reason": "end_turn", '
                b'"usage": {"input_tokens": 3, "output_tokens": 2}}',
            )
        )
    assert ref.alive
    reply: ChatResponse = await ref.call(ChatRequest.user("again", max_tokens=10), timeout=5)
    assert reply.content == "fine"


def crashes(captured: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [e for e in captured if e["event"] in {"actor.crashed", "actor.start_failed"}]


# --------------------------------------------------------------------------- provider replies

MALFORMED: dict[str, tuple[str, bool, Answer]] = {
    "200-nested-openai": ("openai", False, (200, JSON, NESTED)),
    "200-nested-anthropic": ("anthropic", False, (200, JSON, NESTED)),
    "sse-nested": ("openai", True, (200, SSE, events(NESTED, b"[DONE]"))),
    "sse-choices-[1]": ("openai", True, (200, SSE, events(b'{"choices":[1]}', b"[DONE]"))),
    "sse-delta-x": ("openai", True, (200, SSE, events(b'{"choices":[{"delta":"x"}]}', b"[DONE]"))),
    "sse-choices-abc": ("openai", True, (200, SSE, events(b'{"choices":"abc"}', b"[DONE]"))),
    "sse-nested-anthropic": (
        "anthropic",
        True,
        (200, SSE, b"event: message_start\ndata: " + NESTED + b"\n\n"),
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
async def test_a_hostile_answer_fails_its_caller_and_the_actor_answers_the_next(
    provider: Provider, case: str
) -> None:
    """Nested or misshapen bodies and SSE events are MalformedResponse for that caller."""
    wire, stream, answer = MALFORMED[case]
    provider.app.script.append(answer)
    with capture_events() as captured:
        async with open_actor(llm(provider, wire).actor()) as ref:
            with pytest.raises(MalformedResponse) as info:
                await ref.call(ChatRequest.user("x", stream=stream, max_tokens=10), timeout=5)
            await answers_next(ref, provider, wire)
    assert (info.value.service, info.value.correlation_id is not None) == ("llm", True)
    assert crashes(captured) == []


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
async def test_a_deeply_nested_500_body_keeps_its_status(provider: Provider, wire: str) -> None:
    """A 500 whose body is 200,000 '[' is ServiceResponseError 500, not RecursionError."""
    provider.app.script.append((500, JSON, NESTED))
    with capture_events() as captured:
        async with open_actor(llm(provider, wire).actor()) as ref:
            with pytest.raises(ServiceResponseError) as info:
                await ref.call(ChatRequest.user("x", max_tokens=10), timeout=5)
            await answers_next(ref, provider, wire)
    assert info.value.status_code == 500
    assert crashes(captured) == []


USAGES = {
    "prompt-1e999": ('{"prompt_tokens": 1e999, "completion_tokens": 2}', "prompt_tokens"),
    "total-minus-50": (
        '{"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": -50}',
        "total_tokens",
    ),
    "prompt-abc": ('{"prompt_tokens": "abc", "completion_tokens": 2}', "prompt_tokens"),
}


@pytest.mark.parametrize("case", list(USAGES), ids=list(USAGES))
async def test_invalid_usage_is_dropped_with_an_event_and_never_charged(
    provider: Provider, case: str
) -> None:
    """usage 1e999, -50 or "abc" gives the answer with that count dropped and reported;
    a 100-token budget stays unharmed for the next call."""
    usage, field = USAGES[case]
    provider.app.script.append((200, JSON, completion(usage)))
    limits = {"tokens": TokenBucket(rate=100, period=3600.0, capacity=100)}
    with capture_events() as captured:
        async with open_actor(llm(provider, limits=limits).actor()) as ref:
            reply = await ref.call(ChatRequest.user("x", max_tokens=10), timeout=5)
            await ref.call(ChatRequest.user("y", max_tokens=10), timeout=5)
            await answers_next(ref, provider)
    assert reply.content == "fine"
    assert reply.usage.completion_tokens == 2
    assert 0 <= reply.usage.total_tokens < 100
    assert field in {e["field"] for e in captured if e["event"] == "llm.usage_invalid"}
    assert crashes(captured) == []


async def test_usage_of_10_to_the_12_never_poisons_the_limiter(provider: Provider) -> None:
    """A reply claiming total_tokens = 10**12 is clamped to the request's bound and
    reported; the calls after it are admitted at once (not told to wait 69 days)."""
    usage = f'{{"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": {10**12}}}'
    provider.app.script.append((200, JSON, completion(usage)))
    request = ChatRequest.user("x", max_tokens=10)
    limits = {"tokens": TokenBucket(rate=100_000, period=60.0, capacity=100_000)}
    with capture_events() as captured:
        async with open_actor(llm(provider, limits=limits).actor()) as ref:
            first = await ref.call(request, timeout=5)
            for _ in range(3):
                await answers_next(ref, provider)
    assert first.usage.total_tokens == request.usage_bound().total
    assert "total_tokens" in {e["field"] for e in captured if e["event"] == "llm.usage_clamped"}
    assert [e for e in captured if e["event"].startswith("limit")] == []


# --------------------------------------------------------------------------- caller requests


async def test_a_cost_above_the_limits_capacity_fails_only_its_caller(
    provider: Provider,
) -> None:
    """max_tokens=10**9 under a 10,000-token limit is InvalidRequest, sent nowhere."""
    limits = {"tokens": TokenBucket(rate=10_000, period=60.0, capacity=10_000)}
    with capture_events() as captured:
        async with open_actor(llm(provider, limits=limits).actor()) as ref:
            with pytest.raises(InvalidRequest):
                await ref.call(ChatRequest.user("x", max_tokens=10**9), timeout=5)
            assert provider.app.requests == 0
            await answers_next(ref, provider)
    assert crashes(captured) == []


async def test_content_none_fails_only_its_caller(provider: Provider) -> None:
    """A user message with content None is InvalidRequest naming it, sent nowhere."""
    async with open_actor(llm(provider).actor()) as ref:
        with pytest.raises(InvalidRequest) as info:
            await ref.call(ChatRequest.user(None), timeout=5)  # type: ignore[arg-type]
        assert provider.app.requests == 0
        await answers_next(ref, provider)
    assert info.value.field == "messages[0].content"


# --------------------------------------------------------------------------- configuration


def test_an_infinite_call_timeout_is_refused() -> None:
    """ActorConfig(call_timeout=inf) is a ConfigError: the default deadline is finite."""
    with pytest.raises(ConfigError) as info:
        ActorConfig(call_timeout=math.inf)
    assert info.value.field == "call_timeout"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"pool": 5}, "pool"),
        ({"retry": "x"}, "retry"),
        ({"breaker": 5}, "breaker"),
        ({"actor": {"call_timeout": 1}}, "actor"),
    ],
    ids=["pool=5", "retry=x", "breaker=5", "actor=dict"],
)
def test_service_config_sections_of_the_wrong_type_are_refused(
    changes: dict[str, Any], field: str
) -> None:
    """ServiceConfig(pool=5) / (retry="x") / (breaker=5) / (actor={...}) name the field."""
    with pytest.raises(ConfigError) as info:
        ServiceConfig(**changes)
    assert info.value.field == field


def test_a_limit_no_cost_charges_is_refused_when_the_service_is_built() -> None:
    """A limit named "request" (LLMClient charges "requests") is a ConfigError."""
    config = ServiceConfig.for_llm(limits={"request": TokenBucket(rate=1, period=60.0)})
    with pytest.raises(ConfigError) as info:
        Service("llm", lambda: LLMClient("llm", "http://127.0.0.1:9/v1", model="m"), config)
    assert info.value.field == "limits.request"
    assert "requests" in str(info.value)
