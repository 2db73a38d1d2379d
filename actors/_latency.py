"""`LatencyRecorder`: recent latency percentiles and a per-slice series, cheap to record.

Time is cut into slices of `slice_seconds`; the recorder keeps the last `slices` of
them (the window), each a log-bucketed histogram (`buckets_per_octave` buckets per
doubling, from `lowest` to `highest` seconds), plus a running histogram of the whole
window. Recording is O(1) and allocates nothing: one `math.log2`, two counter
increments, min and max. Moving into a new slice clears the slice that leaves the
window (O(buckets), once per slice, not per record).

A quantile is the bucket holding the requested rank, reported at its geometric middle
and clamped to the observed min and max: with 8 buckets per octave it is within 4.5 %
of the exact value; the smallest and largest ranks are the exact min and max. Values
below `lowest` count in the lowest bucket; values above `highest` count in the highest,
which reports the max seen. Negative durations and NaN are ignored.

The clock is injected: every method takes `now` (e.g. `anyio.current_time()`), so the
recorder works on virtual time and never reads a clock itself. A `now` earlier than
the newest slice seen counts in the newest slice.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from itertools import accumulate

from actors._errors import ConfigError
from actors._validate import check_finite_positive, check_positive_int

__all__ = ["LatencyRecorder"]


class _Slice:
    __slots__ = ("counts", "high", "low", "total")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets
        self.total = 0
        self.low = math.inf
        self.high = -math.inf

    def clear(self) -> None:
        counts = self.counts
        counts[:] = [0] * len(counts)  # in place: the list is reused, never replaced
        self.total = 0
        self.low = math.inf
        self.high = -math.inf


class LatencyRecorder:
    """Latency percentiles over a sliding window of time slices (see the module doc).

    Not thread-safe: record and read from one event loop (anyio tasks are fine).
    """

    __slots__ = (
        "_counts",
        "_head",
        "_log_low",
        "_per_octave",
        "_ring",
        "_total",
        "buckets",
        "highest",
        "lowest",
        "slice_seconds",
        "slices",
    )

    def __init__(
        self,
        *,
        slice_seconds: float = 1.0,
        slices: int = 60,
        lowest: float = 1e-6,
        highest: float = 1e3,
        buckets_per_octave: int = 8,
    ) -> None:
        """Makes an empty recorder.

        Args:
            slice_seconds: Seconds per slice (one point of `series`).
            slices: Slices in the window (quantiles cover `slice_seconds * slices`).
            lowest: Smallest distinguished latency, seconds.
            highest: Largest distinguished latency, seconds (> lowest).
            buckets_per_octave: Buckets per doubling of latency (precision).

        Raises:
            ConfigError: A bad value (the field names the argument).
        """
        self.slice_seconds = check_finite_positive("slice_seconds", slice_seconds)
        self.slices = check_positive_int("slices", slices)
        self.lowest = check_finite_positive("lowest", lowest)
        self.highest = check_finite_positive("highest", highest)
        if self.highest <= self.lowest:
            raise ConfigError("highest", highest, f"must be > lowest ({lowest})")
        self._per_octave = check_positive_int("buckets_per_octave", buckets_per_octave)
        self._log_low = math.log2(self.lowest)
        self.buckets = math.ceil((math.log2(self.highest) - self._log_low) * self._per_octave)
        self._ring = [_Slice(self.buckets) for _ in range(self.slices)]
        self._counts = [0] * self.buckets  # the whole window's histogram
        self._total = 0
        self._head: int | None = None  # the newest slice number seen

    # ------------------------------------------------------------------ recording

    def record(self, seconds: float, now: float) -> None:
        """Records one latency observed at `now` (O(1); not a checkpoint)."""
        if seconds >= self.lowest:
            index = int((math.log2(seconds) - self._log_low) * self._per_octave)
            if index >= self.buckets:
                index = self.buckets - 1
        elif seconds >= 0:
            index = 0
        else:  # negative or NaN
            return
        part = self._advance(now)
        part.counts[index] += 1
        part.total += 1
        if seconds < part.low:  # noqa: PLR1730 - a compare is cheaper than min()
            part.low = seconds
        if seconds > part.high:  # noqa: PLR1730
            part.high = seconds
        self._counts[index] += 1
        self._total += 1

    def _advance(self, now: float) -> _Slice:
        """Moves the window to `now`'s slice (clearing the ones that left) and returns it."""
        number = int(now // self.slice_seconds)
        head = self._head
        if head is None:
            self._head = head = number
        elif number > head:
            self._drop(head, number)
            self._head = head = number
        return self._ring[head % self.slices]

    def _drop(self, head: int, number: int) -> None:
        """Clears the slices after `head` up to `number`, taking them out of the window."""
        ring = self._ring
        if number - head >= self.slices:
            for part in ring:
                part.clear()
            self._counts[:] = [0] * self.buckets
            self._total = 0
            return
        counts = self._counts
        for step in range(head + 1, number + 1):
            old = ring[step % self.slices]
            if old.total:
                for index, count in enumerate(old.counts):
                    if count:
                        counts[index] -= count
                self._total -= old.total
                old.clear()

    # ------------------------------------------------------------------ reading

    def count(self, now: float) -> int:
        """Latencies recorded in the window ending at `now`."""
        self._advance(now)
        return self._total

    def quantile(self, q: float, now: float) -> float | None:
        """The `q` quantile (0 < q <= 1) of the window ending at `now` (None if empty).

        Raises:
            ValueError: `q` is not in (0, 1].
        """
        _check_q(q)
        self._advance(now)
        low = min(part.low for part in self._ring)
        high = max(part.high for part in self._ring)
        return self._quantile(self._counts, self._total, low, high, q)

    def series(self, now: float, q: float = 0.99) -> list[float | None]:
        """The `q` quantile of each slice of the window ending at `now`, oldest first
        (None for a slice without data): the points of a sparkline.

        Raises:
            ValueError: `q` is not in (0, 1].
        """
        _check_q(q)
        self._advance(now)
        head = self._head
        if head is None:
            return [None] * self.slices
        parts = [self._ring[step % self.slices] for step in range(head - self.slices + 1, head + 1)]
        return [self._quantile(p.counts, p.total, p.low, p.high, q) for p in parts]

    def _quantile(
        self, counts: list[int], total: int, low: float, high: float, q: float
    ) -> float | None:
        if not total:
            return None
        rank = math.ceil(q * total - 1e-9)  # the rank-th smallest value
        if rank >= total:
            return high
        if rank <= 1:
            return low
        index = bisect_left(list(accumulate(counts)), rank)
        if index == self.buckets - 1:  # the top bucket also holds values past `highest`
            return high
        middle: float = 2.0 ** (self._log_low + (index + 0.5) / self._per_octave)
        return min(max(middle, low), high)

    def __repr__(self) -> str:
        window = f"{self.slices} slices of {self.slice_seconds}s"
        return f"<LatencyRecorder {window}, {self._total} in the window>"


def _check_q(q: float) -> None:
    if not 0 < q <= 1:
        raise ValueError(f"q={q!r}: must be in (0, 1]")
