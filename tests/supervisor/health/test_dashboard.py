"""/tree and /dashboard on the health app: a real tree with a service actor against the mock
LLM server, served by hypercorn on 127.0.0.1, read over HTTP on both backends."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import anyio
import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import ConfigError, LatencyRecorder, correlation_id, serve_asgi
from actors._events import emit
from supervisor.fallback import llm_router
from supervisor.health import HealthMonitor, health_app, open_health_monitor
from supervisor.health._feed import EventFeed, open_feed
from tests.supervisor.health.dashboard_tree import HELLO, PROBES, find, open_breaker, running_tree

pytestmark = pytest.mark.anyio


async def test_tree_snapshot_has_the_schema_and_the_whole_tree() -> None:
    """/tree answers schema actorvisor.tree/1 with every supervisor and worker in order."""
    async with running_tree() as run:
        answer = await run.client.get("/tree")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    snap = answer.json()
    assert snap["schema"] == "actorvisor.tree/1"
    root = snap["root"]
    assert (root["path"], root["kind"], root["strategy"]) == ("agent", "supervisor", "one_for_one")
    assert [c["path"] for c in root["children"]] == ["agent/llm", "agent/mini", "agent/tools"]
    tools = root["children"][2]
    assert (tools["strategy"], [c["id"] for c in tools["children"]]) == ("one_for_all", ["echo"])
    assert snap["services"] == []
    assert snap["health"] == {"status": "healthy", "ready": True}


async def test_a_service_worker_shows_breaker_limits_calls_and_health() -> None:
    """A service's row carries its breaker, limiter room, counters, mailbox and health."""
    async with running_tree() as run:
        await run.sup.ref("llm").call(HELLO, timeout=5)
        llm = find((await run.client.get("/tree")).json()["root"], "agent/llm")
    assert (llm["kind"], llm["state"], llm["restarts"], llm["queued"]) == (
        "worker",
        "running",
        0,
        0,
    )
    assert llm["breaker"]["state"] == "closed"
    assert llm["breaker"]["failure_rate"] == 0.0
    assert llm["limits"]["capacity"] == {"requests": 50.0}
    assert 48 <= llm["limits"]["available"]["requests"] <= 50
    assert llm["calls"]["succeeded"] == 1
    assert llm["health"]["status"] == "healthy"


async def test_a_plain_actor_has_no_service_readings() -> None:
    """A worker without a service shows its state and mailbox; service fields are null."""
    async with running_tree() as run:
        echo = find((await run.client.get("/tree")).json()["root"], "agent/tools/echo")
    assert (echo["state"], echo["queued"]) == ("running", 0)
    assert echo["breaker"] is echo["limits"] is echo["latency"] is echo["calls"] is None


async def test_an_open_breaker_and_restarts_show_in_the_snapshot() -> None:
    """After an outage the breaker is open with its failure rate; a crash counts a restart."""
    async with running_tree() as run:
        await open_breaker(run)
        with pytest.raises(RuntimeError):
            await run.sup.ref("tools/echo").call("crash", timeout=5)
        await anyio.sleep(0.05)
        root = (await run.client.get("/tree")).json()["root"]
    breaker = find(root, "agent/llm")["breaker"]
    assert (breaker["state"], breaker["failure_rate"]) == ("open", 1.0)
    assert breaker["rejected"] == 2
    assert 0 < breaker["retry_after"] <= 60
    assert find(root, "agent/tools")["restarts"] == 0
    assert find(root, "agent/tools/echo")["restarts"] == 1


async def test_latency_shows_when_the_service_has_a_recorder() -> None:
    """p50, p99 and the series come from the service's LatencyRecorder."""
    async with running_tree() as run:
        recorder = LatencyRecorder(slice_seconds=1.0, slices=10)
        now = anyio.current_time()
        for ms in (10, 20, 30, 40, 1000):
            recorder.record(ms / 1000, now)
        run.llm.latency = recorder
        latency = find((await run.client.get("/tree")).json()["root"], "agent/llm")["latency"]
    assert latency["count"] == 5
    assert latency["p50"] == pytest.approx(0.030, rel=0.05)
    assert latency["p99"] == 1.0
    assert (latency["window"], latency["slice"], len(latency["series"])) == (10.0, 1.0, 10)
    assert latency["series"][-1] == 1.0


async def test_events_feed_keeps_names_and_correlation_ids() -> None:
    """The snapshot's feed has the lifecycle events with their correlation id, no traceback."""
    async with running_tree() as run:
        with correlation_id("req-9"), pytest.raises(RuntimeError):
            await run.sup.ref("tools/echo").call("crash", timeout=5)
        await anyio.sleep(0.05)
        feed = (await run.client.get("/tree")).json()["events"]
    names = [item["event"] for item in feed["items"]]
    assert "supervisor.child_restarted" in names
    [crashed] = [item for item in feed["items"] if item["event"] == "actor.crashed"]
    assert crashed["correlation_id"] == "req-9"
    assert crashed["level"] == "error"
    assert crashed["fields"] == {"actor": "agent/tools/echo", "error_type": "RuntimeError"}
    assert feed["next"] == feed["items"][-1]["seq"]


async def test_since_returns_only_newer_events() -> None:
    """/tree?since=N lists only events numbered after N; ?events=N keeps the newest N."""
    async with running_tree() as run:
        first = (await run.client.get("/tree")).json()["events"]
        emit("test.marker", n=1)
        after = (await run.client.get("/tree", params={"since": first["next"]})).json()
        two = (await run.client.get("/tree", params={"events": 2})).json()["events"]
    newer = after["events"]["items"]
    assert all(item["seq"] > first["next"] for item in newer)
    assert "test.marker" in [item["event"] for item in newer]
    assert [item["seq"] for item in two["items"]] == [
        after["events"]["next"] - 1,
        after["events"]["next"],
    ]


@pytest.mark.parametrize(
    "query", [{"since": "-1"}, {"since": "x"}, {"events": "1e3"}, {"since": "²"}]
)
async def test_bad_query_numbers_are_400(query: dict[str, str]) -> None:
    """A since or events that is not a non-negative integer is refused with 400."""
    async with running_tree() as run:
        answer = await run.client.get("/tree", params=query)
    assert answer.status_code == 400


async def test_fallback_share_comes_from_the_router() -> None:
    """Calls a router sends to its fallback show as the primary's fallback share."""
    async with running_tree() as run:
        router = llm_router(
            run.sup.ref("llm"), run.sup.ref("mini"), name="agent/llm", breaker=run.llm.breaker
        )
        before = find((await run.client.get("/tree")).json()["root"], "agent/llm")["fallback"]
        await router.call(HELLO, timeout=5)
        await open_breaker(run)
        for _ in range(3):
            await router.call(HELLO, timeout=5)
        snap = (await run.client.get("/tree")).json()
    fallback = find(snap["root"], "agent/llm")["fallback"]
    base = before["routes"] if before else {}
    primary = fallback["routes"]["primary"] - base.get("primary", 0)
    mini = fallback["routes"]["fallback:agent/mini"] - base.get("fallback:agent/mini", 0)
    assert (primary, mini) == (1, 3)
    assert 0 < fallback["share"] <= 1
    assert {"name": "agent/llm", "routes": fallback["routes"]} in snap["routers"]


async def test_monitored_services_outside_the_tree_are_listed() -> None:
    """Without a tree, the monitor's services appear under `services`."""
    async with open_health_monitor() as monitor:

        async def probe() -> None:
            pass

        monitor.add("billing", probe, PROBES)
        async with serve_asgi(health_app(monitor)) as url, httpx2.AsyncClient(base_url=url) as c:
            snap = (await c.get("/tree")).json()
    assert snap["root"] is None
    [billing] = snap["services"]
    assert (billing["path"], billing["kind"], billing["health"]["status"]) == (
        "billing",
        "service",
        "healthy",
    )


async def test_dashboard_page_and_assets_are_served_with_a_strict_csp() -> None:
    """/dashboard, its script and stylesheet come from the package; the CSP allows only self."""
    async with running_tree() as run:
        page = await run.client.get("/dashboard")
        script = await run.client.get("/dashboard.js")
        style = await run.client.get("/dashboard.css")
    assert page.status_code == script.status_code == style.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert script.headers["content-type"].startswith("text/javascript")
    assert style.headers["content-type"].startswith("text/css")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self'" in csp
    assert "connect-src 'self'" in csp
    assert '<script src="dashboard.js"' in page.text
    assert "http" not in page.text.replace('"http://www.w3.org', "")
    assert "fetch(`tree?since=" in script.text


async def test_dashboard_can_be_disabled() -> None:
    """With dashboard=False, /tree and /dashboard are 404 and no feed is kept."""
    async with running_tree(dashboard=False) as run:
        tree = await run.client.get("/tree")
        page = await run.client.get("/dashboard")
        ready = await run.client.get("/readyz")
    assert (tree.status_code, page.status_code, ready.status_code) == (404, 404, 200)


async def test_events_zero_keeps_no_feed() -> None:
    """events=0 serves the tree with `events` null."""
    async with running_tree(events=0) as run:
        snap = (await run.client.get("/tree")).json()
    assert snap["events"] is None
    assert snap["root"] is not None


async def call_app(app: Any, path: str, query: bytes) -> int:
    """Calls the ASGI app directly (no server) and returns the response status."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "query_string": query}
    await app(scope, receive, send)
    return int(sent[0]["status"])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60) | st.from_regex(rb"(since|events)=[^&]{0,20}", fullmatch=True))
def test_any_query_string_is_200_or_400(query: bytes) -> None:
    """Whatever the query string, /tree answers 200 or 400 and the app never fails."""
    app = health_app(HealthMonitor())
    for backend in ("asyncio", "trio"):
        assert anyio.run(call_app, app, "/tree", query, backend=backend) in (200, 400)


def test_a_tree_that_is_not_a_supervisor_is_refused() -> None:
    """health_app(tree=...) checks it has a tree() to snapshot."""
    with pytest.raises(ConfigError) as info:
        health_app(HealthMonitor(), tree="agent")
    assert info.value.field == "tree"


def test_feed_is_bounded_and_numbered() -> None:
    """The ring keeps the newest `capacity` events with growing sequence numbers."""
    feed = EventFeed(3)
    for n in range(5):
        feed.append("e", "info", {"n": n, "exc_info": ValueError("x")})
    items = feed.read()["items"]
    assert [(i["seq"], i["fields"]) for i in items] == [(3, {"n": 2}), (4, {"n": 3}), (5, {"n": 4})]
    assert feed.read(since=5) == {"next": 5, "items": []}


def test_feed_fields_are_made_json_safe() -> None:
    """Non-JSON values are shown by a bounded repr; infinities as text."""
    feed = EventFeed(2)
    feed.append("e", "info", {"obj": object(), "inf": float("inf"), "long": "x" * 300, "t": (1, 2)})
    fields = feed.read()["items"][0]["fields"]
    assert fields["obj"].startswith("<object object")
    assert fields["inf"] == "inf"
    assert fields["long"] == "x" * 300
    assert fields["t"] == [1, 2]


def test_a_dropped_feed_unsubscribes() -> None:
    """Once the app holding a feed is gone, its sink is removed (emit pays nothing again)."""
    from actors import _events

    gc.collect()  # feeds of apps other tests dropped go first
    before = len(_events._sinks)
    feed = open_feed(5)
    emit("test.seen")
    assert [i["event"] for i in feed.read()["items"]] == ["test.seen"]
    assert len(_events._sinks) == before + 1
    gone = weakref.ref(feed)
    del feed
    gc.collect()
    assert gone() is None
    assert len(_events._sinks) == before
