"""HealthReport: aggregation (worst-of, required vs optional), readiness, the tree view."""

from __future__ import annotations

import json

import pytest

from supervisor.health import HealthConfig, HealthReport, HealthStatus, ServiceHealth
from supervisor.health._state import HealthTable

H, D, U = HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY


def report(**services: tuple[HealthStatus, HealthConfig]) -> HealthReport:
    """A report with each service forced to the given status."""
    table = HealthTable()
    snaps = []
    for name, (status, cfg) in services.items():
        table.add(name, cfg, now=0.0)
        state = table.get(name)
        state.status = status
        snaps.append(ServiceHealth.from_state(state, reason="test", restarts=None))
    return HealthReport.of(snaps, at=1.0)


REQ = HealthConfig()
OPT = HealthConfig(required=False)
STRICT = HealthConfig(ready_when_degraded=False)


def test_empty_report_is_healthy_and_ready() -> None:
    """No services: HEALTHY and ready."""
    empty = HealthReport.of([], at=0.0)
    assert (empty.status, empty.ready) == (H, True)


def test_worst_required_status_wins() -> None:
    """The overall status is the worst required status."""
    rep = report(a=(H, REQ), b=(D, REQ), c=(U, REQ))
    assert rep.status is U
    assert not rep.ready


def test_optional_unhealthy_service_only_degrades_and_keeps_readiness() -> None:
    """An unhealthy optional service makes the whole DEGRADED, and still ready."""
    rep = report(a=(H, REQ), cache=(U, OPT))
    assert (rep.status, rep.ready) == (D, True)


def test_degraded_required_service_is_ready_unless_configured_strict() -> None:
    """DEGRADED counts as ready by default, not with ready_when_degraded=False."""
    assert report(a=(D, REQ)).ready
    assert not report(a=(D, STRICT)).ready


def test_to_dict_round_trips_through_json() -> None:
    """to_dict() is plain JSON with status values as strings."""
    data = json.loads(json.dumps(report(a=(D, REQ), b=(U, OPT)).to_dict()))
    assert data["status"] == "degraded"
    assert data["services"]["b"]["required"] is False
    assert data["services"]["b"]["ready"] is True
    assert data["services"]["a"]["reason"] == "test"


def test_service_lookup_raises_key_error_for_unknown_names() -> None:
    """report.service(name) finds a snapshot, or raises KeyError."""
    rep = report(a=(H, REQ))
    assert rep.service("a").status is H
    with pytest.raises(KeyError):
        rep.service("b")


def test_tree_aggregates_up_slash_separated_paths() -> None:
    """Each tree node aggregates the services at and below its path."""
    rep = report(
        db=(H, REQ),
        **{"tools/mcp": (U, REQ), "tools/search": (H, REQ), "tools/opt": (U, OPT)},
    )
    root = rep.tree()
    assert (root.path, root.status, root.ready) == ("", U, False)
    by_path = {child.path: child for child in root.children}
    assert set(by_path) == {"db", "tools"}
    tools = by_path["tools"]
    assert tools.status is U
    assert [c.path for c in tools.children] == ["tools/mcp", "tools/search", "tools/opt"]
    assert tools.children[2].status is D  # optional: capped at DEGRADED
    assert by_path["db"].service is not None
    assert json.loads(json.dumps(root.to_dict()))["children"][1]["status"] == "unhealthy"
