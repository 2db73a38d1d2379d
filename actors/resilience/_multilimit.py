"""Several limits admitted together (requests/min AND tokens/min), with reserve-then-reconcile.

An LLM request's token cost is only known after the response: reserve an estimate
before sending, then `reconcile` with the actual usage (refunding or charging the
difference), and `sync_from_headers` with the provider's rate-limit headers so that
traffic from other clients of the same API key is accounted for.

Admission is all-or-nothing: when one limit refuses, no other limit is consumed. The
FIFO queue, deadlines, holds and cancellation behave exactly as for `Limiter`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

import attrs

from actors._clock import now as _now
from actors._errors import ConfigError
from actors._events import emit
from actors._validate import check_name
from actors.resilience._limit_algorithms import LIMIT_CONFIGS, LimitConfig
from actors.resilience._limit_headers import HeaderLimits, read_rate_headers
from actors.resilience._limit_queue import ColdStart, Gate, check_cost
from actors.resilience._limiter_store import LimiterStore, MemoryLimiterStore
from actors.resilience._reservation import Reservation

__all__ = [
    "HeaderLimits",
    "MultiLimit",
    "MultiLimitMetrics",
    "Reservation",
    "create_multi_limit",
]

_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
    _gate: Gate = attrs.field(alias="_gate")

    @property
    def learning(self) -> bool:
        """Whether a cold start still holds reservations back (see `ColdStart`)."""
        return self._gate.learning

    def _costs(self, costs: Mapping[str, float]) -> tuple[float, ...]:
        gate = self._gate
        values = [0.0] * len(gate.labels)
        for name, cost in costs.items():
            index = gate.index(name)
            limit = gate.limits[index][1].max_cost
            if not 0 <= cost <= limit:
                check_cost(f"{self.name}:{name}", cost, limit)
            values[index] = cost
        return tuple(values)

    async def acquire(self, *, deadline: float | None = None, **costs: float) -> None:
        """Waits until every named cost is admitted at once, in FIFO order.

        Semantics as `Limiter.acquire`: always a checkpoint; rejects with `RateLimited`
        at once when admission would come after `deadline` (`None`: the enclosing cancel
        scopes' deadline); cancellation while waiting consumes nothing. No limit is
        consumed unless all admit.

        Raises:
            RateLimited: Admission would come after the deadline.
            ValueError: Unknown limit name, or a cost that is negative or above capacity.
        """
        await self._gate.acquire(self._costs(costs), deadline, False)

    async def reserve(self, *, deadline: float | None = None, **costs: float) -> Reservation:
        """Acquires like `acquire` and returns a `Reservation` to reconcile or release.

        Always a checkpoint. During a cold start it also waits (FIFO, within the
        deadline) until fewer than `ColdStart.outstanding` reservations are held; a
        deadline reached that way raises `RateLimited` with `retry_after` 0 (unknown).

        Raises:
            RateLimited: Admission would come after the deadline.
            ValueError: As for `acquire`.
        """
        values = self._costs(costs)
        counted = await self._gate.acquire(values, deadline, True)
        return Reservation(self._gate, values, counted)

    def reserve_nowait(self, now: float, /, **costs: float) -> Reservation | None:
        """The synchronous fast path of `reserve`: never waits, never a checkpoint.

        Returns a `Reservation` when every cost is admitted at once (nobody waits, no
        hold or cold start holds it back, a local store has the units), else `None` (not
        counted as a refusal): the caller then awaits `reserve`.

        Args:
            now: The loop's current time (`actors._clock.now()`), read once by the caller.
            **costs: Units per limit name.

        Raises:
            ValueError: As for `acquire`.
        """
        values = self._costs(costs)
        gate = self._gate
        if not gate.admit_nowait(values, now, True):
            return None
        return Reservation(gate, values, gate.record(values, True))

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
        if gate.admit_nowait(values, _now(), False):
            gate.record(values, False)
            return True
        gate.rejected += 1
        return False

    async def hold_until(self, when: float) -> None:
        """Admits nothing before `when` (absolute loop time); see `Limiter.hold_until`.

        Raises:
            ValueError: `when` is not a finite number.
        """
        await self._gate.hold(when)

    async def sync_from_headers(self, headers: Mapping[str, str]) -> dict[str, HeaderLimits]:
        """Lowers each limit to what the provider's rate-limit headers say remains.

        Reads OpenAI's `x-ratelimit-{limit,remaining,reset}-<name>` and Anthropic's
        `anthropic-ratelimit-<name>-{limit,remaining,reset}` (limit names `requests`,
        `tokens`, `input_tokens`, `output_tokens`), case-insensitively, each figure
        checked first (see `actors.resilience._limit_headers`: bad values are ignored or
        clamped, with an event). Only `remaining` changes local state, and only
        downwards: requests reserved here but not yet counted by the provider would
        otherwise be counted twice. A `remaining` ends a cold start. A `limit` that
        differs from the configured capacity emits "limiter.header_mismatch" (warning).
        Not a checkpoint with a local store.

        Returns:
            What the headers said, per limit that had at least one header.
        """
        gate = self._gate
        seen = read_rate_headers(
            headers,
            [(label, config) for label, (_, config) in zip(gate.labels, gate.limits, strict=True)],
            limiter=self.name,
        )
        now = _now()
        learned = False
        for name, figures in seen.items():
            index = gate.index(name)
            config = gate.limits[index][1]
            limit = figures.limit
            if limit is not None and abs(limit - config.max_cost) > 1e-9 * config.max_cost:
                emit(
                    "limiter.header_mismatch",
                    level="warning",
                    limiter=self.name,
                    limit=name,
                    configured=config.max_cost,
                    header=limit,
                )
            if figures.remaining is not None:
                await gate.resync(index, figures.remaining, now)
                learned = True
        if learned:
            gate.learned()
        return seen

    def metrics(self) -> MultiLimitMetrics:
        """A snapshot of the counters (never a checkpoint)."""
        gate = self._gate
        available: dict[str, float] = {}
        if gate.sync is not None:
            now = _now()
            for name, (key, config) in zip(gate.labels, gate.limits, strict=True):
                available[name] = gate.sync.available_nowait(key, config, now)
        return MultiLimitMetrics(
            name=self.name,
            admitted=gate.admitted,
            admitted_cost=dict(zip(gate.labels, gate.admitted_cost, strict=True)),
            waited=gate.waited,
            rejected=gate.rejected,
            total_wait_time=gate.total_wait_time,
            available=available,
            queued=len(gate.waiters),
        )


def create_multi_limit(
    limits: Mapping[str, LimitConfig],
    *,
    name: str,
    store: LimiterStore | None = None,
    namespace: str = "actors",
    cold_start: ColdStart | None = None,
) -> MultiLimit:
    """Creates a multi-limit whose states live under ``"<namespace>:<name>:<limit>"``.

    Args:
        limits: The limits by name, e.g.
            `{"requests": TokenBucket.per_minute(500), "tokens": TokenBucket.per_minute(30_000)}`.
            Names are identifiers (they become keyword arguments) and match the
            provider's header names (`requests`, `tokens`, `input_tokens`, ...).
        name: The service name.
        store: The state store; a fresh `MemoryLimiterStore` when omitted.
        namespace: Key prefix separating applications sharing a store.
        cold_start: Hold reservations back until the provider's first headers (see
            `ColdStart`); `None` (the default) starts with the tap open. The LLM presets
            turn it on.

    Raises:
        ConfigError: No limits, a name that is not an identifier (or is "deadline"),
            a value that is not a limit configuration, or an empty `name`.
    """
    check_name("name", name)
    if not limits:
        raise ConfigError("limits", limits, "must name at least one limit")
    for limit_name, config in limits.items():
        if not isinstance(limit_name, str) or not _NAME.fullmatch(limit_name):
            raise ConfigError("limits", limit_name, "limit names must be identifiers")
        if limit_name == "deadline":
            raise ConfigError("limits", limit_name, "'deadline' is reserved")
        if not isinstance(config, LIMIT_CONFIGS):
            raise ConfigError(
                f"limits.{limit_name}", config, "must be a TokenBucket, SlidingWindow or GCRA"
            )
    if cold_start is not None and not isinstance(cold_start, ColdStart):
        raise ConfigError("cold_start", cold_start, "must be a ColdStart or None")
    store = MemoryLimiterStore() if store is None else store
    names = tuple(limits)
    group = f"{namespace}:{name}"
    gate = Gate(
        name=name,
        group=group,
        limits=tuple((f"{group}:{key}", limits[key]) for key in names),
        labels=names,
        store=store,
        cold=cold_start,
    )
    return MultiLimit(name=name, limits=dict(limits), store=store, _gate=gate)
