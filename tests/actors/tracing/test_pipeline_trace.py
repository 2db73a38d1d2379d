"""Spans and span events of the one pipeline and the actor calls: retries, breaker
rejections and transitions, limiter waits and refusals, fallbacks, casts and
cancellations (both backends; virtual time where durations matter)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from actors import (
    Actor,
    ActorRef,
    CallTimeout,
    CircuitOpen,
    RateLimited,
    Service,
    ServiceClient,
    ServiceConfig,
    ServiceUnavailable,
    open_actor,
)
from actors.resilience import (
    BreakerConfig,
    BreakerState,
    RetryPolicy,
    TokenBucket,
    create_breaker,
    resilient,
)
from actors.testing import capture_events
from supervisor.fallback import route
from tests.actors.tracing.conftest import Telemetry, attributes

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(attempts=3, backoff_initial=0.1, backoff_max=0.1, budget_ratio=None)


def events(span: ReadableSpan, name: str) -> list[dict[str, Any]]:
    return [dict(event.attributes or {}) for event in span.events if event.name == name]


@pytest.mark.virtual_time
async def test_a_resilient_call_from_untraced_code_is_one_trace(telemetry: Telemetry) -> None:
    """With no span current, the pipeline opens one named after it: both attempts and the
    retry event are in it."""
    outcomes: list[Exception | None] = [ServiceUnavailable("svc", "down"), None]

    @resilient(retry=FAST, name="fetch")
    async def fetch() -> str:
        failure = outcomes.pop(0)
        if failure is not None:
            raise failure
        return "ok"

    assert await fetch() == "ok"
    spans = telemetry.named("fetch")
    (root,) = [span for span in spans if span.parent is None]
    attempts = sorted(
        (span for span in spans if span.parent is not None),
        key=lambda span: attributes(span)["actorvisor.attempt"],
    )
    assert [attributes(span)["actorvisor.attempt"] for span in attempts] == [1, 2]
    assert {span.parent.span_id for span in attempts} == {root.context.span_id}  # type: ignore[union-attr]
    assert attributes(attempts[0])["error.type"] == "ServiceUnavailable"
    assert attempts[0].kind is SpanKind.INTERNAL
    (retry,) = events(root, "actorvisor.retry")
    assert retry["actorvisor.service"] == "fetch"
    assert retry["actorvisor.attempt"] == 1


@pytest.mark.virtual_time
async def test_a_give_up_is_an_event_and_the_call_span_fails(telemetry: Telemetry) -> None:
    """Out of attempts: a gave_up event with its reason; the call's span is an error."""

    @resilient(retry=RetryPolicy(attempts=2, backoff_initial=0.1, budget_ratio=None), name="down")
    async def down() -> None:
        raise ServiceUnavailable("svc", "down")

    with pytest.raises(ServiceUnavailable):
        await down()
    (root,) = [span for span in telemetry.named("down") if span.parent is None]
    (gave_up,) = events(root, "actorvisor.retry.gave_up")
    assert gave_up["actorvisor.retry.reason"] == "attempts"
    assert gave_up["actorvisor.attempt"] == 2
    assert root.status.status_code is StatusCode.ERROR
    assert attributes(root)["error.type"] == "ServiceUnavailable"


async def test_a_breaker_rejection_is_an_event(telemetry: Telemetry) -> None:
    """A call refused by an open breaker: a rejected event, and no attempt span."""
    breaker = create_breaker("svc", BreakerConfig())
    breaker.force(BreakerState.OPEN)

    @resilient(breaker=breaker, name="guarded")
    async def guarded() -> None:  # pragma: no cover - never reached
        return None

    with pytest.raises(CircuitOpen):
        await guarded()
    (root,) = telemetry.named("guarded")
    (rejected,) = events(root, "actorvisor.breaker.rejected")
    assert rejected["actorvisor.breaker"] == "svc"
    assert rejected["actorvisor.breaker.state"] == "open"
    assert rejected["actorvisor.breaker.retry_after"] > 0
    assert attributes(root)["error.type"] == "CircuitOpen"


async def test_a_breaker_opening_is_an_event_of_the_call_that_opened_it(
    telemetry: Telemetry,
) -> None:
    """The attempt whose failure opens the breaker leaves a transition event."""
    config = BreakerConfig(
        window="count", window_size=1, minimum_calls=1, failure_rate_threshold=1.0
    )

    @resilient(breaker=config, name="fragile")
    async def fragile() -> None:
        raise ServiceUnavailable("svc", "down")

    with pytest.raises(ServiceUnavailable):
        await fragile()
    (root,) = [span for span in telemetry.named("fragile") if span.parent is None]
    (opened,) = events(root, "actorvisor.breaker.transition")
    assert (opened["actorvisor.breaker.from"], opened["actorvisor.breaker.to"]) == (
        "closed",
        "open",
    )


@pytest.mark.virtual_time
async def test_a_limiter_wait_is_an_event_with_its_duration(telemetry: Telemetry) -> None:
    """The second call of a one-per-second limit waits exactly a second: an event says so."""

    @resilient(limiter=TokenBucket(rate=1, period=1.0, capacity=1), name="paced")
    async def paced() -> None:
        return None

    await paced()
    await paced()
    roots = [span for span in telemetry.named("paced") if span.parent is None]
    waits = [event for root in roots for event in events(root, "actorvisor.limiter.waited")]
    assert waits == [{"actorvisor.limiter": "paced", "actorvisor.limiter.wait": 1.0}]


@pytest.mark.virtual_time
async def test_a_limiter_refusal_is_an_event(telemetry: Telemetry) -> None:
    """A call that could not be admitted before its deadline leaves a rejected event."""

    @resilient(limiter=TokenBucket(rate=1, period=10.0, capacity=1), name="scarce")
    async def scarce() -> None:
        return None

    await scarce()
    with anyio.fail_after(1), pytest.raises(RateLimited):
        await scarce()
    roots = [span for span in telemetry.named("scarce") if span.parent is None]
    (rejected,) = [event for root in roots for event in events(root, "actorvisor.limiter.rejected")]
    assert rejected["actorvisor.limiter"] == "scarce"
    assert rejected["actorvisor.limiter.retry_after"] == pytest.approx(10.0)


async def test_a_fallback_is_an_event_on_the_callers_span(telemetry: Telemetry) -> None:
    """A routed call served by its fallback leaves a fallback.used event on the caller's
    span, naming the source and the primary's failure."""

    async def primary(request: str) -> str:
        raise ServiceUnavailable("primary", "down")

    async def spare(request: str) -> str:
        return f"spare:{request}"

    router = route(primary, spare, name="answers")
    tracer = telemetry.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("turn"):
        assert (await router.call("q")).value == "spare:q"
    (turn,) = telemetry.named("turn")
    (used,) = events(turn, "actorvisor.fallback.used")
    assert used["actorvisor.router"] == "answers"
    assert used["actorvisor.fallback.reason"] == "ServiceUnavailable"
    assert used["actorvisor.fallback.source"].startswith("fallback")


class Relay(Actor[str, str]):
    """Passes a message on to another actor (by cast or call)."""

    def __init__(self, to: ActorRef[str, str]) -> None:
        self.to = to

    async def handle(self, msg: str) -> str:
        return await self.to.call(msg)


class Echo(Actor[str, str]):
    async def handle(self, msg: str) -> str:
        return msg


async def test_a_cast_carries_the_senders_context(telemetry: Telemetry) -> None:
    """The handler of a cast calls on inside the sender's trace."""
    async with (
        open_actor(Echo(), name="echo") as echo,
        open_actor(Relay(echo), name="relay") as relay,
    ):
        tracer = telemetry.tracer_provider.get_tracer("test")
        with tracer.start_as_current_span("turn") as turn:
            await relay.cast("hello")
        await echo.call("after")  # the relay has handled the cast by now (FIFO)
        for _ in range(10):
            if len(telemetry.named("call echo")) == 2:
                break
            await anyio.sleep(0.01)
    nested = [span for span in telemetry.named("call echo") if span.parent is not None]
    assert [span.parent.span_id for span in nested] == [turn.get_span_context().span_id]  # type: ignore[union-attr]


@pytest.mark.virtual_time
async def test_a_timed_out_call_is_an_error_and_a_cancelled_one_is_not(
    telemetry: Telemetry,
) -> None:
    """A call past its deadline ends its span with CallTimeout; a caller's cancellation
    ends it without an error."""

    class Sleepy(Actor[float, None]):
        async def handle(self, msg: float) -> None:
            await anyio.sleep(msg)

    async with open_actor(Sleepy(), name="sleepy") as ref:
        with pytest.raises(CallTimeout):
            await ref.call(10, timeout=1)
        with anyio.move_on_after(1):
            await ref.call(10, timeout=5)
    timed_out, cancelled = sorted(telemetry.named("call sleepy"), key=lambda s: s.start_time or 0)
    assert timed_out.status.status_code is StatusCode.ERROR
    assert attributes(timed_out)["error.type"] == "CallTimeout"
    assert cancelled.status.status_code is StatusCode.UNSET
    assert "error.type" not in attributes(cancelled)


class Clumsy(ServiceClient[None, str, str]):
    """Answers every request; its telemetry description raises."""

    async def connect(self) -> None:
        return None

    async def request(self, conn: None, request: str) -> str:
        return request

    def describe_result(self, response: str, *, content: bool) -> Mapping[str, Any]:
        raise ValueError("a bug in the client's description")


async def test_a_failing_description_never_fails_the_call(telemetry: Telemetry) -> None:
    """A client whose describe_result raises still answers; the attempt's span ends and
    the bug is reported as an event."""
    svc = Service("clumsy", lambda: Clumsy("clumsy"), ServiceConfig(retry=None))
    with capture_events() as events_seen:
        async with open_actor(svc.actor(), name="clumsy") as ref:
            assert await ref.call("hi") == "hi"
    (attempt,) = telemetry.named("clumsy")
    assert attempt.status.status_code is StatusCode.UNSET
    (failed,) = [e for e in events_seen if e["event"] == "telemetry.describe_failed"]
    assert (failed["method"], failed["error_type"]) == ("describe_result", "ValueError")
