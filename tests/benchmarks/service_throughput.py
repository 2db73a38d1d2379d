"""Service actor throughput against Little's law, and its per-call overhead.

Run: python tests/benchmarks/service_throughput.py [--quick] [--json PATH]

1. Throughput: the mock LLM server (hypercorn on 127.0.0.1) answers every request after
   a fixed latency L; a ServiceActor with a pool of P connections is driven by 10 x P
   concurrent callers for a few seconds. The bound is P / L requests per second; the
   target is >= 0.95 of it.
2. Overhead: a ServiceActor (the LLM kind's pipeline: retry, breaker with slow-call
   timing, latency recording, pool; its own actor config) around an in-process echo
   client, against two bare baselines in the same rounds, interleaved: a `ref.call` to
   an echo actor handling as many messages at once (the concurrent hop; target
   <= 1.25x), and a sequential echo actor (the cheapest hop; target <= 2x). The load
   is CPU-bound (16 callers, no latency), so the cost per call is exposed. Costs are
   CPU time per call (process time: other tenants of a shared machine are left out),
   ratios are taken within each round, and the report gives min / median / max over
   the rounds.
Both per backend.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import attrs

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the root: tests.benchmarks

from actors import (
    KINDS,
    Actor,
    ActorConfig,
    PoolConfig,
    Service,
    ServiceClient,
    ServiceConfig,
    open_actor,
)
from actors.services import ChatRequest
from actors.services.llm import LLMClient
from actors.testing import MockLLM, serve_mock_llm
from tests.benchmarks._cli import parse_args, write_json

POOL = 8
LATENCY = 0.2


class EchoClient(ServiceClient[int, int, int]):
    kind = KINDS["llm"]

    async def connect(self) -> int:
        return 0

    async def request(self, conn: int, request: int) -> int:
        return request


class Echo(Actor[int, int]):
    max_concurrency = POOL

    async def handle(self, msg: int) -> int:
        return msg


class SequentialEcho(Actor[int, int]):
    async def handle(self, msg: int) -> int:
        return msg


async def throughput(seconds: float) -> float:
    async with serve_mock_llm(MockLLM(latency=LATENCY)) as server:
        config = attrs.evolve(
            ServiceConfig.for_llm(),
            pool=PoolConfig(max_size=POOL, acquire_timeout=30.0),
            actor=ActorConfig(call_timeout=30.0, mailbox_size=10 * POOL),
        )
        service = Service(
            "llm",
            lambda: LLMClient("llm", server.base_url, model="m", max_connections=POOL),
            config,
        )
        done = 0
        async with open_actor(service.actor(), config=service.config.actor) as ref:
            await ref.call(ChatRequest.user("warm up"))
            stop = anyio.current_time() + seconds

            async def caller() -> None:
                nonlocal done
                while anyio.current_time() < stop:
                    await ref.call(ChatRequest.user("hi", max_tokens=8))
                    done += 1

            start = anyio.current_time()
            async with anyio.create_task_group() as tg:
                for _ in range(10 * POOL):
                    tg.start_soon(caller)
            elapsed = anyio.current_time() - start
    return (done / elapsed) / (POOL / LATENCY)


async def per_call(make: Any, calls: int) -> float:
    """Microseconds of this process's CPU time per call, 16 callers at once."""
    actor, config = make()
    async with open_actor(actor, config=config) as ref:
        per_caller = calls // (2 * POOL)

        async def caller() -> None:
            for i in range(per_caller):
                await ref.call(i)

        for i in range(100):  # warm: the pool's connections, the first worker tasks
            await ref.call(i)
        gc.collect()
        start = time.process_time()
        async with anyio.create_task_group() as tg:
            for _ in range(2 * POOL):
                tg.start_soon(caller)
        return (time.process_time() - start) / (per_caller * 2 * POOL) * 1e6


def service_actor() -> tuple[Actor[int, int], ActorConfig]:
    service = Service(
        "echo",
        lambda: EchoClient("echo"),
        ServiceConfig.for_llm(pool=PoolConfig(max_size=POOL)),
    )
    return service.actor(), service.config.actor


def echo() -> tuple[Actor[int, int], ActorConfig]:
    return Echo(), ActorConfig()


def sequential_echo() -> tuple[Actor[int, int], ActorConfig]:
    return SequentialEcho(), ActorConfig()


def _spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def _fmt(spread: dict[str, float]) -> str:
    return f"{spread['min']:.2f}/{spread['median']:.2f}/{spread['max']:.2f}"


async def measure(seconds: float, calls: int, rounds: int) -> dict[str, Any]:
    fraction = await throughput(seconds)
    bare, sequential, ours = [], [], []
    for _ in range(rounds):  # interleaved: every variant sees the same noise
        bare.append(await per_call(echo, calls))
        sequential.append(await per_call(sequential_echo, calls))
        ours.append(await per_call(service_actor, calls))
    return {
        "throughput_fraction_of_bound": fraction,
        "bare_concurrent_call_us": statistics.median(bare),
        "bare_sequential_call_us": statistics.median(sequential),
        "service_call_us": statistics.median(ours),
        "vs_concurrent": _spread([s / b for s, b in zip(ours, bare, strict=True)]),
        "vs_sequential": _spread([s / b for s, b in zip(ours, sequential, strict=True)]),
    }


def main() -> int:
    args = parse_args(__doc__, quick_help="a second of load, few calls")
    seconds, calls, rounds = (1.0, 4_000, 3) if args.quick else (5.0, 40_000, 7)
    report: dict[str, Any] = {"pool": POOL, "latency_s": LATENCY, "rounds": rounds}
    report["backends"] = {}
    print(f"per-call CPU time, medians; ratios min/median/max over {rounds} rounds")
    print(
        f"{'backend':8} {'throughput/bound':>17} {'concurrent us':>14} {'sequential us':>14}"
        f" {'service us':>11} {'vs conc.':>15} {'vs seq.':>15}"
    )
    for backend in ("asyncio", "trio"):
        m = anyio.run(measure, seconds, calls, rounds, backend=backend)
        report["backends"][backend] = m
        print(
            f"{backend:8} {m['throughput_fraction_of_bound']:17.3f}"
            f" {m['bare_concurrent_call_us']:14.2f} {m['bare_sequential_call_us']:14.2f}"
            f" {m['service_call_us']:11.2f} {_fmt(m['vs_concurrent']):>15}"
            f" {_fmt(m['vs_sequential']):>15}"
        )
    print(
        "targets: throughput >= 0.95 of P/L; a service call <= 1.25x a bare concurrent"
        " call and <= 2x a bare sequential call"
    )
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
