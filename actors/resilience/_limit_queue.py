"""Admission for one or several limits decided together: FIFO waiters, deadlines, holds,
cold start and counters (the machinery shared by `Limiter` and `MultiLimit`).

Admission is FIFO: while anyone waits, later callers queue behind them even if their
cost would fit, so a large request is never starved by a stream of small ones. The head
of the queue sleeps exactly until the store says its cost fits, then takes it and wakes
the next waiter. A *hold* (after a provider answered 429 with `retry-after`) admits
nothing before its end and refuses at once every waiter whose deadline comes first. A
*cold start* (`ColdStart`) lets only a few reservations out at once until the provider's
first answer has told the limit how much room is really left.
"""

from __future__ import annotations

import math
import sys
from asyncio import _get_running_loop
from asyncio import sleep as _asyncio_sleep
from collections import deque
from collections.abc import Awaitable
from typing import Any, Final, NoReturn

import anyio
import attrs

from actors._clock import now as _now
from actors._errors import RateLimited
from actors._events import emit
from actors._tracing import add_event
from actors._validate import positive_int
from actors.resilience._limit_algorithms import LimitConfig
from actors.resilience._limiter_store import LimiterStore, LimitRequest, SyncLimiterStore

__all__ = ["ColdStart", "Gate", "check_cost", "checkpoint"]

_DEADLINE_SLACK: Final = 1e-9
"""Seconds by which float rounding may push an admission exactly at the deadline past it."""

_MIN_SLEEP: Final = 1e-9
"""Shortest sleep of a waiting head, so rounding can never make it spin."""


def checkpoint() -> Awaitable[None]:
    """A schedule point and cancellation point: the cheapest real one of each backend.

    `asyncio.sleep(0)` on asyncio (what `anyio.lowlevel.checkpoint` awaits there, without
    anyio's backend lookup), `trio.lowlevel.checkpoint()` on trio.
    """
    if _get_running_loop() is not None:
        return _asyncio_sleep(0)
    trio: Any = sys.modules["trio"]
    return trio.lowlevel.checkpoint()  # type: ignore[no-any-return]


@attrs.frozen(kw_only=True)
class ColdStart:
    """How a limit behaves before it has heard from the provider (opt-in).

    A limit starts full, but the provider may already be at its limit (other clients of
    the same API key, a restart). While *learning*, at most `outstanding` reservations
    are held at once; others wait in FIFO order within their deadline. Learning ends
    at the first `sync_from_headers` that carries a `remaining` figure (the limit now
    knows the real room), or once `learn_after` reservations were reconciled without
    one (the provider sends no headers). Plain `acquire` calls are not held back.

    Attributes:
        outstanding: Reservations held at once while learning (>= 1).
        learn_after: Reconciled reservations after which learning ends anyway (>= 1).
    """

    outstanding: int = attrs.field(default=1, validator=positive_int)
    learn_after: int = attrs.field(default=3, validator=positive_int)


def check_cost(name: str, cost: float, capacity: float) -> NoReturn:
    """Raises ValueError for a cost that is negative, not finite, or larger than capacity."""
    if isinstance(cost, bool) or not isinstance(cost, int | float) or math.isnan(cost):
        raise ValueError(f"cost={cost!r}: must be a number")
    if cost < 0:
        raise ValueError(f"cost={cost!r}: must be >= 0")
    raise ValueError(
        f"cost={cost!r} exceeds the capacity of limit {name!r} ({capacity:g}); "
        "it could never be admitted"
    )


class _Waiter:
    __slots__ = ("costs", "deadline", "ready", "refused")

    def __init__(self, costs: tuple[float, ...], deadline: float) -> None:
        self.costs = costs
        self.deadline = deadline
        self.ready = anyio.Event()
        self.refused: float | None = None  # set by a hold: refuse with this retry_after


@attrs.define(eq=False)
class Gate:
    """The FIFO queue, deadlines, hold, cold start and counters of one group of limits.

    Attributes:
        name: The limiter's name (errors and events).
        group: The store group (``"<namespace>:<name>"``).
        limits: `(key, config)` per limit, in label order.
        labels: The limits' names (`("cost",)` for a single `Limiter`).
    """

    name: str
    group: str
    limits: tuple[tuple[str, LimitConfig], ...]
    labels: tuple[str, ...]
    store: LimiterStore
    cold: ColdStart | None = None
    sync: SyncLimiterStore | None = attrs.field(init=False)
    waiters: deque[_Waiter] = attrs.field(factory=deque, init=False)
    queued: list[float] = attrs.field(init=False)
    kick: anyio.Event | None = attrs.field(default=None, init=False)
    held_until: float = attrs.field(default=-math.inf, init=False)
    learning: bool = attrs.field(init=False)
    outstanding: int = attrs.field(default=0, init=False)
    settled: int = attrs.field(default=0, init=False)
    admitted: int = attrs.field(default=0, init=False)
    admitted_cost: list[float] = attrs.field(init=False)
    waited: int = attrs.field(default=0, init=False)
    rejected: int = attrs.field(default=0, init=False)
    total_wait_time: float = attrs.field(default=0.0, init=False)

    def __attrs_post_init__(self) -> None:
        self.sync = self.store if isinstance(self.store, SyncLimiterStore) else None
        self.queued = [0.0] * len(self.limits)
        self.admitted_cost = [0.0] * len(self.limits)
        self.learning = self.cold is not None

    # ------------------------------------------------------------------ bookkeeping

    def index(self, label: str) -> int:
        """The position of limit `label`; ValueError naming the known ones otherwise."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise ValueError(
                f"{label!r} is not a limit of {self.name!r} (limits: {', '.join(self.labels)})"
            ) from None

    def requests(self, costs: tuple[float, ...]) -> list[LimitRequest]:
        return [(key, config, cost) for (key, config), cost in zip(self.limits, costs, strict=True)]

    def record(self, costs: tuple[float, ...], reserving: bool) -> bool:
        """Counts an admission; True when it is a reservation held against the cold start."""
        self.admitted += 1
        for index, cost in enumerate(costs):
            self.admitted_cost[index] += cost
        if reserving and self.learning:
            self.outstanding += 1
            return True
        return False

    def cold_blocked(self, reserving: bool) -> bool:
        """Whether a reservation must wait for the cold start (never for plain acquires)."""
        cold = self.cold
        return (
            reserving
            and cold is not None
            and self.learning
            and self.outstanding >= cold.outstanding
        )

    def settle(self, counted: bool, reconciled: bool) -> None:
        """A reservation was reconciled (the provider answered) or released."""
        if counted and self.outstanding:
            self.outstanding -= 1
        if reconciled and self.learning:
            self.settled += 1
            assert self.cold is not None
            if self.settled >= self.cold.learn_after:
                self.learned()
        self.wake_head()

    def learned(self) -> None:
        """Ends the cold start: the limit now knows the provider's real room."""
        if self.learning:
            self.learning = False
            self.outstanding = 0
            self.wake_head()

    def reject(self, costs: tuple[float, ...], retry_after: float) -> RateLimited:
        self.rejected += 1
        emit(
            "limiter.rejected",
            level="debug",
            limiter=self.name,
            cost=costs[0] if len(costs) == 1 else dict(zip(self.labels, costs, strict=True)),
            retry_after=retry_after,
        )
        add_event(
            "actorvisor.limiter.rejected",
            {"actorvisor.limiter": self.name, "actorvisor.limiter.retry_after": retry_after},
        )
        return RateLimited(self.name, retry_after)

    def room(self, now: float) -> dict[str, float]:
        """Units each limit admits at `now` (empty with a remote store). Reads immutable
        state only: a metric reader's thread may ask, given the loop's time."""
        sync = self.sync
        if sync is None:
            return {}
        return {
            label: sync.available_nowait(key, config, now)
            for label, (key, config) in zip(self.labels, self.limits, strict=True)
        }

    def wake_head(self) -> None:
        """Lets a sleeping head waiter retry now (after a refund, resync or settle)."""
        if self.kick is not None:
            self.kick.set()

    # ------------------------------------------------------------------ store access

    def admit_nowait(self, costs: tuple[float, ...], now: float, reserving: bool) -> bool | None:
        """The synchronous fast path: `None` when it cannot decide without waiting (a remote
        store, waiters, a hold, a cold start), else whether the local store admitted."""
        sync = self.sync
        if sync is None or self.waiters or now < self.held_until or self.cold_blocked(reserving):
            return None
        admitted, _ = sync.decide_nowait(self.group, self.requests(costs), now)
        return admitted

    async def decide(
        self, costs: tuple[float, ...], now: float, reserving: bool
    ) -> tuple[bool, float | None]:
        """`(admitted, wait)`; `wait` is None while a cold start holds reservations back."""
        if now < self.held_until:
            return False, self.held_until - now
        if self.cold_blocked(reserving):
            return False, None
        if self.sync is not None:
            return self.sync.decide_nowait(self.group, self.requests(costs), now)
        if not (reserving and self.learning):
            return await self.store.decide(self.group, self.requests(costs), now=now)
        # A remote store answers after an await: the reservation is held against the
        # cold start meanwhile, so that concurrent callers do not all pass the check
        # above before any of them is counted. `record` counts it again when admitted
        # (nothing awaits in between).
        self.outstanding += 1
        try:
            return await self.store.decide(self.group, self.requests(costs), now=now)
        finally:
            if self.outstanding:  # (a cold start that ended meanwhile reset it to 0)
                self.outstanding -= 1

    async def estimate(
        self, costs: tuple[float, ...], now: float, ahead: list[float], reserving: bool
    ) -> float | None:
        """Seconds until `costs` could be admitted behind `ahead` units already queued
        (None: unknown, during a cold start)."""
        if reserving and self.learning:
            return None
        longest = max(0.0, self.held_until - now)
        for (key, config), cost, before in zip(self.limits, costs, ahead, strict=True):
            total = cost + before
            if self.sync is not None:
                wait = self.sync.wait_time_nowait(self.group, key, config, total, now)
            else:
                wait = await self.store.wait_time(self.group, key, config, total, now=now)
            longest = max(longest, wait)
        return longest

    async def charge(self, index: int, cost: float, now: float) -> None:
        key, config = self.limits[index]
        if self.sync is not None:
            self.sync.charge_nowait(key, config, cost, now)
        else:
            await self.store.charge(self.group, key, config, cost, now=now)

    async def resync(self, index: int, remaining: float, now: float) -> None:
        key, config = self.limits[index]
        if self.sync is not None:
            self.sync.resync_nowait(key, config, remaining, now)
        else:
            await self.store.resync(self.group, key, config, remaining, now=now)
        self.wake_head()

    async def hold(self, until: float) -> None:
        """Admits nothing before `until`; refuses at once the waiters whose deadline is
        before it; shares the hold through the store."""
        if isinstance(until, bool) or not (isinstance(until, int | float) and math.isfinite(until)):
            raise ValueError(f"until={until!r}: must be a finite loop time")
        now = _now()
        if until <= now:
            return
        if until > self.held_until:
            self.held_until = until
            emit("limiter.held", level="info", limiter=self.name, seconds=until - now)
        for waiter in self.waiters:
            if waiter.deadline + _DEADLINE_SLACK < until:
                waiter.refused = until - now
                waiter.ready.set()
        self.wake_head()
        if self.sync is not None:
            self.sync.hold_nowait(self.group, until)
        else:
            await self.store.hold(self.group, until, now=now)

    # ------------------------------------------------------------------ waiting

    async def acquire(
        self, costs: tuple[float, ...], deadline: float | None, reserving: bool
    ) -> bool:
        """Admits `costs` in FIFO order, or raises `RateLimited` once the deadline is hopeless.

        Always a checkpoint (before anything is decided, so a cancellation there consumes
        nothing). Returns whether the admission counts against a cold start.
        """
        await checkpoint()
        now = _now()
        sync = self.sync
        if (
            sync is not None
            and not self.waiters
            and now >= self.held_until
            and not self.cold_blocked(reserving)
        ):
            admitted, wait = sync.decide_nowait(self.group, self.requests(costs), now)
            if admitted:
                return self.record(costs, reserving)
            return await self._refused(costs, deadline, reserving, now, wait)
        return await self.wait(costs, deadline, reserving, now)

    async def wait(
        self, costs: tuple[float, ...], deadline: float | None, reserving: bool, now: float
    ) -> bool:
        """`acquire` after its checkpoint and fast path (which found no room at `now`)."""
        wait: float | None
        if not self.waiters:
            admitted, wait = await self.decide(costs, now, reserving)
            if admitted:
                return self.record(costs, reserving)
        else:
            wait = await self.estimate(costs, now, self.queued, reserving)
        return await self._refused(costs, deadline, reserving, now, wait)

    async def _refused(
        self,
        costs: tuple[float, ...],
        deadline: float | None,
        reserving: bool,
        now: float,
        wait: float | None,
    ) -> bool:
        """Raises `RateLimited` at once if `wait` ends after the deadline, else queues."""
        if deadline is None:
            deadline = anyio.current_effective_deadline()
        if wait is not None and now + wait > deadline + _DEADLINE_SLACK:
            raise self.reject(costs, wait)
        return await self._queue(costs, deadline, reserving, now, wait)

    async def _queue(
        self,
        costs: tuple[float, ...],
        deadline: float,
        reserving: bool,
        start: float,
        wait: float | None,
    ) -> bool:
        waiter = _Waiter(costs, deadline)
        self.waiters.append(waiter)
        for index, cost in enumerate(costs):
            self.queued[index] += cost
        # At the head from the start, the first wait is already known: sleep it first.
        known = self.waiters[0] is waiter
        try:
            if not known:
                with anyio.move_on_at(deadline):
                    await waiter.ready.wait()
                if waiter.refused is not None:
                    raise self.reject(costs, waiter.refused)
                if not waiter.ready.is_set():
                    raise self.reject(costs, await self._estimate_for(waiter, reserving) or 0.0)
            while True:
                if not known:
                    now = _now()
                    admitted, wait = await self.decide(costs, now, reserving)
                    if admitted:
                        self.waited += 1
                        self.total_wait_time += now - start
                        add_event(
                            "actorvisor.limiter.waited",
                            {
                                "actorvisor.limiter": self.name,
                                "actorvisor.limiter.wait": now - start,
                            },
                        )
                        return self.record(costs, reserving)
                    if wait is not None and now + wait > deadline + _DEADLINE_SLACK:
                        raise self.reject(costs, wait)
                known = False
                kick = self.kick = anyio.Event()
                if wait is None:  # a cold start: until a reservation settles, or the deadline
                    with anyio.move_on_at(deadline):
                        await kick.wait()
                    if not kick.is_set():
                        raise self.reject(costs, 0.0)
                else:
                    with anyio.move_on_after(max(wait, _MIN_SLEEP)):
                        await kick.wait()
                if waiter.refused is not None:
                    raise self.reject(costs, waiter.refused)
        finally:
            self._leave(waiter)

    async def _estimate_for(self, waiter: _Waiter, reserving: bool) -> float | None:
        ahead = [0.0] * len(waiter.costs)
        for other in self.waiters:
            if other is waiter:
                break
            for index, cost in enumerate(other.costs):
                ahead[index] += cost
        return await self.estimate(waiter.costs, _now(), ahead, reserving)

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
