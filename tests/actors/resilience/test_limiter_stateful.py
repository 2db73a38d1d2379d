"""The limiter algorithms against small, obviously-right reference models (hypothesis).

Time is injected (integer milliseconds), so the pure algorithms and the in-memory store
are driven synchronously; the async limiter only adds queueing on top of them.
"""

from __future__ import annotations

from fractions import Fraction

import anyio
import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from actors.resilience import (
    GCRA,
    LimitConfig,
    MemoryLimiterStore,
    SlidingWindow,
    TokenBucket,
    create_limiter,
)
from actors.testing import virtual_time_backend

SETTINGS = settings(
    max_examples=80,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Near a boundary the float implementation and the exact model may disagree by
# rounding; the model then follows the implementation (the invariants still hold).
MARGIN = Fraction(1, 10**6)


class ReferenceBucket:
    """A token bucket in exact rational arithmetic (GCRA is the same bucket)."""

    def __init__(self, capacity: Fraction, rate_per_ms: Fraction) -> None:
        self.capacity = capacity
        self.rate = rate_per_ms
        self.tokens = capacity
        self.last = 0

    def refill(self, now: int) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now

    def margin(self, now: int, cost: int) -> Fraction:
        self.refill(now)
        return self.tokens - cost


class BucketMachine(RuleBasedStateMachine):
    """Token bucket and GCRA: decisions match the exact model; windows respect the bound."""

    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryLimiterStore()
        self.now = 0
        self.log: list[tuple[int, int]] = []

    @initialize(
        gcra=st.booleans(),
        rate=st.integers(1, 20),
        period_ms=st.sampled_from([500, 1000, 2000]),
        capacity=st.integers(1, 20),
    )
    def configure(self, gcra: bool, rate: int, period_ms: int, capacity: int) -> None:
        self.config: LimitConfig
        if gcra:
            interval = period_ms / 1000 / rate
            self.config = GCRA(
                emission_interval=interval, burst_tolerance=(capacity - 1) * interval
            )
        else:
            self.config = TokenBucket(rate=rate, period=period_ms / 1000, capacity=capacity)
        self.capacity = capacity
        self.rate_per_ms = Fraction(rate, period_ms)
        self.model = ReferenceBucket(Fraction(capacity), self.rate_per_ms)

    @rule(ms=st.integers(1, 30).map(lambda n: n * 37) | st.integers(0, 1500))
    def advance(self, ms: int) -> None:
        self.now += ms

    @rule(data=st.data())
    def acquire(self, data: st.DataObject) -> None:
        cost = data.draw(st.integers(0, self.capacity))
        now = self.now / 1000
        wait = self.store.wait_time_nowait("k", "k", self.config, cost, now)
        admitted, retry_after = self.store.decide_one_nowait("k", "k", self.config, cost, now)
        margin = self.model.margin(self.now, cost)
        if abs(margin) > MARGIN:
            assert admitted == (margin >= 0)
        if admitted:
            self.model.tokens -= cost
            self.log.append((self.now, cost))
            assert retry_after == 0
        else:
            expected = -margin / self.rate_per_ms / 1000
            assert abs(Fraction(retry_after) - expected) < Fraction(1, 10**6)
            assert abs(wait - retry_after) < 1e-9

    @rule(data=st.data())
    def retry_after_is_enough(self, data: st.DataObject) -> None:
        """Waiting the returned retry_after is enough (checked on a copy of the state)."""
        cost = data.draw(st.integers(1, self.capacity))
        now = self.now / 1000
        state = self.store._states.get("k")
        admitted, _, retry_after = self.config.decide(state, now, cost)
        if not admitted:
            assert self.config.decide(state, now + retry_after, cost)[0]

    @invariant()
    def no_window_exceeds_capacity_plus_rate(self) -> None:
        log = self.log if hasattr(self, "model") else []
        for i, (start, _) in enumerate(log):
            total = 0
            for end, cost in log[i:]:
                total += cost
                bound = self.capacity + (end - start) * self.rate_per_ms
                assert total <= bound + Fraction(1, 10**5)

    @invariant()
    def available_matches_model(self) -> None:
        if hasattr(self, "model"):
            available = self.store.available_nowait("k", self.config, self.now / 1000)
            self.model.refill(self.now)
            assert abs(Fraction(available) - max(Fraction(0), self.model.tokens)) < Fraction(
                1, 10**5
            )


class SlidingMachine(RuleBasedStateMachine):
    """Sliding window: O(1) state decides exactly like a full log; windows stay bounded."""

    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryLimiterStore()
        self.now = 0
        self.log: list[tuple[int, int]] = []

    @initialize(limit=st.integers(1, 20), window_ms=st.sampled_from([500, 1000, 2000]))
    def configure(self, limit: int, window_ms: int) -> None:
        self.config = SlidingWindow(limit=limit, window=window_ms / 1000)
        self.limit = limit
        self.window_ms = window_ms

    def window_start(self, now: int) -> int:
        """The start of the window holding `now`: windows are anchored at the first
        admission and re-anchored at an admission two or more windows after the last start."""
        start: int | None = None
        for t in [t for t, _ in self.log if t <= now] + [now]:
            if start is None or t - start >= 2 * self.window_ms:
                start = t
            elif t - start >= self.window_ms:
                start += self.window_ms
        assert start is not None
        return start

    def estimate(self) -> Fraction:
        """The sliding-window-counter estimate recomputed from the full admission log."""
        start = self.window_start(self.now)
        current = sum(c for t, c in self.log if start <= t)
        previous = sum(c for t, c in self.log if start - self.window_ms <= t < start)
        return previous * (1 - Fraction(self.now - start, self.window_ms)) + current

    @rule(ms=st.integers(1, 30).map(lambda n: n * 37) | st.integers(0, 2500))
    def advance(self, ms: int) -> None:
        self.now += ms

    @rule(data=st.data())
    def acquire(self, data: st.DataObject) -> None:
        cost = data.draw(st.integers(0, self.limit))
        admitted, retry_after = self.store.decide_one_nowait(
            "k", "k", self.config, cost, self.now / 1000
        )
        margin = self.limit - self.estimate() - cost
        if abs(margin) > MARGIN:
            assert admitted == (margin >= 0)
        if admitted:
            self.log.append((self.now, cost))
        else:
            assert retry_after > 0
            later = self.now / 1000 + retry_after
            state = self.store._states.get("k")
            assert self.config.decide(state, later, cost)[0]

    @invariant()
    def anchored_windows_stay_within_limit(self) -> None:
        counts: dict[int, int] = {}
        for t, cost in self.log:
            start = self.window_start(t)
            counts[start] = counts.get(start, 0) + cost
        assert all(total <= self.limit for total in counts.values())

    @invariant()
    def sliding_windows_stay_within_twice_the_limit(self) -> None:
        for start, _ in self.log:
            total = sum(c for t, c in self.log if start <= t < start + self.window_ms)
            assert total <= 2 * self.limit


class MultiKeyMachine(RuleBasedStateMachine):
    """Admitting several keys at once consumes all of them or none."""

    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryLimiterStore()
        self.now = 0.0
        self.requests = TokenBucket(rate=5, capacity=5)
        self.tokens = GCRA.per_second(100, burst=100)
        self.charged = {"requests": 0.0, "tokens": 0.0}

    @rule(seconds=st.floats(0, 1))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @rule(requests=st.integers(0, 5), tokens=st.integers(0, 100))
    def acquire_both(self, requests: int, tokens: int) -> None:
        before = (
            self.store.available_nowait("r", self.requests, self.now),
            self.store.available_nowait("t", self.tokens, self.now),
        )
        admitted, _ = self.store.decide_nowait(
            "g", [("r", self.requests, requests), ("t", self.tokens, tokens)], self.now
        )
        after = (
            self.store.available_nowait("r", self.requests, self.now),
            self.store.available_nowait("t", self.tokens, self.now),
        )
        if admitted:
            assert before[0] + 1e-6 >= requests
            assert before[1] + 1e-6 >= tokens
            assert after[0] == pytest.approx(before[0] - requests, abs=1e-6)
            assert after[1] == pytest.approx(before[1] - tokens, abs=1e-6)
        else:
            assert before[0] < requests or before[1] < tokens
            assert after == before


TestBucket = BucketMachine.TestCase
TestBucket.settings = SETTINGS
TestSliding = SlidingMachine.TestCase
TestSliding.settings = SETTINGS
TestMultiKey = MultiKeyMachine.TestCase
TestMultiKey.settings = SETTINGS


# --- the async limiter's FIFO queue against an exact schedule ---------------------------


def fifo_schedule(arrivals: list[tuple[int, int]], rate: Fraction, capacity: int) -> list[Fraction]:
    """When each (arrival_ms, cost) is admitted by a FIFO token bucket, in exact seconds."""
    tokens, last, previous = Fraction(capacity), Fraction(0), Fraction(0)
    admitted = []
    for arrival_ms, cost in arrivals:
        at = max(Fraction(arrival_ms, 1000), previous)
        tokens = min(Fraction(capacity), tokens + (at - last) * rate)
        if tokens < cost:
            at += (cost - tokens) / rate
            tokens = Fraction(cost)
        tokens -= cost
        last = previous = at
        admitted.append(at)
    return admitted


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=40, deadline=None)
@given(
    gaps=st.lists(st.integers(1, 400), min_size=1, max_size=25),
    costs=st.lists(st.integers(1, 8), min_size=25, max_size=25),
    rate=st.integers(1, 20),
    gcra=st.booleans(),
)
def test_fifo_admission_times_match_the_exact_schedule(
    backend: str, gaps: list[int], costs: list[int], rate: int, gcra: bool
) -> None:
    """Concurrent acquirers are admitted in arrival order at exactly the model's times."""
    capacity = 8
    arrivals: list[tuple[int, int]] = []
    at = 0
    for gap, cost in zip(gaps, costs, strict=False):
        at += gap
        arrivals.append((at, cost))

    async def scenario() -> list[tuple[int, float]]:
        config: LimitConfig = (
            GCRA.per_second(rate, burst=capacity)
            if gcra
            else TokenBucket(rate=rate, capacity=capacity)
        )
        limiter = create_limiter(config, name="svc")
        start = anyio.current_time()
        admitted: list[tuple[int, float]] = []

        async def caller(index: int, arrival_ms: int, cost: int) -> None:
            await anyio.sleep(arrival_ms / 1000)
            await limiter.acquire(cost)
            admitted.append((index, anyio.current_time() - start))

        async with anyio.create_task_group() as tg:
            for index, (arrival_ms, cost) in enumerate(arrivals):
                tg.start_soon(caller, index, arrival_ms, cost)
        return admitted

    name, options = virtual_time_backend(backend)
    admitted = anyio.run(scenario, backend=name, backend_options=options)
    expected = fifo_schedule(arrivals, Fraction(rate), capacity)
    assert [index for index, _ in admitted] == list(range(len(arrivals)))
    assert [at for _, at in admitted] == pytest.approx([float(x) for x in expected], abs=1e-6)


# --- the sliding window's accuracy from any start ---------------------------------------


def flood(config: SlidingWindow, start: float, seconds: float) -> int:
    """Unit requests as fast as admitted from `start`: how many in `seconds`."""
    state = None
    now, admitted = start, 0
    while now < start + seconds:
        ok, new, retry_after = config.decide(state, now, 1)
        if ok:
            state, admitted = new, admitted + 1
        else:
            now += retry_after
    return admitted


@settings(max_examples=200, deadline=None)
@given(
    start=st.floats(0, 1e6, allow_nan=False),
    config=st.sampled_from(
        [
            SlidingWindow.per_second(100),
            SlidingWindow(limit=50, window=0.5),
            SlidingWindow(limit=500, window=2.0),
        ]
    ),
)
def test_sliding_window_floods_admit_the_rate_from_any_start(
    start: float, config: SlidingWindow
) -> None:
    """A 10 s flood admits at most 1 % over the window's rate, whatever the start time, and
    at least (limit - 1) per window after the first (99 % for 100 per window)."""
    expected = config.mean_rate * 10
    steady = (config.limit - 1) / config.limit
    assert expected * steady * 0.99 <= flood(config, start, 10.0) <= expected * 1.01
