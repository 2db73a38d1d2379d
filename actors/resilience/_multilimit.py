"""Several limits admitted together (requests/min AND tokens/min), with reserve-then-reconcile.

An LLM request's token cost is only known after the response: reserve an estimate
before sending, then `reconcile` with the actual usage (refunding or charging the
difference), and `sync_from_headers` with the provider's `x-ratelimit-*` headers so that
traffic from other clients of the same API key is accounted for.

Admission is all-or-nothing: when one limit refuses, no other limit is consumed. The
FIFO queue, deadlines and cancellation behave exactly as for `Limiter`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Final

import anyio
import attrs

from actors._errors import ConfigError
from actors._events import emit
from actors.resilience._limiter import (
    GCRA,
    LimitConfig,
    SlidingWindow,
    TokenBucket,
    _check_cost,
    _Gate,
    _sync_view,
)
from actors.resilience._limiter_store import LimiterStore, MemoryLimiterStore
from actors.resilience._retry_after import parse_duration

__all__ = [
    "HeaderLimits",
    "MultiLimit",
    "MultiLimitMetrics",
    "Reservation",
    "create_multi_limit",
]

_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@attrs.frozen(kw_only=True)
class HeaderLimits:
    """What a response's `x-ratelimit-*` headers said about one limit.

    Attributes:
        limit: `x-ratelimit-limit-<name>`, if present.
        remaining: `x-ratelimit-remaining-<name>`, if present.
        reset_after: `x-ratelimit-reset-<name>` in seconds (time until the limit is full
            again), if present.
    """

    limit: float | None
    remaining: float | None
    reset_after: float | None


@attrs.frozen(kw_only=True)
class MultiLimitMetrics:
    """A snapshot of a multi-limit's counters.

    Attributes:
        name: The multi-limit's name.
        admitted: Requests admitted (immediately or after waiting).
        admitted_cost: Units admitted per limit (before reconciliation).
        waited: Admitted requests that had to wait in the queue.
        rejected: Requests refused with `RateLimited` (or by `try_acquire`).
        total_wait_time: Seconds admitted requests spent waiting, summed.
        available: Units available now per limit; empty when the store is remote.
        queued: Requests waiting now.
    """

    name: str
    admitted: int
    admitted_cost: Mapping[str, float]
    waited: int
    rejected: int
    total_wait_time: float
    available: Mapping[str, float]
    queued: int


@attrs.define(eq=False)
class Reservation:
    """Units held for one request until its actual usage is known.

    Attributes:
        costs: The units currently charged per limit (updated by `reconcile`).
        released: True once `release` returned the units.
    """

    _multi: MultiLimit = attrs.field(alias="_multi")
    costs: dict[str, float]
    released: bool = False

    async def reconcile(self, **actual: float) -> None:
        """Corrects the charge to the actual usage: refunds or charges the difference.

        Limits not named keep their reserved cost. Charging more than is available puts
        the limit into debt (later requests wait longer); a refund never raises a limit
        above its capacity. Not a checkpoint with a local store; can be called again
        with a newer figure.

        Raises:
            ValueError: An unknown limit name, or a negative or non-finite value.
            RuntimeError: The reservation was released.
        """
        if self.released:
            raise RuntimeError("reservation already released")
        now = anyio.current_time()
        multi = self._multi
        for name, value in actual.items():
            multi._index(name)
            if isinstance(value, bool) or not (
                isinstance(value, int | float) and 0 <= value < math.inf
            ):
                raise ValueError(f"{name}={value!r}: usage must be a finite number >= 0")
        for name, value in actual.items():
            difference = value - self.costs[name]
            if difference:
                await multi._charge(name, difference, now)
            self.costs[name] = value
        multi._gate.wake_head()

    async def release(self) -> None:
        """Refunds every unit held: use it when the request never reached the service.

        Idempotent. Not a checkpoint with a local store; safe in a `finally` or
        cancellation handler. A request that did reach the service (even if it failed
        afterwards) should `reconcile` instead: the provider counted it.
        """
        if self.released:
            return
        self.released = True
        now = anyio.current_time()
        for name, cost in self.costs.items():
            if cost:
                await self._multi._charge(name, -cost, now)
        self._multi._gate.wake_head()


@attrs.define(eq=False)
class MultiLimit:
    """Named limits admitted together; create it with `create_multi_limit`.

    Costs are passed by limit name as keyword arguments (`requests=1, tokens=900`); an
    omitted limit costs 0.

    Attributes:
        name: The service name, used in keys, errors and events.
        limits: The limits by name.
        store: Where their state lives.
    """

    name: str
    limits: Mapping[str, LimitConfig]
    store: LimiterStore
    _gate: _Gate = attrs.field(alias="_gate")
    _names: tuple[str, ...] = attrs.field(alias="_names")

    def _index(self, name: str) -> int:
        try:
            return self._names.index(name)
        except ValueError:
            raise ValueError(
                f"{name!r} is not a limit of {self.name!r} (limits: {', '.join(self._names)})"
            ) from None

    def _costs(self, costs: Mapping[str, float]) -> tuple[float, ...]:
        values = [0.0] * len(self._names)
        for name, cost in costs.items():
            index = self._index(name)
            limit = self.limits[name].max_cost
            if not 0 <= cost <= limit:
                _check_cost(f"{self.name}:{name}", cost, limit)
            values[index] = cost
        return tuple(values)

    async def _charge(self, name: str, cost: float, now: float) -> None:
        key, config = self._gate.limits[self._index(name)]
        sync = self._gate.sync
        if sync is not None:
            sync.charge_nowait(key, config, cost, now)
        else:
            await self.store.charge(key, config, cost, now=now)

    async def acquire(self, *, deadline: float | None = None, **costs: float) -> None:
        """Waits until every named cost is admitted at once, in FIFO order.

        Semantics as `Limiter.acquire`: not a checkpoint when admitted at once; rejects
        with `RateLimited` at once when admission would come after `deadline` (`None`:
        the enclosing cancel scopes' deadline); cancellation while waiting consumes
        nothing. No limit is consumed unless all admit.

        Raises:
            RateLimited: Admission would come after the deadline.
            ValueError: Unknown limit name, or a cost that is negative or above capacity.
        """
        values = self._costs(costs)
        gate = self._gate
        sync = gate.sync
        if sync is not None and not gate.waiters:
            admitted, retry_after = sync.decide_nowait(gate.requests(values), anyio.current_time())
            if admitted:
                gate.record(values)
                return
            await gate.wait(values, deadline, retry_after)
            return
        await gate.wait(values, deadline, None)

    async def reserve(self, *, deadline: float | None = None, **costs: float) -> Reservation:
        """Acquires like `acquire` and returns a `Reservation` to reconcile or release.

        Raises:
            RateLimited: Admission would come after the deadline.
            ValueError: As for `acquire`.
        """
        await self.acquire(deadline=deadline, **costs)
        held = dict.fromkeys(self._names, 0.0)
        held.update(costs)
        return Reservation(_multi=self, costs=held)

    def try_acquire(self, **costs: float) -> bool:
        """Admits every named cost now if possible; never waits, never a checkpoint.

        Raises:
            ValueError: As for `acquire`.
            TypeError: The store is remote.
        """
        values = self._costs(costs)
        gate = self._gate
        if gate.sync is None:
            raise TypeError(f"limit {self.name!r}: try_acquire needs a local store")
        if not gate.waiters:
            admitted, _ = gate.sync.decide_nowait(gate.requests(values), anyio.current_time())
            if admitted:
                gate.record(values)
                return True
        gate.rejected += 1
        return False

    async def sync_from_headers(self, headers: Mapping[str, str]) -> dict[str, HeaderLimits]:
        """Lowers each limit to what the provider's `x-ratelimit-*` headers say remains.

        Reads `x-ratelimit-limit-<name>`, `x-ratelimit-remaining-<name>` and
        `x-ratelimit-reset-<name>` (OpenAI style; e.g. `-requests`, `-tokens`),
        case-insensitively. Only `remaining` changes local state, and only downwards:
        requests reserved here but not yet counted by the provider would otherwise be
        counted twice. A `limit` that differs from the configured capacity emits
        "limiter.header_mismatch" (warning). Malformed values are ignored. Not a
        checkpoint with a local store.

        Returns:
            What the headers said, per limit that had at least one header.
        """
        lowered = {key.lower(): value for key, value in headers.items()}
        now = anyio.current_time()
        seen: dict[str, HeaderLimits] = {}
        for name, (key, config) in zip(self._names, self._gate.limits, strict=True):
            limit = _number(lowered.get(f"x-ratelimit-limit-{name}"))
            remaining = _number(lowered.get(f"x-ratelimit-remaining-{name}"))
            reset_text = lowered.get(f"x-ratelimit-reset-{name}")
            reset_after = None if reset_text is None else parse_duration(reset_text)
            if limit is None and remaining is None and reset_after is None:
                continue
            seen[name] = HeaderLimits(limit=limit, remaining=remaining, reset_after=reset_after)
            if limit is not None and not math.isclose(limit, config.max_cost):
                emit(
                    "limiter.header_mismatch",
                    level="warning",
                    limiter=self.name,
                    limit=name,
                    configured=config.max_cost,
                    header=limit,
                )
            if remaining is not None:
                if self._gate.sync is not None:
                    self._gate.sync.resync_nowait(key, config, remaining, now)
                else:
                    await self.store.resync(key, config, remaining, now=now)
        return seen

    def metrics(self) -> MultiLimitMetrics:
        """A snapshot of the counters (never a checkpoint)."""
        gate = self._gate
        available: dict[str, float] = {}
        if gate.sync is not None:
            now = anyio.current_time()
            for name, (key, config) in zip(self._names, gate.limits, strict=True):
                available[name] = gate.sync.available_nowait(key, config, now)
        return MultiLimitMetrics(
            name=self.name,
            admitted=gate.admitted,
            admitted_cost=dict(zip(self._names, gate.admitted_cost, strict=True)),
            waited=gate.waited,
            rejected=gate.rejected,
            total_wait_time=gate.total_wait_time,
            available=available,
            queued=len(gate.waiters),
        )


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if value >= 0 and math.isfinite(value) else None


def create_multi_limit(
    limits: Mapping[str, LimitConfig],
    *,
    name: str,
    store: LimiterStore | None = None,
    namespace: str = "actors",
) -> MultiLimit:
    """Creates a multi-limit whose states live under ``"<namespace>:<name>:<limit>"``.

    Args:
        limits: The limits by name, e.g.
            `{"requests": TokenBucket.per_minute(500), "tokens": TokenBucket.per_minute(30_000)}`.
            Names are identifiers (they become keyword arguments) and match the suffix
            of the provider's `x-ratelimit-*-<name>` headers.
        name: The service name.
        store: The state store; a fresh `MemoryLimiterStore` when omitted.
        namespace: Key prefix separating applications sharing a store.

    Raises:
        ConfigError: No limits, a name that is not an identifier (or is "deadline"),
            a value that is not a limit configuration, or an empty `name`.
    """
    if not name:
        raise ConfigError("name", name, "must be a non-empty string")
    if not limits:
        raise ConfigError("limits", limits, "must name at least one limit")
    for limit_name, config in limits.items():
        if not isinstance(limit_name, str) or not _NAME.fullmatch(limit_name):
            raise ConfigError("limits", limit_name, "limit names must be identifiers")
        if limit_name == "deadline":
            raise ConfigError("limits", limit_name, "'deadline' is reserved")
        if not isinstance(config, TokenBucket | SlidingWindow | GCRA):
            raise ConfigError(
                f"limits.{limit_name}", config, "must be a TokenBucket, SlidingWindow or GCRA"
            )
    store = MemoryLimiterStore() if store is None else store
    names = tuple(limits)
    gate = _Gate(
        name=name,
        limits=tuple((f"{namespace}:{name}:{key}", limits[key]) for key in names),
        store=store,
        sync=_sync_view(store),
        labels=names,
    )
    return MultiLimit(name=name, limits=dict(limits), store=store, _gate=gate, _names=names)
