"""Chaos injectors and the load generator (both backends, virtual time)."""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import pytest

import supervisor as sv
from actors import Actor, ConfigError, Service, ServiceConfig, ServiceUnavailable, open_actor
from actors.resilience import RetryPolicy
from actors.testing import (
    ChaosActor,
    ChaosClient,
    ChaosConfig,
    ChaosCrash,
    LatencyHistogram,
    LoadConfig,
    run_load,
)
from tests.actors.scripted import settle
from tests.actors.services.fake import Backend, FakeClient

pytestmark = pytest.mark.anyio


class Echo(Actor[int, int]):
    async def handle(self, msg: int) -> int:
        return msg


@pytest.mark.virtual_time
async def test_closed_loop_accounts_for_every_request() -> None:
    """N callers for a duration: every request sent has one outcome, none late."""
    async with open_actor(ChaosActor(Echo(), ChaosConfig(latency=0.01))) as ref:
        report = await run_load(lambda i: ref.call(i, timeout=1), LoadConfig(callers=4, duration=1))
    assert report.accounted
    assert 100 <= report.sent <= 104  # 10 ms each for 1 s, plus those in flight at the end
    assert report.outcomes["ok"] == report.sent
    assert report.late == 0
    assert report.latency.percentile(0.5) >= 0.01


@pytest.mark.virtual_time
async def test_open_loop_keeps_its_rate() -> None:
    """An open loop starts requests at the target rate, whatever the latency."""
    async with open_actor(ChaosActor(Echo(), ChaosConfig(latency=0.5))) as ref:
        report = await run_load(
            lambda i: ref.call(i, timeout=100), LoadConfig(rate=20, duration=2, timeout=100)
        )
    assert report.sent == 40
    assert report.accounted


@pytest.mark.virtual_time
async def test_injected_errors_match_what_callers_saw() -> None:
    """With a seeded error rate, the callers' error count equals what was injected."""
    inner = Echo()
    inner.crash_on_error = False
    actor = ChaosActor(inner, ChaosConfig(error_rate=0.2, seed=7))
    async with open_actor(actor) as ref:
        report = await run_load(
            lambda i: ref.call(i, timeout=1), LoadConfig(callers=3, requests=500)
        )
    assert report.accounted
    assert report.outcomes["ServiceUnavailable"] == actor.stats.errors
    assert 60 <= actor.stats.errors <= 140  # about 20 % of 500


@pytest.mark.virtual_time
async def test_late_resolutions_are_counted() -> None:
    """A call resolving after its deadline plus slack is counted as late."""

    async def slow(_index: int) -> None:
        await anyio.sleep(2)

    report = await run_load(slow, LoadConfig(callers=1, requests=3, timeout=1, slack=0.1))
    assert report.late == 3
    assert report.max_overrun == pytest.approx(1.0, abs=1e-6)


@pytest.mark.virtual_time
async def test_chaos_client_crash_every_n_restarts_the_service_actor() -> None:
    """crash_every makes every N-th request a bug: the actor crashes and is restarted;
    the breaker and limits survive."""
    backend = Backend()
    chaos = ChaosConfig(crash_every=3, seed=1)
    shared: list[ChaosClient[Any, Any, Any]] = []

    def client() -> ChaosClient[Any, Any, Any]:
        wrapper = ChaosClient(
            FakeClient(backend), chaos, injector=shared[0].injector if shared else None
        )
        shared.append(wrapper)
        return wrapper

    service = Service("fake", client, ServiceConfig(retry=None, breaker=None))
    spec = sv.SupervisorSpec(
        id="root",
        backoff=sv.Backoff.none(),
        max_restarts=100,
        children=[sv.ChildSpec(id="fake", factory=service.actor)],
    )
    async with sv.start(spec) as sup:
        ref = sup.ref("fake")
        outcomes = []
        for i in range(9):
            try:
                outcomes.append(await ref.call(str(i), timeout=1))
            except ChaosCrash:
                outcomes.append("crash")
        assert outcomes.count("crash") == 3
        await settle()
        assert sup.which_children()[0].restarts == 3
    assert shared[0].stats.crashes == 3


@pytest.mark.virtual_time
async def test_flapping_alternates_healthy_and_failing_periods() -> None:
    """flap_period fails every request in odd periods, and probes too."""
    backend = Backend()
    wrapper = ChaosClient(FakeClient(backend), ChaosConfig(flap_period=10))
    service = Service("fake", lambda: wrapper, ServiceConfig(retry=None, breaker=None))
    async with open_actor(service.actor()) as ref:
        assert await ref.call("a") == "ok:a"
        await ref.probe()
        await anyio.sleep(10)
        with pytest.raises(ServiceUnavailable):
            await ref.call("b")
        with pytest.raises(ServiceUnavailable):
            await ref.probe()
        await anyio.sleep(10)
        assert await ref.call("c") == "ok:c"


@pytest.mark.virtual_time
async def test_retries_absorb_injected_faults() -> None:
    """A flaky client under a retry policy: every call succeeds; attempts = calls + errors."""
    backend = Backend()
    wrapper = ChaosClient(FakeClient(backend), ChaosConfig(error_rate=0.3, seed=3))
    retry = RetryPolicy(attempts=10, backoff_initial=0.0, backoff_max=0.0, budget_ratio=None)
    service = Service("fake", lambda: wrapper, ServiceConfig(retry=retry, breaker=None))
    async with open_actor(service.actor()) as ref:
        report = await run_load(
            lambda i: ref.call(str(i), timeout=5), LoadConfig(callers=5, requests=200)
        )
    assert report.outcomes == {"ok": 200}
    assert service.stats.attempts == 200 + wrapper.stats.errors


async def test_latency_histogram_percentiles() -> None:
    """Percentiles fall within about 10 % of the true value."""
    histogram = LatencyHistogram()
    for ms in range(1, 1001):
        histogram.record(ms / 1000)
    assert histogram.percentile(0.5) == pytest.approx(0.5, rel=0.11)
    assert histogram.percentile(0.99) == pytest.approx(0.99, rel=0.11)
    assert histogram.maximum == 1.0


async def test_bad_load_and_chaos_configs() -> None:
    """Invalid configurations raise ConfigError naming the field."""
    with pytest.raises(ConfigError, match="callers"):
        LoadConfig(duration=1)
    with pytest.raises(ConfigError, match="duration"):
        LoadConfig(callers=1)
    with pytest.raises(ConfigError, match="error_rate"):
        ChaosConfig(error_rate=1.5)
    with pytest.raises(ConfigError, match="crash_every"):
        ChaosConfig(crash_every=0)
    assert attrs.evolve(ChaosConfig(), seed=3).seed == 3
