"""Metrics on the OpenTelemetry semantic conventions, and the runtime's own gauges.

Through opentelemetry-api only; the application picks the SDK (or hands one to
`actors.instrument`). Without the API or a meter provider nothing is recorded, and a
call pays one read of a module global.

Each attempt of a service's pipeline is recorded in the histogram its client's
`Operation` names, with the convention's attributes only (a bounded set: never a
correlation id, a prompt or query text):

==================================  ========  ========================================
name                                unit      attributes
==================================  ========  ========================================
``gen_ai.client.operation.duration``  s       gen_ai.operation.name, gen_ai.provider.name,
                                              gen_ai.request.model, gen_ai.response.model,
                                              server.address, server.port, error.type
``gen_ai.client.token.usage``       {token}   the same but error.type, and
                                              gen_ai.token.type (input / output)
``db.client.operation.duration``    s         db.system.name, db.operation.name,
                                              db.namespace, db.collection.name,
                                              db.response.status_code, server.address,
                                              server.port, error.type
``mcp.client.operation.duration``   s         mcp.method.name, gen_ai.operation.name,
                                              gen_ai.tool.name, network.transport,
                                              server.address, server.port, error.type
==================================  ========  ========================================

A value the provider chooses (``gen_ai.response.model``) counts as a label only for its
first 32 distinct values, then as ``_OTHER``: a hostile answer cannot grow the label set.

The runtime's own instruments (meter ``actorvisor``), observed at each collection with
the actor's or service's name as their only label (plus the state or limit). They are
registered once a provider is set, at the next actor, pipeline or observed call made:

=================================  ===============  ===================================
name                               kind             attributes
=================================  ===============  ===================================
``actorvisor.actor.mailbox.depth``  gauge           actorvisor.actor
``actorvisor.actor.restarts``       counter         actorvisor.actor (incarnations - 1)
``actorvisor.service.in_flight``    gauge           actorvisor.service
``actorvisor.breaker.state``        gauge           actorvisor.service,
                                                    actorvisor.breaker.state (1 for the
                                                    current state, 0 for the others)
``actorvisor.limiter.available``    gauge           actorvisor.service, actorvisor.limit
``actorvisor.concurrency.limit``    gauge           actorvisor.service (an adaptive
                                                    concurrency limit's current value)
``actorvisor.concurrency.limit.min``  gauge         actorvisor.service (its bounds)
``actorvisor.concurrency.limit.max``  gauge         actorvisor.service
``actorvisor.concurrency.in_flight``  gauge         actorvisor.service (slots held)
``actorvisor.concurrency.drops``    counter         actorvisor.service (429/503/529
                                                    answers and timeouts it backed off on)
=================================  ===============  ===================================

Observations read plain counters and immutable state only, so a metric reader may
collect from its own thread; limiter room is computed at the loop's time through the
clock captured on the loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

    from actors._tracing import AttributeValue, Operation

try:
    from opentelemetry import metrics as _metrics
    from opentelemetry.metrics import _internal as _metrics_internal
except ImportError:  # pragma: no cover - depends on the optional dependency
    _metrics = None  # type: ignore[assignment]
    _metrics_internal = None  # type: ignore[assignment]

__all__ = [
    "DB_DURATION",
    "GEN_AI_DURATION",
    "GEN_AI_TOKENS",
    "MCP_DURATION",
    "meter",
    "record",
    "track_cell",
    "track_pipeline",
    "unset",
    "use_meter_provider",
    "watch",
]

GEN_AI_DURATION: Final = "gen_ai.client.operation.duration"
GEN_AI_TOKENS: Final = "gen_ai.client.token.usage"
DB_DURATION: Final = "db.client.operation.duration"
MCP_DURATION: Final = "mcp.client.operation.duration"

_API_GLOBAL: Final = _metrics_internal is not None and hasattr(_metrics_internal, "_METER_PROVIDER")
"""Whether the API keeps its global provider where we read it (None until set; see
`actors._tracing`)."""
_ENV_PROVIDER: Final = "OTEL_PYTHON_METER_PROVIDER" in os.environ  # read once, like the API
_SERVER: Final = ("server.address", "server.port")
_PROVIDER_CHOSEN: Final = frozenset({"gen_ai.response.model"})
_MAX_CHOSEN: Final = 32
_OTHER: Final = "_OTHER"
_CLOSED: Final = frozenset({"stopped", "down"})  # addresses no longer observed


class _Histogram(NamedTuple):
    unit: str
    description: str
    buckets: tuple[float, ...]
    keys: tuple[str, ...]


_GEN_AI_KEYS: Final = (
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    *_SERVER,
)
# Bucket boundaries: the conventions' advice for each instrument.
_HISTOGRAMS: Final = {
    GEN_AI_DURATION: _Histogram(
        "s",
        "GenAI operation duration",
        (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92),
        (*_GEN_AI_KEYS, "error.type"),
    ),
    GEN_AI_TOKENS: _Histogram(
        "{token}",
        "Number of input and output tokens used",
        tuple(float(4**power) for power in range(14)),
        (*_GEN_AI_KEYS, "gen_ai.token.type"),
    ),
    DB_DURATION: _Histogram(
        "s",
        "Duration of database client operations",
        (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0),
        (
            "db.system.name",
            "db.operation.name",
            "db.namespace",
            "db.collection.name",
            "db.response.status_code",
            *_SERVER,
            "error.type",
        ),
    ),
    MCP_DURATION: _Histogram(
        "s",
        "The duration of the MCP request or notification as observed on the sender",
        (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
        (
            "mcp.method.name",
            "gen_ai.operation.name",
            "gen_ai.tool.name",
            "network.transport",
            *_SERVER,
            "error.type",
        ),
    ),
}
_USAGE: Final = (("input", "gen_ai.usage.input_tokens"), ("output", "gen_ai.usage.output_tokens"))


class _Meters:
    """The meter in use (None: off), its instruments, and the provider `instrument`
    chose (None: the global one)."""

    __slots__ = ("chosen", "histograms", "meter", "provider", "quiet", "settled")

    def __init__(self) -> None:
        self.meter: Meter | None = None
        self.provider: MeterProvider | None = None
        self.histograms: dict[str, Any] = {}
        self.settled = _metrics is None
        self.quiet = _API_GLOBAL and not _ENV_PROVIDER  # off while the global one is unset
        self.chosen: dict[str, set[str]] = {}


_state: Final = _Meters()


def meter() -> Meter | None:
    """The meter metrics are recorded with, or None while metrics are off. Cheap."""
    found = _state.meter
    if found is not None:
        return found
    if _state.quiet and _metrics_internal._METER_PROVIDER is None:
        return None  # the application has set no provider (yet)
    if _state.settled:
        return None
    return _look_up()


def unset() -> bool:
    """True while metrics are surely off: no meter, no provider chosen or set."""
    return _state.meter is None and _state.quiet and _metrics_internal._METER_PROVIDER is None


def _look_up() -> Meter | None:
    provider = _state.provider
    if provider is None:
        provider = _metrics.get_meter_provider()
        if type(provider).__name__ == "_ProxyMeterProvider":
            return None
        if isinstance(provider, _metrics.NoOpMeterProvider):
            _state.settled = True
            return None
    found = provider.get_meter("actorvisor")
    _state.histograms = {
        name: found.create_histogram(
            name,
            unit=spec.unit,
            description=spec.description,
            explicit_bucket_boundaries_advisory=list(spec.buckets),
        )
        for name, spec in _HISTOGRAMS.items()
    }
    _observe(found)
    _state.meter = found
    return found


def use_meter_provider(provider: MeterProvider | None) -> None:
    """Records into `provider` from now on (None: the global provider)."""
    _state.meter = None
    _state.provider = provider
    _state.histograms = {}
    _state.settled = _metrics is None
    _state.quiet = provider is None and _API_GLOBAL and not _ENV_PROVIDER
    meter()  # the observable instruments, registered at once


def _bounded(key: str, value: AttributeValue) -> AttributeValue:
    if key not in _PROVIDER_CHOSEN or not isinstance(value, str):
        return value
    seen = _state.chosen.setdefault(key, set())
    if value in seen:
        return value
    if len(seen) < _MAX_CHOSEN:
        seen.add(value)
        return value
    return _OTHER


def record(operation: Operation, seconds: float, outcome: Mapping[str, AttributeValue]) -> None:
    """Records one attempt of `operation` that took `seconds` and ended with `outcome`'s
    attributes (a response's, or a failure's ``error.type``)."""
    histograms = _state.histograms
    name = operation.metric
    histogram = histograms.get(name) if name is not None else None
    if histogram is None:
        return
    known = operation.attributes
    attributes: dict[str, AttributeValue] = {}
    for key in _HISTOGRAMS[name].keys:  # type: ignore[index]
        value = outcome.get(key, known.get(key))
        if value is not None:
            attributes[key] = _bounded(key, value)
    histogram.record(seconds, attributes)
    if name == GEN_AI_DURATION and "error.type" not in attributes:
        tokens = histograms[GEN_AI_TOKENS]
        for kind, key in _USAGE:
            used = outcome.get(key)
            if isinstance(used, int) and not isinstance(used, bool):
                tokens.record(used, {**attributes, "gen_ai.token.type": kind})


# --------------------------------------------------------------------------- gauges


class _Tracked:
    """The pipelines and cells alive now (weakly held), and each pipeline's clock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pipelines: weakref.WeakSet[Any] = weakref.WeakSet()
        self.cells: weakref.WeakSet[Any] = weakref.WeakSet()
        self.clocks: weakref.WeakKeyDictionary[Any, Callable[[], float]] = (
            weakref.WeakKeyDictionary()
        )

    def snapshot(self) -> tuple[list[Any], list[Any]]:
        with self.lock:
            return list(self.pipelines), list(self.cells)


_tracked: Final = _Tracked()


def track_pipeline(pipeline: Any) -> None:
    """Observes `pipeline`'s in-flight calls, breaker and limits while it lives."""
    with _tracked.lock:
        _tracked.pipelines.add(pipeline)
    meter()  # registers the instruments once a provider is set


def track_cell(cell: Any) -> None:
    """Observes the mailbox depth and restarts of an address while it lives."""
    with _tracked.lock:
        _tracked.cells.add(cell)
    meter()


def _thread_clock() -> Callable[[], float]:
    """The running loop's clock as a function any thread may call."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        import trio

        return trio.lowlevel.current_clock().current_time
    return loop.time


def watch(pipeline: Any) -> None:
    """Captures the clock of `pipeline`'s loop (for its limiter room), once."""
    if pipeline.limits is not None and pipeline not in _tracked.clocks:
        with _tracked.lock:
            _tracked.clocks[pipeline] = _thread_clock()


def _current(found: Meter) -> bool:
    return _state.meter is found


def _observe(found: Meter) -> None:
    """Registers the runtime's observable instruments on `found` (they observe nothing
    once another meter has replaced it)."""
    from opentelemetry.metrics import Observation

    def by_name(
        label: str, items: Iterable[Any], value: Callable[[Any], float | None]
    ) -> list[Observation]:
        """One observation per name (items of the same name summed)."""
        totals: dict[str, float] = {}
        for item in items:
            number = value(item)
            if number is not None:
                totals[item.name] = totals.get(item.name, 0.0) + number
        return [Observation(total, {label: name}) for name, total in totals.items()]

    def live_cells() -> list[Any]:
        _, cells = _tracked.snapshot()
        return [cell for cell in cells if cell.state.value not in _CLOSED]

    def mailbox(_options: CallbackOptions) -> Iterable[Observation]:
        if not _current(found):
            return []
        return by_name("actorvisor.actor", live_cells(), lambda cell: cell.mailbox.live)

    def restarts(_options: CallbackOptions) -> Iterable[Observation]:
        if not _current(found):
            return []
        return by_name(
            "actorvisor.actor",
            live_cells(),
            lambda cell: cell.incarnations - 1 if cell.incarnations else None,
        )

    def in_flight(_options: CallbackOptions) -> Iterable[Observation]:
        if not _current(found):
            return []
        pipelines, _ = _tracked.snapshot()
        return by_name("actorvisor.service", pipelines, lambda p: p.metrics.in_flight)

    def breaker_state(_options: CallbackOptions) -> Iterable[Observation]:
        if not _current(found):
            return []
        from actors.resilience._breaker import BreakerState

        pipelines, _ = _tracked.snapshot()
        states: dict[str, str] = {}
        for pipeline in pipelines:
            breaker = pipeline.breaker
            if breaker is not None:
                states[pipeline.name] = breaker.seen_state.value
        return [
            Observation(
                1 if state.value == current else 0,
                {"actorvisor.service": name, "actorvisor.breaker.state": state.value},
            )
            for name, current in states.items()
            for state in BreakerState
        ]

    def limiter_room(_options: CallbackOptions) -> Iterable[Observation]:
        if not _current(found):
            return []
        pipelines, _ = _tracked.snapshot()
        out = []
        for pipeline in pipelines:
            gate = getattr(pipeline.limits, "_gate", None)
            clock = _tracked.clocks.get(pipeline)
            if gate is None or clock is None:
                continue
            for limit, room in gate.room(clock()).items():
                out.append(
                    Observation(
                        room, {"actorvisor.service": pipeline.name, "actorvisor.limit": limit}
                    )
                )
        return out

    def adaptive(value: Callable[[Any], float]) -> Callable[[CallbackOptions], list[Observation]]:
        """A callback observing `value(limit)` of every pipeline's adaptive limit."""
        from actors.resilience._adaptive import AdaptiveLimit

        def observe(_options: CallbackOptions) -> list[Observation]:
            if not _current(found):
                return []
            pipelines, _ = _tracked.snapshot()
            return by_name(
                "actorvisor.service",
                pipelines,
                lambda p: value(p.bulkhead) if isinstance(p.bulkhead, AdaptiveLimit) else None,
            )

        return observe

    for suffix, value, unit, description in (
        ("limit", lambda a: a.limit, "{request}", "The adaptive concurrency limit now"),
        ("limit.min", lambda a: a.adaptive.min_limit, "{request}", "Its lower bound"),
        ("limit.max", lambda a: a.adaptive.max_limit, "{request}", "Its upper bound"),
        ("in_flight", lambda a: a.metrics().active, "{request}", "Calls holding one of its slots"),
    ):
        found.create_observable_gauge(
            f"actorvisor.concurrency.{suffix}",
            [adaptive(value)],
            unit=unit,
            description=description,
        )
    found.create_observable_counter(
        "actorvisor.concurrency.drops",
        [adaptive(lambda a: a.metrics().drops)],
        unit="{response}",
        description="Answers the adaptive limit backed off on (429/503/529, attempt timeouts)",
    )
    found.create_observable_gauge(
        "actorvisor.actor.mailbox.depth",
        [mailbox],
        unit="{message}",
        description="Messages waiting in the actor's mailbox",
    )
    found.create_observable_counter(
        "actorvisor.actor.restarts",
        [restarts],
        unit="{restart}",
        description="Restarts of the actor (incarnations after the first)",
    )
    found.create_observable_gauge(
        "actorvisor.service.in_flight",
        [in_flight],
        unit="{request}",
        description="Calls in progress through the service's pipeline",
    )
    found.create_observable_gauge(
        "actorvisor.breaker.state",
        [breaker_state],
        description="1 for the circuit breaker's current state, 0 for the others",
    )
    found.create_observable_gauge(
        "actorvisor.limiter.available",
        [limiter_room],
        unit="{unit}",
        description="Units each rate limit admits now",
    )
