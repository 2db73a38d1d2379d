"""Rate limiters: token bucket, sliding window and GCRA behind one FIFO limiter."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from actors import ConfigError, RateLimited
from actors.resilience import (
    GCRA,
    LimitConfig,
    Limiter,
    MemoryLimiterStore,
    RateLimit,
    SlidingWindow,
    TokenBucket,
    create_limiter,
)
from actors.testing import capture_events

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


class RemoteLikeStore:
    """A store with only the async interface (how a Redis store looks to a limiter)."""

    def __init__(self) -> None:
        self.inner = MemoryLimiterStore()
        self.calls = 0

    async def decide(
        self, group: str, requests: Sequence[tuple[str, LimitConfig, float]], *, now: float
    ) -> tuple[bool, float]:
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        return self.inner.decide_nowait(group, requests, now)

    async def charge(
        self, group: str, key: str, config: LimitConfig, cost: float, *, now: float
    ) -> None:
        self.inner.charge_nowait(key, config, cost, now)

    async def wait_time(
        self, group: str, key: str, config: LimitConfig, cost: float, *, now: float
    ) -> float:
        return self.inner.wait_time_nowait(group, key, config, cost, now)

    async def available(self, group: str, key: str, config: LimitConfig, *, now: float) -> float:
        return self.inner.available_nowait(key, config, now)

    async def resync(
        self, group: str, key: str, config: LimitConfig, remaining: float, *, now: float
    ) -> None:
        self.inner.resync_nowait(key, config, remaining, now)

    async def hold(self, group: str, until: float, *, now: float) -> None:
        self.inner.hold_nowait(group, until)


class DegradedStore(RemoteLikeStore):
    """A remote store that answers at once without suspending (Redis down, a policy)."""

    async def decide(
        self, group: str, requests: Sequence[tuple[str, LimitConfig, float]], *, now: float
    ) -> tuple[bool, float]:
        self.calls += 1
        return self.inner.decide_nowait(group, requests, now)


def elapsed_since(start: float) -> float:
    return anyio.current_time() - start


async def until_queued(limiter: Limiter, count: int) -> None:
    """Yields until `count` callers wait in the limiter's queue (no time passes)."""
    while limiter.metrics().queued < count:
        await anyio.lowlevel.checkpoint()


# --- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "field", "value"),
    [
        (lambda: TokenBucket(rate=0), "rate", 0),
        (lambda: TokenBucket(rate=-5), "rate", -5),
        (lambda: TokenBucket(rate=float("inf")), "rate", float("inf")),
        (lambda: TokenBucket(rate=True), "rate", True),
        (lambda: TokenBucket(rate=10, period=0), "period", 0),
        (lambda: TokenBucket(rate=10, period=-1.0), "period", -1.0),
        (lambda: TokenBucket(rate=10, capacity=0), "capacity", 0),
        (lambda: SlidingWindow(limit=0), "limit", 0),
        (lambda: SlidingWindow(limit=10, window=-2), "window", -2),
        (lambda: GCRA(emission_interval=0), "emission_interval", 0),
        (lambda: GCRA(emission_interval=0.1, burst_tolerance=-1), "burst_tolerance", -1),
        (lambda: GCRA.per_second(0), "rate", 0),
        (lambda: GCRA.per_second(10, burst=0.5), "burst", 0.5),
        (lambda: RateLimit.per_minute(-1), "rate", -1),
    ],
)
def test_bad_config_names_field_and_value(factory: object, field: str, value: object) -> None:
    """A zero, negative or infinite rate or duration raises ConfigError naming it."""
    with pytest.raises(ConfigError) as info:
        factory()  # type: ignore[operator]
    assert info.value.field == field
    assert info.value.value == value or info.value.value is value


def test_presets_describe_their_rates() -> None:
    """The per_second/per_minute presets set rate, period and capacity."""
    assert RateLimit.per_minute(500) == TokenBucket(rate=500, period=60.0)
    assert RateLimit.per_second(10, burst=20).max_cost == 20
    assert TokenBucket.per_hour(3600).mean_rate == pytest.approx(1.0)
    assert SlidingWindow.per_minute(60).mean_rate == pytest.approx(1.0)
    gcra = GCRA.per_second(10, burst=5)
    assert gcra.emission_interval == pytest.approx(0.1)
    assert gcra.max_cost == pytest.approx(5)


def test_unknown_config_is_rejected() -> None:
    """create_limiter refuses something that is not a limit configuration."""
    with pytest.raises(ConfigError) as info:
        create_limiter("10/s", name="svc")  # type: ignore[arg-type]
    assert info.value.field == "config"


async def test_cost_above_capacity_is_a_value_error() -> None:
    """A cost that could never be admitted raises ValueError naming the cost."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    with pytest.raises(ValueError, match=r"cost=11"):
        await limiter.acquire(11)
    with pytest.raises(ValueError, match=r"cost=-1"):
        limiter.try_acquire(-1)
    with pytest.raises(ValueError, match=r"cost=nan"):
        await limiter.acquire(float("nan"))


# --- token bucket --------------------------------------------------------------------


async def test_burst_up_to_capacity_is_immediate() -> None:
    """A full bucket admits its whole capacity without any time passing."""
    limiter = create_limiter(TokenBucket.per_second(10, capacity=25), name="svc")
    start = anyio.current_time()
    for _ in range(25):
        await limiter.acquire()
    assert elapsed_since(start) == 0
    assert limiter.metrics().waited == 0


async def test_refill_waits_exactly_one_interval() -> None:
    """Once empty, the next unit is admitted after exactly 1/rate seconds."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    await limiter.acquire(10)
    start = anyio.current_time()
    await limiter.acquire()
    assert elapsed_since(start) == pytest.approx(0.1, abs=1e-9)


async def test_weighted_cost_waits_in_proportion() -> None:
    """A cost of 5 on an empty 10/s bucket waits exactly 0.5 s."""
    limiter = create_limiter(TokenBucket.per_minute(600, capacity=10), name="svc")
    await limiter.acquire(10)
    start = anyio.current_time()
    await limiter.acquire(5)
    assert elapsed_since(start) == pytest.approx(0.5, abs=1e-9)
    assert limiter.metrics().admitted_cost == 15


async def test_large_request_is_not_starved_by_small_ones() -> None:
    """Small requests arriving after a large waiter queue behind it even if they would fit."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    await limiter.acquire(10)
    start = anyio.current_time()
    order: list[tuple[str, float]] = []

    async def big() -> None:
        await limiter.acquire(10)
        order.append(("big", elapsed_since(start)))

    async def small(index: int) -> None:
        await anyio.sleep(0.05 * index)
        await limiter.acquire(1)
        order.append((f"small{index}", elapsed_since(start)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(big)
        await until_queued(limiter, 1)
        for index in range(1, 6):
            tg.start_soon(small, index)
    assert [name for name, _ in order] == ["big"] + [f"small{i}" for i in range(1, 6)]
    assert [at for _, at in order] == pytest.approx([1.0, 1.1, 1.2, 1.3, 1.4, 1.5], abs=1e-9)


async def test_hopeless_deadline_rejects_at_once_with_retry_after() -> None:
    """A wait that would end after the deadline raises RateLimited now, with the wait."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    await limiter.acquire(10)
    start = anyio.current_time()
    with pytest.raises(RateLimited) as info:
        await limiter.acquire(5, deadline=start + 0.2)
    assert elapsed_since(start) == 0
    assert info.value.name == "svc"
    assert info.value.retry_after == pytest.approx(0.5, abs=1e-9)
    assert limiter.metrics().rejected == 1


async def test_deadline_estimate_counts_waiters_ahead() -> None:
    """The retry_after of a rejection includes the cost of everyone queued ahead."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    await limiter.acquire(10)
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire, 8)
        await until_queued(limiter, 1)
        with pytest.raises(RateLimited) as info:
            await limiter.acquire(4, deadline=start + 1.0)
        assert info.value.retry_after == pytest.approx(1.2, abs=1e-9)
        assert elapsed_since(start) == 0


async def test_deadline_within_reach_waits() -> None:
    """A deadline later than the needed wait is met by waiting exactly the wait."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    await limiter.acquire(10)
    start = anyio.current_time()
    await limiter.acquire(5, deadline=start + 0.5)
    assert elapsed_since(start) == pytest.approx(0.5, abs=1e-9)


async def test_enclosing_timeout_counts_as_deadline() -> None:
    """Inside fail_after, a wait longer than the timeout is refused at once."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    await limiter.acquire(10)
    start = anyio.current_time()
    with pytest.raises(RateLimited), anyio.fail_after(0.2):
        await limiter.acquire(5)
    assert elapsed_since(start) == 0


async def test_cancelled_head_waiter_loses_no_capacity() -> None:
    """Cancelling the first waiter lets the next one in as if it had never queued."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    await limiter.acquire(10)
    start = anyio.current_time()
    admitted_at: list[float] = []
    first_scope = anyio.CancelScope()

    async def first() -> None:
        with first_scope:
            await limiter.acquire(5)

    async def second() -> None:
        await limiter.acquire(5)
        admitted_at.append(elapsed_since(start))

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await until_queued(limiter, 1)
        tg.start_soon(second)
        await until_queued(limiter, 2)
        await anyio.sleep(0.1)
        first_scope.cancel()
    assert admitted_at == [pytest.approx(0.5, abs=1e-9)]
    assert limiter.metrics().queued == 0


async def test_cancelled_queued_waiter_leaves_the_queue() -> None:
    """Cancelling a waiter in the middle of the queue removes only that waiter."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    await limiter.acquire(10)
    start = anyio.current_time()
    admitted: list[tuple[str, float]] = []

    async def waiter(label: str, cost: float) -> None:
        await limiter.acquire(cost)
        admitted.append((label, elapsed_since(start)))

    middle = anyio.CancelScope()

    async def cancellable() -> None:
        with middle:
            await waiter("b", 5)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "a", 2)
        await until_queued(limiter, 1)
        tg.start_soon(cancellable)
        await until_queued(limiter, 2)
        tg.start_soon(waiter, "c", 3)
        await until_queued(limiter, 3)
        middle.cancel()
    assert [label for label, _ in admitted] == ["a", "c"]
    assert [at for _, at in admitted] == pytest.approx([0.2, 0.5], abs=1e-9)


async def test_try_acquire_never_waits() -> None:
    """try_acquire admits while units remain and refuses once empty."""
    limiter = create_limiter(TokenBucket.per_second(3), name="svc")
    assert [limiter.try_acquire() for _ in range(4)] == [True, True, True, False]
    metrics = limiter.metrics()
    assert (metrics.admitted, metrics.rejected) == (3, 1)


async def test_try_acquire_refuses_while_others_wait() -> None:
    """try_acquire does not overtake a queued waiter even when its cost would fit."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    await limiter.acquire(8)
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire, 10)
        await until_queued(limiter, 1)
        assert limiter.try_acquire(1) is False
        tg.cancel_scope.cancel()


async def test_refund_wakes_the_head_waiter() -> None:
    """Refunded units let a sleeping waiter in at the moment of the refund."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    await limiter.acquire(10)
    start = anyio.current_time()
    admitted_at: list[float] = []

    async def waiter() -> None:
        await limiter.acquire(10)
        admitted_at.append(elapsed_since(start))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await until_queued(limiter, 1)
        await anyio.sleep(0.3)
        await limiter.refund(7)
    assert admitted_at == [pytest.approx(0.3, abs=1e-9)]


async def test_rejection_emits_debug_event() -> None:
    """A rejection is a debug-level "limiter.rejected" event with retry_after."""
    limiter = create_limiter(TokenBucket.per_second(1), name="svc")
    await limiter.acquire()
    with capture_events() as events, pytest.raises(RateLimited):
        await limiter.acquire(deadline=anyio.current_time())
    assert [(e["event"], e["log_level"], e["limiter"]) for e in events] == [
        ("limiter.rejected", "debug", "svc")
    ]
    assert events[0]["retry_after"] > 0


async def test_success_path_emits_nothing() -> None:
    """Admissions are counted in metrics, not logged."""
    limiter = create_limiter(TokenBucket.per_second(5), name="svc")
    with capture_events() as events:
        for _ in range(5):
            await limiter.acquire()
    assert events == []


async def test_limiters_on_one_store_and_name_share_state() -> None:
    """A new limiter on the same store and name sees the old one's consumption."""
    store = MemoryLimiterStore()
    first = create_limiter(TokenBucket.per_second(5), name="svc", store=store)
    await first.acquire(5)
    again = create_limiter(TokenBucket.per_second(5), name="svc", store=store)
    other = create_limiter(TokenBucket.per_second(5), name="other", store=store)
    assert again.try_acquire() is False
    assert other.try_acquire() is True
    assert again.key == "actors:svc"


# --- sliding window and GCRA ---------------------------------------------------------


async def test_sliding_window_admits_limit_then_waits_for_decay() -> None:
    """After a full window from a mid-second start, the next unit waits 10% into the next."""
    limiter = create_limiter(SlidingWindow.per_second(10), name="svc")
    await anyio.sleep(0.37)  # windows start at the first admission, not on the second
    start = anyio.current_time()
    for _ in range(10):
        await limiter.acquire()
    assert elapsed_since(start) == 0
    await limiter.acquire()
    assert elapsed_since(start) == pytest.approx(1.1, abs=1e-9)


async def test_sliding_window_steady_rate() -> None:
    """Under steady demand a sliding window admits limit - cost per window after the first."""
    limiter = create_limiter(SlidingWindow(limit=20, window=2.0), name="svc")
    start = anyio.current_time()
    count = 0
    with anyio.move_on_after(20):
        while True:
            await limiter.acquire()
            count += 1
    assert elapsed_since(start) == pytest.approx(20, abs=1e-9)
    assert count == 20 + 9 * 19


async def test_gcra_burst_then_emission_interval() -> None:
    """GCRA admits its burst at once, then one unit per emission interval."""
    limiter = create_limiter(GCRA.per_second(10, burst=5), name="svc")
    start = anyio.current_time()
    for _ in range(5):
        await limiter.acquire()
    assert elapsed_since(start) == 0
    await limiter.acquire()
    assert elapsed_since(start) == pytest.approx(0.1, abs=1e-9)
    await limiter.acquire(3)
    assert elapsed_since(start) == pytest.approx(0.4, abs=1e-9)


async def test_gcra_rejects_cost_beyond_burst() -> None:
    """A GCRA's largest cost is its burst."""
    limiter = create_limiter(GCRA(emission_interval=0.1, burst_tolerance=0.4), name="svc")
    assert limiter.try_acquire(5) is True
    with pytest.raises(ValueError, match="capacity"):
        limiter.try_acquire(5.5)


# --- stores, accuracy ----------------------------------------------------------------


async def test_remote_store_waits_exactly() -> None:
    """A limiter over an async-only store admits and waits like a local one."""
    store = RemoteLikeStore()
    limiter = create_limiter(TokenBucket.per_second(10), name="svc", store=store)
    start = anyio.current_time()
    await limiter.acquire(10)
    await limiter.acquire(2)
    assert elapsed_since(start) == pytest.approx(0.2, abs=1e-9)
    assert store.calls >= 2
    assert limiter.metrics().available is None
    with pytest.raises(TypeError):
        limiter.try_acquire()


@pytest.mark.parametrize(
    "config",
    [TokenBucket.per_second(100), SlidingWindow.per_second(100), GCRA.per_second(100, burst=100)],
    ids=["token_bucket", "sliding_window", "gcra"],
)
@pytest.mark.parametrize("remote", [False, True], ids=["memory", "remote"])
async def test_accuracy_over_ten_seconds(config: LimitConfig, remote: bool) -> None:
    """At 100/s with demand above the limit, 10 s admit the limit (+burst) within 1%."""
    store = RemoteLikeStore() if remote else MemoryLimiterStore()
    limiter = create_limiter(config, name="svc", store=store)
    await anyio.sleep(0.5)  # a mid-window start
    start = anyio.current_time()
    admitted = 0

    async def demand() -> None:
        nonlocal admitted
        while True:
            try:
                await limiter.acquire(deadline=start + 10)
            except RateLimited:
                return
            admitted += 1

    with capture_events():
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(demand)
    assert elapsed_since(start) == pytest.approx(10, abs=1e-9)
    ideal = 100 * 10 + (0 if isinstance(config, SlidingWindow) else 100)
    assert ideal * 0.99 <= admitted <= ideal


async def test_metrics_count_waits_and_wait_time() -> None:
    """Metrics report admissions, waits, total wait time and available units."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    await limiter.acquire(10)
    await limiter.acquire(5)
    with capture_events(), pytest.raises(RateLimited):
        await limiter.acquire(10, deadline=anyio.current_time())
    metrics = limiter.metrics()
    assert (metrics.admitted, metrics.waited, metrics.rejected, metrics.queued) == (2, 1, 1, 0)
    assert metrics.admitted_cost == 15
    assert metrics.total_wait_time == pytest.approx(0.5, abs=1e-9)
    assert metrics.available == pytest.approx(0, abs=1e-9)


async def test_immediate_admission_is_a_checkpoint() -> None:
    """With units available, acquire in a cancelled scope is cancelled and consumes nothing."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    with anyio.CancelScope() as scope:
        scope.cancel()
        await limiter.acquire()
    assert scope.cancelled_caught
    assert limiter.metrics().admitted == 0
    assert limiter.metrics().available == 10


async def test_immediate_admission_yields_to_other_tasks() -> None:
    """A loop of admitted acquires lets another task run between them."""
    limiter = create_limiter(TokenBucket.per_second(1e9), name="svc")
    ticks = 0

    async def other() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        await anyio.lowlevel.checkpoint()
        for _ in range(100):
            await limiter.acquire()
        tg.cancel_scope.cancel()
    assert ticks >= 100


@pytest.mark.parametrize("store_kind", ["memory", "degraded"])
async def test_refused_acquires_do_not_starve_other_tasks(store_kind: str) -> None:
    """A loop of acquires refused at once lets another task run between them."""
    store = MemoryLimiterStore() if store_kind == "memory" else DegradedStore()
    limiter = create_limiter(TokenBucket.per_second(1), name="svc", store=store)
    await limiter.acquire()
    ticks = 0

    async def other() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    refused = 0
    with capture_events():
        async with anyio.create_task_group() as tg:
            tg.start_soon(other)
            await anyio.lowlevel.checkpoint()
            for _ in range(100):
                try:
                    await limiter.acquire(deadline=anyio.current_time())
                except RateLimited:
                    refused += 1
            tg.cancel_scope.cancel()
    assert refused == 100
    assert ticks >= 100


async def test_cancelled_scope_does_not_wait() -> None:
    """A caller that must wait inside an already-cancelled scope is cancelled, not queued."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    await limiter.acquire(10)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await limiter.acquire()
    assert scope.cancelled_caught
    assert limiter.metrics().queued == 0


async def test_refund_rejects_negative_cost() -> None:
    """A negative refund is a ValueError, not a hidden charge."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    with pytest.raises(ValueError, match="refund"):
        await limiter.refund(-3)


async def test_refund_never_exceeds_capacity() -> None:
    """Refunding more than was taken fills the bucket only to its capacity."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    await limiter.acquire(4)
    await limiter.refund(100)
    assert limiter.metrics().available == 10


# --- reservations on a single limit --------------------------------------------------


async def test_reserve_then_reconcile_a_single_limit() -> None:
    """A Limiter's reservation reconciles with one number, refunding the difference."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    reservation = await limiter.reserve(6)
    assert limiter.metrics().available == 4
    await reservation.reconcile(2)
    assert limiter.metrics().available == 8
    assert reservation.costs == {"cost": 2}


async def test_reserve_nowait_admits_at_once_or_declines() -> None:
    """reserve_nowait admits when the units are there and declines (uncounted) otherwise."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    now = anyio.current_time()
    held = limiter.reserve_nowait(8, now)
    assert held is not None
    assert limiter.reserve_nowait(8, now) is None
    assert limiter.metrics().rejected == 0
    await held.release()
    assert limiter.reserve_nowait(8, now) is not None


async def test_reserve_nowait_declines_a_remote_store() -> None:
    """With a remote store the fast path always declines: the caller awaits reserve."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc", store=RemoteLikeStore())
    assert limiter.reserve_nowait(1, anyio.current_time()) is None
    reservation = await limiter.reserve(1)
    assert reservation.costs == {"cost": 1}


async def test_reserve_nowait_declines_while_others_wait() -> None:
    """The fast path does not overtake a queued waiter."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    await limiter.acquire(8)
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire, 10)
        await until_queued(limiter, 1)
        assert limiter.reserve_nowait(1, anyio.current_time()) is None
        tg.cancel_scope.cancel()


async def test_a_positional_usage_needs_a_single_limit() -> None:
    """reconcile(number) is for a single limit's reservation."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    reservation = await limiter.reserve(1)
    with pytest.raises(TypeError, match="exactly one limit"):
        await reservation.reconcile(1, cost=2)


async def test_reserve_is_a_checkpoint() -> None:
    """reserve in a cancelled scope is cancelled before anything is reserved."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    with anyio.CancelScope() as scope:
        scope.cancel()
        await limiter.reserve(5)
    assert scope.cancelled_caught
    assert limiter.metrics().available == 10
