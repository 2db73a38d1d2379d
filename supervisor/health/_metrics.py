"""Metrics: OpenTelemetry instruments (no-op unless the application sets a provider) and a
Prometheus collector for the `/metrics` endpoint.

Both libraries are optional. Without ``opentelemetry-api`` every recording function is a
no-op; without ``prometheus-client`` `prometheus_available()` is False and the endpoint
answers 501. The library never sets a meter provider: the application picks the SDK.

OpenTelemetry instruments (meter ``actorvisor.supervisor``):

=================================  =========  =====================================
name                               kind       attributes
=================================  =========  =====================================
``health.probes``                  counter    service, result (ok / failed)
``health.probe.duration``          histogram  service (seconds)
``health.transitions``             counter    service, from, to, reason
``health.status``                  gauge      service (0 healthy, 1 degraded, 2 unhealthy)
``fallback.routed``                counter    router, source
``fallback.cache``                 counter    cache, result (hit / miss / stale / evicted)
=================================  =========  =====================================

The Prometheus exposition (`/metrics`) reads the `HealthReport` at each scrape: the
health of each service and overall, readiness, probes, breaker states, restarts; and,
given the services (`health_app(services=...)`), each adaptive concurrency limit
(``actorvisor_concurrency_limit``, ``_limit_min``, ``_limit_max``, ``_in_flight``,
``actorvisor_concurrency_drops_total``) by actor path.

The semantic conventions' histograms (``gen_ai.client.*``, ``db.client.*``,
``mcp.client.*``) and the runtime's gauges (mailbox depth, in-flight calls, breaker
state, limiter room, restarts) are recorded by `actors._otel_metrics` (meter
``actorvisor``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from actors.resilience import BreakerState
from supervisor.health._state import HealthStatus

if TYPE_CHECKING:
    from supervisor.health._report import HealthReport

__all__ = [
    "PROMETHEUS_MISSING",
    "make_prometheus_registry",
    "prometheus_available",
    "prometheus_exposition",
    "record_cache",
    "record_probe",
    "record_routed",
    "record_transition",
    "routed_counts",
]

PROMETHEUS_MISSING = (
    "prometheus-client is not installed; install the 'prometheus' extra "
    "(pip install 'actorvisor[prometheus]') to serve /metrics"
)

_instruments: dict[str, Any] = {}
_state = {"noop": False}
_routed: Counter[tuple[str, str]] = Counter()  # in-process, for the dashboard


def _instrument(name: str) -> Any:
    """The OpenTelemetry instrument `name`, created on first use (None without the API)."""
    if _state["noop"]:
        return None
    found = _instruments.get(name)
    if found is not None:
        return found
    try:
        from opentelemetry import metrics
    except ImportError:
        _state["noop"] = True
        return None
    meter = metrics.get_meter("actorvisor.supervisor")
    made = {  # type: ignore[no-untyped-call]
        "health.probes": lambda: meter.create_counter(
            "health.probes", unit="{probe}", description="Health probes run"
        ),
        "health.probe.duration": lambda: meter.create_histogram(
            "health.probe.duration", unit="s", description="Health probe latency"
        ),
        "health.transitions": lambda: meter.create_counter(
            "health.transitions", unit="{transition}", description="Health status changes"
        ),
        "health.status": lambda: meter.create_gauge(
            "health.status", description="0 healthy, 1 degraded, 2 unhealthy"
        ),
        "fallback.routed": lambda: meter.create_counter(
            "fallback.routed", unit="{call}", description="Routed calls by source"
        ),
        "fallback.cache": lambda: meter.create_counter(
            "fallback.cache", unit="{lookup}", description="Response cache lookups"
        ),
    }[name]()
    _instruments[name] = made
    return made


def record_probe(service: str, *, ok: bool, latency: float) -> None:
    """Records one probe and its latency."""
    counter = _instrument("health.probes")
    if counter is None:
        return
    counter.add(1, {"service": service, "result": "ok" if ok else "failed"})
    _instrument("health.probe.duration").record(latency, {"service": service})


def record_transition(
    service: str, from_status: str, to_status: str, reason: str, level: int
) -> None:
    """Records one health transition and the new status level."""
    counter = _instrument("health.transitions")
    if counter is None:
        return
    counter.add(1, {"service": service, "from": from_status, "to": to_status, "reason": reason})
    _instrument("health.status").set(level, {"service": service})


def record_routed(router: str, source: str) -> None:
    """Records which route served a call (also counted in-process: `routed_counts`)."""
    _routed[router, source] += 1
    counter = _instrument("fallback.routed")
    if counter is not None:
        counter.add(1, {"router": router, "source": source})


def routed_counts() -> dict[str, dict[str, int]]:
    """Calls served per router and source ("primary", "fallback:<name>", ...) so far."""
    counts: dict[str, dict[str, int]] = {}
    for (router, source), count in _routed.items():
        counts.setdefault(router, {})[source] = count
    return counts


def record_cache(cache: str, result: str) -> None:
    """Records one cache lookup result ("hit", "miss", "stale") or an eviction."""
    counter = _instrument("fallback.cache")
    if counter is not None:
        counter.add(1, {"cache": cache, "result": result})


# --------------------------------------------------------------------------- prometheus


def prometheus_available() -> bool:
    """Whether prometheus-client can be imported."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


def _one_hot(family: Any, name: str, values: Iterable[str], current: str) -> None:
    """Adds one sample per value of `values` to `family`: 1 for `current`, 0 otherwise."""
    for value in values:
        family.add_metric([name, value], 1.0 if value == current else 0.0)


_STATUSES = tuple(status.value for status in HealthStatus)
_BREAKER_STATES = tuple(state.value for state in BreakerState)


AdaptiveLimits = Callable[[], Iterable[tuple[str, Any]]]
"""Returns ``(actor path, AdaptiveLimit)`` pairs (e.g. `Snapshotter.adaptive_limits`)."""


def _concurrency(limits: Iterable[tuple[str, Any]]) -> Iterator[Any]:
    """The adaptive concurrency limits' families: the limit, its bounds, the slots held
    and the drops it backed off on, by actor path."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    limit = GaugeMetricFamily(
        "actorvisor_concurrency_limit", "The adaptive concurrency limit now", labels=["service"]
    )
    low = GaugeMetricFamily(
        "actorvisor_concurrency_limit_min", "Its lower bound", labels=["service"]
    )
    high = GaugeMetricFamily(
        "actorvisor_concurrency_limit_max", "Its upper bound", labels=["service"]
    )
    in_flight = GaugeMetricFamily(
        "actorvisor_concurrency_in_flight", "Calls holding one of its slots", labels=["service"]
    )
    drops = CounterMetricFamily(
        "actorvisor_concurrency_drops",
        "Answers it backed off on (429/503/529, attempt timeouts)",
        labels=["service"],
    )
    for path, adaptive in limits:
        metrics = adaptive.metrics()
        limit.add_metric([path], metrics.limit)
        low.add_metric([path], adaptive.adaptive.min_limit)
        high.add_metric([path], adaptive.adaptive.max_limit)
        in_flight.add_metric([path], metrics.active)
        drops.add_metric([path], metrics.drops)
    yield from (limit, low, high, in_flight, drops)


def _families(
    report: HealthReport,
    extra: Callable[[], Iterator[Any]] | None,
    adaptive: AdaptiveLimits | None,
) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    status = GaugeMetricFamily(
        "actorvisor_service_health",
        "Service health: 0 healthy, 1 degraded, 2 unhealthy",
        labels=["service"],
    )
    state = GaugeMetricFamily(
        "actorvisor_service_status",
        "1 for the service's current health status",
        labels=["service", "status"],
    )
    latency = GaugeMetricFamily(
        "actorvisor_probe_latency_seconds", "Latency of the last probe", labels=["service"]
    )
    probes = CounterMetricFamily("actorvisor_probes", "Probes run", labels=["service", "result"])
    failures = GaugeMetricFamily(
        "actorvisor_probe_consecutive_failures",
        "Consecutive failed probes",
        labels=["service"],
    )
    breaker = GaugeMetricFamily(
        "actorvisor_breaker_state",
        "1 for the breaker's current state",
        labels=["service", "state"],
    )
    restarts = CounterMetricFamily(
        "actorvisor_service_restarts", "Restarts of the service's actor", labels=["service"]
    )
    for svc in report.services:
        name = svc.name
        status.add_metric([name], svc.status.severity)
        _one_hot(state, name, _STATUSES, svc.status.value)
        if svc.last_latency is not None:
            latency.add_metric([name], svc.last_latency)
        probes.add_metric([name, "ok"], svc.probes - svc.failed_probes)
        probes.add_metric([name, "failed"], svc.failed_probes)
        failures.add_metric([name], svc.consecutive_failures)
        if svc.breaker_state is not None:
            _one_hot(breaker, name, _BREAKER_STATES, svc.breaker_state)
        if svc.restarts is not None:
            restarts.add_metric([name], svc.restarts)
    overall = GaugeMetricFamily(
        "actorvisor_health", "Overall health: 0 healthy, 1 degraded, 2 unhealthy"
    )
    overall.add_metric([], report.status.severity)
    ready = GaugeMetricFamily("actorvisor_ready", "1 when every required service is ready")
    ready.add_metric([], 1.0 if report.ready else 0.0)
    yield from (overall, ready, status, state, latency, probes, failures, breaker, restarts)
    if adaptive is not None:
        yield from _concurrency(adaptive())
    if extra is not None:
        yield from extra()


def make_prometheus_registry(
    report: Callable[[], HealthReport],
    extra: Callable[[], Iterator[Any]] | None = None,
    adaptive: AdaptiveLimits | None = None,
) -> Any:
    """A fresh `CollectorRegistry` whose collector reads `report()` at every scrape.

    Args:
        report: Returns the current report (e.g. `monitor.report`).
        extra: Yields further metric families (e.g. response cache counters).
        adaptive: Returns the adaptive concurrency limits to report, by actor path.

    Raises:
        ImportError: prometheus-client is not installed.
    """
    from prometheus_client import CollectorRegistry

    class _Collector:
        def collect(self) -> Iterator[Any]:
            return _families(report(), extra, adaptive)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return registry


def prometheus_exposition(registry: Any) -> tuple[bytes, str]:
    """The text exposition of `registry` and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(registry), CONTENT_TYPE_LATEST
