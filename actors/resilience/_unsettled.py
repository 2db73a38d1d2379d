"""`Unsettled`: a result that still uses the service after its attempt returned.

A streamed HTTP answer is the case: the attempt returns once the headers are in, and
the body is read afterwards by the caller. The pipeline judges such a result at once
(its status, at headers time: the breaker and the retry decide then), while what the
attempt holds is settled when the reader closes it: the pipeline's reservation
(reconciled with the usage read by then; released when the body was not read to its
end, since its usage is unknown, as for a cancelled attempt) and a service actor's
pooled connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import anyio

from actors._events import emit_failure

__all__ = ["Unsettled"]

_CLEANUP: Final = 5.0  # seconds the settlements of one closing result may take


class Unsettled:
    """Base class of a result whose reader settles what its attempt holds.

    Subclasses set `finished` once the body was read to its end and call `settle`
    when it is closed (exactly what their reader's ``aclose`` does). A result made
    with ``settled=True`` holds nothing open (its body was read in the attempt):
    deferred settlements then run at once. Whoever owns the result must close it,
    cancelled or not.

    Attributes:
        finished: The body was read to its end (its usage is known).
    """

    __slots__ = ("_later", "finished")

    def __init__(self, *, settled: bool = False) -> None:
        self._later: list[Callable[[], Awaitable[object]]] | None = None if settled else []
        self.finished = settled

    @property
    def settled(self) -> bool:
        """Whether `settle` has run (or there was nothing to hold)."""
        return self._later is None

    async def settle_later(self, finish: Callable[[], Awaitable[object]]) -> None:
        """Runs `finish` when the result settles, or now if it already has."""
        if self._later is None:
            await finish()
        else:
            self._later.append(finish)

    async def settle(self) -> None:
        """Runs the deferred settlements once, last registered first.

        Shielded and time-limited (a closing reader may be cancelled: the settlements
        still run). A settlement that fails is reported (event
        ``pipeline.settle_failed``) and the others still run.
        """
        later, self._later = self._later, None
        if not later:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP):
            for finish in reversed(later):
                try:
                    await finish()
                except Exception as exc:
                    emit_failure("pipeline.settle_failed", exc, level="warning")
