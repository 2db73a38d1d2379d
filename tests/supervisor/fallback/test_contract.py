"""The health-and-fallback contract: a failing service, probes, routing and recovery."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from actors import Actor, open_actor
from actors.resilience import BreakerConfig, CircuitBreaker, create_breaker
from supervisor.fallback import FallbackRouter, route
from supervisor.health import HealthConfig, HealthStatus, HealthTransition, open_health_monitor

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

INTERVAL = 1.0
CFG = HealthConfig(
    interval=INTERVAL,
    jitter=0.0,
    timeout=0.5,
    failures_to_degrade=2,
    failures_to_unhealthy=3,
    successes_to_recover=2,
)


class MockService(Actor[Any, Any]):
    """A service actor that can be made to fail; failures do not crash it."""

    crash_on_error = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.failing = False
        self.handled = 0

    async def handle(self, msg: Any) -> Any:
        self.handled += 1
        if self.failing:
            raise ConnectionError(f"{self.name} is down")
        return (self.name, msg)

    async def probe(self) -> None:
        """Stands in for the control-lane probe a ServiceActor provides."""
        if self.failing:
            raise ConnectionError(f"{self.name} is down")


async def drive(
    router: FallbackRouter[Any, Any], main: Any, t0: float, count: int, outage: tuple[float, float]
) -> tuple[list[tuple[float, str]], list[BaseException]]:
    """Sends request i at t0 + 0.05 + 0.1 * i (offset from probe times) while `main` fails
    from t0 + outage[0] to t0 + outage[1]; returns (sent, source) per reply and the errors.

    Checks that each reply came from the service its source names.
    """
    results: list[tuple[float, str]] = []
    errors: list[BaseException] = []

    async def load() -> None:
        for i in range(count):
            await anyio.sleep_until(t0 + 0.05 + 0.1 * i)
            sent = anyio.current_time() - t0
            try:
                routed = await router.call(i)
            except Exception as exc:  # would be a lost request
                errors.append(exc)
            else:
                who = "main" if routed.source == "primary" else "cheap"
                assert routed.value == (who, i)
                results.append((sent, routed.source))

    async with anyio.create_task_group() as tg:
        tg.start_soon(load)
        await anyio.sleep_until(t0 + outage[0])
        main.failing = True
        await anyio.sleep_until(t0 + outage[1])
        main.failing = False
    return results, errors


async def test_traffic_moves_to_the_fallback_and_back_without_losing_requests() -> None:
    """Degraded after N failed probes, fallback at once, primary again after M successes."""
    main, cheap = MockService("main"), MockService("cheap")
    transitions: list[HealthTransition] = []
    async with (
        open_actor(main, name="llm") as primary,
        open_actor(cheap, name="llm-cheap") as fallback,
        open_health_monitor() as monitor,
    ):
        t0 = anyio.current_time()
        monitor.add_listener(transitions.append)
        monitor.add("llm", main.probe, CFG)
        monitor.add("llm-cheap", cheap.probe, CFG)
        router = route(primary, fallback, health=monitor.status, classifier="llm")
        results, errors = await drive(router, main, t0, 120, outage=(3.02, 8.02))

    assert errors == []
    assert len(results) == 120  # every request answered
    steps = [(tr.to_status, tr.at - t0) for tr in transitions if tr.service == "llm"]
    assert [status for status, _ in steps] == [
        HealthStatus.DEGRADED,  # probes at 4 and 5 failed
        HealthStatus.UNHEALTHY,  # ... and at 6
        HealthStatus.HEALTHY,  # probes at 9 and 10 passed
    ]
    assert [at for _, at in steps] == pytest.approx([5.0, 6.0, 10.0], abs=1e-9)
    assert steps[0][1] - 3.02 <= CFG.failures_to_degrade * INTERVAL
    for sent, source in results:
        expected = "primary" if sent < 3.02 or sent > 10.0 else "fallback:llm-cheap"
        assert source == expected, (sent, source)
    # Requests sent while failing but before the probes noticed reached the primary,
    # failed there and were answered by the fallback: ~20 of them, none lost.
    failed_on_primary = sum(1 for sent, _ in results if 3.02 < sent < 5.0)
    assert failed_on_primary == 20


async def test_readiness_and_dependants_follow_a_failing_required_service() -> None:
    """A required service going UNHEALTHY flips readiness and degrades its dependants."""
    db, api = MockService("db"), MockService("api")
    async with open_health_monitor() as monitor:
        monitor.add("db", db.probe, CFG)
        monitor.add("api", api.probe, HealthConfig(interval=1, jitter=0, depends_on=("db",)))
        await anyio.sleep(0.5)
        assert monitor.report().ready
        db.failing = True
        await anyio.sleep(3)
        report = monitor.report()
        assert (report.ready, report.status) == (False, HealthStatus.UNHEALTHY)
        assert report.service("api").status is HealthStatus.DEGRADED
        db.failing = False
        await anyio.sleep(2)
        assert monitor.report().ready
        assert monitor.status("api") is HealthStatus.HEALTHY


class BreakerService(Actor[Any, Any]):
    """A service actor whose calls go through its breaker (like a ServiceActor)."""

    crash_on_error = False

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker
        self.failing = False

    async def handle(self, msg: Any) -> Any:
        return await self.breaker.call(self._remote, msg)

    async def _remote(self, msg: Any) -> Any:
        if self.failing:
            raise ConnectionError("remote down")
        return ("main", msg)

    async def probe(self) -> None:
        """Bypasses the breaker and the mailbox, like a control-lane probe."""
        if self.failing:
            raise ConnectionError("remote down")


async def test_open_breaker_routes_away_at_once_and_a_trial_call_brings_it_back() -> None:
    """Breaker opens: fallback at once; after open_duration a trial reaches the primary."""
    breaker = create_breaker(
        "llm",
        BreakerConfig(consecutive_failures=3, open_duration=5, open_jitter=0, half_open_permits=1),
    )
    main, cheap = BreakerService(breaker), MockService("cheap")
    transitions: list[HealthTransition] = []
    async with (
        open_actor(main, name="llm") as primary,
        open_actor(cheap, name="llm-cheap") as fallback,
        open_health_monitor() as monitor,
    ):
        t0 = anyio.current_time()
        monitor.add_listener(transitions.append)
        monitor.add("llm", main.probe, CFG, breaker=breaker)
        router = route(primary, fallback, health=monitor)  # picks up the breaker
        assert router.primary.breaker is breaker
        results, errors = await drive(router, main, t0, 100, outage=(2.02, 6.02))

    assert errors == []
    assert len(results) == 100
    opened = next(tr.at - t0 for tr in transitions if tr.reason == "breaker_open")
    assert opened == pytest.approx(2.25, abs=1e-6)  # the third failed request
    before = [s for t, s in results if t < 2.02]
    outage = [s for t, s in results if 2.02 < t < opened + 5 - 1e-6]
    trial = [s for t, s in results if opened + 5 - 1e-6 <= t < 8.0]
    after = [s for t, s in results if t > 8.0]
    assert set(before) == {"primary"}
    assert set(outage) == {"fallback:llm-cheap"}
    assert trial[0] == "primary"  # the trial call closes the breaker ...
    assert set(trial[1:]) == {"fallback:llm-cheap"}  # ... probes still say UNHEALTHY
    assert set(after) == {"primary"}  # M = 2 good probes (7 and 8): HEALTHY again
    recovered = [tr for tr in transitions if tr.to_status is HealthStatus.HEALTHY]
    assert [tr.reason for tr in recovered] == ["probes_recovered"]
    assert recovered[0].at - t0 == pytest.approx(8.0, abs=1e-9)
