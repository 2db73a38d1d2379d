"""The runtime's own OpenTelemetry instruments, observed at collection: mailbox depth,
in-flight calls, breaker state, limiter room and restarts (both backends, virtual time)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import supervisor as sv
from actors import Actor, Service, ServiceConfig, open_actor
from actors.resilience import BreakerConfig, TokenBucket
from tests.actors.scripted import settle
from tests.actors.services.fake import Held
from tests.actors.tracing.conftest import Telemetry

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


def points(telemetry: Telemetry, name: str) -> dict[tuple[tuple[str, Any], ...], float]:
    """The metric's current values by their (sorted) attributes."""
    metric = telemetry.metrics()[name]
    return {
        tuple(sorted(point.attributes.items())): point.value for point in metric.data.data_points
    }


async def test_service_gauges_read_in_flight_breaker_and_room(telemetry: Telemetry) -> None:
    """While one call is in the client: one in flight, the breaker closed, one request
    of ten taken from the limit."""
    release = anyio.Event()
    svc = Service(
        "held",
        lambda: Held("held", release),
        ServiceConfig(
            retry=None,
            breaker=BreakerConfig(),
            limits={"requests": TokenBucket(rate=10, period=60.0, capacity=10)},
        ),
    )
    async with open_actor(svc.actor(), name="held") as ref, anyio.create_task_group() as tg:
        tg.start_soon(ref.call, "a")
        await settle()
        service = (("actorvisor.service", "held"),)
        assert points(telemetry, "actorvisor.service.in_flight")[service] == 1
        room = points(telemetry, "actorvisor.limiter.available")
        assert room[(("actorvisor.limit", "requests"), *service)] == pytest.approx(9)
        states = points(telemetry, "actorvisor.breaker.state")
        assert {
            state: value
            for attributes, value in states.items()
            if dict(attributes).get("actorvisor.service") == "held"
            for key, state in attributes
            if key == "actorvisor.breaker.state"
        } == {
            "closed": 1,
            "open": 0,
            "half_open": 0,
            "forced_open": 0,
            "disabled": 0,
            "metrics_only": 0,
        }
        release.set()


class Blocked(Actor[str, str]):
    """Handles one message at a time, each once `release` is set."""

    def __init__(self, release: anyio.Event) -> None:
        self.release = release

    async def handle(self, msg: str) -> str:
        await self.release.wait()
        return msg


async def test_mailbox_depth_counts_queued_messages(telemetry: Telemetry) -> None:
    """Two calls queued behind the one being handled: a depth of two."""
    release = anyio.Event()
    async with open_actor(Blocked(release), name="busy") as ref, anyio.create_task_group() as tg:
        for msg in "abc":
            tg.start_soon(ref.call, msg)
        await settle()
        depth = points(telemetry, "actorvisor.actor.mailbox.depth")
        assert depth[(("actorvisor.actor", "busy"),)] == 2
        release.set()


class Fragile(Actor[str, str]):
    async def handle(self, msg: str) -> str:
        if msg == "crash":
            raise RuntimeError("crash")
        return msg


async def test_restarts_count_incarnations_after_the_first(telemetry: Telemetry) -> None:
    """A child that crashed once and was restarted has one restart."""
    spec = sv.SupervisorSpec(
        id="root", backoff=sv.Backoff.none(), children=[sv.ChildSpec(id="w", factory=Fragile)]
    )
    child = (("actorvisor.actor", "root/w"),)
    async with sv.start(spec) as sup:
        assert points(telemetry, "actorvisor.actor.restarts")[child] == 0
        with pytest.raises(RuntimeError):
            await sup.ref("w").call("crash")
        assert await sup.ref("w").call("again") == "again"
        assert points(telemetry, "actorvisor.actor.restarts")[child] == 1
