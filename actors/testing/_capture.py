"""Capturing the library's structlog events in tests."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog

__all__ = ["capture_events"]


@contextmanager
def capture_events() -> Iterator[list[MutableMapping[str, Any]]]:
    """Captures every structlog event emitted inside the block.

    Yields:
        A list that fills with one dict per event (`event`, `log_level` and the fields),
        including context bound with structlog's contextvars (e.g. `correlation_id`).
    """
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as events:
        yield events
