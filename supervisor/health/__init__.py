"""supervisor.health: probes, the health state machine, reports and the health endpoints.

See docs/health-and-fallback.md. `HealthMonitor` runs one probe loop per service and
keeps a `HealthStatus` per service (HEALTHY / DEGRADED / UNHEALTHY, with hysteresis,
fed also by breakers and dependencies); `HealthReport` aggregates them; `health_app`
serves /healthz, /readyz and /metrics to any ASGI server.
"""

from actors.lowlevel import publish as _publish
from supervisor.health._asgi import health_app
from supervisor.health._monitor import (
    HealthListener,
    HealthMonitor,
    Probe,
    open_health_monitor,
    restarts_from,
    watch_children,
)
from supervisor.health._report import HealthNode, HealthReport, ServiceHealth
from supervisor.health._state import HealthConfig, HealthStatus, HealthTransition

__all__ = [
    "HealthConfig",
    "HealthListener",
    "HealthMonitor",
    "HealthNode",
    "HealthReport",
    "HealthStatus",
    "HealthTransition",
    "Probe",
    "ServiceHealth",
    "health_app",
    "open_health_monitor",
    "restarts_from",
    "watch_children",
]

_publish(globals(), "supervisor.health")
