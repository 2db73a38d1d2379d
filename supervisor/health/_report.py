"""Health reports: per-service snapshots, aggregation (worst-of), and a tree view.

Aggregation rules (for the overall status and for every node of the tree):

- a *required* service contributes its status as it is;
- an *optional* service contributes at most DEGRADED (it can never make the whole
  UNHEALTHY, but its trouble shows);
- the aggregate is the worst contribution (HEALTHY when there are none).

Readiness: every required service is HEALTHY, or DEGRADED with
`HealthConfig.ready_when_degraded` (the default). Optional services never affect it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from supervisor.health._state import HealthStatus, ServiceState, worst

__all__ = ["HealthNode", "HealthReport", "ServiceHealth", "aggregate", "is_ready"]

_DEGRADED = HealthStatus.DEGRADED
_UNHEALTHY = HealthStatus.UNHEALTHY


@attrs.frozen(kw_only=True)
class ServiceHealth:
    """A snapshot of one service's health.

    Attributes:
        last_probe_at: `anyio.current_time()` of the last probe's end (`None`: never).
        last_latency: Seconds the last probe took (`None`: never probed).
        last_ok: Whether the last probe succeeded (`None`: never probed).
        last_error: The last failure's type name ("ProbeTimeout" for a hung probe).
        breaker_state: The breaker's state value ("closed", "open", ...) or `None`.
        restarts: Restarts of the service's actor, when a provider was given.
        reason: Why the service has its current status (the last transition's reason,
            "initial" before any).
        since: When the status last changed.
    """

    name: str
    status: HealthStatus
    required: bool
    ready_when_degraded: bool
    last_probe_at: float | None
    last_latency: float | None
    last_ok: bool | None
    last_error: str | None
    consecutive_failures: int
    consecutive_successes: int
    probes: int
    failed_probes: int
    breaker_state: str | None
    restarts: int | None
    depends_on: tuple[str, ...]
    unhealthy_dependencies: tuple[str, ...]
    reason: str
    since: float

    @classmethod
    def from_state(cls, state: ServiceState, *, reason: str, restarts: int | None) -> ServiceHealth:
        """Snapshots a `ServiceState`."""
        return cls(
            name=state.name,
            status=state.status,
            required=state.config.required,
            ready_when_degraded=state.config.ready_when_degraded,
            last_probe_at=state.last_probe_at,
            last_latency=state.last_latency,
            last_ok=state.last_ok,
            last_error=state.last_error,
            consecutive_failures=state.consecutive_failures,
            consecutive_successes=state.consecutive_successes,
            probes=state.probes,
            failed_probes=state.failed_probes,
            breaker_state=None if state.breaker_state is None else state.breaker_state.value,
            restarts=restarts,
            depends_on=state.config.depends_on,
            unhealthy_dependencies=tuple(sorted(state.unhealthy_dependencies)),
            reason=reason,
            since=state.since,
        )

    @property
    def ready(self) -> bool:
        """Whether this service counts as ready (optional services always do)."""
        if not self.required:
            return True
        status = self.status
        return status is HealthStatus.HEALTHY or (status is _DEGRADED and self.ready_when_degraded)

    def contribution(self) -> HealthStatus:
        """What this service contributes to an aggregate (optional: at most DEGRADED)."""
        if not self.required and self.status is _UNHEALTHY:
            return _DEGRADED
        return self.status

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (statuses as their string values)."""
        return {
            "name": self.name,
            "status": self.status.value,
            "required": self.required,
            "ready": self.ready,
            "last_probe_at": self.last_probe_at,
            "last_latency": self.last_latency,
            "last_ok": self.last_ok,
            "last_error": self.last_error,
            "consecutive_failures": self.consecutive_failures,
            "consecutive_successes": self.consecutive_successes,
            "probes": self.probes,
            "failed_probes": self.failed_probes,
            "breaker_state": self.breaker_state,
            "restarts": self.restarts,
            "depends_on": list(self.depends_on),
            "unhealthy_dependencies": list(self.unhealthy_dependencies),
            "reason": self.reason,
            "since": self.since,
        }


def aggregate(services: Iterable[ServiceHealth]) -> HealthStatus:
    """Worst-of over `services`, optional ones capped at DEGRADED."""
    return worst(svc.contribution() for svc in services)


def is_ready(services: Iterable[ServiceHealth]) -> bool:
    """Whether every required service is ready."""
    return all(svc.ready for svc in services)


@attrs.frozen(kw_only=True)
class HealthNode:
    """One node of `HealthReport.tree()`: a path prefix and the aggregate below it.

    Attributes:
        path: Slash-separated ("" for the root).
        service: The service named exactly `path`, if there is one.
    """

    path: str
    status: HealthStatus
    ready: bool
    service: ServiceHealth | None
    children: tuple[HealthNode, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "path": self.path,
            "status": self.status.value,
            "ready": self.ready,
            "service": None if self.service is None else self.service.name,
            "children": [child.to_dict() for child in self.children],
        }


@attrs.frozen(kw_only=True)
class HealthReport:
    """The health of every monitored service at one moment.

    Attributes:
        status: The aggregate (see the module docstring).
        ready: Whether every required service is ready.
        at: `anyio.current_time()` when the report was made.
        services: One snapshot per service, in the order they were added.
    """

    status: HealthStatus
    ready: bool
    at: float
    services: tuple[ServiceHealth, ...]

    @classmethod
    def of(cls, services: Iterable[ServiceHealth], *, at: float) -> HealthReport:
        """Builds a report, aggregating `services`."""
        items = tuple(services)
        return cls(status=aggregate(items), ready=is_ready(items), at=at, services=items)

    def service(self, name: str) -> ServiceHealth:
        """The snapshot of `name`.

        Raises:
            KeyError: No such service in this report.
        """
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict: status, ready, at, and services keyed by name."""
        return {
            "status": self.status.value,
            "ready": self.ready,
            "at": self.at,
            "services": {svc.name: svc.to_dict() for svc in self.services},
        }

    def tree(self) -> HealthNode:
        """Aggregates up the slash-separated service names ("tools/mcp" is under "tools").

        Every node's status and readiness aggregate the services at and below it with
        the same rules as the whole report.
        """
        return _node("", list(self.services))


def _node(path: str, services: list[ServiceHealth]) -> HealthNode:
    own = next((svc for svc in services if svc.name == path), None)
    prefix = f"{path}/" if path else ""
    groups: dict[str, list[ServiceHealth]] = {}
    for svc in services:
        if svc.name == path or not svc.name.startswith(prefix):
            continue
        head = svc.name[len(prefix) :].split("/", 1)[0]
        groups.setdefault(prefix + head, []).append(svc)
    return HealthNode(
        path=path,
        status=aggregate(services),
        ready=is_ready(services),
        service=own,
        children=tuple(_node(child, members) for child, members in groups.items()),
    )
