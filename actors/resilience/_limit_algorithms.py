"""The rate-limit algorithms: token bucket, sliding window and GCRA, as frozen configs.

Each configuration class is frozen data *and* its pure algorithm: `decide`, `charge`,
`wait_time`, `available` and `resync` are functions of `(state, now, cost)` that return
a new state without mutating anything, so a store can apply several of them atomically
and commit all or none.

The set is **closed**: `LimitConfig` is exactly these three classes. Every store
implements each of them with the same state and the same semantics (the in-memory store
by calling these methods, the Redis store in a Lua script that a differential test
checks against them), which an arbitrary user-defined algorithm could not offer; a new
algorithm is added here and to every store together.
"""

from __future__ import annotations

import math
from typing import Final, TypeAlias

import attrs

from actors._errors import ConfigError
from actors._validate import check_finite_positive, finite_non_negative, finite_positive, optional

__all__ = [
    "GCRA",
    "LIMIT_CONFIGS",
    "LimitConfig",
    "LimitState",
    "RateLimit",
    "SlidingWindow",
    "TokenBucket",
]

LimitState: TypeAlias = tuple[float, ...]
"""An algorithm's state for one key: a few floats (O(1) per key, whatever the traffic)."""

REL_TOLERANCE: Final = 1e-9
"""Relative slack when comparing a cost with what is available (float rounding)."""

_ALIGN: Final = 1e-9
"""Fraction of a window by which rounding may leave `now` short of a window boundary."""


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

    rate: float = attrs.field(validator=finite_positive)
    period: float = attrs.field(default=1.0, validator=finite_positive)
    capacity: float | None = attrs.field(default=None, validator=optional(finite_positive))

    kind = "token_bucket"

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

    @property
    def mean_rate(self) -> float:
        """The long-run admission rate in units per second."""
        return self.rate / self.period

    def scaled(self, fraction: float) -> TokenBucket:
        """The same bucket at `fraction` of its rate and capacity."""
        return TokenBucket(
            rate=self.rate * fraction, period=self.period, capacity=self.max_cost * fraction
        )

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
        """Tries to admit `cost`: `(admitted, new_state, retry_after)` (0 when admitted)."""
        cap = self.rate if self.capacity is None else self.capacity
        if state is None:
            tokens, last = cap, now
        else:
            tokens, last = state
            if now > last:
                tokens += (now - last) * self.rate / self.period
                last = now
            tokens = min(tokens, cap)
        if cost <= tokens + REL_TOLERANCE * cap:
            return True, (tokens - cost, last), 0.0
        return False, (tokens, last), (cost - tokens) * self.period / self.rate

    def charge(self, state: LimitState | None, now: float, cost: float) -> LimitState:
        """Consumes `cost` unconditionally (may go into debt); a negative cost refunds."""
        tokens, last = self._tokens(state, now)
        return (min(self.max_cost, tokens - cost), last)

    def wait_time(self, state: LimitState | None, now: float, cost: float) -> float:
        """Seconds until `cost` could be admitted, extrapolated when cost exceeds capacity."""
        tokens, _ = self._tokens(state, now)
        return max(0.0, (cost - tokens) * self.period / self.rate)

    def available(self, state: LimitState | None, now: float) -> float:
        """Units that could be admitted right now (never negative)."""
        return max(0.0, self._tokens(state, now)[0])

    def resync(self, state: LimitState | None, now: float, remaining: float) -> LimitState:
        """Lowers the state so that at most `remaining` units are available now."""
        tokens, last = self._tokens(state, now)
        return (min(tokens, remaining), last)


@attrs.frozen(kw_only=True)
class SlidingWindow:
    """At most `limit` units per `window` seconds, by the sliding-window-counter estimate.

    State is two fixed-window counters (previous and current) and the current window's
    start: O(1) per key, not one entry per admitted unit. A request is admitted when
    ``previous * (1 - elapsed / window) + current + cost <= limit``.

    Windows are anchored at the first admission, not at multiples of `window` on the
    clock, and re-anchored at the next admission after an idle spell of two windows, so
    the accuracy does not depend on when traffic starts. Every anchored window admits at
    most `limit`; a span of one window length that straddles two anchored windows admits
    at most `limit` when traffic is even and, in the worst case, up to (never reaching)
    `2 * limit` (when a whole window's traffic came at its very end, the estimate still
    spreads it evenly). Under steady demand for requests of cost c it admits `limit - c`
    per window after the first (the estimate never quite lets the last request of a
    window in): a flood of `SlidingWindow.per_second(100)` admits 991-1,000 units in any
    10 s from its start, within 1 % of the rate whatever the start time.

    Attributes:
        limit: Units per window (> 0), also the largest single cost.
        window: Window length in seconds (> 0).
    """

    limit: float = attrs.field(validator=finite_positive)
    window: float = attrs.field(default=1.0, validator=finite_positive)

    kind = "sliding_window"

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

    @property
    def mean_rate(self) -> float:
        """The long-run admission rate in units per second."""
        return self.limit / self.window

    def scaled(self, fraction: float) -> SlidingWindow:
        """The same window at `fraction` of its limit."""
        return SlidingWindow(limit=self.limit * fraction, window=self.window)

    def _roll(self, state: LimitState | None, now: float) -> tuple[float, float, float]:
        """`(start, previous, current)` at `now`: whole windows rolled from the anchor."""
        if state is None:
            return now, 0.0, 0.0
        start, previous, current = state
        width = self.window
        passed = math.floor((now - start) / width + _ALIGN)
        if passed <= 0:
            return start, previous, current
        if passed == 1:
            return start + width, current, 0.0
        return now, 0.0, 0.0  # idle for two windows or more: re-anchor here

    def _estimate(self, start: float, previous: float, current: float, now: float) -> float:
        elapsed = min(1.0, max(0.0, (now - start) / self.window))
        return previous * (1.0 - elapsed) + current

    def decide(
        self, state: LimitState | None, now: float, cost: float
    ) -> tuple[bool, LimitState, float]:
        """Tries to admit `cost`: `(admitted, new_state, retry_after)` (0 when admitted)."""
        start, previous, current = self._roll(state, now)
        if self._estimate(start, previous, current, now) + cost <= self.limit * (1 + REL_TOLERANCE):
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
        """Consumes `cost` unconditionally (may go into debt); a negative cost refunds."""
        start, previous, current = self._roll(state, now)
        current += cost
        if current < 0:
            previous, current = max(0.0, previous + current), 0.0
        return (start, previous, current)

    def wait_time(self, state: LimitState | None, now: float, cost: float) -> float:
        """Seconds until `cost` could be admitted, extrapolated when cost exceeds capacity."""
        return self._wait(*self._roll(state, now), now, cost)

    def available(self, state: LimitState | None, now: float) -> float:
        """Units that could be admitted right now (never negative)."""
        start, previous, current = self._roll(state, now)
        return max(0.0, self.limit - self._estimate(start, previous, current, now))

    def resync(self, state: LimitState | None, now: float, remaining: float) -> LimitState:
        """Lowers the state so that at most `remaining` units are available now."""
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

    emission_interval: float = attrs.field(validator=finite_positive)
    burst_tolerance: float = attrs.field(default=0.0, validator=finite_non_negative)

    kind = "gcra"

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
        check_finite_positive("rate", rate)
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
        return float(nearest) if abs(value - nearest) <= REL_TOLERANCE * value else value

    @property
    def mean_rate(self) -> float:
        """The long-run admission rate in units per second."""
        return 1.0 / self.emission_interval

    def scaled(self, fraction: float) -> GCRA:
        """The same limit at `fraction` of its rate and burst (a burst of at least 1)."""
        interval = self.emission_interval / fraction
        burst = max(1.0, self.max_cost * fraction)
        return GCRA(emission_interval=interval, burst_tolerance=(burst - 1.0) * interval)

    def decide(
        self, state: LimitState | None, now: float, cost: float
    ) -> tuple[bool, LimitState, float]:
        """Tries to admit `cost`: `(admitted, new_state, retry_after)` (0 when admitted)."""
        tat = now if state is None or state[0] < now else state[0]
        new_tat = tat + cost * self.emission_interval
        allowance = self.burst_tolerance + self.emission_interval
        ahead = new_tat - now
        if ahead <= allowance * (1 + REL_TOLERANCE):
            return True, (new_tat,), 0.0
        return False, (tat,), ahead - allowance

    def charge(self, state: LimitState | None, now: float, cost: float) -> LimitState:
        """Consumes `cost` unconditionally (may go into debt); a negative cost refunds."""
        tat = now if state is None or state[0] < now else state[0]
        return (max(now, tat + cost * self.emission_interval),)

    def wait_time(self, state: LimitState | None, now: float, cost: float) -> float:
        """Seconds until `cost` could be admitted, extrapolated when cost exceeds capacity."""
        tat = now if state is None or state[0] < now else state[0]
        allowance = self.burst_tolerance + self.emission_interval
        return max(0.0, tat + cost * self.emission_interval - now - allowance)

    def available(self, state: LimitState | None, now: float) -> float:
        """Units that could be admitted right now (never negative)."""
        tat = now if state is None or state[0] < now else state[0]
        allowance = self.burst_tolerance + self.emission_interval
        return max(0.0, (allowance - (tat - now)) / self.emission_interval)

    def resync(self, state: LimitState | None, now: float, remaining: float) -> LimitState:
        """Lowers the state so that at most `remaining` units are available now."""
        tat = now if state is None or state[0] < now else state[0]
        excess = self.available(state, now) - remaining
        return (tat + max(0.0, excess) * self.emission_interval,)


LimitConfig: TypeAlias = TokenBucket | SlidingWindow | GCRA
"""Any rate-limit configuration: the closed set every store implements."""

LIMIT_CONFIGS: Final = (TokenBucket, SlidingWindow, GCRA)
"""The classes of `LimitConfig`, for `isinstance` checks."""


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
