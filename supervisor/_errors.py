"""The errors of the `supervisor` package: part of the one tree rooted at `actors.ActorError`.

::

    ActorError
    ├── IntensityExceeded      more restarts than max_restarts within period: the
    │                          supervisor stopped its children and failed (to its parent,
    │                          or to you)
    ├── UnknownChild           no child with that id or path (also a LookupError)
    ├── UnknownService         no service (or instance, or health record) by that name
    │                          (also a LookupError)
    └── ResilienceError        (actors) the request was not served
        ├── FallbackExhausted  every route of a fallback router failed or was skipped
        └── GroupUnavailable   no member of a service group could take the request
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from actors import ActorError, ResilienceError

__all__ = [
    "FallbackExhausted",
    "GroupUnavailable",
    "IntensityExceeded",
    "UnknownChild",
    "UnknownService",
]


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


class UnknownService(ActorError, LookupError):
    """No service (or no instance matching the request) is known under that name.

    Attributes:
        name: The name that was looked up.
    """

    def __init__(self, name: str, message: str | None = None) -> None:
        self.name = name
        super().__init__(message or f"no service named {name!r} is registered")


class FallbackExhausted(ResilienceError):
    """Every route of a router failed or was skipped, and no cached reply was servable.

    Attributes:
        router: The router's name.
        attempts: `(target, outcome)` pairs in order; outcome is "skipped: unhealthy",
            "skipped: breaker open", "cache miss" or the failure's type name.
    """

    def __init__(self, router: str, attempts: Sequence[tuple[str, str]]) -> None:
        self.router = router
        self.attempts = tuple(attempts)
        detail = "; ".join(f"{name}: {outcome}" for name, outcome in self.attempts)
        super().__init__(f"every route of {router!r} failed ({detail})")


class GroupUnavailable(ResilienceError):
    """No member of a group could take the request: each one was cooling down (breaker
    open), had failed it already, or would have made it wait past its deadline.

    Attributes:
        group: The group's name.
        reasons: Why each member was not tried, by member id.
    """

    def __init__(self, group: str, reasons: Mapping[str, str]) -> None:
        self.group = group
        self.reasons = dict(reasons)
        detail = "; ".join(f"{member}: {why}" for member, why in self.reasons.items())
        super().__init__(f"no member of group {group!r} can take the request ({detail or 'none'})")
