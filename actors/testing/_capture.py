"""Capturing the library's structlog events in tests."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog

__all__ = ["capture_events"]


@contextmanager
def capture_events() -> Iterator[list[MutableMapping[str, Any]]]:
    """Captures every structlog event emitted inside the block (the library's included).

    Inside the block structlog counts as configured, so the library's events go to
    structlog and are captured (and printed nowhere). On leaving it, a structlog that was
    not configured before is unconfigured again (`structlog.reset_defaults()`), so the
    library is quiet again rather than printing through structlog's defaults.

    Yields:
        A list that fills with one dict per event (`event`, `log_level` and the fields),
        including context bound with structlog's contextvars (e.g. `correlation_id`).
    """
    was_configured = structlog.is_configured()
    try:
        with structlog.testing.capture_logs(
            processors=[structlog.contextvars.merge_contextvars]
        ) as events:
            yield events
    finally:
        if not was_configured:
            structlog.reset_defaults()
