"""Adaptive concurrency in the live view: the limit, its bounds, the slots held and the
drops of a service actor and of each group member that has one, in `/tree` (which the
dashboard renders) and in `/metrics`, on both backends."""

from __future__ import annotations

from typing import Any

import anyio
import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

import supervisor as sv
from actors import (
    ActorConfig,
    Service,
    ServiceConfig,
    ServiceError,
    serve_asgi,
)
from actors.resilience import AdaptiveConcurrency
from actors.services.llm import LLMClient
from actors.testing import serve_mock_llm
from supervisor.groups import ServiceGroup, member
from supervisor.health import health_app, open_health_monitor
from tests.actors.scripted import settle
from tests.actors.services.fake import Held
from tests.supervisor.health.dashboard_tree import HELLO, find, running_tree

pytestmark = pytest.mark.anyio

ADAPTIVE = AdaptiveConcurrency(initial=2, min_limit=1, max_limit=6, max_queued=4)


def samples(text: str) -> dict[tuple[str, str], float]:
    """Prometheus samples of the concurrency families by (sample name, service label)."""
    return {
        (sample.name, sample.labels["service"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("actorvisor_concurrency")
        for sample in family.samples
    }


async def test_an_adaptive_service_shows_its_limit_and_bounds() -> None:
    """A service with an adaptive limit has a concurrency reading; one without has null."""
    async with running_tree() as run:
        root = (await run.client.get("/tree")).json()["root"]
    assert find(root, "agent/mini")["concurrency"] == {
        "limit": 8.0,
        "in_flight": 0,
        "queued": 0,
        "min": 2,
        "max": 16,
        "drops": 0,
        "no_load_latency": None,
    }
    assert find(root, "agent/llm")["concurrency"] is None
    assert find(root, "agent/tools/echo")["concurrency"] is None


async def test_a_503_shows_as_a_drop_and_a_lower_limit() -> None:
    """After the mock answers 503 the snapshot shows the halved limit and one drop."""
    async with running_tree() as run:
        run.mini_server.control.down = True
        with pytest.raises(ServiceError):
            await run.sup.ref("mini").call(HELLO, timeout=5)
        mini = find((await run.client.get("/tree")).json()["root"], "agent/mini")
    assert (mini["concurrency"]["limit"], mini["concurrency"]["drops"]) == (4.0, 1)


async def test_metrics_expose_the_limit_its_bounds_and_drops_by_actor_path() -> None:
    """/metrics has the limit, min, max, in-flight and drops of each adaptive service."""
    async with running_tree() as run:
        run.mini_server.control.down = True
        with pytest.raises(ServiceError):
            await run.sup.ref("mini").call(HELLO, timeout=5)
        found = samples((await run.client.get("/metrics")).text)
    assert found == {
        ("actorvisor_concurrency_limit", "agent/mini"): 4.0,
        ("actorvisor_concurrency_limit_min", "agent/mini"): 2.0,
        ("actorvisor_concurrency_limit_max", "agent/mini"): 16.0,
        ("actorvisor_concurrency_in_flight", "agent/mini"): 0.0,
        ("actorvisor_concurrency_drops_total", "agent/mini"): 1.0,
    }


@pytest.mark.virtual_time
async def test_calls_beyond_the_limit_show_as_queued() -> None:
    """Three calls under a limit of two: two in flight and one queued, in both views."""
    release = anyio.Event()
    held = Service(
        "held", lambda: Held("held", release), ServiceConfig(retry=None, adaptive=ADAPTIVE)
    )
    spec = sv.SupervisorSpec(id="app", children=[sv.ChildSpec(id="held", factory=held.actor)])
    async with (
        sv.start(spec) as sup,
        open_health_monitor() as monitor,
        httpx2.AsyncClient(
            transport=httpx2.ASGITransport(
                app=health_app(monitor, tree=sup, services={"held": held})
            ),
            base_url="http://health",
        ) as client,
        anyio.create_task_group() as tg,
    ):
        for msg in "abc":
            tg.start_soon(sup.ref("held").call, msg)
        await settle()
        reading = find((await client.get("/tree")).json()["root"], "app/held")["concurrency"]
        found = samples((await client.get("/metrics")).text)
        release.set()
    assert (reading["limit"], reading["in_flight"], reading["queued"]) == (2.0, 2, 1)
    assert found[("actorvisor_concurrency_in_flight", "app/held")] == 2.0


async def test_group_members_show_their_own_limits() -> None:
    """Given a group, its members' nodes carry their services' readings: the adaptive
    member its limit (also in `members()` and `/metrics`), the other none."""
    async with serve_mock_llm() as east_server, serve_mock_llm() as west_server:

        def config(adaptive: AdaptiveConcurrency | None) -> ServiceConfig:
            return ServiceConfig.for_llm(adaptive=adaptive, actor=ActorConfig(call_timeout=5))

        def client(name: str, url: str) -> Any:
            return lambda: LLMClient(name, url, model="mock")

        east_member = member("east", client("east", east_server.base_url), config(ADAPTIVE))
        west_member = member("west", client("west", west_server.base_url), config(None))
        group = ServiceGroup("llm", [east_member, west_member])
        limit = east_member.service.concurrency
        assert limit is not None
        spec = sv.SupervisorSpec(id="app", children=[group.spec()])
        async with sv.start(spec) as sup, open_health_monitor() as monitor:
            app = health_app(monitor, tree=sup, services={group.ref.name: group})
            async with serve_asgi(app) as url, httpx2.AsyncClient(base_url=url) as http:
                await group.call(HELLO, timeout=5)
                root = (await http.get("/tree")).json()["root"]
                found = samples((await http.get("/metrics")).text)
            rows = {row.id: row.concurrency for row in group.members()}
    east, west = find(root, "app/llm/members/east"), find(root, "app/llm/members/west")
    assert (east["concurrency"]["limit"], east["concurrency"]["max"]) == (limit.limit, 6)
    assert west["concurrency"] is None
    assert east["calls"]["requests"] + west["calls"]["requests"] == 1
    assert find(root, "app/llm/group")["calls"]["succeeded"] == 1
    assert rows == {"east": limit.limit, "west": None}
    assert found[("actorvisor_concurrency_limit", "app/llm/members/east")] == limit.limit
    assert ("actorvisor_concurrency_limit", "app/llm/members/west") not in found
