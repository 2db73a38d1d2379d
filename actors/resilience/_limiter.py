"""The rate limiter of one service: one limit behind the FIFO gate.

The algorithms live in `_limit_algorithms`, the waiting queue in `_limit_queue`, the
state in a `LimiterStore`. A `Limiter` adds the API: `acquire` (always a checkpoint),
`try_acquire` and `reserve_nowait` (synchronous fast paths, never checkpoints),
`reserve` (reserve-then-reconcile), `hold_until` and metrics.
"""

from __future__ import annotations

import math

import attrs

from actors._clock import now as _now
from actors._errors import ConfigError
from actors._validate import check_name
from actors.resilience._limit_algorithms import (
    GCRA,
    LIMIT_CONFIGS,
    LimitConfig,
    RateLimit,
    SlidingWindow,
    TokenBucket,
)
from actors.resilience._limit_queue import ColdStart, Gate, check_cost, checkpoint
from actors.resilience._limiter_store import LimiterStore, MemoryLimiterStore
from actors.resilience._reservation import Reservation

# The algorithm names are re-exported for modules that still import them from here.
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
        key: The store key holding its state (also its store group).
        store: Where the state lives.
    """

    name: str
    config: LimitConfig
    key: str
    store: LimiterStore
    _gate: Gate = attrs.field(alias="_gate")
    _max_cost: float = attrs.field(alias="_max_cost")

    def _check(self, cost: float) -> None:
        if not 0 <= cost <= self._max_cost:
            check_cost(self.name, cost, self._max_cost)

    async def acquire(self, cost: float = 1, *, deadline: float | None = None) -> None:
        """Waits until `cost` units are admitted, in FIFO order with other waiters.

        Always a checkpoint, admitted or refused, whatever the store (the schedule point
        comes first, so a cancellation there consumes nothing). If the wait needed
        (including everyone queued ahead, and a hold) would end after `deadline`, raises
        `RateLimited` at once instead of sleeping to fail. Cancellation while waiting
        removes this waiter: nothing is consumed and the next waiter proceeds.

        Args:
            cost: Units to consume (>= 0, at most the limit's capacity).
            deadline: Absolute `anyio.current_time()` by which admission must happen;
                `None` uses the enclosing cancel scopes' deadline (none: wait as needed).

        Raises:
            RateLimited: Admission would come after the deadline; `retry_after` is the
                estimated wait.
            ValueError: `cost` is negative, not a number, or above the capacity.
        """
        self._check(cost)
        await checkpoint()
        now = _now()
        if not self._admit_now(cost, now):
            await self._gate.wait((cost,), deadline, False, now)

    def try_acquire(self, cost: float = 1) -> bool:
        """Admits `cost` units now if possible, without waiting; never a checkpoint.

        Returns False (and counts a rejection) when the units are not available, when
        other callers are already waiting (they go first) or during a hold. Needs a
        local store; with a remote one use `await acquire(cost, deadline=anyio.current_time())`.

        Raises:
            ValueError: As for `acquire`.
            TypeError: The store is remote (cannot answer without awaiting).
        """
        self._check(cost)
        if self._gate.sync is None:
            raise TypeError(f"limiter {self.name!r}: try_acquire needs a local store")
        if self._admit_now(cost, _now()):
            return True
        self._gate.rejected += 1
        return False

    def _admit_now(self, cost: float, now: float) -> bool:
        """Admits `cost` (already checked) at `now` if nobody waits, nothing holds the
        limit and a local store has the units; counts no refusal. Never a checkpoint.
        """
        gate = self._gate
        sync = gate.sync
        if sync is None or gate.waiters or now < gate.held_until:
            return False
        admitted, _ = sync.decide_one_nowait(gate.group, self.key, self.config, cost, now)
        if admitted:
            gate.admitted += 1
            gate.admitted_cost[0] += cost
        return admitted

    def reserve_nowait(self, cost: float, now: float) -> Reservation | None:
        """The synchronous fast path of `reserve`: never waits, never a checkpoint.

        Returns a `Reservation` when the units are admitted at once (nobody waits, no hold
        or cold start holds it back, a local store has them), else `None` (not counted as
        a refusal): the caller then awaits `reserve`, which waits or refuses.

        Args:
            cost: Units to reserve (checked as for `acquire`).
            now: The loop's current time (`actors._clock.now()`), read once by the caller.

        Raises:
            ValueError: As for `acquire`.
        """
        self._check(cost)
        gate = self._gate
        if gate.cold_blocked(True) or not self._admit_now(cost, now):
            return None
        counted = False
        if gate.learning:
            gate.outstanding += 1
            counted = True
        return Reservation(gate, (cost,), counted)

    async def reserve(self, cost: float = 1, *, deadline: float | None = None) -> Reservation:
        """Acquires like `acquire` and returns a `Reservation` to reconcile or release.

        Always a checkpoint. Cancellation while waiting reserves nothing.

        Raises:
            RateLimited: Admission would come after the deadline.
            ValueError: As for `acquire`.
        """
        self._check(cost)
        counted = await self._gate.acquire((cost,), deadline, True)
        return Reservation(self._gate, (cost,), counted)

    async def hold_until(self, when: float) -> None:
        """Admits nothing before `when` (absolute loop time), e.g. after a 429 with
        `retry-after`.

        Waiters whose deadline is before `when` are refused at once with
        `RateLimited(retry_after=when - now)`; later ones wait for it. The hold is kept in
        the store too, so limiters sharing it (replicas on Redis) all hold. A later
        `when` extends a hold, an earlier one never shortens it. Not a checkpoint with a
        local store.

        Raises:
            ValueError: `when` is not a finite number.
        """
        await self._gate.hold(when)

    async def refund(self, cost: float) -> None:
        """Returns `cost` units that were acquired but not used (never above capacity).

        Not a checkpoint with a local store. A waiting head is woken to retry.

        Raises:
            ValueError: `cost` is negative or not a finite number.
        """
        if isinstance(cost, bool) or not (isinstance(cost, int | float) and 0 <= cost < math.inf):
            raise ValueError(f"cost={cost!r}: a refund must be a finite number >= 0")
        await self._gate.charge(0, -cost, _now())
        self._gate.wake_head()

    @property
    def cold_start(self) -> ColdStart | None:
        """How this limit learns before opening the tap (None: it starts open)."""
        return self._gate.cold

    @property
    def learning(self) -> bool:
        """Whether a cold start still holds reservations back (see `ColdStart`)."""
        return self._gate.learning

    def metrics(self) -> LimiterMetrics:
        """A snapshot of the counters (never a checkpoint)."""
        gate = self._gate
        available = None
        if gate.sync is not None:
            available = gate.sync.available_nowait(self.key, self.config, _now())
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


def create_limiter(
    config: LimitConfig,
    *,
    name: str,
    store: LimiterStore | None = None,
    namespace: str = "actors",
    cold_start: ColdStart | None = None,
) -> Limiter:
    """Creates a limiter whose state lives in `store` under ``"<namespace>:<name>"``.

    Limiters built on the same store, namespace and name share one limit (that is how a
    restarted service actor keeps its rate limit: the store outlives the actor).

    Args:
        config: The limit (`TokenBucket`, `SlidingWindow` or `GCRA`).
        name: The service (or limit) name; used in the key, errors and events.
        store: The state store; a fresh `MemoryLimiterStore` when omitted.
        namespace: Key prefix separating applications sharing a store.
        cold_start: Hold reservations back until the limit has learned the provider's
            real room (see `ColdStart`); `None` (the default) starts with the tap open.

    Raises:
        ConfigError: `config` is not a limit configuration, or `name` is empty.
    """
    if not isinstance(config, LIMIT_CONFIGS):
        raise ConfigError("config", config, "must be a TokenBucket, SlidingWindow or GCRA")
    check_name("name", name)
    if cold_start is not None and not isinstance(cold_start, ColdStart):
        raise ConfigError("cold_start", cold_start, "must be a ColdStart or None")
    store = MemoryLimiterStore() if store is None else store
    key = f"{namespace}:{name}"
    gate = Gate(
        name=name,
        group=key,
        limits=((key, config),),
        labels=("cost",),
        store=store,
        cold=cold_start,
    )
    return Limiter(
        name=name, config=config, key=key, store=store, _gate=gate, _max_cost=config.max_cost
    )
