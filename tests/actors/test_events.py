"""Lifecycle events are structlog events and metrics, with only the name as a label."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from actors import _events, instrument
from actors.testing import capture_events


@pytest.fixture
def reader() -> Iterator[Any]:
    """The library's metrics sent to an in-memory reader for the test (SDK in tests only)."""
    sdk_metrics = pytest.importorskip("opentelemetry.sdk.metrics")
    export = pytest.importorskip("opentelemetry.sdk.metrics.export")
    memory = export.InMemoryMetricReader()
    instrument(meter_provider=sdk_metrics.MeterProvider(metric_readers=[memory]))
    try:
        yield memory
    finally:
        instrument()


def _event_counts(reader: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "actorvisor.events":
                    for point in metric.data.data_points:
                        assert set(point.attributes) == {"event"}
                        counts[point.attributes["event"]] = point.value
    return counts


def test_emit_logs_and_counts_by_name_only(reader: Any) -> None:
    """emit() logs the event with its fields and counts it with the name as the only label."""
    with capture_events() as events:
        _events.emit("actor.started", actor="db", password_hint="x")
    assert events[0]["event"] == "actor.started"
    assert events[0]["actor"] == "db"
    assert _event_counts(reader) == {"actor.started": 1}


def test_counting_follows_the_meter_instrument_gives(reader: Any) -> None:
    """Events are counted by the meter `actors.instrument` chose, not only the global one."""
    _events.emit("actor.stopped", actor="db")
    _events.emit("actor.stopped", actor="db")
    assert _event_counts(reader) == {"actor.stopped": 2}


def test_nothing_is_counted_while_metrics_are_off() -> None:
    """Without a meter provider, counting an event makes no counter at all."""
    instrument()
    _events.emit("actor.stopped", actor="db")
    assert _events._events_counter() is None
