"""One run of the demo: the stack up, agents and chaos for the duration, the report."""

from __future__ import annotations

import argparse
import logging
import sys
import tomllib
from pathlib import Path
from typing import Any

import anyio
import httpx2
import structlog

from actors import ConfigError
from actors.testing import count_tasks
from demo.agent import Agent, Routes
from demo.chaos import Targets, run_chaos
from demo.lateness import LoopLateness
from demo.ledger import Ledger, routes_from_tree
from demo.recovery import RecoveryTracker
from demo.report import Outcome, render, write_json
from demo.settings import SERVICES, Settings, load_settings
from demo.stack import Stack, open_stack
from demo.view import show

HERE = Path(__file__).parent.parent


def _actors(stack: Stack) -> dict[str, dict[str, Any]]:
    restarts = {child.id: child.restarts for child in stack.sup.which_children()}
    out = {}
    for name, service in stack.services.items():
        stats = service.stats
        breaker = "-"
        if service.breaker is not None:
            m = service.breaker.metrics()
            breaker = f"{m.state.value} (failures {m.failures}, refused {m.not_permitted})"
        out[name] = {
            "requests": stats.requests,
            "succeeded": stats.succeeded,
            "failed": stats.failed,
            "retries": stats.attempts - stats.requests,
            "restarts": restarts.get(name, 0),
            "breaker": breaker,
        }
    return out


async def run_demo(
    config: dict[str, Any],
    settings: Settings,
    *,
    live: bool,
    break_recovery: bool,
    json_path: Path | None,
) -> int:
    """Runs the demo once; returns the exit code (0: every invariant held)."""
    tasks_before = count_tasks()
    ledger = Ledger()
    lateness = LoopLateness()
    print("starting the mock services, the tree and the MCP server...", flush=True)
    async with open_stack(config, settings, break_recovery=break_recovery) as stack:
        print(f"dashboard: {stack.dashboard}", flush=True)
        tools = await Agent.list_tools(stack.ref("tools"))  # starts the MCP server
        start = anyio.current_time()  # t=0 of the run: the view, the chaos, the checks
        monitored = {service: stack.monitored(service) for service in SERVICES}
        tracker = RecoveryTracker(start, stack.monitor.status, monitored)
        stack.monitor.add_listener(tracker.on_health)
        routes = Routes(stack, ledger, start, tracker.on_answer)
        agent = Agent(routes, tools, settings.turn_timeout, settings.seed)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lateness.run)
            tg.start_soon(lambda: show(stack, ledger, tracker, settings.duration, start, live=live))
            async with anyio.create_task_group() as work:
                targets = Targets(stack.mocks, stack.db_chaos, stack.ref("tools"))
                work.start_soon(run_chaos, settings.chaos, start, targets, tracker.on_fault)
                for number in range(settings.agents):
                    work.start_soon(agent.run, number, start + settings.duration)
            tg.cancel_scope.cancel()
        elapsed = anyio.current_time() - start
        final_health = stack.monitor.report().status.value
        async with httpx2.AsyncClient() as http:
            snapshot = (await http.get(stack.dashboard.removesuffix("dashboard") + "tree")).json()
        routers = routes_from_tree(snapshot, stack.root)
        actors = _actors(stack)
    await anyio.sleep(0.1)  # let cancelled helper tasks unwind
    outcome = Outcome(
        settings=settings,
        ledger=ledger,
        recoveries=tracker.events,
        lateness=lateness,
        final_health=final_health,
        routers=routers,
        actors=actors,
        tasks_left=count_tasks() - tasks_before,
        elapsed=elapsed,
    )
    text, held = render(outcome)
    print(text, flush=True)
    if json_path is not None:
        write_json(outcome, json_path)
    return 0 if held else 1


def main(argv: list[str] | None = None) -> int:
    """The command line (see examples/demo_agent.py)."""
    parser = argparse.ArgumentParser(description="The demo agent under scheduled chaos.")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--config", type=Path, default=HERE / "demo_agent.toml")
    parser.add_argument(
        "--quick", action="store_true", help="the compressed schedule: every fault, ~30 s"
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds of load")
    parser.add_argument("--no-live", action="store_true", help="plain log lines, no live view")
    parser.add_argument(
        "--break-recovery",
        action="store_true",
        help="on purpose: crashed actors are never restarted (the run must fail)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the checks here")
    args = parser.parse_args(argv)
    # The library is quiet by default; make sure a configured structlog stays quiet too.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    try:
        config = tomllib.loads(args.config.read_text())
        settings = load_settings(config, quick=args.quick)
        if args.duration is not None:
            settings = settings.shortened(args.duration)
    except (ConfigError, tomllib.TOMLDecodeError) as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 2
    live = not args.no_live and sys.stdout.isatty()
    return anyio.run(
        lambda: run_demo(
            config,
            settings,
            live=live,
            break_recovery=args.break_recovery,
            json_path=args.json,
        ),
        backend=args.backend,
    )
