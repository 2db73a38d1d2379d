"""What an SDK that records nothing is asked: one sampling decision per new trace, none
under it; and a provider whose tracers do nothing (both backends)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from actors import (
    Actor,
    ActorRef,
    Service,
    ServiceClient,
    ServiceConfig,
    ServiceUnavailable,
    instrument,
    open_actor,
)
from actors.resilience import RetryPolicy, resilient

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(attempts=3, backoff_initial=0.01, backoff_max=0.01, budget_ratio=None)


class Counting(Sampler):
    """`ParentBased(ALWAYS_OFF)`, counting the names it is asked about."""

    def __init__(self) -> None:
        self.inner = ParentBased(ALWAYS_OFF)
        self.asked: list[str] = []

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        self.asked.append(name)
        return self.inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return "Counting"


@pytest.fixture
def sampler() -> Iterator[Counting]:
    counting = Counting()
    instrument(tracer_provider=TracerProvider(sampler=counting))
    try:
        yield counting
    finally:
        instrument()


class Flaky(ServiceClient[None, int, int]):
    """Fails its first `failures` requests, then echoes."""

    def __init__(self, failures: int) -> None:
        super().__init__("flaky")
        self.failures = failures

    async def connect(self) -> None:
        return None

    async def request(self, conn: None, request: int) -> int:
        if self.failures > 0:
            self.failures -= 1
            raise ServiceUnavailable("flaky", "down")
        return request


async def test_a_retried_resilient_call_asks_the_sampler_once(sampler: Counting) -> None:
    """From untraced code, the pipeline's own span is the new trace: its attempts (three
    here) are under its unsampled decision, and the sampler is not asked about them."""
    failures = [ServiceUnavailable("svc", "down"), ServiceUnavailable("svc", "down")]

    @resilient(retry=FAST, name="fetch")
    async def fetch() -> str:
        if failures:
            raise failures.pop()
        return "ok"

    assert await fetch() == "ok"
    assert sampler.asked == ["fetch"]


async def test_a_service_call_asks_the_sampler_once(sampler: Counting) -> None:
    """A call from untraced code to a service actor: one decision (the call's span); the
    retried attempts in the actor run under it."""
    service = Service("flaky", lambda: Flaky(2), ServiceConfig(retry=FAST))
    async with open_actor(service.actor(), name="flaky") as ref:
        assert await ref.call(7) == 7
        assert await ref.call(8) == 8
    assert sampler.asked == ["call flaky", "call flaky"]


class Relay(Actor[int, dict[str, str]]):
    """Calls the next actor, then returns the trace context its handler ran in."""

    def __init__(self, next_ref: ActorRef[int, int] | None) -> None:
        self.next_ref = next_ref

    async def handle(self, msg: int) -> dict[str, str]:
        if self.next_ref is not None:
            await self.next_ref.call(msg)
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
        return carrier


async def test_an_unsampled_new_trace_travels_through_actors(sampler: Counting) -> None:
    """A call from untraced code starts one unsampled trace: the actor it calls, and the
    actor that one calls, see its context (not sampled) and ask the sampler nothing."""
    async with (
        open_actor(Relay(None), name="last") as last,
        open_actor(Relay(last), name="first") as first,  # type: ignore[arg-type]
    ):
        carrier = await first.call(1)
    _version, trace_id, _span, flags = carrier["traceparent"].split("-")
    assert int(trace_id, 16) != 0
    assert not int(flags, 16) & 1
    assert sampler.asked == ["call first"]


class NoOpProvider(trace.TracerProvider):
    """A provider whose tracers do nothing, that the library cannot tell from an SDK."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return trace.NoOpTracer()


async def test_a_provider_whose_tracers_do_nothing_changes_no_answer() -> None:
    """Every call takes the traced path; answers, retries and a nested call are as with
    tracing off, and no trace context reaches the handlers."""
    service = Service("flaky", lambda: Flaky(1), ServiceConfig(retry=FAST))
    instrument(tracer_provider=NoOpProvider())
    try:
        async with (
            open_actor(service.actor(), name="flaky") as flaky,
            open_actor(Relay(flaky), name="relay") as relay,
        ):
            with anyio.fail_after(5):
                assert await relay.call(3) == {}
                assert await flaky.call(4) == 4
    finally:
        instrument()
