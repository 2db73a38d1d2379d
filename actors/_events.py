"""Lifecycle events: stable names, quiet until the application configures logging.

Every event the library emits goes through `emit` (or `emit_failure`), so names stay
greppable and a test (or an application) can capture them with
`actors.testing.capture_events()`. The library never configures logging; where an
event goes depends on what the application configured:

- structlog configured (`structlog.configure(...)`, so `structlog.is_configured()`):
  the event goes to `structlog.get_logger("actors")` with its fields, through the
  application's processors (`merge_contextvars` adds the `correlation_id`).
- otherwise, the stdlib logger ``"actors"``, which has only a `logging.NullHandler`:
  nothing is written until the application adds a handler (`logging.basicConfig`,
  or handlers on ``"actors"`` or the root). A record's message is the event name and
  its fields as ``key=value`` pairs (rendered only if a handler formats it); the
  record also carries `event` (the name) and `event_fields` (the fields, with the
  bound `correlation_id`) for structured handlers.

An exception travels as `exc_info`, for the application's renderer; the library never
renders a traceback itself, so the default path never formats locals on the loop.

Each event is also counted as the OpenTelemetry metric `actorvisor.events` with one
attribute, `event` (the stable name; never anything from the event's fields, so no
secret or high-cardinality value becomes a label). Without opentelemetry-api installed,
or without a meter provider set by the application, counting is a no-op.

`subscribe` adds an in-process sink called with every event (the health dashboard's
recent-events feed uses it); with no sink subscribed, `emit` pays one tuple check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

import structlog

from actors._otel_metrics import meter

__all__ = ["Sink", "emit", "emit_failure", "logger", "stdlib_logger", "subscribe"]

logger: Final = structlog.get_logger("actors")
"""The structlog logger events go to once the application has configured structlog."""

stdlib_logger: Final = logging.getLogger("actors")
"""The stdlib logger events go to otherwise (only a `NullHandler` of its own)."""
stdlib_logger.addHandler(logging.NullHandler())

Sink = Callable[[str, str, Mapping[str, Any]], None]
"""Called with (event, level, fields) for every event; must be quick and never raise."""

_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_counter: Any = None
_counter_meter: Any = None
_sinks: tuple[Sink, ...] = ()


def _events_counter() -> Any:
    """The `actorvisor.events` counter of the library's meter (the one
    `actors.instrument` gave it, else the application's global one), or None while
    metrics are off: then counting costs one check."""
    global _counter, _counter_meter  # noqa: PLW0603 - one counter per meter, for the process
    found = meter()
    if found is None:
        return None
    if found is not _counter_meter:
        _counter = found.create_counter(
            "actorvisor.events", description="Lifecycle events by stable name"
        )
        _counter_meter = found
    return _counter


def subscribe(sink: Sink) -> Callable[[], None]:
    """Calls `sink(event, level, fields)` for every event from now on.

    Returns:
        A function that unsubscribes it (calling it twice is harmless).
    """
    global _sinks  # noqa: PLW0603 - copy-on-write: emit iterates a stable tuple
    _sinks = (*_sinks, sink)

    def unsubscribe() -> None:
        global _sinks  # noqa: PLW0603
        _sinks = tuple(s for s in _sinks if s is not sink)

    return unsubscribe


class _Message:
    """A stdlib record's message: the event and its fields, rendered only when formatted."""

    __slots__ = ("event", "fields")

    def __init__(self, event: str, fields: Mapping[str, Any]) -> None:
        self.event = event
        self.fields = fields

    def __str__(self) -> str:
        pairs = " ".join(f"{key}={value!r}" for key, value in self.fields.items())
        return f"{self.event} {pairs}" if pairs else self.event


def _has_output() -> bool:
    """Whether a handler other than a `NullHandler` would see an "actors" record."""
    node: logging.Logger | None = stdlib_logger
    while node is not None:
        for handler in node.handlers:
            if not isinstance(handler, logging.NullHandler):
                return True
        if not node.propagate:
            return False
        node = node.parent
    return False


def _to_stdlib(event: str, number: int, fields: dict[str, Any]) -> None:
    exc_info = fields.pop("exc_info", None)
    context = structlog.contextvars.get_contextvars()
    if context:
        fields = {**context, **fields}
    stdlib_logger.log(
        number,
        _Message(event, fields),
        exc_info=exc_info,
        extra={"event": event, "event_fields": fields},
        stacklevel=4,  # the library code that called emit / emit_failure
    )


def _dispatch(event: str, level: str, fields: dict[str, Any]) -> None:
    for sink in _sinks:
        sink(event, level, fields)
    if structlog.is_configured():
        getattr(logger, level)(event, **fields)
    else:
        number = _LEVELS[level]
        if stdlib_logger.isEnabledFor(number) and _has_output():
            _to_stdlib(event, number, fields)
    counter = _events_counter()
    if counter is not None:
        counter.add(1, {"event": event})


def emit(event: str, *, level: str = "info", **fields: Any) -> None:
    """Emits one lifecycle event (a log event, a metric, and to each sink).

    Args:
        event: A stable dotted name such as "actor.started" or "breaker.opened".
        level: "debug", "info", "warning", "error" or "critical".
        **fields: Event details; never secrets.
    """
    _dispatch(event, level, fields)


def emit_failure(event: str, exc: BaseException, *, level: str = "error", **fields: Any) -> None:
    """Emits an event about a failure: its type as `error_type`, its traceback as
    `exc_info` (the message itself is left to the renderer; never put secrets in it)."""
    fields["error_type"] = type(exc).__name__
    fields["exc_info"] = exc
    _dispatch(event, level, fields)
