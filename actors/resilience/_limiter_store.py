"""Where rate-limiter state lives: the store protocols and the in-memory store.

A limit's algorithm is a set of *pure functions* of `(state, now, cost)` (see
`LimitAlgorithm`); a store only keeps one small state tuple per key and applies those
functions atomically. The in-memory store does it with plain dict operations (the event
loop is single-threaded, so nothing can interleave). A shared store (Redis, issue 7)
implements the same functions in a Lua script that reads the *server's* clock, so many
processes agree on one time line; it then ignores the `now` it is given.

Keys are namespaced as ``"<namespace>:<service>:<limit>"`` by the limiters, so one
store can hold the limits of many services (and of many applications).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeAlias, runtime_checkable

import attrs

__all__ = [
    "LimitAlgorithm",
    "LimitState",
    "LimiterStore",
    "MemoryLimiterStore",
    "SyncLimiterStore",
]

LimitState: TypeAlias = tuple[float, ...]
"""An algorithm's state for one key: a few floats (O(1) per key, whatever the traffic)."""


class LimitAlgorithm(Protocol):
    """The pure functions a limit configuration provides (token bucket, sliding window, GCRA).

    Every function takes the stored state (`None` for a key never seen: a full limit) and
    the current time in seconds, and returns a new state without mutating anything, so a
    store can apply several of them and commit all or none.
    """

    @property
    def max_cost(self) -> float:
        """The largest cost one request may ask for (units): the capacity."""
        ...

    @property
    def mean_rate(self) -> float:
        """The long-run admission rate in units per second."""
        ...

    def decide(
        self, state: LimitState | None, now: float, cost: float
    ) -> tuple[bool, LimitState, float]:
        """Tries to admit `cost`: `(admitted, new_state, retry_after)` (0 when admitted)."""
        ...

    def charge(self, state: LimitState | None, now: float, cost: float) -> LimitState:
        """Consumes `cost` unconditionally (may go into debt); a negative cost refunds."""
        ...

    def wait_time(self, state: LimitState | None, now: float, cost: float) -> float:
        """Seconds until `cost` could be admitted, extrapolated when cost exceeds capacity."""
        ...

    def available(self, state: LimitState | None, now: float) -> float:
        """Units that could be admitted right now (never negative)."""
        ...

    def resync(self, state: LimitState | None, now: float, remaining: float) -> LimitState:
        """Lowers the state so that at most `remaining` units are available now."""
        ...


@runtime_checkable
class LimiterStore(Protocol):
    """Keeps limiter state, possibly shared between processes (the interface Redis implements).

    Every method is atomic for the keys it touches. A shared store uses its own clock and
    ignores `now`; durations it returns are relative, so clocks need not agree.
    """

    async def decide(
        self, requests: Sequence[tuple[str, LimitAlgorithm, float]], *, now: float
    ) -> tuple[bool, float]:
        """Admits every `(key, algorithm, cost)` or none.

        Returns:
            `(admitted, retry_after)`: when refused, `retry_after` is the longest wait among
            the limits that refused (nothing was consumed).
        """
        ...

    async def charge(self, key: str, algorithm: LimitAlgorithm, cost: float, *, now: float) -> None:
        """Consumes (or, when negative, refunds) `cost` without checking the limit."""
        ...

    async def wait_time(
        self, key: str, algorithm: LimitAlgorithm, cost: float, *, now: float
    ) -> float:
        """Seconds until `cost` could be admitted (0 when it could be now)."""
        ...

    async def available(self, key: str, algorithm: LimitAlgorithm, *, now: float) -> float:
        """Units available now."""
        ...

    async def resync(
        self, key: str, algorithm: LimitAlgorithm, remaining: float, *, now: float
    ) -> None:
        """Lowers the key's availability to at most `remaining` (from a server's headers)."""
        ...


@runtime_checkable
class SyncLimiterStore(LimiterStore, Protocol):
    """A store local to the process that can answer without suspending.

    Limiters use these methods on their success path (no await, no task, no lock).
    """

    def decide_nowait(
        self, requests: Sequence[tuple[str, LimitAlgorithm, float]], now: float
    ) -> tuple[bool, float]:
        """Synchronous `decide`."""
        ...

    def decide_one_nowait(
        self, key: str, algorithm: LimitAlgorithm, cost: float, now: float
    ) -> tuple[bool, float]:
        """Synchronous `decide` for a single limit (the hot path)."""
        ...

    def charge_nowait(self, key: str, algorithm: LimitAlgorithm, cost: float, now: float) -> None:
        """Synchronous `charge`."""
        ...

    def wait_time_nowait(
        self, key: str, algorithm: LimitAlgorithm, cost: float, now: float
    ) -> float:
        """Synchronous `wait_time`."""
        ...

    def available_nowait(self, key: str, algorithm: LimitAlgorithm, now: float) -> float:
        """Synchronous `available`."""
        ...

    def resync_nowait(
        self, key: str, algorithm: LimitAlgorithm, remaining: float, now: float
    ) -> None:
        """Synchronous `resync`."""
        ...


@attrs.define(eq=False)
class MemoryLimiterStore:
    """Limiter state in a dict, for one process: one small tuple per key.

    State belongs to the store, not to a limiter object: a service actor that restarts
    and builds a new limiter on the same store and key keeps its rate limit. Use it from
    one event loop (thread) only; keys are never expired (one small tuple per limit).
    """

    _states: dict[str, LimitState] = attrs.field(factory=dict, init=False)

    def decide_one_nowait(
        self, key: str, algorithm: LimitAlgorithm, cost: float, now: float
    ) -> tuple[bool, float]:
        admitted, state, retry_after = algorithm.decide(self._states.get(key), now, cost)
        if admitted:
            self._states[key] = state
        return admitted, retry_after

    def decide_nowait(
        self, requests: Sequence[tuple[str, LimitAlgorithm, float]], now: float
    ) -> tuple[bool, float]:
        states = self._states
        new: list[tuple[str, LimitState]] = []
        longest = 0.0
        for key, algorithm, cost in requests:
            admitted, state, retry_after = algorithm.decide(states.get(key), now, cost)
            if admitted:
                new.append((key, state))
            elif retry_after > longest:
                longest = retry_after
        if len(new) != len(requests):
            return False, longest
        for key, state in new:
            states[key] = state
        return True, 0.0

    def charge_nowait(self, key: str, algorithm: LimitAlgorithm, cost: float, now: float) -> None:
        self._states[key] = algorithm.charge(self._states.get(key), now, cost)

    def wait_time_nowait(
        self, key: str, algorithm: LimitAlgorithm, cost: float, now: float
    ) -> float:
        return algorithm.wait_time(self._states.get(key), now, cost)

    def available_nowait(self, key: str, algorithm: LimitAlgorithm, now: float) -> float:
        return algorithm.available(self._states.get(key), now)

    def resync_nowait(
        self, key: str, algorithm: LimitAlgorithm, remaining: float, now: float
    ) -> None:
        self._states[key] = algorithm.resync(self._states.get(key), now, remaining)

    async def decide(
        self, requests: Sequence[tuple[str, LimitAlgorithm, float]], *, now: float
    ) -> tuple[bool, float]:
        """Same as `decide_nowait`; never suspends (not a checkpoint)."""
        return self.decide_nowait(requests, now)

    async def charge(self, key: str, algorithm: LimitAlgorithm, cost: float, *, now: float) -> None:
        """Same as `charge_nowait`; never suspends (not a checkpoint)."""
        self.charge_nowait(key, algorithm, cost, now)

    async def wait_time(
        self, key: str, algorithm: LimitAlgorithm, cost: float, *, now: float
    ) -> float:
        """Same as `wait_time_nowait`; never suspends (not a checkpoint)."""
        return self.wait_time_nowait(key, algorithm, cost, now)

    async def available(self, key: str, algorithm: LimitAlgorithm, *, now: float) -> float:
        """Same as `available_nowait`; never suspends (not a checkpoint)."""
        return self.available_nowait(key, algorithm, now)

    async def resync(
        self, key: str, algorithm: LimitAlgorithm, remaining: float, *, now: float
    ) -> None:
        """Same as `resync_nowait`; never suspends (not a checkpoint)."""
        self.resync_nowait(key, algorithm, remaining, now)

    def clear(self) -> None:
        """Forgets every key (every limit becomes full again)."""
        self._states.clear()
