"""Where rate-limiter state lives: the store protocols and the in-memory store.

A store keeps one small state tuple per key and applies the pure functions of the
limit configs (`actors.resilience._limit_algorithms`) atomically. The in-memory store
does it with plain dict operations (the event loop is single-threaded, so nothing can
interleave). A shared store (Redis) implements the same functions in a Lua script that
reads the *server's* clock, so many processes agree on one time line; it then ignores
the `now` it is given.

Keys are grouped: a limiter's keys all start with its *group* ``"<namespace>:<name>"``
(a `Limiter`'s one key is the group itself, a `MultiLimit`'s are
``"<group>:<limit>"``). A group is the unit of atomicity (one request's limits are
decided together; a clustered store keeps a group in one slot) and of holds (after a
rate-limit answer, nothing in the group is admitted until the hold ends).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import attrs

from actors.resilience._limit_algorithms import LimitConfig, LimitState

__all__ = [
    "LimitRequest",
    "LimiterStore",
    "MemoryLimiterStore",
    "SyncLimiterStore",
]

LimitRequest = tuple[str, LimitConfig, float]
"""One limit of a request: `(key, config, cost)`."""


@runtime_checkable
class LimiterStore(Protocol):
    """Keeps limiter state, possibly shared between processes (the interface Redis implements).

    Every method is atomic for the keys it touches; every key passed starts with
    `group`. A shared store uses its own clock and ignores `now` (except to turn the
    absolute `until` of `hold` into a duration); durations it returns are relative, so
    clocks need not agree.
    """

    async def decide(
        self, group: str, requests: Sequence[LimitRequest], *, now: float
    ) -> tuple[bool, float]:
        """Admits every `(key, config, cost)` or none; nothing while the group is held.

        Returns:
            `(admitted, retry_after)`: when refused, `retry_after` is the longest wait among
            the limits that refused and the group's hold (nothing was consumed).
        """
        ...

    async def charge(
        self, group: str, key: str, config: LimitConfig, cost: float, *, now: float
    ) -> None:
        """Consumes (or, when negative, refunds) `cost` without checking the limit."""
        ...

    async def wait_time(
        self, group: str, key: str, config: LimitConfig, cost: float, *, now: float
    ) -> float:
        """Seconds until `cost` could be admitted (0 when it could be now), hold included."""
        ...

    async def available(self, group: str, key: str, config: LimitConfig, *, now: float) -> float:
        """Units available now (ignoring a hold)."""
        ...

    async def resync(
        self, group: str, key: str, config: LimitConfig, remaining: float, *, now: float
    ) -> None:
        """Lowers the key's availability to at most `remaining` (from a server's headers)."""
        ...

    async def hold(self, group: str, until: float, *, now: float) -> None:
        """Admits nothing in `group` before `until` (loop time; a later hold wins)."""
        ...


@runtime_checkable
class SyncLimiterStore(LimiterStore, Protocol):
    """A store local to the process that can answer without suspending.

    Limiters use these methods on their success path (no await, no task, no lock).
    """

    def decide_nowait(
        self, group: str, requests: Sequence[LimitRequest], now: float
    ) -> tuple[bool, float]:
        """Synchronous `decide`."""
        ...

    def decide_one_nowait(
        self, group: str, key: str, config: LimitConfig, cost: float, now: float
    ) -> tuple[bool, float]:
        """Synchronous `decide` for a single limit (the hot path)."""
        ...

    def charge_nowait(self, key: str, config: LimitConfig, cost: float, now: float) -> None:
        """Synchronous `charge`."""
        ...

    def wait_time_nowait(
        self, group: str, key: str, config: LimitConfig, cost: float, now: float
    ) -> float:
        """Synchronous `wait_time`."""
        ...

    def available_nowait(self, key: str, config: LimitConfig, now: float) -> float:
        """Synchronous `available`."""
        ...

    def resync_nowait(self, key: str, config: LimitConfig, remaining: float, now: float) -> None:
        """Synchronous `resync`."""
        ...

    def hold_nowait(self, group: str, until: float) -> None:
        """Synchronous `hold`."""
        ...


@attrs.define(eq=False)
class MemoryLimiterStore:
    """Limiter state in a dict, for one process: one small tuple per key.

    State belongs to the store, not to a limiter object: a service actor that restarts
    and builds a new limiter on the same store and key keeps its rate limit (and its
    hold). Use it from one event loop (thread) only; keys are never expired (one small
    tuple per limit), holds are dropped once past.
    """

    _states: dict[str, LimitState] = attrs.field(factory=dict, init=False)
    _holds: dict[str, float] = attrs.field(factory=dict, init=False)

    def _held(self, group: str, now: float) -> float:
        """Seconds left of `group`'s hold (0 when none)."""
        until = self._holds.get(group)
        if until is None:
            return 0.0
        if until <= now:
            del self._holds[group]
            return 0.0
        return until - now

    def decide_one_nowait(
        self, group: str, key: str, config: LimitConfig, cost: float, now: float
    ) -> tuple[bool, float]:
        if self._holds:
            held = self._held(group, now)
            if held:
                return False, max(held, config.wait_time(self._states.get(key), now, cost))
        admitted, state, retry_after = config.decide(self._states.get(key), now, cost)
        if admitted:
            self._states[key] = state
        return admitted, retry_after

    def decide_nowait(
        self, group: str, requests: Sequence[LimitRequest], now: float
    ) -> tuple[bool, float]:
        states = self._states
        held = self._held(group, now) if self._holds else 0.0
        new: list[tuple[str, LimitState]] = []
        longest = held
        for key, config, cost in requests:
            admitted, state, retry_after = config.decide(states.get(key), now, cost)
            if admitted:
                new.append((key, state))
            elif retry_after > longest:
                longest = retry_after
        if held or len(new) != len(requests):
            return False, longest
        for key, state in new:
            states[key] = state
        return True, 0.0

    def charge_nowait(self, key: str, config: LimitConfig, cost: float, now: float) -> None:
        self._states[key] = config.charge(self._states.get(key), now, cost)

    def wait_time_nowait(
        self, group: str, key: str, config: LimitConfig, cost: float, now: float
    ) -> float:
        wait = config.wait_time(self._states.get(key), now, cost)
        return max(wait, self._held(group, now)) if self._holds else wait

    def available_nowait(self, key: str, config: LimitConfig, now: float) -> float:
        return config.available(self._states.get(key), now)

    def resync_nowait(self, key: str, config: LimitConfig, remaining: float, now: float) -> None:
        self._states[key] = config.resync(self._states.get(key), now, remaining)

    def hold_nowait(self, group: str, until: float) -> None:
        if until > self._holds.get(group, -float("inf")):
            self._holds[group] = until

    async def decide(
        self, group: str, requests: Sequence[LimitRequest], *, now: float
    ) -> tuple[bool, float]:
        """Same as `decide_nowait`; never suspends (not a checkpoint)."""
        return self.decide_nowait(group, requests, now)

    async def charge(
        self, group: str, key: str, config: LimitConfig, cost: float, *, now: float
    ) -> None:
        """Same as `charge_nowait`; never suspends (not a checkpoint)."""
        self.charge_nowait(key, config, cost, now)

    async def wait_time(
        self, group: str, key: str, config: LimitConfig, cost: float, *, now: float
    ) -> float:
        """Same as `wait_time_nowait`; never suspends (not a checkpoint)."""
        return self.wait_time_nowait(group, key, config, cost, now)

    async def available(self, group: str, key: str, config: LimitConfig, *, now: float) -> float:
        """Same as `available_nowait`; never suspends (not a checkpoint)."""
        return self.available_nowait(key, config, now)

    async def resync(
        self, group: str, key: str, config: LimitConfig, remaining: float, *, now: float
    ) -> None:
        """Same as `resync_nowait`; never suspends (not a checkpoint)."""
        self.resync_nowait(key, config, remaining, now)

    async def hold(self, group: str, until: float, *, now: float) -> None:
        """Same as `hold_nowait`; never suspends (not a checkpoint)."""
        self.hold_nowait(group, until)

    def clear(self) -> None:
        """Forgets every key and hold (every limit becomes full again)."""
        self._states.clear()
        self._holds.clear()
