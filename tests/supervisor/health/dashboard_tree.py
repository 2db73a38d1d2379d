"""A running tree for the dashboard tests: `agent` with two LLM service actors against the
mock LLM server (`llm`, and `mini` with an adaptive concurrency limit) and a `tools`
subtree with a plain actor, monitored and served by the health app on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx2
import pytest

import supervisor as sv
from actors import (
    Actor,
    ActorConfig,
    CircuitOpen,
    PoolConfig,
    Service,
    ServiceConfig,
    ServiceError,
    serve_asgi,
)
from actors.resilience import AdaptiveConcurrency, BreakerConfig, TokenBucket
from actors.services import ChatRequest
from actors.services.llm import LLMClient
from actors.testing import MockLLMServer, serve_mock_llm
from supervisor.health import (
    HealthConfig,
    health_app,
    open_health_monitor,
    restarts_from,
    watch_children,
)

PROBES = HealthConfig(interval=600, jitter=0, failures_to_degrade=1, failures_to_unhealthy=2)
HELLO = ChatRequest(messages=[{"role": "user", "content": "hello"}])
MINI_ADAPTIVE = AdaptiveConcurrency(initial=8, min_limit=2, max_limit=16, backoff=0.5)
"""The adaptive concurrency limit of `mini` (`llm` has none)."""


class Echo(Actor[str, str]):
    async def handle(self, msg: str) -> str:
        if msg == "crash":
            raise RuntimeError("crash")
        return msg


def llm_service(
    server: MockLLMServer, name: str = "llm", adaptive: AdaptiveConcurrency | None = None
) -> Service[Any, Any]:
    """An LLM service that opens its breaker after 4 calls at 50 % failures, no retries."""
    config = ServiceConfig(
        retry=None,
        breaker=BreakerConfig(
            window="count",
            window_size=4,
            minimum_calls=4,
            failure_rate_threshold=0.5,
            open_duration=60.0,
            open_jitter=0.0,
            half_open_permits=1,
        ),
        limits={"requests": TokenBucket(rate=600, period=60, capacity=50)},
        pool=PoolConfig(max_size=2),
        adaptive=adaptive,
        actor=ActorConfig(call_timeout=5.0),
    )
    return Service(name, lambda: LLMClient(name, server.base_url, model="mock"), config)


@attrs.define
class Running:
    """A running tree (`agent` with `llm`, `mini` and a `tools/echo` subtree) and its app."""

    url: str
    client: httpx2.AsyncClient
    sup: Any
    llm: Service[Any, Any]
    server: MockLLMServer
    monitor: Any
    mini_server: MockLLMServer


@asynccontextmanager
async def running_tree(**app_options: Any) -> AsyncIterator[Running]:
    async with serve_mock_llm() as server, serve_mock_llm() as mini_server:
        llm = llm_service(server)
        mini = llm_service(mini_server, "mini", MINI_ADAPTIVE)
        spec = sv.SupervisorSpec(
            id="agent",
            children=[
                sv.ChildSpec(id="llm", factory=llm.actor),
                sv.ChildSpec(id="mini", factory=mini.actor),
                sv.SupervisorSpec(
                    id="tools",
                    strategy="one_for_all",
                    backoff=sv.Backoff.none(),
                    children=[sv.ChildSpec(id="echo", factory=Echo)],
                ),
            ],
        )
        async with (
            sv.start(spec) as sup,
            open_health_monitor(restarts=restarts_from(sup)) as monitor,
        ):
            breakers = {"agent/llm": llm.breaker, "agent/mini": mini.breaker}
            watch_children(
                monitor, sup, config_of=lambda _p: PROBES, breaker_of=lambda r: breakers.get(r.name)
            )
            app = health_app(
                monitor, tree=sup, services={"llm": llm, "agent/mini": mini}, **app_options
            )
            async with serve_asgi(app) as url, httpx2.AsyncClient(base_url=url) as client:
                yield Running(url, client, sup, llm, server, monitor, mini_server)


async def open_breaker(run: Running) -> None:
    """Takes the mock LLM down and calls until the service's breaker opens."""
    run.server.control.down = True
    ref = run.sup.ref("llm")
    for _ in range(6):
        with pytest.raises((ServiceError, CircuitOpen)):
            await ref.call(HELLO, timeout=5)


def find(node: dict[str, Any], path: str) -> dict[str, Any]:
    if node["path"] == path:
        return node
    for child in node.get("children", ()):
        try:
            return find(child, path)
        except KeyError:
            pass
    raise KeyError(path)
