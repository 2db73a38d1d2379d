"""The deadline invariant, with the event loop's own lateness measured beside it.

On a loaded machine the event loop itself runs late: a task asked to wake at t wakes
at t + d, for every task alike, deadlines included. `LoopLateness` measures d all run
long with a probe task that sleeps `interval` over and over and records how late each
wake-up was. A call that ends after its deadline by more than the loop's lateness
over the same stretch of time (plus a small tolerance) is a real late answer: the
library kept it past its deadline. So the slack is never a guess: it is measured,
and a late answer cannot hide in it.
"""

from __future__ import annotations

import bisect

import anyio
import attrs


@attrs.define
class Overrun:
    """A call or turn that ended after its deadline."""

    what: str
    deadline: float
    ended: float
    explained: float = 0.0  # the loop's lateness over [deadline, ended]

    @property
    def late(self) -> float:
        return self.ended - self.deadline

    @property
    def unexplained(self) -> float:
        return self.late - self.explained


class LoopLateness:
    """Samples the loop's wake-up lateness; explains overruns with it."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self._due: list[float] = []  # when each sleep should have ended
        self._late: list[float] = []  # how late it ended

    async def run(self) -> None:
        """Samples until cancelled."""
        while True:
            due = anyio.current_time() + self.interval
            await anyio.sleep_until(due)
            self._due.append(due)
            self._late.append(anyio.current_time() - due)

    @property
    def worst(self) -> float:
        return max(self._late, default=0.0)

    def quantile(self, q: float) -> float:
        values = sorted(self._late)
        return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0

    def over(self, start: float, end: float) -> float:
        """The worst lateness of the wake-ups that were due in, or overlapped, [start, end]:
        how long the loop could not run anything in that stretch."""
        first = bisect.bisect_left(self._due, start - self.interval)
        worst = 0.0
        for index in range(first, len(self._due)):
            due = self._due[index]
            if due > end + self.interval:
                break
            if due + self._late[index] >= start:
                worst = max(worst, self._late[index])
        return worst

    def explain(self, overrun: Overrun) -> Overrun:
        """`overrun` with the loop's lateness over its stretch filled in."""
        overrun.explained = self.over(overrun.deadline, overrun.ended)
        return overrun
