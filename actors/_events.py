"""Lifecycle events: one structlog logger, stable event names, never any logging setup.

Every event the library emits goes through `emit`, so names stay greppable and a test
(or an application) can capture them with `actors.testing.capture_events()`. The
library only calls `structlog.get_logger`; configuring output is the application's job.

Each event is also counted as the OpenTelemetry metric `actorvisor.events` with one
attribute, `event` (the stable name; never anything from the event's fields, so no
secret or high-cardinality value becomes a label). Without opentelemetry-api installed,
or without a meter provider set by the application, counting is a no-op.
"""

from __future__ import annotations

from typing import Any, Final

import structlog

__all__ = ["emit", "emit_failure", "logger"]

logger: Final = structlog.get_logger("actors")

_UNSET: Final = object()
_counter: Any = _UNSET


def _events_counter() -> Any:
    """The OpenTelemetry counter, made on first use (None without opentelemetry-api)."""
    global _counter  # noqa: PLW0603 - one lazily made counter for the process
    if _counter is _UNSET:
        try:
            from opentelemetry import metrics
        except ImportError:
            _counter = None
        else:
            _counter = metrics.get_meter("actorvisor").create_counter(
                "actorvisor.events", description="Lifecycle events by stable name"
            )
    return _counter


def emit(event: str, *, level: str = "info", **fields: Any) -> None:
    """Emits one lifecycle event (a structlog event and a metric).

    Args:
        event: A stable dotted name such as "actor.started" or "breaker.opened".
        level: The structlog method to call ("debug", "info", "warning", "error").
        **fields: Event details; never secrets.
    """
    getattr(logger, level)(event, **fields)
    counter = _events_counter()
    if counter is not None:
        counter.add(1, {"event": event})


def emit_failure(event: str, exc: BaseException, *, level: str = "error", **fields: Any) -> None:
    """Emits an event about a failure: its type as `error_type`, its traceback as
    `exc_info` (the message itself is left to the renderer; never put secrets in it)."""
    emit(event, level=level, error_type=type(exc).__name__, exc_info=exc, **fields)
