"""Supervision costs: time from a crash to the new incarnation answering, and memory per
idle supervised actor.

Run: python tests/benchmarks/restart.py [--quick] [--json PATH]

- Restart latency (backoff off): a supervised echo actor is crashed by a call; the clock
  runs from the crash until a call to the same ref is answered by the next incarnation.
  Median and p99 over many restarts, per backend. Target: median <= 1 ms.
- Memory: tracemalloc's traced size before and after starting a supervisor with N idle
  children (10,000 by default), divided by N, per backend. Target: <= 4 KiB per actor.
  For scale, the same is measured for N bare tasks parked on an event (the floor any
  task-per-actor runtime pays).
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import sys
import time
import tracemalloc
from typing import Any

import anyio
from _cli import parse_args, write_json

import supervisor as sv
from actors import Actor


class Echo(Actor[Any, Any]):
    async def handle(self, msg: Any) -> Any:
        if msg == "crash":
            raise RuntimeError("crash")
        return msg


async def restart_latency(restarts: int) -> list[float]:
    spec = sv.SupervisorSpec(
        id="bench",
        backoff=sv.Backoff.none(),
        max_restarts=restarts + 10,
        period=1e-6,  # intensity never trips: each restart leaves the window at once
        children=[sv.ChildSpec(id="echo", factory=Echo)],
    )
    samples = []
    async with sv.start(spec) as sup:
        ref = sup.ref("echo")
        for _ in range(restarts):
            start = time.perf_counter()
            with contextlib.suppress(RuntimeError):
                await ref.call("crash")
            await ref.call("ping")
            samples.append(time.perf_counter() - start)
    return samples


async def memory_per_actor(children: int) -> tuple[float, float]:
    spec = sv.SupervisorSpec(
        id="bench",
        children=[sv.ChildSpec(id=f"c{i}", factory=Echo) for i in range(children)],
    )
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    async with sv.start(spec) as sup:
        gc.collect()
        during = tracemalloc.get_traced_memory()[0]
        assert sup.count_children().active == children
    tracemalloc.stop()
    per_actor = (during - before) / children

    event = anyio.Event()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    async with anyio.create_task_group() as tg:
        for _ in range(children):
            tg.start_soon(event.wait)
        await anyio.wait_all_tasks_blocked()
        gc.collect()
        during = tracemalloc.get_traced_memory()[0]
        event.set()
    tracemalloc.stop()
    per_task = (during - before) / children
    return per_actor, per_task


async def measure(restarts: int, children: int) -> dict[str, float]:
    samples = await restart_latency(restarts)
    per_actor, per_task = await memory_per_actor(children)
    samples.sort()
    return {
        "restart_median_ms": statistics.median(samples) * 1e3,
        "restart_p99_ms": samples[int(len(samples) * 0.99) - 1] * 1e3,
        "bytes_per_idle_actor": per_actor,
        "bytes_per_parked_task": per_task,
    }


def main() -> int:
    args = parse_args(__doc__, quick_help="fewer restarts and children")
    restarts, children = (200, 1_000) if args.quick else (2_000, 10_000)
    report: dict[str, Any] = {"restarts": restarts, "children": children, "backends": {}}
    print(f"{'backend':8} {'restart median':>15} {'p99':>8} {'per actor':>10} {'per task':>9}")
    for backend in ("asyncio", "trio"):
        m = anyio.run(measure, restarts, children, backend=backend)
        report["backends"][backend] = m
        actor_kib = m["bytes_per_idle_actor"] / 1024
        task_kib = m["bytes_per_parked_task"] / 1024
        print(
            f"{backend:8} {m['restart_median_ms']:12.3f} ms {m['restart_p99_ms']:6.3f} ms"
            f" {actor_kib:7.2f} KiB {task_kib:6.2f} KiB"
        )
    print("targets: restart median <= 1 ms; <= 4 KiB per idle supervised actor")
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
