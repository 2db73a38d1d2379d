"""An agent whose LLM primary fails mid-run: a fallback serves it, then it recovers —
and the health endpoint shows each step.

Run: python examples/health_and_fallback.py [--backend asyncio|trio]

Two mock OpenAI-compatible servers stand for a primary model and a cheaper one. The
primary has an outage; probes mark it degraded, the router sends
turns to the cheaper model, and `/readyz` on the health endpoint says so. Then the
primary heals; after enough healthy probes traffic returns to it.
"""

from __future__ import annotations

import argparse
import json

import anyio
import attrs
import httpx2

import supervisor as sv
from actors import Service, ServiceConfig, serve_asgi
from actors.resilience import BreakerConfig, RetryPolicy
from actors.services import ChatRequest, ChatResponse
from actors.services.llm import LLMClient
from actors.testing import serve_mock_llm
from supervisor.fallback import FallbackRouter, llm_router
from supervisor.health import HealthConfig, health_app, open_health_monitor, watch_children

PROBES = HealthConfig(
    interval=0.2, jitter=0.0, timeout=0.3, failures_to_degrade=2, successes_to_recover=2
)


def llm_service(name: str, base_url: str) -> Service[ChatRequest, ChatResponse]:
    config = attrs.evolve(
        ServiceConfig.for_llm(),
        retry=RetryPolicy.for_llm(attempts=2, backoff_initial=0.01, backoff_max=0.02),
        breaker=BreakerConfig(window="count", window_size=6, minimum_calls=6, open_duration=1.0),
    )
    return Service(name, lambda: LLMClient(name, base_url, model=name), config)


async def turns(router: FallbackRouter[ChatRequest, object], n: int) -> str:
    sources = []
    for i in range(n):
        reply = await router.call(ChatRequest.user(f"turn {i}"), timeout=1.0)
        sources.append(reply.source)
    return ", ".join(f"{s} x{sources.count(s)}" for s in dict.fromkeys(sources))


async def main() -> None:
    async with serve_mock_llm() as primary_api, serve_mock_llm() as cheap_api:
        primary = llm_service("primary", primary_api.base_url)
        cheap = llm_service("cheap", cheap_api.base_url)
        tree = sv.SupervisorSpec(
            id="agent",
            children=[
                sv.ChildSpec(id="primary", factory=primary.actor, config=primary.config.actor),
                sv.ChildSpec(id="cheap", factory=cheap.actor, config=cheap.config.actor),
            ],
        )
        async with sv.start(tree) as sup, open_health_monitor() as monitor:
            breakers = {"agent/primary": primary.breaker, "agent/cheap": cheap.breaker}
            watch_children(
                monitor,
                sup,
                config_of=lambda _path: PROBES,
                breaker_of=lambda ref: breakers[ref.name],
            )
            router = llm_router(
                sup.ref("primary"), sup.ref("cheap"), canned="(busy, try later)", health=monitor
            )
            async with (
                serve_asgi(health_app(monitor)) as url,
                httpx2.AsyncClient(base_url=url) as http,
            ):
                print(f"health endpoint: {url}/readyz  (and /healthz, /metrics)")

                async def show(step: str) -> None:
                    answer = await http.get("/readyz")
                    body = answer.json()
                    statuses = {name: s["status"] for name, s in body["services"].items()}
                    print(f"  /readyz -> {answer.status_code} {json.dumps(statuses)}  [{step}]")

                await anyio.sleep(0.5)
                print("1. all healthy:", await turns(router, 5))
                await show("healthy")

                print("2. the primary has an outage (every request and probe gets 503)")
                primary_api.control.down = True
                await anyio.sleep(0.8)
                await show("primary degraded")
                print("   turns now:", await turns(router, 5))

                print("3. the primary heals")
                primary_api.control.down = False
                await anyio.sleep(1.5)
                await show("recovered")
                print("   turns now:", await turns(router, 5))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, backend=args.backend)
