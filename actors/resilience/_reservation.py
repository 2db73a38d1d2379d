"""Units held for one request until its actual usage is known (reserve-then-reconcile)."""

from __future__ import annotations

import math

from actors._clock import now as _now
from actors._events import emit
from actors.resilience._limit_queue import Gate

__all__ = ["Reservation"]


class Reservation:
    """Units held for one request until its actual usage is known.

    Made by `Limiter.reserve` / `reserve_nowait` and `MultiLimit.reserve` /
    `reserve_nowait`. Settle it once the request is over: `reconcile` when it reached
    the service (the provider counted it), `release` when it never did.

    Attributes:
        released: True once `release` returned the units.
    """

    __slots__ = ("_costs", "_counted", "_gate", "_open", "released")

    def __init__(self, gate: Gate, costs: tuple[float, ...], counted: bool) -> None:
        self._gate = gate
        self._costs = list(costs)
        self._counted = counted  # held against a cold start until settled
        self._open = True  # neither reconciled nor released yet
        self.released = False

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"<Reservation {self._gate.name!r} {self.costs} {state}>"

    @property
    def costs(self) -> dict[str, float]:
        """The units currently charged per limit (updated by `reconcile`)."""
        return dict(zip(self._gate.labels, self._costs, strict=True))

    async def reconcile(self, usage: float | None = None, /, **actual: float) -> None:
        """Corrects the charge to the actual usage: refunds or charges the difference.

        Pass the usage by limit name (`tokens=812`), or as one number for a single
        `Limiter`'s reservation. Limits not named keep their reserved cost. Charging more
        than is available puts the limit into debt (later requests wait longer), but a
        usage above the reservation plus the limit's capacity is clamped there (event
        `limiter.usage_clamped`), and a usage that is not a finite number >= 0 is ignored
        (event `limiter.usage_rejected`): a provider's bad figure never puts a limit into
        months of debt. A refund never raises a limit above its capacity. Not a
        checkpoint with a local store; can be called again with a newer figure.

        Raises:
            ValueError: An unknown limit name (a caller's bug, not the provider's).
            TypeError: A positional usage for a reservation of several limits.
            RuntimeError: The reservation was released.
        """
        if self.released:
            raise RuntimeError("reservation already released")
        gate = self._gate
        if usage is not None:
            if actual or len(gate.labels) != 1:
                raise TypeError("a positional usage needs a reservation of exactly one limit")
            actual = {gate.labels[0]: usage}
        changes = []
        for name, value in actual.items():
            index = gate.index(name)
            held = self._costs[index]
            if isinstance(value, bool) or not (
                isinstance(value, int | float) and 0 <= value < math.inf
            ):
                emit(
                    "limiter.usage_rejected",
                    level="warning",
                    limiter=gate.name,
                    limit=name,
                    usage=repr(value)[:40],
                )
                continue
            bound = held + gate.limits[index][1].max_cost
            charged = float(value)
            if charged > bound:
                emit(
                    "limiter.usage_clamped",
                    level="warning",
                    limiter=gate.name,
                    limit=name,
                    usage=value,
                    charged=bound,
                )
                charged = bound
            changes.append((index, charged))
        now = _now()
        for index, value in changes:
            difference = value - self._costs[index]
            if difference:
                await gate.charge(index, difference, now)
            self._costs[index] = value
        self._settle(reconciled=True)

    def _settle(self, reconciled: bool) -> None:
        gate = self._gate
        if self._open:
            self._open = False
            gate.settle(self._counted, reconciled=reconciled)
        else:
            gate.wake_head()

    async def release(self) -> None:
        """Refunds every unit held: use it when the request never reached the service.

        Idempotent. Not a checkpoint with a local store; safe in a `finally` or
        cancellation handler. A request that did reach the service (even if it failed
        afterwards) should `reconcile` instead: the provider counted it.
        """
        if self.released:
            return
        self.released = True
        gate = self._gate
        now = _now()
        for index, cost in enumerate(self._costs):
            if cost:
                await gate.charge(index, -cost, now)
        self._settle(reconciled=False)
