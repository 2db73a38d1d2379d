"""The health ASGI app, served by a real hypercorn on 127.0.0.1 on both backends."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from actors import serve_asgi
from actors.resilience import create_breaker
from supervisor.fallback import ResponseCache, create_cache
from supervisor.health import HealthConfig, HealthMonitor, _asgi, health_app, open_health_monitor

pytestmark = pytest.mark.anyio

# Probes run on demand (probe_now); the schedule is far away in real time.
STRICT = HealthConfig(interval=600, jitter=0, failures_to_degrade=1, failures_to_unhealthy=1)


class Switch:
    def __init__(self) -> None:
        self.ok = True

    async def probe(self) -> None:
        if not self.ok:
            raise ConnectionError("down")


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[httpx2.AsyncClient]:
    """Serves `app` with hypercorn (`serve_asgi`) on loopback; yields a client for it."""
    async with serve_asgi(app) as url, httpx2.AsyncClient(base_url=url) as client:
        yield client


async def test_healthz_is_200_while_the_monitor_runs() -> None:
    """/healthz answers 200 alive while the monitor runs, 503 stopped otherwise."""
    monitor = HealthMonitor()
    async with serve(health_app(monitor)) as client:
        stopped = await client.get("/healthz")
        async with anyio.create_task_group() as tg:
            await tg.start(monitor.run)
            alive = await client.get("/healthz")
            tg.cancel_scope.cancel()
    assert (stopped.status_code, stopped.json()) == (503, {"status": "stopped"})
    assert (alive.status_code, alive.json()) == (200, {"status": "alive"})


async def test_readyz_flips_when_a_required_service_is_unhealthy() -> None:
    """/readyz is 200 with the report, then 503 once a required service is unhealthy."""
    db, cache = Switch(), Switch()
    async with open_health_monitor() as monitor:
        monitor.add("db", db.probe, STRICT)
        monitor.add("cache", cache.probe, HealthConfig(interval=600, required=False))
        async with serve(health_app(monitor)) as client:
            ready = await client.get("/readyz")
            db.ok = False
            await monitor.probe_now("db")
            not_ready = await client.get("/readyz")
            db.ok = True
            await monitor.probe_now("db")
            await monitor.probe_now("db")
            again = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.headers["content-type"] == "application/json"
    assert ready.json()["services"]["db"]["status"] == "healthy"
    assert not_ready.status_code == 503
    body = not_ready.json()
    assert (body["status"], body["ready"]) == ("unhealthy", False)
    assert body["services"]["db"]["last_error"] == "ConnectionError"
    assert body["services"]["cache"]["required"] is False
    assert again.status_code == 200


async def test_unhealthy_optional_service_keeps_readyz_200() -> None:
    """An unhealthy optional service shows in the body but readiness stays 200."""
    opt = Switch()
    opt.ok = False
    async with open_health_monitor() as monitor:
        monitor.add(
            "opt",
            opt.probe,
            HealthConfig(
                interval=600, required=False, failures_to_degrade=1, failures_to_unhealthy=1
            ),
        )
        await monitor.probe_now("opt")
        async with serve(health_app(monitor)) as client:
            resp = await client.get("/readyz")
    assert resp.status_code == 200
    assert resp.json()["status"] == "degraded"
    assert resp.json()["services"]["opt"]["status"] == "unhealthy"


async def test_metrics_expose_health_latency_and_breaker_state() -> None:
    """/metrics is Prometheus text with health, probe latency and breaker state series."""
    svc = Switch()
    breaker = create_breaker("llm")
    cache: ResponseCache[str, str] = create_cache("answers")
    cache.put("q", "a", now=0.0)
    cache.get("q", now=1.0)
    monitor = HealthMonitor()  # not running: only probe_now probes
    monitor.add("llm", svc.probe, STRICT, breaker=breaker)
    await monitor.probe_now("llm")
    svc.ok = False
    await monitor.probe_now("llm")
    app = health_app(monitor, extra_metrics=cache.prometheus_families)
    async with serve(app) as client:
        resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == CONTENT_TYPE_LATEST
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }
    assert samples[("actorvisor_service_health", (("service", "llm"),))] == 2.0
    assert samples[("actorvisor_health", ())] == 2.0
    assert samples[("actorvisor_ready", ())] == 0.0
    assert ("actorvisor_probe_latency_seconds", (("service", "llm"),)) in samples
    assert samples[("actorvisor_probes_total", (("result", "failed"), ("service", "llm")))] == 1
    assert samples[("actorvisor_breaker_state", (("service", "llm"), ("state", "closed")))] == 1
    assert samples[("actorvisor_breaker_state", (("service", "llm"), ("state", "open")))] == 0
    hits = ("actorvisor_fallback_cache_lookups_total", (("cache", "answers"), ("result", "hit")))
    assert samples[hits] == 1


async def test_unknown_paths_and_methods_are_refused() -> None:
    """Unknown paths answer 404, other methods than GET/HEAD 405, HEAD has no body."""
    async with open_health_monitor() as monitor:
        async with serve(health_app(monitor, metrics=False)) as client:
            missing = await client.get("/nope")
            post = await client.post("/readyz")
            metrics = await client.get("/metrics")
            head = await client.head("/healthz")
    assert missing.status_code == 404
    assert post.status_code == 405
    assert metrics.status_code == 404
    assert (head.status_code, head.content) == (200, b"")


# --------------------------------------------------------------------------- in-process ASGI


async def asgi_get(app: Any, path: str, root_path: str = "") -> tuple[int, dict[str, str], bytes]:
    """Calls the ASGI app directly; returns status, headers and body."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "root_path": root_path}
    await app(scope, receive, send)
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers, sent[1]["body"]


async def test_metrics_answer_501_without_prometheus_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without prometheus-client, /metrics is 501 with a message naming the extra."""
    monkeypatch.setattr(_asgi, "prometheus_available", lambda: False)
    async with open_health_monitor() as monitor:
        status, _, body = await asgi_get(health_app(monitor), "/metrics")
    assert status == 501
    assert b"prometheus" in body


async def test_app_mounted_under_a_root_path_strips_it() -> None:
    """Mounted under /ops, /ops/readyz is the readiness endpoint."""
    async with open_health_monitor() as monitor:
        status, headers, body = await asgi_get(health_app(monitor), "/ops/readyz", "/ops")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["ready"] is True


def test_modules_import_and_record_without_optional_libraries() -> None:
    """supervisor.health imports and records metrics with neither optional library."""
    code = (
        "import sys\n"
        "sys.modules['prometheus_client'] = None\n"
        "sys.modules['opentelemetry'] = None\n"
        "from supervisor.health import _metrics\n"
        "import supervisor.fallback\n"
        "_metrics.record_probe('x', ok=True, latency=0.1)\n"
        "_metrics.record_cache('c', 'hit')\n"
        "assert not _metrics.prometheus_available()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
