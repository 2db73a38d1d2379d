"""Rate limiters: token bucket, sliding window and GCRA, with weighted cost and FIFO waiters.

Each configuration class is frozen data *and* the pure algorithm (`decide`, `charge`,
`wait_time`, `available`, `resync` as functions of `(state, now, cost)`), so the state
can live in any `LimiterStore` (in memory here; Redis later, in a Lua script on the
server's clock). A `Limiter` adds what a store cannot: a FIFO queue of waiters in this
process, deadlines, cancellation and metrics.

Admission is FIFO: while anyone waits, later callers queue behind them even if their
cost would fit, so a large request is never starved by a stream of small ones. The
success path when nobody waits is a few float operations on `anyio.current_time()`:
no task, lock, event or cancel scope.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, ClassVar, NoReturn, TypeAlias

import anyio
import anyio.lowlevel
import attrs

from actors._errors import ConfigError, RateLimited
from actors._events import emit
from actors.resilience._limiter_store import (
    LimitAlgorithm,
    LimiterStore,
    LimitState,
    MemoryLimiterStore,
    SyncLimiterStore,
)

__all__ = [
    "GCRA",
    "LimitConfig",
    "Limiter",
    "LimiterMetrics",
    "RateLimit",
    "SlidingWindow",
    "TokenBucket",
    "create_limiter",
]

_REL_TOLERANCE = 1e-9
"""Relative slack when comparing a cost with what is available (float rounding)."""

_DEADLINE_SLACK = 1e-9
"""Seconds by which float rounding may push an admission exactly at the deadline past it."""

_MIN_SLEEP = 1e-9
"""Shortest sleep of a waiting head, so rounding can never make it spin."""


def _check_rate(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(field, value, "must be a number")
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(field, value, "must be a finite number > 0")


def _rate(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    """Accepts finite numbers > 0 (a rate or duration of zero or infinity is a mistake)."""
    _check_rate(attr.name, value)


def _duration(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    """Accepts finite numbers >= 0 (seconds)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(attr.name, value, "must be a number of seconds")
    if not (value >= 0 and math.isfinite(value)):
        raise ConfigError(attr.name, value, "must be a finite number of seconds >= 0")


def _optional_rate(inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _rate(inst, attr, value)


@attrs.frozen(kw_only=True)
class TokenBucket:
    """A bucket of `capacity` units refilled continuously at `rate` units per `period`.

    Allows bursts up to `capacity`, then a steady `rate / period` units per second. In any
    interval of length T it admits at most `capacity + rate / period * T` units.

    Attributes:
        rate: Units added per period (> 0).
        period: Length of the period in seconds (> 0); `rate=500, period=60` is 500/min.
        capacity: Bucket size in units, the largest burst and the largest single cost
            (> 0); `None` means `rate` (a full period's worth).
    """

    rate: float = attrs.field(validator=_rate)
    period: float = attrs.field(default=1.0, validator=_rate)
    capacity: float | None = attrs.field(default=None, validator=_optional_rate)

    kind: ClassVar[str] = "token_bucket"

    @classmethod
    def per_second(cls, rate: float, *, capacity: float | None = None) -> TokenBucket:
        """`rate` units per second, bursts up to `capacity` (default `rate`)."""
        return cls(rate=rate, period=1.0, capacity=capacity)

    @classmethod
    def per_minute(cls, rate: float, *, capacity: float | None = None) -> TokenBucket:
        """`rate` units per minute, bursts up to `capacity` (default `rate`)."""
        return cls(rate=rate, period=60.0, capacity=capacity)

    @classmethod
    def per_hour(cls, rate: float, *, capacity: float | None = None) -> TokenBucket:
        """`rate` units per hour, bursts up to `capacity` (default `rate`)."""
        return cls(rate=rate, period=3600.0, capacity=capacity)

    @property
    def max_cost(self) -> float:
        """The bucket size in units."""
        return self.rate if self.capacity is None else self.capacity

    # LimitAlgorithm -----------------------------------------------------------------

    @property
    def mean_rate(self) -> float:
        return self.rate / self.period

    def _tokens(self, state: LimitState | None, now: float) -> tuple[float, float]:
        cap = self.rate if self.capacity is None else self.capacity
        if state is None:
            return cap, now
        tokens, last = state
        if now > last:
            tokens += (now - last) * self.rate / self.period
            last = now
        return min(cap, tokens), last

    def decide(
        self, state: LimitState | None, now: float, cost: float
    ) -> tuple[bool, LimitState, float]:
        cap = self.rate if self.capacity is None else self.capacity
        if state is None:
            tokens, last = cap, now
        else:
            tokens, last = state
            if now > last:
                tokens += (now - last) * self.rate / self.period
                last = now
            tokens = min(tokens, cap)
        if cost <= tokens + _REL_TOLERANCE * cap:
            return True, (tokens - cost, last), 0.0
        return False, (tokens, last), (cost - tokens) * self.period / self.rate

    def charge(self, state: LimitState | None, now: float, cost: float) -> LimitState:
        tokens, last = self._tokens(state, now)
        return (min(self.max_cost, tokens - cost), last)

    def wait_time(self, state: LimitState | None, now: float, cost: float) -> float:
        tokens, _ = self._tokens(state, now)
        return max(0.0, (cost - tokens) * self.period / self.rate)

    def available(self, state: LimitState | None, now: float) -> float:
        return max(0.0, self._tokens(state, now)[0])

    def resync(self, state: LimitState | None, now: float, remaining: float) -> LimitState:
        tokens, last = self._tokens(state, now)
        return (min(tokens, remaining), last)


@attrs.frozen(kw_only=True)
class SlidingWindow:
    """At most `limit` units per `window` seconds, by the sliding-window-counter estimate.

    State is two fixed-window counters (previous and current) and the current window's
    start: O(1) per key, not one entry per admitted unit. A request is admitted when
    ``previous * (1 - elapsed / window) + current + cost <= limit``. Every aligned window
    admits at most `limit`; a window straddling two aligned ones admits at most `limit`
    when traffic is even and never more than `2 * limit` in the worst case (the estimate
    assumes the previous window's traffic was spread evenly). Under steady demand for
    requests of cost c, it admits `limit - c` per window after the first (the estimate
    never quite lets the last request of a window in): 99 a second for
    `SlidingWindow.per_second(100)` with unit costs.

    Attributes:
        limit: Units per window (> 0), also the largest single cost.
        window: Window length in seconds (> 0).
    """

    limit: float = attrs.field(validator=_rate)
    window: float = attrs.field(default=1.0, validator=_rate)

    kind: ClassVar[str] = "sliding_window"

    @classmethod
    def per_second(cls, limit: float) -> SlidingWindow:
        """`limit` units per 1-second window."""
        return cls(limit=limit, window=1.0)

    @classmethod
    def per_minute(cls, limit: float) -> SlidingWindow:
        """`limit` units per 60-second window."""
        return cls(limit=limit, window=60.0)

    @property
    def max_cost(self) -> float:
        """The window's limit."""
        return self.limit

    # LimitAlgorithm -----------------------------------------------------------------

    @property
    def mean_rate(self) -> float:
        return self.limit / self.window

    def _roll(self, state: LimitState | None, now: float) -> tuple[float, float, float]:
        width = self.window
        start = math.floor(now / width + 1e-9) * width
        if state is None:
            return start, 0.0, 0.0
        old_start, previous, current = state
        if start <= old_start + 0.5 * width:
            return old_start, previous, current
        if start < old_start + 1.5 * width:
            return start, current, 0.0
        return start, 0.0, 0.0

    def _estimate(self, start: float, previous: float, current: float, now: float) -> float:
        elapsed = min(1.0, max(0.0, (now - start) / self.window))
        return previous * (1.0 - elapsed) + current

    def decide(
        self, state: LimitState | None, now: float, cost: float
    ) -> tuple[bool, LimitState, float]:
        start, previous, current = self._roll(state, now)
        if self._estimate(start, previous, current, now) + cost <= self.limit * (
            1 + _REL_TOLERANCE
        ):
            return True, (start, previous, current + cost), 0.0
        return False, (start, previous, current), self._wait(start, previous, current, now, cost)

    def _wait(
        self, start: float, previous: float, current: float, now: float, cost: float
    ) -> float:
        limit, width = self.limit, self.window
        if self._estimate(start, previous, current, now) + cost <= limit:
            return 0.0
        room = limit - current - cost
        if room >= 0 and previous > 0:
            # The previous window's weight decays linearly within the current window.
            return max(0.0, start + (1.0 - room / previous) * width - now)
        if cost <= limit:
            # The current window becomes the previous one and decays in the next.
            fraction = 0.0 if current <= 0 else max(0.0, 1.0 - (limit - cost) / current)
            return max(0.0, start + width + fraction * width - now)
        # Beyond one window's worth (only for queue estimates): extrapolate the mean rate.
        return max(0.0, start + 2 * width - now) + (cost - limit) / self.mean_rate

    def charge(self, state: LimitState | None, now: float, cost: float) -> LimitState:
        start, previous, current = self._roll(state, now)
        current += cost
        if current < 0:
            previous, current = max(0.0, previous + current), 0.0
        return (start, previous, current)

    def wait_time(self, state: LimitState | None, now: float, cost: float) -> float:
        return self._wait(*self._roll(state, now), now, cost)

    def available(self, state: LimitState | None, now: float) -> float:
        start, previous, current = self._roll(state, now)
        return max(0.0, self.limit - self._estimate(start, previous, current, now))

    def resync(self, state: LimitState | None, now: float, remaining: float) -> LimitState:
        start, previous, current = self._roll(state, now)
        excess = self.limit - self._estimate(start, previous, current, now) - remaining
        return (start, previous, current + max(0.0, excess))


@attrs.frozen(kw_only=True)
class GCRA:
    """The generic cell rate algorithm: one timestamp of state per key.

    Each unit of cost advances a theoretical arrival time (TAT) by `emission_interval`;
    a request is admitted when the new TAT is at most `burst_tolerance + emission_interval`
    ahead of now. Equivalent to a token bucket of capacity
    `1 + burst_tolerance / emission_interval` refilled at one unit per `emission_interval`,
    but with a single float of state, which makes it the natural choice for a shared store.

    Attributes:
        emission_interval: Seconds per unit at the steady rate (> 0).
        burst_tolerance: Seconds of credit a burst may use (>= 0); 0 means no burst
            beyond one unit.
    """

    emission_interval: float = attrs.field(validator=_rate)
    burst_tolerance: float = attrs.field(default=0.0, validator=_duration)

    kind: ClassVar[str] = "gcra"

    @classmethod
    def per_second(cls, rate: float, *, burst: float = 1.0) -> GCRA:
        """`rate` units per second with bursts of `burst` units (>= 1)."""
        return cls._from_rate(rate, 1.0, burst)

    @classmethod
    def per_minute(cls, rate: float, *, burst: float = 1.0) -> GCRA:
        """`rate` units per minute with bursts of `burst` units (>= 1)."""
        return cls._from_rate(rate, 60.0, burst)

    @classmethod
    def _from_rate(cls, rate: float, period: float, burst: float) -> GCRA:
        _check_rate("rate", rate)
        if (
            isinstance(burst, bool)
            or not isinstance(burst, int | float)
            or not 1 <= burst < math.inf
        ):
            raise ConfigError("burst", burst, "must be a finite number >= 1")
        interval = period / rate
        return cls(emission_interval=interval, burst_tolerance=(burst - 1) * interval)

    @property
    def max_cost(self) -> float:
        """The largest burst in units: `1 + burst_tolerance / emission_interval`.

        Rounded to a whole number when within float rounding of one (so that
        `GCRA.per_second(9, burst=8)` admits a cost of 8).
        """
        value = 1.0 + self.burst_tolerance / self.emission_interval
        nearest = round(value)
        return float(nearest) if abs(value - nearest) <= _REL_TOLERANCE * value else value

    # LimitAlgorithm -----------------------------------------------------------------

    @property
    def mean_rate(self) -> float:
        return 1.0 / self.emission_interval

    def decide(
        self, state: LimitState | None, now: float, cost: float
    ) -> tuple[bool, LimitState, float]:
        tat = now if state is None or state[0] < now else state[0]
        new_tat = tat + cost * self.emission_interval
        allowance = self.burst_tolerance + self.emission_interval
        ahead = new_tat - now
        if ahead <= allowance * (1 + _REL_TOLERANCE):
            return True, (new_tat,), 0.0
        return False, (tat,), ahead - allowance

    def charge(self, state: LimitState | None, now: float, cost: float) -> LimitState:
        tat = now if state is None or state[0] < now else state[0]
        return (max(now, tat + cost * self.emission_interval),)

    def wait_time(self, state: LimitState | None, now: float, cost: float) -> float:
        tat = now if state is None or state[0] < now else state[0]
        allowance = self.burst_tolerance + self.emission_interval
        return max(0.0, tat + cost * self.emission_interval - now - allowance)

    def available(self, state: LimitState | None, now: float) -> float:
        tat = now if state is None or state[0] < now else state[0]
        allowance = self.burst_tolerance + self.emission_interval
        return max(0.0, (allowance - (tat - now)) / self.emission_interval)

    def resync(self, state: LimitState | None, now: float, remaining: float) -> LimitState:
        tat = now if state is None or state[0] < now else state[0]
        excess = self.available(state, now) - remaining
        return (tat + max(0.0, excess) * self.emission_interval,)


LimitConfig: TypeAlias = TokenBucket | SlidingWindow | GCRA
"""Any rate-limit configuration (each is also its own pure `LimitAlgorithm`)."""


class RateLimit:
    """Shorthands for the common case, a token bucket: `RateLimit.per_minute(500)`."""

    @staticmethod
    def per_second(rate: float, *, burst: float | None = None) -> TokenBucket:
        """`rate` units per second, bursts up to `burst` (default `rate`)."""
        return TokenBucket.per_second(rate, capacity=burst)

    @staticmethod
    def per_minute(rate: float, *, burst: float | None = None) -> TokenBucket:
        """`rate` units per minute, bursts up to `burst` (default `rate`)."""
        return TokenBucket.per_minute(rate, capacity=burst)

    @staticmethod
    def per_hour(rate: float, *, burst: float | None = None) -> TokenBucket:
        """`rate` units per hour, bursts up to `burst` (default `rate`)."""
        return TokenBucket.per_hour(rate, capacity=burst)


# ---------------------------------------------------------------------------------------
# FIFO waiting, shared by Limiter and MultiLimit


@attrs.define(eq=False)
class _Waiter:
    costs: tuple[float, ...]
    ready: anyio.Event = attrs.field(factory=anyio.Event)


@attrs.define(eq=False)
class _Gate:
    """The FIFO queue, deadlines and counters for one or several limits admitted together."""

    name: str
    limits: tuple[tuple[str, LimitConfig], ...]
    store: LimiterStore
    sync: SyncLimiterStore | None
    labels: tuple[str, ...] = ()
    waiters: deque[_Waiter] = attrs.field(factory=deque)
    queued: list[float] = attrs.field(factory=list)
    kick: anyio.Event | None = None
    admitted: int = 0
    admitted_cost: list[float] = attrs.field(factory=list)
    waited: int = 0
    rejected: int = 0
    total_wait_time: float = 0.0

    def __attrs_post_init__(self) -> None:
        self.queued = [0.0] * len(self.limits)
        self.admitted_cost = [0.0] * len(self.limits)

    def record(self, costs: tuple[float, ...]) -> None:
        self.admitted += 1
        for index, cost in enumerate(costs):
            self.admitted_cost[index] += cost

    def requests(self, costs: tuple[float, ...]) -> list[tuple[str, LimitAlgorithm, float]]:
        return [(key, config, cost) for (key, config), cost in zip(self.limits, costs, strict=True)]

    async def decide(self, costs: tuple[float, ...], now: float) -> tuple[bool, float]:
        if self.sync is not None:
            return self.sync.decide_nowait(self.requests(costs), now)
        return await self.store.decide(self.requests(costs), now=now)

    async def estimate(self, costs: tuple[float, ...], now: float, ahead: list[float]) -> float:
        """Seconds until `costs` could be admitted behind `ahead` units already queued."""
        longest = 0.0
        for (key, config), cost, before in zip(self.limits, costs, ahead, strict=True):
            total = cost + before
            if self.sync is not None:
                wait = self.sync.wait_time_nowait(key, config, total, now)
            else:
                wait = await self.store.wait_time(key, config, total, now=now)
            longest = max(longest, wait)
        return longest

    def reject(self, costs: tuple[float, ...], retry_after: float) -> RateLimited:
        self.rejected += 1
        emit(
            "limiter.rejected",
            level="debug",
            limiter=self.name,
            cost=costs[0] if len(costs) == 1 else dict(zip(self.labels, costs, strict=True)),
            retry_after=retry_after,
        )
        return RateLimited(self.name, retry_after)

    def wake_head(self) -> None:
        """Lets a sleeping head waiter retry now (after a refund or resync)."""
        if self.kick is not None:
            self.kick.set()

    async def wait(
        self, costs: tuple[float, ...], deadline: float | None, retry_hint: float | None
    ) -> None:
        """Admits `costs` in FIFO order, or raises `RateLimited` once the deadline is hopeless."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        now = anyio.current_time()
        if deadline is None:
            deadline = anyio.current_effective_deadline()
        if not self.waiters:
            if retry_hint is None:
                admitted, retry_hint = await self.decide(costs, now)
                if admitted:
                    self.record(costs)
                    return
            wait = retry_hint
        else:
            wait = await self.estimate(costs, now, self.queued)
        if now + wait > deadline + _DEADLINE_SLACK:
            raise self.reject(costs, wait)

        waiter = _Waiter(costs)
        self.waiters.append(waiter)
        for index, cost in enumerate(costs):
            self.queued[index] += cost
        start = now
        # At the head from the start, the first wait is already known: sleep it first.
        pending: float | None = wait if self.waiters[0] is waiter else None
        try:
            if pending is None:
                with anyio.move_on_at(deadline):
                    await waiter.ready.wait()
                if not waiter.ready.is_set():
                    ahead = [0.0] * len(costs)
                    for other in self.waiters:
                        if other is waiter:
                            break
                        for index, cost in enumerate(other.costs):
                            ahead[index] += cost
                    now = anyio.current_time()
                    raise self.reject(costs, await self.estimate(costs, now, ahead))
            while True:
                if pending is None:
                    now = anyio.current_time()
                    admitted, retry_after = await self.decide(costs, now)
                    if admitted:
                        self.record(costs)
                        self.waited += 1
                        self.total_wait_time += now - start
                        return
                    if now + retry_after > deadline + _DEADLINE_SLACK:
                        raise self.reject(costs, retry_after)
                else:
                    retry_after, pending = pending, None
                kick = self.kick = anyio.Event()
                with anyio.move_on_after(max(retry_after, _MIN_SLEEP)):
                    await kick.wait()
        finally:
            self._leave(waiter)

    def _leave(self, waiter: _Waiter) -> None:
        waiters = self.waiters
        if waiters[0] is waiter:
            waiters.popleft()
            self.kick = None
            if waiters:
                waiters[0].ready.set()
        else:
            waiters.remove(waiter)
        for index, cost in enumerate(waiter.costs):
            self.queued[index] -= cost
        if not waiters:
            self.queued = [0.0] * len(self.limits)  # no float drift across bursts


def _check_cost(name: str, cost: float, capacity: float) -> NoReturn:
    """Raises ValueError for a cost that is negative, not finite, or larger than capacity."""
    if isinstance(cost, bool) or not isinstance(cost, int | float) or math.isnan(cost):
        raise ValueError(f"cost={cost!r}: must be a number")
    if cost < 0:
        raise ValueError(f"cost={cost!r}: must be >= 0")
    raise ValueError(
        f"cost={cost!r} exceeds the capacity of limit {name!r} ({capacity:g}); "
        "it could never be admitted"
    )


# ---------------------------------------------------------------------------------------
# Limiter


@attrs.frozen(kw_only=True)
class LimiterMetrics:
    """A snapshot of a limiter's counters.

    Attributes:
        name: The limiter's name.
        admitted: Requests admitted (immediately or after waiting).
        admitted_cost: Units admitted.
        waited: Admitted requests that had to wait in the queue.
        rejected: Requests refused with `RateLimited` (or by `try_acquire`).
        total_wait_time: Seconds admitted requests spent waiting, summed.
        available: Units available now; `None` when the store is remote.
        queued: Requests waiting now.
    """

    name: str
    admitted: int
    admitted_cost: float
    waited: int
    rejected: int
    total_wait_time: float
    available: float | None
    queued: int


@attrs.define(eq=False)
class Limiter:
    """A rate limiter for one service; create it with `create_limiter`.

    Attributes:
        name: The limiter's name (usually the service), used in errors and events.
        config: The limit.
        key: The store key holding its state.
        store: Where the state lives.
    """

    name: str
    config: LimitConfig
    key: str
    store: LimiterStore
    _gate: _Gate = attrs.field(alias="_gate")
    _max_cost: float = attrs.field(alias="_max_cost")

    async def acquire(self, cost: float = 1, *, deadline: float | None = None) -> None:
        """Waits until `cost` units are admitted, in FIFO order with other waiters.

        Not a checkpoint when admitted at once (the success path is plain arithmetic);
        otherwise a checkpoint. If the wait needed (including everyone queued ahead)
        would end after `deadline`, raises `RateLimited` at once instead of sleeping to
        fail. Cancellation while waiting removes this waiter: nothing is consumed and the
        next waiter proceeds.

        Args:
            cost: Units to consume (>= 0, at most the limit's capacity).
            deadline: Absolute `anyio.current_time()` by which admission must happen;
                `None` uses the enclosing cancel scopes' deadline (none: wait as needed).

        Raises:
            RateLimited: Admission would come after the deadline; `retry_after` is the
                estimated wait.
            ValueError: `cost` is negative, not a number, or above the capacity.
        """
        if not 0 <= cost <= self._max_cost:
            _check_cost(self.name, cost, self._max_cost)
        if not self._admit_now(cost, anyio.current_time()):
            await self._gate.wait((cost,), deadline, None)

    def try_acquire(self, cost: float = 1) -> bool:
        """Admits `cost` units now if possible, without waiting; never a checkpoint.

        Returns False (and counts a rejection) when the units are not available or when
        other callers are already waiting (they go first). Needs a local store; with a
        remote one use `await acquire(cost, deadline=anyio.current_time())`.

        Raises:
            ValueError: As for `acquire`.
            TypeError: The store is remote (cannot answer without awaiting).
        """
        if not 0 <= cost <= self._max_cost:
            _check_cost(self.name, cost, self._max_cost)
        if self._gate.sync is None:
            raise TypeError(f"limiter {self.name!r}: try_acquire needs a local store")
        if self._admit_now(cost, anyio.current_time()):
            return True
        self._gate.rejected += 1
        return False

    def _admit_now(self, cost: float, now: float) -> bool:
        """Admits `cost` (already checked) at `now` if nobody waits and a local store has
        the units; counts no refusal. The success path of `acquire`, `try_acquire` and
        `@resilient` (which passes the clock reading it shares with the breaker).
        """
        gate = self._gate
        sync = gate.sync
        if sync is None or gate.waiters:
            return False
        admitted, _ = sync.decide_one_nowait(self.key, self.config, cost, now)
        if admitted:
            gate.admitted += 1
            gate.admitted_cost[0] += cost
        return admitted

    async def refund(self, cost: float) -> None:
        """Returns `cost` units that were acquired but not used (never above capacity).

        Not a checkpoint with a local store. A waiting head is woken to retry.

        Raises:
            ValueError: `cost` is negative or not a finite number.
        """
        if isinstance(cost, bool) or not (isinstance(cost, int | float) and 0 <= cost < math.inf):
            raise ValueError(f"cost={cost!r}: a refund must be a finite number >= 0")
        await self.store.charge(self.key, self.config, -cost, now=anyio.current_time())
        self._gate.wake_head()

    def metrics(self) -> LimiterMetrics:
        """A snapshot of the counters (never a checkpoint)."""
        gate = self._gate
        available = None
        if gate.sync is not None:
            available = gate.sync.available_nowait(self.key, self.config, anyio.current_time())
        return LimiterMetrics(
            name=self.name,
            admitted=gate.admitted,
            admitted_cost=gate.admitted_cost[0],
            waited=gate.waited,
            rejected=gate.rejected,
            total_wait_time=gate.total_wait_time,
            available=available,
            queued=len(gate.waiters),
        )


def _sync_view(store: LimiterStore) -> SyncLimiterStore | None:
    return store if isinstance(store, SyncLimiterStore) else None


def create_limiter(
    config: LimitConfig,
    *,
    name: str,
    store: LimiterStore | None = None,
    namespace: str = "actors",
) -> Limiter:
    """Creates a limiter whose state lives in `store` under ``"<namespace>:<name>"``.

    Limiters built on the same store, namespace and name share one limit (that is how a
    restarted service actor keeps its rate limit: the store outlives the actor).

    Args:
        config: The limit (`TokenBucket`, `SlidingWindow` or `GCRA`).
        name: The service (or limit) name; used in the key, errors and events.
        store: The state store; a fresh `MemoryLimiterStore` when omitted.
        namespace: Key prefix separating applications sharing a store.

    Raises:
        ConfigError: `config` is not a limit configuration, or `name` is empty.
    """
    if not isinstance(config, TokenBucket | SlidingWindow | GCRA):
        raise ConfigError("config", config, "must be a TokenBucket, SlidingWindow or GCRA")
    if not name:
        raise ConfigError("name", name, "must be a non-empty string")
    store = MemoryLimiterStore() if store is None else store
    key = f"{namespace}:{name}"
    gate = _Gate(name=name, limits=((key, config),), store=store, sync=_sync_view(store))
    return Limiter(
        name=name, config=config, key=key, store=store, _gate=gate, _max_cost=config.max_cost
    )
