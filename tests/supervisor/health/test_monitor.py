"""HealthMonitor: probe scheduling on virtual time, timeouts, breakers, reports, events."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import anyio
import pytest

import supervisor as sv
from actors import Actor, ConfigError, open_actor
from actors.resilience import BreakerConfig, BreakerState, create_breaker
from actors.testing import capture_events
from supervisor import UnknownService
from supervisor.health import (
    HealthConfig,
    HealthMonitor,
    HealthStatus,
    HealthTransition,
    open_health_monitor,
    restarts_from,
    watch_children,
)
from tests.supervisor.helpers import Log, worker

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

H, D, U = HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY
CFG = HealthConfig(
    interval=1.0,
    jitter=0.0,
    timeout=0.5,
    failures_to_degrade=2,
    failures_to_unhealthy=3,
    successes_to_recover=2,
)


class FakeService:
    """A probe target that fails, hangs or succeeds on command and logs probe times."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.times: list[float] = []

    async def probe(self) -> None:
        self.times.append(anyio.current_time())
        if self.mode == "fail":
            raise ConnectionError("down")
        if self.mode == "hang":
            await anyio.sleep_forever()


def is_running(monitor: HealthMonitor) -> bool:
    """monitor.running (a function, so mypy does not narrow it between asserts)."""
    return monitor.running


async def test_first_probe_runs_at_once_then_every_interval() -> None:
    """Probes start at the monitor's start and repeat every interval exactly."""
    svc = FakeService()
    async with open_health_monitor() as monitor:
        t0 = anyio.current_time()
        monitor.add("svc", svc.probe, CFG)
        await anyio.sleep(3.5)
    assert [t - t0 for t in svc.times] == pytest.approx([0, 1, 2, 3], abs=1e-9)


async def test_jitter_shortens_or_lengthens_the_interval() -> None:
    """With jitter 0.5 and random() == 0 the interval is half as long."""
    svc = FakeService()
    async with open_health_monitor(random=lambda: 0.0) as monitor:
        t0 = anyio.current_time()
        monitor.add("svc", svc.probe, HealthConfig(interval=2.0, jitter=0.5, timeout=0.1))
        await anyio.sleep(2.5)
    assert [t - t0 for t in svc.times] == pytest.approx([0, 1, 2], abs=1e-9)


async def test_failed_probes_degrade_then_make_unhealthy_at_exact_times() -> None:
    """N failures degrade at the N-th probe; M failures make it unhealthy."""
    svc = FakeService()
    svc.mode = "fail"
    seen: list[tuple[float, HealthStatus]] = []
    async with open_health_monitor() as monitor:
        t0 = anyio.current_time()
        monitor.add_listener(lambda tr: seen.append((tr.at - t0, tr.to_status)))
        monitor.add("svc", svc.probe, CFG)
        await anyio.sleep(2.5)
        assert monitor.status("svc") is U
    assert [status for _, status in seen] == [D, U]
    assert [at for at, _ in seen] == pytest.approx([1.0, 2.0], abs=1e-9)


async def test_recovery_needs_m_successful_probes() -> None:
    """After failures, the service is HEALTHY again at the M-th successful probe."""
    svc = FakeService()
    svc.mode = "fail"
    async with open_health_monitor() as monitor:
        monitor.add("svc", svc.probe, CFG)
        await anyio.sleep(2.5)  # probes at 0, 1, 2 failed
        svc.mode = "ok"
        await anyio.sleep(1.0)  # probe at 3 ok
        assert monitor.status("svc") is U
        await anyio.sleep(1.0)  # probe at 4 ok
        assert monitor.status("svc") is H


async def test_raising_probe_is_a_failed_probe_with_its_error_type() -> None:
    """A probe that raises is recorded as failed, with the exception's type name."""
    svc = FakeService()
    svc.mode = "fail"
    async with open_health_monitor() as monitor:
        monitor.add("svc", svc.probe, CFG)
        await anyio.sleep(0.1)
        snap = monitor.service("svc")
    assert (snap.last_ok, snap.last_error, snap.consecutive_failures) == (
        False,
        "ConnectionError",
        1,
    )


async def test_hanging_probe_fails_after_exactly_its_timeout() -> None:
    """A probe that hangs is cancelled at its timeout and counted as failed."""
    svc = FakeService()
    svc.mode = "hang"
    async with open_health_monitor() as monitor:
        t0 = anyio.current_time()
        monitor.add("svc", svc.probe, CFG)
        await anyio.sleep(0.75)
        snap = monitor.service("svc")
    assert snap.last_error == "ProbeTimeout"
    assert snap.last_latency == pytest.approx(0.5, abs=1e-9)
    assert snap.last_probe_at == pytest.approx(t0 + 0.5, abs=1e-9)


async def test_probe_now_runs_outside_the_schedule() -> None:
    """probe_now runs and records one probe at once and returns its result."""
    svc = FakeService()
    monitor = HealthMonitor()
    monitor.add("svc", svc.probe, CFG)
    svc.mode = "fail"
    assert await monitor.probe_now("svc") is False
    assert monitor.service("svc").probes == 1


async def test_services_added_before_run_start_with_it() -> None:
    """A monitor run in the caller's task group probes services added before."""
    svc = FakeService()
    monitor = HealthMonitor()
    monitor.add("svc", svc.probe, CFG)
    assert not is_running(monitor)
    async with anyio.create_task_group() as tg:
        assert await tg.start(monitor.run) is monitor
        assert is_running(monitor)
        await anyio.sleep(1.5)
        tg.cancel_scope.cancel()
    assert len(svc.times) == 2
    assert not is_running(monitor)


async def test_running_twice_raises() -> None:
    """A monitor cannot run twice at once."""
    async with open_health_monitor() as monitor:
        with pytest.raises(RuntimeError, match="already running"):
            await monitor.run()


async def test_remove_stops_probing() -> None:
    """A removed service is probed no more and unknown afterwards."""
    svc = FakeService()
    async with open_health_monitor() as monitor:
        monitor.add("svc", svc.probe, CFG)
        await anyio.sleep(1.5)
        monitor.remove("svc")
        await anyio.sleep(3)
        with pytest.raises(UnknownService):
            monitor.status("svc")
    assert len(svc.times) == 2


async def test_unknown_names_and_bad_probes_are_clear_errors() -> None:
    """Unknown names raise UnknownService; a non-callable probe is a ConfigError."""
    monitor = HealthMonitor()
    with pytest.raises(UnknownService, match="'nope'"):
        monitor.status("nope")
    with pytest.raises(UnknownService):
        monitor.remove("nope")
    with pytest.raises(ConfigError, match="probe"):
        monitor.add("x", "not callable", CFG)  # type: ignore[arg-type]


async def test_breaker_opening_makes_the_service_unhealthy_at_once() -> None:
    """A breaker transition to OPEN is seen through its listener, without a probe."""
    breaker = create_breaker(
        "svc", BreakerConfig(consecutive_failures=1, open_duration=10, open_jitter=0)
    )
    svc = FakeService()
    async with open_health_monitor() as monitor:
        monitor.add("svc", svc.probe, CFG, breaker=breaker)
        await anyio.sleep(0.1)
        with capture_events() as events:
            breaker.on_failure(breaker.acquire())
        assert monitor.status("svc") is U
        assert monitor.service("svc").breaker_state == "open"
        changed = [e for e in events if e["event"] == "health.changed"]
        assert changed[0]["reason"] == "breaker_open"
        breaker.reset()
        assert monitor.status("svc") is H


async def test_breaker_already_open_counts_when_added() -> None:
    """A breaker that is open when the service is added makes it UNHEALTHY at once."""
    breaker = create_breaker("svc")
    breaker.force(BreakerState.FORCED_OPEN)
    monitor = HealthMonitor()
    monitor.add("svc", FakeService().probe, CFG, breaker=breaker)
    assert monitor.status("svc") is U


async def test_transitions_are_events_with_service_from_to_and_reason() -> None:
    """Each status change emits health.changed with service, from, to and reason."""
    svc = FakeService()
    svc.mode = "fail"
    with capture_events() as events:
        async with open_health_monitor() as monitor:
            monitor.add("svc", svc.probe, CFG)
            await anyio.sleep(1.5)
    changed = [e for e in events if e["event"] == "health.changed"]
    assert [(e["service"], e["from"], e["to"], e["reason"]) for e in changed] == [
        ("svc", "healthy", "degraded", "probe_failures")
    ]
    assert [e["ok"] for e in events if e["event"] == "health.probed"] == [False, False]


async def test_dependency_health_propagates_through_the_monitor() -> None:
    """A service whose dependency turns UNHEALTHY becomes DEGRADED."""
    db, api = FakeService(), FakeService()
    db.mode = "fail"
    async with open_health_monitor() as monitor:
        monitor.add("db", db.probe, CFG)
        monitor.add("api", api.probe, HealthConfig(interval=1, jitter=0, depends_on=("db",)))
        await anyio.sleep(2.5)
        assert (monitor.status("db"), monitor.status("api")) == (U, D)
        assert monitor.service("api").unhealthy_dependencies == ("db",)


async def test_a_failing_listener_does_not_break_the_monitor() -> None:
    """A listener that raises is reported and the monitor keeps probing."""

    def broken(tr: HealthTransition) -> None:
        raise RuntimeError("boom")

    svc = FakeService()
    svc.mode = "fail"
    with capture_events() as events:
        async with open_health_monitor() as monitor:
            monitor.add_listener(broken)
            monitor.add("svc", svc.probe, CFG)
            await anyio.sleep(2.5)
            assert monitor.status("svc") is U
    assert any(e["event"] == "health.listener_failed" for e in events)


class Blocker(Actor[Any, Any]):
    """Handles one message at a time and blocks on it until released."""

    def __init__(self) -> None:
        self.release = anyio.Event()

    async def handle(self, msg: Any) -> Any:
        await self.release.wait()
        return msg


async def test_probes_keep_running_while_the_mailbox_is_full() -> None:
    """A probe that bypasses the mailbox keeps succeeding while the mailbox is full."""
    blocker = Blocker()
    probed: list[float] = []
    async with open_actor(blocker, mailbox_size=1) as ref:

        async def control_lane_probe() -> None:  # stands in for ServiceActor.probe
            probed.append(anyio.current_time())
            if not ref.alive:
                raise RuntimeError("down")

        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(ref.call, "busy", timeout=100))
            await anyio.sleep(0.1)  # "busy" is being handled
            tg.start_soon(partial(ref.call, "queued", timeout=100))
            await anyio.sleep(0.1)
            assert ref.queued == 1  # full: a mailbox probe would wait behind it
            async with open_health_monitor() as monitor:
                monitor.add("svc", control_lane_probe, CFG)
                await anyio.sleep(3.5)
                assert ref.queued == 1
                assert monitor.status("svc") is H
                assert monitor.service("svc").probes == 4
            blocker.release.set()
    assert len(probed) == 4


async def test_report_is_json_serialisable_and_has_every_field() -> None:
    """to_dict() dumps to JSON with status, readiness and per-service details."""
    svc = FakeService()
    async with open_health_monitor(restarts=lambda name: 3) as monitor:
        monitor.add("svc", svc.probe, CFG, breaker=create_breaker("svc"))
        await anyio.sleep(0.1)
        data = json.loads(json.dumps(monitor.report().to_dict()))
    assert data["status"] == "healthy"
    assert data["ready"] is True
    entry = data["services"]["svc"]
    assert entry["status"] == "healthy"
    assert entry["breaker_state"] == "closed"
    assert entry["restarts"] == 3
    assert entry["last_ok"] is True
    assert entry["consecutive_failures"] == 0
    assert entry["last_latency"] == pytest.approx(0.0, abs=1e-9)


async def test_broken_restart_provider_reports_none() -> None:
    """A restart provider that raises gives restarts=None, not a failed report."""

    def broken(name: str) -> int:
        raise KeyError(name)

    monitor = HealthMonitor(restarts=broken)
    monitor.add("svc", FakeService().probe, CFG)
    assert monitor.report().service("svc").restarts is None


async def test_restarts_from_reads_a_supervisor_tree() -> None:
    """restarts_from(sup) gives the restart count of a child by its path."""
    log = Log()
    spec = sv.SupervisorSpec(
        id="root",
        backoff=sv.Backoff.none(),
        children=(
            worker("a", log),
            sv.SupervisorSpec(id="tools", children=(worker("mcp", log),)),
        ),
    )
    async with sv.start(spec) as sup:
        with pytest.raises(RuntimeError):
            await sup.ref("tools/mcp").call("crash")
        await anyio.sleep(0.1)
        restarts = restarts_from(sup)
        assert (restarts("a"), restarts("tools/mcp"), restarts("nope")) == (0, 1, None)


async def test_open_breaker_due_for_trials_counts_as_half_open_at_the_next_probe() -> None:
    """Once its open duration has passed, an OPEN breaker only degrades the service."""
    breaker = create_breaker(
        "svc", BreakerConfig(consecutive_failures=1, open_duration=2.5, open_jitter=0)
    )
    async with open_health_monitor() as monitor:
        monitor.add("svc", FakeService().probe, CFG, breaker=breaker)
        breaker.on_failure(breaker.acquire())
        assert monitor.status("svc") is U
        await anyio.sleep(2.9)  # probe at 2 (still open): unhealthy
        assert monitor.status("svc") is U
        await anyio.sleep(0.2)  # probe at 3: due for trials
        assert monitor.status("svc") is D
        assert monitor.service("svc").breaker_state == "half_open"
        assert monitor.breaker_of("svc") is breaker


async def test_an_error_in_the_block_propagates_unwrapped() -> None:
    """An exception raised in open_health_monitor's block comes out as it was."""
    with pytest.raises(ValueError, match="boom"):
        async with open_health_monitor() as monitor:
            monitor.add("svc", FakeService().probe, CFG)
            raise ValueError("boom")


async def test_watch_children_monitors_every_worker_of_a_tree() -> None:
    """watch_children adds each worker by relative path, once, with its probe."""
    log = Log()
    spec = sv.SupervisorSpec(
        id="root",
        children=[
            worker("db", log),
            sv.SupervisorSpec(id="tools", children=[worker("mcp", log), worker("skip", log)]),
        ],
    )
    probed: list[str] = []

    def probe_of(ref: Any) -> Any:
        if ref.name.endswith("skip"):  # names are full paths ("root/tools/skip")
            return None

        async def probe() -> None:  # stands in for the ServiceActor's ref.probe
            probed.append(ref.name)

        return probe

    async with sv.start(spec) as sup, open_health_monitor() as monitor:
        configs = {"tools/mcp": HealthConfig(interval=1, required=False)}
        added = watch_children(monitor, sup, probe_of=probe_of, config_of=configs.get)
        assert added == ["root/db", "root/tools/mcp"]  # the refs' names
        assert watch_children(monitor, sup, probe_of=probe_of) == []
        await anyio.sleep(0.5)
        assert sorted(probed) == ["root/db", "root/tools/mcp"]
        assert monitor.report().service("root/tools/mcp").required is False
        assert restarts_from(sup)("root/tools/mcp") == 0


async def test_watch_children_uses_the_refs_probe_by_default() -> None:
    """Without probe_of, children whose ref has no `probe` are skipped."""
    log = Log()
    async with sv.start(sv.SupervisorSpec(id="root", children=[worker("a", log)])) as sup:
        monitor = HealthMonitor()
        expected = ["root/a"] if callable(getattr(sup.ref("a"), "probe", None)) else []
        assert watch_children(monitor, sup) == expected


class FakeInstrument:
    """Records OpenTelemetry-style add/record/set calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, dict[str, Any]]] = []

    def add(self, value: float, attributes: dict[str, Any]) -> None:
        self.calls.append((value, attributes))

    record = set = add


async def test_probes_and_transitions_are_opentelemetry_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Probes, their latency, transitions and the status level go to OTel instruments."""
    from supervisor.health import _metrics

    instruments: dict[str, FakeInstrument] = {}
    monkeypatch.setattr(
        _metrics, "_instrument", lambda name: instruments.setdefault(name, FakeInstrument())
    )
    svc = FakeService()
    svc.mode = "fail"
    async with open_health_monitor() as monitor:
        monitor.add("svc", svc.probe, CFG)
        await anyio.sleep(1.5)
    assert instruments["health.probes"].calls == [
        (1, {"service": "svc", "result": "failed"}),
        (1, {"service": "svc", "result": "failed"}),
    ]
    assert [v for v, _ in instruments["health.probe.duration"].calls] == [0.0, 0.0]
    assert instruments["health.transitions"].calls == [
        (1, {"service": "svc", "from": "healthy", "to": "degraded", "reason": "probe_failures"})
    ]
    assert instruments["health.status"].calls == [(1, {"service": "svc"})]
