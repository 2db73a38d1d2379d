"""The OpenTelemetry SDK in memory, handed to actorvisor for one test (the global
providers stay untouched, so no other test runs traced)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from actors import instrument


class Telemetry:
    """What one test recorded: finished spans and collected metric points."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self) -> Sequence[ReadableSpan]:
        return self.exporter.get_finished_spans()

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name == name]

    def metrics(self) -> dict[str, Any]:
        """Metric name -> the metric (its unit and data points), at this collection."""
        data = self.reader.get_metrics_data()
        found: dict[str, Any] = {}
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = metric
        return found


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    recorded = Telemetry()
    instrument(tracer_provider=recorded.tracer_provider, meter_provider=recorded.meter_provider)
    try:
        yield recorded
    finally:
        instrument()
        recorded.tracer_provider.shutdown()
        recorded.meter_provider.shutdown()


def attributes(recorded: ReadableSpan | Event) -> Mapping[str, Any]:
    """A finished span's or event's attributes (the SDK always records a mapping)."""
    assert recorded.attributes is not None
    return recorded.attributes


def texts(spans: Sequence[ReadableSpan]) -> list[str]:
    """Every attribute and event attribute value of `spans`, as text."""
    out: list[str] = []
    for span in spans:
        out.extend(str(value) for value in (span.attributes or {}).values())
        for event in span.events:
            out.append(event.name)
            out.extend(str(value) for value in (event.attributes or {}).values())
        out.append(span.name)
    return out
