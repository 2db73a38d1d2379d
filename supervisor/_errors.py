"""Supervisor errors: part of the one tree rooted at `actors.ActorError`.

::

    ActorError
    ├── IntensityExceeded    more restarts than max_restarts within period: the supervisor
    │                        stopped its children and failed (to its parent, or to you)
    └── UnknownChild         no child with that id or path (also a LookupError)
"""

from __future__ import annotations

from actors import ActorError

__all__ = ["IntensityExceeded", "UnknownChild"]


class IntensityExceeded(ActorError):
    """A supervisor gave up: too many restarts within its period.

    Attributes:
        supervisor: The supervisor's path ("root/db").
        max_restarts: Its configured intensity.
        period: Its window, seconds.
        reason: The failure that tipped it over (also the `__cause__`).
    """

    def __init__(
        self, supervisor: str, max_restarts: int, period: float, reason: BaseException | None
    ) -> None:
        self.supervisor = supervisor
        self.max_restarts = max_restarts
        self.period = period
        self.reason = reason
        super().__init__(
            f"supervisor {supervisor!r} exceeded {max_restarts} restarts in {period:g}s"
            + (f"; last failure: {type(reason).__name__}: {reason}" if reason else "")
        )
        self.__cause__ = reason


class UnknownChild(ActorError, LookupError):
    """No child has that id (or path)."""

    def __init__(self, supervisor: str, path: str, why: str = "no such child") -> None:
        self.supervisor = supervisor
        self.path = path
        super().__init__(f"{supervisor!r}: {path!r}: {why}")
