"""The JSON snapshot served at `/tree` (schema ``actorvisor.tree/1``) and read by the
dashboard. docs/observability.md documents every field; a change that removes or
renames one gets a new schema number.

Everything is read synchronously from what already exists (the supervisor's
`tree()`, refs, the `HealthMonitor`, each `Service`'s breaker, limits, stats, latency
recorder and adaptive concurrency limit, the fallback routers' counters), so a
snapshot is never a checkpoint and costs one walk of the tree. A `ServiceGroup` given
as a service also lends its members' services to their actors' nodes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, cast

from actors.lowlevel import now_or_none
from supervisor._tree import TreeNode
from supervisor.health._feed import EventFeed
from supervisor.health._metrics import routed_counts
from supervisor.health._monitor import HealthMonitor

__all__ = ["SCHEMA", "Snapshotter", "services_by_name"]

SCHEMA = "actorvisor.tree/1"
"""The `schema` field of every `/tree` snapshot."""

LATENCY_QUANTILES = (0.5, 0.99)


def _number(value: float | None) -> float | None:
    """A finite float, or None (JSON has no infinity)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def services_by_name(services: Mapping[str, Any] | Iterable[Any] | None) -> dict[str, Any]:
    """Services keyed by actor path or name: a mapping as given, others by `.name`."""
    if services is None:
        return {}
    if isinstance(services, Mapping):
        return dict(services)
    return {service.name: service for service in cast("Iterable[Any]", services)}


def _breaker(breaker: Any, now: float) -> dict[str, Any]:
    metrics = breaker.metrics(now)
    return {
        "state": metrics.state.value,
        "failure_rate": metrics.failure_rate,
        "slow_call_rate": metrics.slow_call_rate,
        "calls": metrics.buffered_calls,
        "retry_after": _number(metrics.retry_after),
        "rejected": metrics.not_permitted,
    }


def _limits(limits: Any, service: Any) -> dict[str, Any]:
    metrics = limits.metrics()
    capacity: dict[str, float | None] = {}
    config = getattr(service, "config", None)
    for name, limit in getattr(config, "limits", ()):
        capacity[name] = _number(getattr(limit, "capacity", None))
    return {
        "available": {name: _number(room) for name, room in metrics.available.items()},
        "capacity": capacity,
        "queued": metrics.queued,
        "rejected": metrics.rejected,
    }


def _latency(recorder: Any, now: float) -> dict[str, Any]:
    p50, p99 = (recorder.quantile(q, now) for q in LATENCY_QUANTILES)
    return {
        "p50": p50,
        "p99": p99,
        "count": recorder.count(now),
        "window": recorder.slice_seconds * recorder.slices,
        "slice": recorder.slice_seconds,
        "series": recorder.series(now, 0.99),
    }


def _concurrency(limit: Any) -> dict[str, Any]:
    metrics = limit.metrics()
    config = limit.adaptive
    return {
        "limit": metrics.limit,
        "in_flight": metrics.active,
        "queued": metrics.queued,
        "min": config.min_limit,
        "max": config.max_limit,
        "drops": metrics.drops,
        "no_load_latency": _number(metrics.no_load_latency),
    }


def _calls(stats: Any) -> dict[str, Any]:
    return {
        key: getattr(stats, key, None) for key in ("requests", "succeeded", "failed", "attempts")
    }


def _health(svc: Any) -> dict[str, Any]:
    return {
        "status": svc.status.value,
        "reason": svc.reason,
        "consecutive_failures": svc.consecutive_failures,
        "last_latency": _number(svc.last_latency),
        "last_error": svc.last_error,
    }


def _fallback(routes: Mapping[str, int]) -> dict[str, Any]:
    total = sum(routes.values())
    return {"routes": dict(routes), "share": (total - routes.get("primary", 0)) / total}


class Snapshotter:
    """Builds `/tree` snapshots of one monitor, optionally one tree and its services."""

    def __init__(
        self,
        monitor: HealthMonitor,
        tree: Any = None,
        services: Mapping[str, Any] | None = None,
        feed: EventFeed | None = None,
    ) -> None:
        self.monitor = monitor
        self.tree = tree
        self.services = dict(services or {})
        self.feed = feed
        # Per snapshot: the time and what was read once for every node.
        self._now = 0.0
        self._health: dict[str, Any] = {}
        self._routed: dict[str, dict[str, int]] = {}
        self._services: dict[str, Any] = {}

    def _with_members(self) -> dict[str, Any]:
        """The services given, and those of the members of each group given (by their
        actor paths; a service given for the same path wins)."""
        found: dict[str, Any] = {}
        for service in self.services.values():
            members = getattr(service, "member_services", None)
            if callable(members):
                found.update(members())
        found.update(self.services)
        return found

    def _service(self, path: str, relative: str | None) -> Any:
        service = self._services.get(path)
        if service is None and relative is not None:
            service = self._services.get(relative)
        return service

    def _relative(self, path: str) -> str:
        return path.removeprefix(f"{self.tree.path}/")

    def adaptive_limits(self) -> list[tuple[str, Any]]:
        """``(actor path, AdaptiveLimit)`` of every actor shown whose service has an
        adaptive concurrency limit (group members included), in tree order."""
        self._services = self._with_members()
        places: list[tuple[str, str | None]] = []
        if self.tree is not None:
            stack = [self.tree.tree()]
            while stack:
                node = stack.pop()
                if node.kind != "supervisor":
                    places.append((node.path, self._relative(node.path)))
                stack.extend(reversed(node.children))
        in_tree = {path for path, _ in places}
        places += [(name, None) for name in self.monitor.names() if name not in in_tree]
        found = []
        for path, relative in places:
            limit = getattr(self._service(path, relative), "concurrency", None)
            if limit is not None:
                found.append((path, limit))
        return found

    def snapshot(self, *, since: int = 0, events: int = 100) -> dict[str, Any]:
        """The whole snapshot (see docs/observability.md).

        Args:
            since: Only events after this sequence number.
            events: At most this many events (the newest).
        """
        self._now = now_or_none() or 0.0
        report = self.monitor.report()
        self._health = {svc.name: svc for svc in report.services}
        self._routed = routed_counts()
        self._services = self._with_members()
        root = None
        in_tree: set[str] = set()
        if self.tree is not None:
            root = self._node(self.tree.tree(), in_tree)
        others = [name for name in self.monitor.names() if name not in in_tree]
        return {
            "schema": SCHEMA,
            "at": self._now,
            "health": {"status": report.status.value, "ready": report.ready},
            "root": root,
            "services": [
                {
                    "path": name,
                    "id": name,
                    "kind": "service",
                    "state": None,
                    "restarts": None,
                    "queued": None,
                    **self._readings(name, None),
                }
                for name in others
            ],
            "routers": [
                {"name": name, "routes": routes} for name, routes in sorted(self._routed.items())
            ],
            "events": None if self.feed is None else self.feed.read(since, events),
        }

    def _node(self, node: TreeNode, in_tree: set[str]) -> dict[str, Any]:
        base = {
            "path": node.path,
            "id": node.id,
            "kind": node.kind,
            "state": node.state,
            "restarts": node.restarts,
        }
        if node.kind == "supervisor":
            children = [self._node(child, in_tree) for child in node.children]
            return {**base, "strategy": node.detail, "children": children}
        in_tree.add(node.path)
        relative = self._relative(node.path)
        try:
            queued: int | None = self.tree.ref(relative).queued
        except Exception:  # not started yet: no address to read
            queued = None
        return {**base, "queued": queued, **self._readings(node.path, relative)}

    def _readings(self, path: str, relative: str | None) -> dict[str, Any]:
        """What the monitor, the service and the routers say about the actor at `path`."""
        service = self._service(path, relative)
        breaker = getattr(service, "breaker", None)
        if breaker is None and path in self.monitor:
            breaker = self.monitor.breaker_of(path)
        limits = getattr(service, "limits", None)
        recorder = getattr(service, "latency", None)
        stats = getattr(service, "stats", None)
        concurrency = getattr(service, "concurrency", None)
        svc = self._health.get(path)
        routes = self._routed.get(path)
        now = self._now
        return {
            "in_flight": getattr(stats, "in_flight", None),
            "health": None if svc is None else _health(svc),
            "breaker": None if breaker is None else _breaker(breaker, now),
            "limits": None if limits is None else _limits(limits, service),
            "latency": None if recorder is None else _latency(recorder, now),
            "calls": None if stats is None else _calls(stats),
            "concurrency": None if concurrency is None else _concurrency(concurrency),
            "fallback": _fallback(routes) if routes else None,
        }
