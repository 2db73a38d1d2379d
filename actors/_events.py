"""Lifecycle events: one structlog logger, stable event names, never any logging setup.

Every event the library emits goes through `emit`, so names stay greppable and a test
(or an application) can capture them with `actors.testing.capture_events()`. The
library only calls `structlog.get_logger`; configuring output is the application's job.
"""

from __future__ import annotations

from typing import Any, Final

import structlog

__all__ = ["emit", "logger"]

logger: Final = structlog.get_logger("actors")


def emit(event: str, *, level: str = "info", **fields: Any) -> None:
    """Emits one lifecycle event.

    Args:
        event: A stable dotted name such as "actor.started" or "breaker.opened".
        level: The structlog method to call ("debug", "info", "warning", "error").
        **fields: Event details; never secrets.
    """
    getattr(logger, level)(event, **fields)
