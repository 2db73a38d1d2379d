"""The demo agent: a supervised LLM + SQL + MCP agent under scheduled chaos, on one machine.

Run: python examples/demo_agent.py [--backend asyncio|trio] [--duration S]
                                   [--config examples/demo_agent.toml] [--no-live]

Everything is local and embedded: two mock OpenAI-compatible servers on 127.0.0.1 (a
primary model and a cheaper one), a SQLite file, and the MCP test server as a
subprocess. A supervision tree declared in the TOML file runs one service actor per
service; agent loops run "turns" (ask the LLM through a fallback router, store the answer
in SQL, call an MCP tool) while the chaos schedule injects 429 bursts, 529s, latency
spikes, an outage, a hung service, an actor crash and a killed MCP server. A live view
shows the tree; the run ends with a report, and exits 0 only if every invariant held:
no call outlived its deadline, every turn is accounted for, nothing leaked.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import random
import sys
import tempfile
import tomllib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import anyio
import attrs
import structlog

import supervisor as sv
from actors import PoolConfig, load_services_config, serve_asgi
from actors.services import Service, ServiceConfig
from actors.services.llm import ChatRequest, LLMClient
from actors.services.mcp import CallTool, MCPClient, server_command
from actors.services.sql import Query, SQLiteClient
from actors.testing import Behaviour, ChaosClient, ChaosConfig, count_tasks, serve_mock_llm
from supervisor.fallback import llm_router, mcp_router
from supervisor.health import HealthConfig, health_app, open_health_monitor, watch_children

HERE = Path(__file__).parent
SLACK = 0.1  # scheduling slack allowed past a deadline, seconds
PROBES = HealthConfig(interval=0.5, jitter=0.1, timeout=0.5, failures_to_degrade=2)


@attrs.define
class Stats:
    """What the run saw: per-call latencies and outcomes, per-turn outcomes."""

    turns: Counter[str] = attrs.field(factory=Counter)
    calls: dict[str, Counter[str]] = attrs.field(factory=lambda: defaultdict(Counter))
    latencies: dict[str, list[float]] = attrs.field(factory=lambda: defaultdict(list))
    late: int = 0
    worst_overrun: float = 0.0
    started: int = 0
    events: list[str] = attrs.field(factory=list)

    def record(self, service: str, outcome: str, latency: float, budget: float) -> None:
        self.calls[service][outcome] += 1
        self.latencies[service].append(latency)
        if latency > budget + SLACK:
            self.late += 1
        self.worst_overrun = max(self.worst_overrun, latency - budget)

    def percentile(self, service: str, fraction: float) -> float:
        values = sorted(self.latencies.get(service, ()))
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(fraction * len(values)))]


class Demo:
    def __init__(self, config: dict[str, Any], duration: float | None) -> None:
        self.config = config
        demo = config.get("demo", {})
        self.duration = duration if duration is not None else float(demo.get("duration", 20))
        self.agents = int(demo.get("agents", 12))
        self.timeout = float(demo.get("turn_timeout", 2.0))
        self.rng = random.Random(demo.get("seed", 7))
        self.resilience = load_services_config(config)
        self.stats = Stats()
        self.chaos_db: ChaosClient[Any, Any, Any] | None = None

    def service(self, name: str, client: Any, **changes: Any) -> Service[Any, Any]:
        resilience = self.resilience[name]
        return Service(name, client, ServiceConfig.from_resilience(resilience, **changes))

    async def run(self, live: bool) -> int:
        tasks_before = count_tasks()
        await self.serve(live)
        await anyio.sleep(0.1)  # let cancelled helper tasks unwind
        self.tasks_left = count_tasks() - tasks_before
        return self.report()

    async def serve(self, live: bool) -> None:
        async with (
            serve_mock_llm() as primary_api,
            serve_mock_llm() as mini_api,
        ):
            self.apis = {"llm": primary_api.control, "llm_mini": mini_api.control}
            folder = tempfile.mkdtemp(prefix="actorvisor-demo-")
            db_path = Path(folder) / "agent.db"
            injector_holder: list[ChaosClient[Any, Any, Any]] = []

            def db_client() -> ChaosClient[Any, Any, Any]:
                client = ChaosClient(
                    SQLiteClient("db", db_path),
                    ChaosConfig(),
                    injector=injector_holder[0].injector if injector_holder else None,
                )
                injector_holder.append(client)
                self.chaos_db = injector_holder[0]
                return client

            pool = PoolConfig(max_size=8, acquire_timeout=2.0)
            services = {
                "llm": self.service(
                    "llm",
                    lambda: LLMClient("llm", primary_api.base_url, model="big"),
                    pool=pool,
                ),
                "llm_mini": self.service(
                    "llm_mini",
                    lambda: LLMClient("llm_mini", mini_api.base_url, model="mini"),
                    pool=pool,
                ),
                "db": self.service("db", db_client, pool=PoolConfig(max_size=4)),
                "tools": self.service(
                    "tools",
                    lambda: MCPClient("tools", command=server_command()),
                    pool=PoolConfig(max_size=1, close_on_cancel=False),
                    max_concurrency=8,
                ),
            }
            factories = {name: svc.actor for name, svc in services.items()}
            spec = sv.spec_from_dict(self.config["supervisor"], factories)
            async with (
                sv.start(spec) as sup,
                open_health_monitor(restarts=sv_restarts(sup)) as monitor,
            ):
                refs = {name: sup.ref(name) for name in services}
                schema = (
                    "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, turn INT, t TEXT)"
                )
                await refs["db"].call(Query(schema))
                await refs["tools"].call(CallTool("echo", {"text": "warm up"}), timeout=30)
                breakers = {f"{spec.id}/{name}": svc.breaker for name, svc in services.items()}
                watch_children(  # after the warm-up: the MCP server takes a second to start
                    monitor,
                    sup,
                    config_of=lambda _path: PROBES,
                    breaker_of=lambda ref: breakers.get(ref.name),
                )
                llm = llm_router(
                    refs["llm"],
                    refs["llm_mini"],
                    canned="(I am busy; try again later)",
                    health=monitor,
                    breaker=services["llm"].breaker,
                )
                tools = mcp_router(refs["tools"], degraded="(tools unavailable)", health=monitor)
                async with serve_asgi(health_app(monitor)) as url:
                    self.health_url = f"{url}/readyz"
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self.chaos, refs, tg)
                        tg.start_soon(self.view, sup, services, monitor, live)
                        async with anyio.create_task_group() as agents:
                            for n in range(self.agents):
                                agents.start_soon(self.agent, n, llm, refs["db"], tools)
                        tg.cancel_scope.cancel()
                restarts = {child.id: child.restarts for child in sup.which_children()}
                report = monitor.report()
            self.restarts = restarts
            self.final_health = report.status.value
            self.services = services

    async def agent(self, n: int, llm: Any, db: Any, tools: Any) -> None:
        stop = anyio.current_time() + self.duration
        turn = 0
        while anyio.current_time() < stop:
            turn += 1
            self.stats.started += 1
            outcome = "ok"
            try:
                answer = await self.timed(
                    "llm",
                    llm.call(
                        ChatRequest.user(f"agent {n} turn {turn}", max_tokens=32),
                        timeout=self.timeout,
                    ),
                )
                if answer.from_fallback:
                    outcome = "fallback"
                text = answer.value if isinstance(answer.value, str) else answer.value.content
                await self.timed(
                    "db",
                    db.call(
                        Query("INSERT INTO notes (turn, t) VALUES (?, ?)", [turn, text]),
                        timeout=self.timeout,
                    ),
                )
                result = await self.timed(
                    "tools", tools.call(CallTool("echo", {"text": text[:40]}), timeout=self.timeout)
                )
                if result.from_fallback:
                    outcome = "fallback"
            except Exception as exc:
                outcome = f"error:{type(exc).__name__}"
            self.stats.turns[outcome] += 1
            await anyio.sleep(self.rng.uniform(0.0, 0.05))

    async def timed(self, service: str, call: Any) -> Any:
        start = anyio.current_time()
        try:
            result = await call
        except Exception as exc:
            self.stats.record(
                service, type(exc).__name__, anyio.current_time() - start, self.timeout
            )
            raise
        source = getattr(result, "source", "primary")
        self.stats.record(
            service,
            "ok" if source == "primary" else source,
            anyio.current_time() - start,
            self.timeout,
        )
        return result

    async def chaos(self, refs: dict[str, Any], tg: Any) -> None:
        start = anyio.current_time()
        for event in sorted(self.config.get("chaos", []), key=lambda e: e["at"]):
            if event["at"] >= self.duration:
                continue
            await anyio.sleep_until(start + event["at"])
            kind, service = event["kind"], event.get("service", "")
            self.stats.events.append(f"t={event['at']:>4}s {kind} {service}")
            api = self.apis.get(service)
            if kind == "rate_limit_burst" and api is not None:
                api.default = Behaviour.rate_limited(retry_after=None, retry_after_ms=100)
                tg.start_soon(_after, float(event["for"]), setattr, api, "default", Behaviour())
            elif kind == "overloaded" and api is not None:
                api.default = Behaviour.overloaded()
                tg.start_soon(_after, float(event["for"]), setattr, api, "default", Behaviour())
            elif kind == "hang" and api is not None:
                api.script(Behaviour.hang(repeat=int(event["count"])))
            elif kind == "latency_spike" and api is not None:
                api.latency = float(event["seconds"])
                tg.start_soon(_after, float(event["for"]), setattr, api, "latency", 0.0)
            elif kind == "outage" and api is not None:
                api.down = True
                tg.start_soon(_after, float(event["for"]), setattr, api, "down", False)
            elif kind == "crash" and service == "db" and self.chaos_db is not None:
                self.chaos_db.crash_next()
            elif kind == "kill_mcp":
                with contextlib.suppress(Exception):  # the point: the server dies
                    await refs["tools"].call(CallTool("crash", {}), timeout=5)
        await anyio.sleep_forever()

    async def view(
        self, sup: Any, services: dict[str, Service[Any, Any]], monitor: Any, live: bool
    ) -> None:
        start = anyio.current_time()
        if live:
            from rich.live import Live

            with Live(self.table(sup, services, monitor, 0.0), refresh_per_second=4) as screen:
                while True:
                    await anyio.sleep(0.25)
                    screen.update(self.table(sup, services, monitor, anyio.current_time() - start))
        else:
            print(f"health endpoint: {self.health_url}")
            tick = 0
            while True:
                await anyio.sleep(0.25)
                tick += 1
                if tick % 8 == 0:
                    turns = sum(self.stats.turns.values())
                    health = {
                        s.name.split("/")[-1]: s.status.value for s in monitor.report().services
                    }
                    elapsed = anyio.current_time() - start
                    print(f"t={elapsed:5.1f}s turns={turns} {dict(self.stats.turns)} {health=}")

    def table(
        self, sup: Any, services: dict[str, Service[Any, Any]], monitor: Any, elapsed: float
    ) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        title = f"actorvisor demo  t={elapsed:4.1f}/{self.duration:.0f}s   {self.health_url}"
        table = Table(title=title)
        for column in (
            "actor",
            "state",
            "health",
            "breaker",
            "limits",
            "restarts",
            "ok",
            "fallback",
            "errors",
            "p50 ms",
            "p99 ms",
        ):
            table.add_column(
                column,
                justify="right"
                if column not in ("actor", "state", "health", "breaker", "limits")
                else "left",
            )
        report = {service.name: service for service in monitor.report().services}
        restarts = {child.id: child.restarts for child in sup.which_children()}
        for name, service in services.items():
            ref = sup.ref(name)
            calls = self.stats.calls.get("llm" if name.startswith("llm") else name, Counter())
            health = report.get(ref.name)
            limits = ""
            if service.limits is not None:
                available = service.limits.metrics().available
                limits = " ".join(f"{k}={v:.0f}" for k, v in available.items())
            errors = sum(v for k, v in calls.items() if k != "ok" and not k.startswith("fallback"))
            fallbacks = sum(v for k, v in calls.items() if k.startswith("fallback") or k == "cache")
            table.add_row(
                name,
                ref.state.value,
                health.status.value if health else "-",
                service.breaker.state.value if service.breaker else "-",
                limits,
                str(restarts.get(name, 0)),
                str(calls.get("ok", 0)) if name != "llm_mini" else "",
                str(fallbacks) if name == "llm" else "",
                str(errors) if name != "llm_mini" else "",
                f"{self.stats.percentile(name, 0.5) * 1e3:.1f}" if name != "llm_mini" else "",
                f"{self.stats.percentile(name, 0.99) * 1e3:.1f}" if name != "llm_mini" else "",
            )
        turns = ", ".join(f"{k}={v}" for k, v in sorted(self.stats.turns.items()))
        chaos = "\n".join(self.stats.events[-4:])
        return Group(table, Text(f"turns: {turns}"), Text(f"chaos:\n{chaos}"))

    def report(self) -> int:
        stats = self.stats
        finished = sum(stats.turns.values())
        print("\n== report")
        outcomes = dict(sorted(stats.turns.items()))
        print(f"turns started {stats.started}, finished {finished}: {outcomes}")
        for service in ("llm", "db", "tools"):
            calls = dict(sorted(stats.calls.get(service, Counter()).items()))
            latencies = stats.latencies.get(service, [])
            worst = max(latencies, default=0.0)
            print(
                f"  {service:6} {calls}  p50 {stats.percentile(service, 0.5) * 1e3:.1f} ms, "
                f"p99 {stats.percentile(service, 0.99) * 1e3:.1f} ms, max {worst * 1e3:.0f} ms "
                f"(deadline {self.timeout * 1e3:.0f} ms)"
            )
        for name, service in self.services.items():
            retries = service.stats.attempts - service.stats.requests
            breaker = "-"
            if service.breaker is not None:
                m = service.breaker.metrics()
                breaker = (
                    f"{m.state.value} (failures {m.failures}, not permitted {m.not_permitted})"
                )
            print(
                f"  {name:9} requests {service.stats.requests}, retries {retries}, "
                f"restarts {self.restarts.get(name, 0)}, breaker {breaker}"
            )
        print("chaos: " + "; ".join(stats.events))
        print(f"final health: {self.final_health}")
        checks = {
            "no call outlived its deadline": stats.late == 0,
            "every turn accounted for (ok + fallback + error == started)": finished
            == stats.started,
            "no task left running after shutdown": self.tasks_left <= 0,
        }
        for check, held in checks.items():
            print(f"  [{'ok' if held else 'FAILED'}] {check}")
        overrun = max(0.0, stats.worst_overrun) * 1e3
        print(f"worst overrun past a deadline: {overrun:.1f} ms (slack {SLACK * 1e3:.0f} ms)")
        held = all(checks.values())
        print("every invariant held" if held else "INVARIANTS VIOLATED")
        return 0 if held else 1


async def _after(delay: float, action: Any, *args: Any) -> None:
    await anyio.sleep(delay)
    action(*args)


def sv_restarts(sup: Any) -> Any:
    from supervisor.health import restarts_from

    return restarts_from(sup)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--duration", type=float, default=None, help="seconds of load")
    parser.add_argument("--config", type=Path, default=HERE / "demo_agent.toml")
    parser.add_argument("--no-live", action="store_true", help="plain log lines, no live view")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    config = tomllib.loads(args.config.read_text())
    live = not args.no_live and sys.stdout.isatty()
    demo = Demo(config, args.duration)
    return anyio.run(demo.run, live, backend=args.backend)


if __name__ == "__main__":
    sys.exit(main())
