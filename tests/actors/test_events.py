"""Lifecycle events are structlog events and metrics, with only the name as a label."""

from __future__ import annotations

from typing import Any

import pytest

from actors import _events
from actors.testing import capture_events


class FakeCounter:
    def __init__(self) -> None:
        self.adds: list[tuple[int, dict[str, Any]]] = []

    def add(self, amount: int, attributes: dict[str, Any]) -> None:
        self.adds.append((amount, attributes))


def test_emit_logs_and_counts_by_name_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """emit() logs the event with its fields and counts it with the name as the only label."""
    counter = FakeCounter()
    monkeypatch.setattr(_events, "_counter", counter)
    with capture_events() as events:
        _events.emit("actor.started", actor="db", password_hint="x")
    assert events[0]["event"] == "actor.started"
    assert events[0]["actor"] == "db"
    assert counter.adds == [(1, {"event": "actor.started"})]


def test_counter_is_made_from_opentelemetry_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a counter yet, the first emit makes one through opentelemetry-api."""
    pytest.importorskip("opentelemetry.metrics")
    monkeypatch.setattr(_events, "_counter", _events._UNSET)
    _events.emit("actor.stopped", actor="db")
    assert _events._counter is not None
    assert hasattr(_events._counter, "add")
