"""Sliding windows of call outcomes for the circuit breaker, in constant memory.

Each outcome is a small code: bit 0 says "failed", bit 1 says "slow". A window keeps
running totals (`total`, `failures`, `slow`) so that reading a rate is O(1).

- `CountWindow` remembers the last `size` outcomes in a ring (one byte per call).
- `TimeWindow` keeps one bucket per second for the last `size` seconds (like
  resilience4j): a call at time `t` lands in bucket `floor(t)`, and the window at time
  `now` holds the buckets `floor(now) - size + 1 .. floor(now)`. The history it covers
  is therefore between `size - 1` and `size` seconds long.

Both are plain synchronous objects: the breaker calls them from one thread (anyio's
event loop), so they need no locks.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["FAILED", "SLOW", "CountWindow", "TimeWindow", "Window"]

FAILED: Final = 1
SLOW: Final = 2


class CountWindow:
    """The outcomes of the last `size` calls."""

    __slots__ = ("_pos", "_ring", "failures", "size", "slow", "total")

    def __init__(self, size: int) -> None:
        self.size = size
        self._ring = bytearray(size)
        self._pos = 0
        self.total = 0
        self.failures = 0
        self.slow = 0

    def record(self, code: int, now: float) -> None:
        """Adds one outcome, evicting the oldest once the ring is full."""
        pos = self._pos
        if self.total == self.size:
            old = self._ring[pos]
            self.failures -= old & FAILED
            self.slow -= old >> 1
        else:
            self.total += 1
        self._ring[pos] = code
        self.failures += code & FAILED
        self.slow += code >> 1
        pos += 1
        self._pos = 0 if pos == self.size else pos

    def record_success(self, now: float) -> bool:
        """Adds one fast success (the hot path of `record(0, now)`).

        Returns:
            False: a count window never ages, so no other outcome slid out by time.
        """
        pos = self._pos
        if self.total == self.size:
            old = self._ring[pos]
            if old:
                self.failures -= old & FAILED
                self.slow -= old >> 1
                self._ring[pos] = 0
        else:
            self.total += 1  # slots not written since the last reset are still 0
        pos += 1
        self._pos = 0 if pos == self.size else pos
        return False

    def advance(self, now: float) -> None:
        """Does nothing: a count window does not age."""

    def reset(self) -> None:
        """Forgets every outcome."""
        self._ring = bytearray(self.size)
        self._pos = self.total = self.failures = self.slow = 0


class TimeWindow:
    """The outcomes of the calls of the last `size` seconds, in one-second buckets."""

    __slots__ = ("_calls", "_fails", "_head", "_slows", "failures", "size", "slow", "total")

    def __init__(self, size: int) -> None:
        self.size = size
        self._calls = [0] * size
        self._fails = [0] * size
        self._slows = [0] * size
        self._head: int | None = None
        self.total = 0
        self.failures = 0
        self.slow = 0

    def advance(self, now: float) -> None:
        """Moves the window to `now`, dropping the buckets that slid out of it.

        Amortised O(1): each bucket is cleared at most once per second of time passed.
        Time never moves backwards here: an earlier `now` than already seen is ignored.
        """
        bucket = math.floor(now)
        head = self._head
        if head is None:
            self._head = bucket
            return
        if bucket <= head:
            return
        size = self.size
        if bucket - head >= size:
            self._clear()
        else:
            calls, fails, slows = self._calls, self._fails, self._slows
            for b in range(head + 1, bucket + 1):
                i = b % size
                if calls[i]:
                    self.total -= calls[i]
                    self.failures -= fails[i]
                    self.slow -= slows[i]
                    calls[i] = fails[i] = slows[i] = 0
        self._head = bucket

    def record(self, code: int, now: float) -> None:
        """Adds one outcome at time `now` (into the newest bucket if `now` is earlier)."""
        self.advance(now)
        i = self._head % self.size  # type: ignore[operator]  # advance() set it
        self._calls[i] += 1
        self.total += 1
        if code & FAILED:
            self._fails[i] += 1
            self.failures += 1
        if code & SLOW:
            self._slows[i] += 1
            self.slow += 1

    def record_success(self, now: float) -> bool:
        """Adds one fast success at time `now` (the hot path of `record(0, now)`).

        Returns:
            Whether the window moved to a new second (old buckets may have slid out,
            which can raise the rates).
        """
        head = self._head
        if head is None or now - head >= 1.0 or now < head:
            self.record(0, now)
            return True
        self._calls[head % self.size] += 1
        self.total += 1
        return False

    def _clear(self) -> None:
        size = self.size
        self._calls = [0] * size
        self._fails = [0] * size
        self._slows = [0] * size
        self.total = self.failures = self.slow = 0

    def reset(self) -> None:
        """Forgets every outcome."""
        self._clear()
        self._head = None


Window = CountWindow | TimeWindow
