"""An adaptive concurrency limit in the runtime's OpenTelemetry instruments: its value,
bounds, slots held and drops, observed at collection (both backends, virtual time)."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import pytest

from actors import Service, ServiceConfig, ServiceResponseError, open_actor
from actors.resilience import AdaptiveConcurrency
from tests.actors.scripted import settle
from tests.actors.services.fake import Held
from tests.actors.tracing.conftest import Telemetry

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

_names = itertools.count()


class Overloaded(Held):
    """Answers "shed" with a 503; holds any other request until `release` is set."""

    async def request(self, conn: None, request: str) -> str:
        if request == "shed":
            raise ServiceResponseError(self.name, 503)
        return await super().request(conn, request)


def adaptive_service(release: anyio.Event) -> Service[str, str]:
    """A service named afresh: a finished test's service may linger until collected, and
    services of one name are summed."""
    name = f"adaptive-{next(_names)}"
    config = ServiceConfig(
        retry=None,
        breaker=None,
        adaptive=AdaptiveConcurrency(initial=8, min_limit=2, max_limit=16, backoff=0.5),
    )
    return Service(name, lambda: Overloaded(name, release), config)


def value(telemetry: Telemetry, metric: str, service: Service[Any, Any]) -> float:
    """The metric's value for `service` (its only attribute)."""
    points: dict[tuple[tuple[str, object], ...], float] = {
        tuple(point.attributes.items()): point.value
        for point in telemetry.metrics()[metric].data.data_points
    }
    return points[(("actorvisor.service", service.name),)]


async def test_the_limit_and_its_bounds_are_gauges(telemetry: Telemetry) -> None:
    """Before any answer: the initial limit between its min and max, nothing in flight."""
    svc = adaptive_service(anyio.Event())
    async with open_actor(svc.actor()):
        assert value(telemetry, "actorvisor.concurrency.limit", svc) == 8
        assert value(telemetry, "actorvisor.concurrency.limit.min", svc) == 2
        assert value(telemetry, "actorvisor.concurrency.limit.max", svc) == 16
        assert value(telemetry, "actorvisor.concurrency.in_flight", svc) == 0
        assert value(telemetry, "actorvisor.concurrency.drops", svc) == 0


async def test_a_503_shows_as_a_drop_and_a_lower_limit(telemetry: Telemetry) -> None:
    """A 503 halves the limit (backoff 0.5): the gauge reads 4 and the counter one drop."""
    svc = adaptive_service(anyio.Event())
    async with open_actor(svc.actor()) as ref:
        with pytest.raises(ServiceResponseError):
            await ref.call("shed")
        assert value(telemetry, "actorvisor.concurrency.limit", svc) == 4
        assert value(telemetry, "actorvisor.concurrency.drops", svc) == 1
        metric: Any = telemetry.metrics()["actorvisor.concurrency.drops"]
        assert metric.data.is_monotonic


async def test_calls_holding_a_slot_are_in_flight(telemetry: Telemetry) -> None:
    """Two calls held by the client hold two of the limit's slots."""
    release = anyio.Event()
    svc = adaptive_service(release)
    async with open_actor(svc.actor()) as ref, anyio.create_task_group() as tg:
        tg.start_soon(ref.call, "a")
        tg.start_soon(ref.call, "b")
        await settle()
        assert value(telemetry, "actorvisor.concurrency.in_flight", svc) == 2
        release.set()
    assert value(telemetry, "actorvisor.concurrency.in_flight", svc) == 0


async def test_a_service_without_an_adaptive_limit_is_not_observed(telemetry: Telemetry) -> None:
    """A service with no adaptive limit has no concurrency points."""
    svc = Service("fixed", lambda: Overloaded("fixed", anyio.Event()), ServiceConfig(retry=None))
    async with open_actor(svc.actor(), name="fixed"):
        metrics = telemetry.metrics()
        points = metrics.get("actorvisor.concurrency.limit")
        names = {
            dict(point.attributes)["actorvisor.service"]
            for point in (points.data.data_points if points is not None else ())
        }
    assert "fixed" not in names
