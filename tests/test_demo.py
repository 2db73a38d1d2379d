"""The demo agent proves recovery: its compressed chaos schedule (every kind of fault)
runs with every invariant holding on both backends, a run with recovery broken on
purpose fails, and its parts (settings, recovery, accounting, lateness) are right."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from actors import ConfigError
from supervisor.health import HealthStatus, HealthTransition

EXAMPLES = Path(__file__).parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

from demo.lateness import LoopLateness, Overrun  # noqa: E402
from demo.ledger import Ledger  # noqa: E402
from demo.recovery import RecoveryTracker  # noqa: E402
from demo.settings import KINDS, Fault, load_settings  # noqa: E402

DEMO = EXAMPLES / "demo_agent.py"
H, D = HealthStatus.HEALTHY, HealthStatus.DEGRADED


def run_demo(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, str(DEMO), "--no-live", "--json", str(report), *args],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    data = json.loads(report.read_text()) if report.exists() else None
    return result, data


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_every_fault_is_followed_by_a_measured_recovery(tmp_path: Path, backend: str) -> None:
    """The quick schedule fires every kind of fault; the run exits 0 with every
    invariant held and every fault recovered within the bound."""
    result, data = run_demo(tmp_path, "--quick", "--backend", backend)
    output = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    assert "dashboard: http://127.0.0.1:" in result.stdout
    assert all(check["held"] for check in data["checks"].values()), output
    assert {r["kind"] for r in data["recoveries"]} == set(KINDS)
    bound = load_settings(_toml(), quick=True).recovery_bound
    assert all(r["took"] is not None and r["took"] <= bound for r in data["recoveries"])


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_run_fails_when_recovery_is_broken(tmp_path: Path, backend: str) -> None:
    """With restarts turned off on purpose the crashed database never recovers: the
    run exits 1 and says which fault did not recover."""
    result, data = run_demo(
        tmp_path, "--quick", "--duration", "11", "--break-recovery", "--backend", backend
    )
    assert result.returncode == 1, result.stdout[-4000:] + result.stderr[-2000:]
    crash = next(r for r in data["recoveries"] if r["kind"] == "crash")
    assert crash["took"] is None
    failed = [name for name, check in data["checks"].items() if not check["held"]]
    assert any(name.startswith("every chaos event recovered") for name in failed)


def test_a_bad_setting_exits_2_naming_its_field(tmp_path: Path) -> None:
    """A bad value in the demo's tables stops the run before anything starts."""
    config = tmp_path / "bad.toml"
    config.write_text(
        (EXAMPLES / "demo_agent.toml")
        .read_text()
        .replace("turn_timeout = 3.0", "turn_timeout = -1")
    )
    result = subprocess.run(
        [sys.executable, str(DEMO), "--config", str(config), "--no-live"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "demo.turn_timeout" in result.stderr


def _toml() -> dict[str, Any]:
    import tomllib

    return tomllib.loads((EXAMPLES / "demo_agent.toml").read_text())


def _with(**demo: Any) -> dict[str, Any]:
    document = _toml()
    document["demo"] = {**document["demo"], **demo}
    return document


def test_both_schedules_load() -> None:
    """The default and the quick schedules are valid, and the quick one has every kind."""
    assert load_settings(_toml()).chaos
    assert {fault.kind for fault in load_settings(_toml(), quick=True).chaos} == set(KINDS)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"chaos": [{"at": 1, "kind": "meteor", "service": "llm"}]}, "chaos[0].kind"),
        ({"chaos": [{"at": 1, "kind": "outage", "service": "db", "for": 1}]}, "chaos[0].service"),
        ({"chaos": [{"at": 1, "kind": "outage", "service": "llm", "for": -1}]}, "chaos[0].for"),
        ({"chaos": [{"at": 1, "kind": "crash", "service": "llm"}]}, "chaos[0].service"),
        ({"health": {"tools": {"timeout": 0}}}, "health.tools.timeout"),
        ({"health": {"cache": {}}}, "health.cache"),
    ],
)
def test_bad_settings_name_their_dotted_field(change: dict[str, Any], field: str) -> None:
    """A bad chaos event or probe setting is a ConfigError naming its field."""
    with pytest.raises(ConfigError) as caught:
        load_settings({**_toml(), **change})
    assert caught.value.field == field


def test_a_fault_must_leave_its_recovery_bound_before_the_end() -> None:
    """A fault ending less than the recovery bound before the run ends is refused."""
    document = _with(duration=10.0, recovery_bound=5.0)
    document["chaos"] = [{"at": 4, "kind": "outage", "service": "llm", "for": 2}]
    with pytest.raises(ConfigError) as caught:
        load_settings(document)
    assert caught.value.field == "chaos[0].at"


def test_faults_on_one_service_must_not_overlap_their_recovery() -> None:
    """A second fault on a service within the first one's recovery bound is refused."""
    document = _with(duration=60.0, recovery_bound=5.0)
    document["chaos"] = [
        {"at": 2, "kind": "outage", "service": "llm", "for": 2},
        {"at": 6, "kind": "hang", "service": "llm", "for": 1},
    ]
    with pytest.raises(ConfigError) as caught:
        load_settings(document)
    assert caught.value.field == "chaos[1].at"


def test_shortening_drops_the_faults_that_no_longer_fit() -> None:
    """A shorter run keeps only the faults that still leave their recovery bound."""
    settings = load_settings(_toml(), quick=True).shortened(11.0)
    assert all(fault.ends + settings.recovery_bound <= 11.0 for fault in settings.chaos)
    assert "crash" in {fault.kind for fault in settings.chaos}


OUTAGE = Fault(at=1.0, kind="outage", service="llm", duration=2.0)


def _transition(to: HealthStatus, at: float) -> HealthTransition:
    return HealthTransition("agent/llm", H if to is not H else D, to, "test", at)


def _tracker(status: HealthStatus) -> RecoveryTracker:
    return RecoveryTracker(100.0, lambda _name: status, {"llm": "agent/llm"})


def test_a_service_healthy_at_the_faults_end_recovers_at_its_first_real_answer() -> None:
    """Healthy when the fault ends: recovered at the first answer it gives itself."""
    tracker = _tracker(H)
    tracker.on_fault(OUTAGE, 1.0, 3.0, None)
    tracker.on_answer("llm", 2.5)  # before the fault ended: not a recovery
    tracker.on_answer("llm", 3.4)
    assert tracker.events[0].took == pytest.approx(0.4)


def test_an_unhealthy_service_recovers_when_healthy_and_answering() -> None:
    """Unhealthy at the fault's end: recovered at the later of healthy and answered."""
    tracker = _tracker(D)
    tracker.on_fault(OUTAGE, 1.0, 3.0, None)
    tracker.on_answer("llm", 3.2)
    assert tracker.events[0].took is None
    tracker.on_health(_transition(H, 104.5))
    assert tracker.events[0].took == pytest.approx(1.5)


def test_falling_out_of_health_before_a_real_answer_starts_over() -> None:
    """Healthy, then degraded again before answering: the first healthy time no longer counts."""
    tracker = _tracker(H)
    tracker.on_fault(OUTAGE, 1.0, 3.0, None)
    tracker.on_health(_transition(D, 103.5))
    tracker.on_answer("llm", 3.8)
    tracker.on_health(_transition(H, 104.0))
    assert tracker.events[0].recovered_at == pytest.approx(4.0)


def test_a_fault_not_injected_never_counts_as_recovered() -> None:
    """A fault that could not be injected fails the recovery check."""
    tracker = _tracker(H)
    tracker.on_fault(OUTAGE, 1.0, 1.0, "no server")
    tracker.on_answer("llm", 1.5)
    assert not tracker.events[0].within(5.0)


def _lateness(samples: list[tuple[float, float]]) -> LoopLateness:
    lateness = LoopLateness(interval=0.005)
    for due, late in samples:
        lateness._due.append(due)
        lateness._late.append(late)
    return lateness


def test_an_overrun_within_the_loops_lateness_is_explained() -> None:
    """A call ending 80 ms late while the loop was 90 ms late is explained by it."""
    lateness = _lateness([(10.000, 0.001), (10.006, 0.090), (10.101, 0.001)])
    overrun = lateness.explain(Overrun("llm", deadline=10.01, ended=10.09))
    assert overrun.unexplained <= 0


def test_an_overrun_beyond_the_loops_lateness_is_not() -> None:
    """A call ending 150 ms late while the loop ran on time is a real late answer."""
    samples = [(10.0 + 0.005 * i, 0.001) for i in range(60)]
    overrun = _lateness(samples).explain(Overrun("llm", deadline=10.05, ended=10.2))
    assert overrun.unexplained == pytest.approx(0.149)


def test_the_ledger_finds_requests_completed_other_than_once() -> None:
    """An issued request that never completed, and a router that counted otherwise,
    are both reported."""
    ledger = Ledger()
    for _ in range(3):
        ledger.issue("llm")
    ledger.complete("llm", "primary", None, 0.01)
    ledger.complete("llm", "fallback:llm_mini", None, 0.01)
    assert ledger.unbalanced() == {"llm": "issued 3, completed 2"}
    disagreeing = ledger.disagreements({"llm": {"primary": 2}})
    assert set(disagreeing) == {"llm"}
