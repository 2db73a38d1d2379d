"""Adaptive concurrency: a limit learned from latency (Vegas) and drops (AIMD), in the
bulkhead position of the pipeline and of a service actor."""

from __future__ import annotations

import math
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import (
    AttemptTimeout,
    BulkheadFull,
    ConfigError,
    ErrorClass,
    Service,
    ServiceConfig,
    ServiceResponseError,
    open_actor,
)
from actors.resilience import AdaptiveConcurrency, AdaptiveLimit, create_adaptive_limit
from actors.resilience._pipeline import Pipeline
from actors.services import ChatRequest
from actors.services.llm import LLMClient
from actors.testing import MockLLM

pytestmark = pytest.mark.anyio

OK = None
RETRYABLE = ErrorClass.RETRYABLE


def limit(**changes: Any) -> AdaptiveLimit:
    return create_adaptive_limit(AdaptiveConcurrency(**changes), name="svc")


def occupy(adaptive: AdaptiveLimit, slots: int) -> None:
    for _ in range(slots):
        assert adaptive._enter()


async def until(predicate: Any) -> None:
    """Yields (without time passing) until `predicate()` is true."""
    while not predicate():
        await anyio.lowlevel.checkpoint()


def status_error(status: int) -> ServiceResponseError:
    return ServiceResponseError("svc", status)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"min_limit": 5, "initial": 4}, "initial"),
        ({"max_limit": 3, "min_limit": 4, "initial": 4}, "max_limit"),
        ({"initial": 0}, "initial"),
        ({"backoff": 1.0}, "backoff"),
        ({"backoff": 0}, "backoff"),
        ({"alpha": 6.0, "beta": 6.0}, "beta"),
        ({"drop_statuses": [700]}, "drop_statuses"),
        ({"drop_statuses": "503"}, "drop_statuses"),
        ({"rtt_window": 0}, "rtt_window"),
        ({"max_queued": -1}, "max_queued"),
    ],
)
def test_bad_config_names_the_field(changes: dict[str, Any], field: str) -> None:
    """An inconsistent or out-of-range setting is a ConfigError naming its field."""
    with pytest.raises(ConfigError) as info:
        AdaptiveConcurrency(**changes)
    assert info.value.field == field


def test_create_checks_its_arguments() -> None:
    """An empty name or a config of the wrong type is refused."""
    with pytest.raises(ConfigError):
        create_adaptive_limit(name="")
    with pytest.raises(ConfigError):
        create_adaptive_limit(object(), name="x")  # type: ignore[arg-type]


def test_a_drop_multiplies_the_limit_by_backoff() -> None:
    """A 503 answer takes the limit from 10 to 9."""
    adaptive = limit(initial=10, backoff=0.9)
    adaptive.observe(0.1, status_error(503), RETRYABLE, now=1.0)
    assert adaptive.limit == pytest.approx(9.0)
    assert adaptive.metrics().decreases == 1


@pytest.mark.parametrize(
    ("outcome", "verdict"),
    [
        (status_error(429), ErrorClass.THROTTLED),
        (status_error(529), RETRYABLE),
        (AttemptTimeout("svc", 1.0), RETRYABLE),
        (Exception("throttled without a status"), ErrorClass.THROTTLED),
    ],
)
def test_what_counts_as_a_drop(outcome: object, verdict: ErrorClass) -> None:
    """429, 529, attempt timeouts and THROTTLED verdicts are drops."""
    adaptive = limit(initial=10)
    adaptive.observe(0.1, outcome, verdict, now=1.0)
    assert adaptive.metrics().drops == 1
    assert adaptive.limit < 10


@pytest.mark.parametrize(
    ("outcome", "verdict"),
    [
        (status_error(500), RETRYABLE),
        (status_error(400), ErrorClass.REJECTED),
        (BulkheadFull("svc"), ErrorClass.IGNORED),
    ],
)
def test_other_outcomes_are_not_drops(outcome: object, verdict: ErrorClass) -> None:
    """A 500, a caller's 400 and our own refusals do not lower the limit."""
    adaptive = limit(initial=10)
    adaptive.observe(0.1, outcome, verdict, now=1.0)
    assert adaptive.metrics().drops == 0
    assert adaptive.limit == 10


def test_drops_sent_before_a_decrease_are_not_counted_again() -> None:
    """Of a burst of drops sent under the old limit, only the first backs off."""
    adaptive = limit(initial=10, backoff=0.5)
    for _ in range(5):
        adaptive.observe(0.5, status_error(503), RETRYABLE, now=1.0)
    assert adaptive.limit == 5
    adaptive.observe(0.1, status_error(503), RETRYABLE, now=1.2)  # sent after it
    assert adaptive.limit == 2.5
    assert adaptive.metrics().drops == 6


def test_the_limit_never_leaves_its_bounds() -> None:
    """Backing off stops at min_limit; growing stops at max_limit."""
    adaptive = limit(initial=4, min_limit=3, max_limit=6)
    for step in range(10):
        adaptive.observe(0.0, status_error(503), RETRYABLE, now=float(step))
    assert adaptive.limit == 3
    grower = limit(initial=4, max_limit=6)
    occupy(grower, 4)
    for step in range(10):
        grower.observe(0.1, "ok", OK, now=float(step))
    assert grower.limit == 6


def test_a_round_without_queueing_grows_the_limit_by_beta_lg_in_slow_start() -> None:
    """At no-load latency with every slot busy, one round adds beta * max(1, log10 L)."""
    adaptive = limit(initial=20, beta=6.0)
    occupy(adaptive, 20)
    adaptive.observe(0.1, "ok", OK, now=1.0)
    assert adaptive.limit == pytest.approx(20 + 6 * math.log10(20))


def test_after_a_drop_growth_is_additive_and_skips_the_dropped_round() -> None:
    """Once a drop ended the slow start, a clean round adds log10 L, a dropped one none."""
    adaptive = limit(initial=20, backoff=0.5)
    occupy(adaptive, 10)
    adaptive.observe(0.1, status_error(503), RETRYABLE, now=1.0)
    assert adaptive.limit == 10
    adaptive.observe(0.1, "ok", OK, now=1.05)  # the round the drop happened in
    assert adaptive.limit == 10
    adaptive.observe(0.1, "ok", OK, now=1.2)
    assert adaptive.limit == pytest.approx(11.0)


def test_samples_fold_into_one_decision_per_round() -> None:
    """Samples within one no-load latency of the last decision do not move the limit."""
    adaptive = limit(initial=20)
    occupy(adaptive, 20)
    adaptive.observe(0.1, "ok", OK, now=1.0)
    grown = adaptive.limit
    for offset in (0.01, 0.05, 0.09):
        adaptive.observe(0.1, "ok", OK, now=1.0 + offset)
    assert adaptive.limit == grown


def test_a_queue_at_the_service_shrinks_the_limit() -> None:
    """Latency at twice the no-load latency (queue = L / 2) takes log10 L off."""
    adaptive = limit(initial=40)
    occupy(adaptive, 40)
    adaptive.observe(0.1, "ok", OK, now=1.0)  # learns the no-load latency, grows
    before = adaptive.limit
    adaptive.observe(0.2, "ok", OK, now=2.0)
    assert adaptive.limit == pytest.approx(before - math.log10(before))


def test_a_queue_between_alpha_and_beta_holds_the_limit() -> None:
    """A queue estimate inside [alpha lg, beta lg] leaves the limit where it is."""
    adaptive = limit(initial=20, alpha=3.0, beta=6.0)
    occupy(adaptive, 20)
    adaptive.observe(0.1, status_error(503), RETRYABLE, now=0.5)  # end the slow start
    adaptive.observe(0.1, "ok", OK, now=1.0)  # the no-load latency (the dropped round)
    current = adaptive.limit
    lg = math.log10(current)
    queue = 4.5 * lg  # between 3 lg and 6 lg
    rtt = 0.1 / (1 - queue / current)
    adaptive.observe(rtt, "ok", OK, now=2.0)
    assert adaptive.limit == current


def test_application_limited_rounds_teach_nothing() -> None:
    """With fewer than half the slots in use, the limit stays where it is."""
    adaptive = limit(initial=20)
    occupy(adaptive, 9)
    for step in range(5):
        adaptive.observe(0.1, "ok", OK, now=float(step))
    assert adaptive.limit == 20


def test_the_no_load_latency_follows_a_lasting_change_within_two_windows() -> None:
    """After two windows of slower answers, the slower latency is the new no-load one."""
    adaptive = limit(initial=10, rtt_window=10.0)
    adaptive.observe(0.1, "ok", OK, now=1.0)
    assert adaptive.metrics().no_load_latency == 0.1
    for now in (12.0, 15.0, 22.0):
        adaptive.observe(0.3, "ok", OK, now=now)
    assert adaptive.metrics().no_load_latency == 0.3


@pytest.mark.virtual_time
async def test_callers_beyond_the_limit_wait_in_order_and_are_admitted_as_it_grows() -> None:
    """Waiters get slots in arrival order when a slot frees up or the limit grows."""
    adaptive = limit(initial=2, max_queued=5)
    occupy(adaptive, 2)
    order: list[int] = []

    async def wait(index: int) -> None:
        await adaptive.acquire()
        order.append(index)

    async with anyio.create_task_group() as tg:
        for index in range(3):
            tg.start_soon(wait, index)
            await until(lambda n=index + 1: adaptive.metrics().queued == n)
        adaptive.release()  # one slot: the first waiter
        await until(lambda: order == [0])
        adaptive.release()
        await until(lambda: order == [0, 1])
        adaptive._set(3.0, now=1.0)  # one more slot: the last waiter
    assert order == [0, 1, 2]
    assert adaptive.metrics().active == 3


@pytest.mark.virtual_time
async def test_a_full_queue_or_a_passed_deadline_refuses() -> None:
    """BulkheadFull at once with no queue room, and at the deadline while waiting."""
    adaptive = limit(initial=1, max_queued=1)
    occupy(adaptive, 1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(adaptive.acquire)
        await until(lambda: adaptive.metrics().queued == 1)
        with pytest.raises(BulkheadFull):
            await adaptive.acquire()
        tg.cancel_scope.cancel()
    start = anyio.current_time()
    with pytest.raises(BulkheadFull):
        await adaptive.acquire(deadline=start + 0.5)
    assert anyio.current_time() == start + 0.5
    assert adaptive.metrics().rejected == 2


@pytest.mark.virtual_time
async def test_a_cancelled_waiter_takes_no_slot() -> None:
    """Cancellation while waiting leaves the queue; the freed slot goes to the next."""
    adaptive = limit(initial=1, max_queued=2)
    occupy(adaptive, 1)
    with anyio.move_on_after(1.0):
        await adaptive.acquire()
    assert adaptive.metrics().queued == 0
    adaptive.release()
    assert adaptive.metrics().active == 0
    assert adaptive.try_acquire()


def test_release_without_acquire_is_a_bug() -> None:
    """Releasing a slot nobody holds raises RuntimeError."""
    with pytest.raises(RuntimeError):
        limit().release()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("enter")),
            st.tuples(st.just("release")),
            st.tuples(
                st.just("observe"),
                st.floats(0.001, 2.0),
                st.sampled_from([None, 503, 500]),
                st.floats(0.0, 1.0),
            ),
        ),
        max_size=60,
    )
)
def test_invariants_hold_under_any_sequence(ops: list[tuple[Any, ...]]) -> None:
    """The limit stays in bounds, slots are its floor, and slots are never over-granted."""
    adaptive = limit(initial=5, min_limit=2, max_limit=12)
    held = 0
    now = 0.0
    for op in ops:
        if op[0] == "enter":
            before = adaptive.metrics()
            if adaptive._enter():
                held += 1
                assert before.active < int(before.limit)
        elif op[0] == "release" and held:
            adaptive.release()
            held -= 1
        elif op[0] == "observe":
            _, latency, status, step = op
            now += step
            outcome = "ok" if status is None else status_error(status)
            verdict = None if status is None else RETRYABLE
            adaptive.observe(latency, outcome, verdict, now=now)
        metrics = adaptive.metrics()
        assert 2 <= metrics.limit <= 12
        assert metrics.active == held


class _Verdicts:
    """Judges ServiceResponseErrors by status, like the HTTP kinds."""

    def classify(self, exc: Exception) -> ErrorClass:
        status = getattr(exc, "status_code", None)
        if status == 429:
            return ErrorClass.THROTTLED
        return ErrorClass.RETRYABLE if status else ErrorClass.PERMANENT


@pytest.mark.virtual_time
async def test_the_pipeline_feeds_every_attempt_to_the_adaptive_limit() -> None:
    """Through a pipeline, a 503 lowers the limit and the slot is held for the call."""
    adaptive = limit(initial=10, backoff=0.5)
    pipeline = Pipeline("svc", _Verdicts(), bulkhead=adaptive)

    async def overloaded() -> None:
        await anyio.sleep(0.1)
        assert adaptive.metrics().active == 1
        raise status_error(503)

    with pytest.raises(ServiceResponseError):
        await pipeline.run(overloaded)
    assert adaptive.limit == 5
    assert adaptive.metrics().active == 0
    assert pipeline.bulkhead is adaptive


@pytest.mark.virtual_time
async def test_a_cancelled_attempt_is_not_observed() -> None:
    """A caller's cancellation is not a signal: the limit and counters stay."""
    adaptive = limit(initial=10)
    pipeline = Pipeline("svc", _Verdicts(), bulkhead=adaptive)
    with anyio.move_on_after(0.5):
        await pipeline.run(anyio.sleep, 10)
    metrics = adaptive.metrics()
    assert (metrics.limit, metrics.drops, metrics.no_load_latency) == (10, 0, None)
    assert metrics.active == 0


def _service(mock: MockLLM, adaptive: AdaptiveConcurrency) -> Service[Any, Any]:
    config = ServiceConfig(retry=None, breaker=None, max_concurrency=64, adaptive=adaptive)
    config = attrs.evolve(config, pool=attrs.evolve(config.pool, max_size=64))
    transport = httpx2.ASGITransport(app=mock)
    return Service(
        "llm",
        lambda: LLMClient(
            "llm", "http://mock/v1", model="m", transport=transport, max_connections=64
        ),
        config,
    )


@pytest.mark.virtual_time
async def test_the_limit_converges_when_the_mock_capacity_halves() -> None:
    """Against a mock serving 8 then 4 at once (backlog 8), the limit settles just above
    each capacity, throughput stays at capacity, and few requests get 503."""
    mock = MockLLM(latency=0.1, capacity=8, backlog=8)
    svc = _service(mock, AdaptiveConcurrency(initial=2, max_limit=50, max_queued=1000))
    assert svc.concurrency is not None
    served = {"ok": 0, "503": 0}
    limits: dict[float, float] = {}
    phase = 6.0
    async with open_actor(svc.actor(), mailbox_size=1000, call_timeout=60) as ref:
        stop = anyio.current_time() + 2 * phase

        async def worker() -> None:
            while anyio.current_time() < stop:
                try:
                    await ref.call(ChatRequest.user("hi"), timeout=30)
                    served["ok"] += 1
                except ServiceResponseError as exc:
                    served[str(exc.status_code)] += 1

        async def watch() -> None:
            for second in range(1, int(2 * phase) + 1):
                await anyio.sleep(1.0)
                assert svc.concurrency is not None
                limits[second] = svc.concurrency.metrics().limit
                if second == phase:
                    mock.control({"capacity": 4})

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            for _ in range(40):
                tg.start_soon(worker)
    assert 8 <= limits[phase - 1] <= 8 + 8
    assert 4 <= limits[2 * phase - 1] <= 4 + 8
    total = served["ok"] + served["503"]
    assert served["503"] / total < 0.03
    assert served["ok"] >= 0.9 * (80 * phase + 40 * (phase - 1))
