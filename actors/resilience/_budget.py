"""A Finagle-style retry budget: retries stay a fraction of requests, plus a small floor.

Within a sliding window of `ttl` seconds a retry is allowed while::

    ratio * requests_in_window + min_per_second * ttl - retries_in_window >= 1

So a healthy service gets a steady trickle of retries (the floor), and an outage
cannot multiply the load by the attempt count: at ``ratio=0.2`` at most one call in
five is retried, whatever `RetryPolicy.attempts` says.

The window is `slices` buckets wide (O(1) memory). Requests are deposited without
reading the clock (the success path must stay cheap): `deposit` only bumps a counter,
and the pending deposits are folded into the window when the budget is next consulted
(a failure path). Deposits made since the previous fold are assumed spread evenly over
that interval, so only the share that falls within the last `ttl` seconds is credited;
a long quiet stretch of successes cannot fund a retry storm.

The core is clock-injected (methods take ``now``) so it can be tested synchronously.
"""

from __future__ import annotations

from collections import deque

import attrs

__all__ = ["RetryBudget"]

_EPSILON = 1e-9


@attrs.define(eq=False)
class RetryBudget:
    """Runtime state of one service's retry budget.

    Attributes:
        ratio: Retries allowed per request in the window, in [0, 1].
        min_per_second: Retries always allowed per second, whatever the traffic.
        ttl: Window length in seconds; deposits and withdrawals expire after it.
        slices: Number of buckets the window is split into.
    """

    ratio: float
    min_per_second: float
    ttl: float
    slices: int = 10
    pending: int = attrs.field(default=0, init=False)
    """Requests deposited but not yet folded into the window."""
    since: float | None = attrs.field(default=None, init=False)
    """Time of the last fold, or of the first deposit; ``None`` before any."""
    _buckets: deque[list[float]] = attrs.field(factory=deque, init=False)
    """``[slice_index, deposits, withdrawals]`` per slice, oldest first."""

    def deposit(self, now: float | None = None) -> None:
        """Records one request. `now` is only needed for the very first deposit."""
        self.pending += 1
        if self.since is None and now is not None:
            self.since = now

    def balance(self, now: float) -> float:
        """Returns how many retries the budget allows at `now` (may be fractional)."""
        self._fold(now)
        deposits = 0.0
        withdrawals = 0.0
        for _, deposited, withdrawn in self._buckets:
            deposits += deposited
            withdrawals += withdrawn
        return self.ratio * deposits + self.min_per_second * self.ttl - withdrawals

    def try_withdraw(self, now: float) -> bool:
        """Spends one retry if the budget allows it at `now`; returns whether it did."""
        if self.balance(now) < 1 - _EPSILON:
            return False
        self._bucket(now)[2] += 1
        return True

    def _index(self, now: float) -> int:
        return int(now // (self.ttl / self.slices))

    def _bucket(self, now: float) -> list[float]:
        index = self._index(now)
        buckets = self._buckets
        if not buckets or buckets[-1][0] != index:
            buckets.append([index, 0.0, 0.0])
        return buckets[-1]

    def _fold(self, now: float) -> None:
        index = self._index(now)
        buckets = self._buckets
        while buckets and buckets[0][0] <= index - self.slices:
            buckets.popleft()
        if self.pending:
            since = self.since if self.since is not None else now
            span = now - since
            credit = float(self.pending)
            if span > self.ttl:
                credit *= self.ttl / span
            self._bucket(now)[1] += credit
            self.pending = 0
        self.since = now
