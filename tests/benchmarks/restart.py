"""Supervision costs at scale: a restart among many siblings, starting many idle
children, and memory per idle supervised actor, each against its baseline in the same run.

Run: python tests/benchmarks/restart.py [--quick] [--json PATH]

- Restart among N siblings (N = 10, 1,000, 10,000; one_for_one, backoff off): a
  child in the middle is crashed by a call; the clock runs from the crash until a call
  to the same ref is answered by its next incarnation. Median over many restarts.
  Baseline: the same restart among 10 siblings. Target: among 10,000 <= 1.5x among 10
  (the bookkeeping is O(1) per restart).
- Start N idle children (N = 1,000, 10,000, 100,000): from entering `sv.start` until
  the block begins (every child started in order, each ready before the next), per
  child. Baselines, per task, for the same N in the same round: N bare anyio tasks each
  started with `TaskGroup.start` (ready before the next: the same ordering guarantee)
  and parked on an event; and, as the floor, N tasks spawned with `start_soon`.
  Targets: per child at 100,000 <= 2x a `TaskGroup.start` task; per child at 100,000
  within 1.5x of per child at 1,000 (starting is O(N)). Minimum over interleaved rounds.
  The growth of the baselines' own per-task cost with N is printed beside ours: most of
  it is CPython's cyclic garbage collector, whose passes grow with the live heap.
- Memory: tracemalloc's traced size before and after starting a supervisor with N idle
  children, divided by N; the same for N bare parked tasks (the floor any
  task-per-actor runtime pays).

Times are the process's CPU time (`time.process_time`): the benchmark machines are
shared, and wall-clock time would add other processes' turns; everything measured here
is CPU-bound and single-threaded. `--quick` (CI) runs fewer restarts, one round, and
starts at most 10,000 children.
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
import anyio.abc
from _cli import parse_args, write_json

import supervisor as sv
from actors import Actor


class Echo(Actor[Any, Any]):
    async def handle(self, msg: Any) -> Any:
        if msg == "crash":
            raise RuntimeError("crash")
        return msg


def _children(count: int) -> list[sv.ChildSpec]:
    return [sv.ChildSpec(id=f"c{i}", factory=Echo) for i in range(count)]


async def restart_latency(siblings: int, restarts: int) -> float:
    """Median seconds from a crash to the next incarnation's answer, among `siblings`."""
    spec = sv.SupervisorSpec(
        id="bench",
        backoff=sv.Backoff.none(),
        max_restarts=restarts + 10,
        period=1e-6,  # intensity never trips: each restart leaves the window at once
        children=_children(siblings),
    )
    samples = []
    async with sv.start(spec) as sup:
        ref = sup.ref(f"c{siblings // 2}")
        for _ in range(restarts):
            start = time.process_time()
            with contextlib.suppress(RuntimeError):
                await ref.call("crash")
            await ref.call("ping")
            samples.append(time.process_time() - start)
    return statistics.median(samples)


async def start_supervised(count: int) -> float:
    """Seconds per child to start `count` idle supervised children."""
    spec = sv.SupervisorSpec(id="bench", children=_children(count))
    gc.collect()
    start = time.process_time()
    async with sv.start(spec):
        elapsed = time.process_time() - start
    return elapsed / count


async def _parked(event: anyio.Event, *, task_status: anyio.abc.TaskStatus[None]) -> None:
    task_status.started()
    await event.wait()


async def start_bare(count: int) -> float:
    """Seconds per task to start `count` tasks with `TaskGroup.start`, each parked."""
    event = anyio.Event()
    gc.collect()
    async with anyio.create_task_group() as tg:
        start = time.process_time()
        for _ in range(count):
            await tg.start(_parked, event)
        elapsed = time.process_time() - start
        event.set()
    return elapsed / count


async def spawn_bare(count: int) -> float:
    """Seconds per task to spawn `count` parked tasks with `start_soon` (the floor)."""
    event = anyio.Event()
    gc.collect()
    async with anyio.create_task_group() as tg:
        start = time.process_time()
        for _ in range(count):
            tg.start_soon(event.wait)
        await anyio.wait_all_tasks_blocked()
        elapsed = time.process_time() - start
        event.set()
    return elapsed / count


async def memory_per_actor(children: int) -> tuple[float, float]:
    spec = sv.SupervisorSpec(id="bench", children=_children(children))
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


async def measure(
    siblings: list[int], restarts: int, sizes: list[int], rounds: int, memory_children: int
) -> dict[str, Any]:
    restart = {n: await restart_latency(n, restarts) for n in siblings}
    starts: dict[int, dict[str, float]] = {
        n: {"supervised": float("inf"), "tg_start": float("inf"), "start_soon": float("inf")}
        for n in sizes
    }
    for _ in range(rounds):  # interleaved: each round measures every size and baseline
        for n in sizes:
            row = starts[n]
            row["supervised"] = min(row["supervised"], await start_supervised(n))
            row["tg_start"] = min(row["tg_start"], await start_bare(n))
            row["start_soon"] = min(row["start_soon"], await spawn_bare(n))
    per_actor, per_task = await memory_per_actor(memory_children)
    smallest, largest = sizes[0], sizes[-1]
    return {
        "restart_median_ms": {str(n): t * 1e3 for n, t in restart.items()},
        "restart_ratio_vs_10": {str(n): t / restart[siblings[0]] for n, t in restart.items()},
        "start_us_per_child": {
            str(n): {key: value * 1e6 for key, value in row.items()} for n, row in starts.items()
        },
        "start_ratio_vs_tg_start": {
            str(n): row["supervised"] / row["tg_start"] for n, row in starts.items()
        },
        "start_ratio_vs_start_soon": {
            str(n): row["supervised"] / row["start_soon"] for n, row in starts.items()
        },
        "start_per_child_largest_vs_smallest": starts[largest]["supervised"]
        / starts[smallest]["supervised"],
        "tg_start_per_task_largest_vs_smallest": starts[largest]["tg_start"]
        / starts[smallest]["tg_start"],
        "bytes_per_idle_actor": per_actor,
        "bytes_per_parked_task": per_task,
    }


def _report(backend: str, m: dict[str, Any]) -> None:
    print(f"[{backend}] restart among N siblings (median; ratio vs 10):")
    for n, ms in m["restart_median_ms"].items():
        print(f"    {int(n):>7,}: {ms:8.3f} ms  {m['restart_ratio_vs_10'][n]:5.2f}x")
    print(
        f"[{backend}] start N idle children, us per child"
        " (supervised | TaskGroup.start | start_soon; ratios):"
    )
    for n, row in m["start_us_per_child"].items():
        print(
            f"    {int(n):>7,}: {row['supervised']:7.1f} | {row['tg_start']:6.1f} |"
            f" {row['start_soon']:5.1f}   {m['start_ratio_vs_tg_start'][n]:4.2f}x tg.start,"
            f" {m['start_ratio_vs_start_soon'][n]:4.2f}x start_soon"
        )
    print(
        f"    per child, largest N vs smallest: {m['start_per_child_largest_vs_smallest']:.2f}x"
        f" (a TaskGroup.start task: {m['tg_start_per_task_largest_vs_smallest']:.2f}x);"
        f" memory {m['bytes_per_idle_actor'] / 1024:.2f} KiB per idle actor,"
        f" {m['bytes_per_parked_task'] / 1024:.2f} KiB per parked task"
    )


def main() -> int:
    args = parse_args(__doc__, quick_help="fewer restarts, one round, at most 10,000 children")
    siblings = [10, 1_000, 10_000]
    if args.quick:
        restarts, sizes, rounds, memory_children = 50, [1_000, 10_000], 1, 1_000
    else:
        restarts, sizes, rounds, memory_children = 300, [1_000, 10_000, 100_000], 3, 10_000
    report: dict[str, Any] = {
        "restarts": restarts,
        "siblings": siblings,
        "sizes": sizes,
        "rounds": rounds,
        "backends": {},
    }
    for backend in ("asyncio", "trio"):
        m = anyio.run(measure, siblings, restarts, sizes, rounds, memory_children, backend=backend)
        report["backends"][backend] = m
        _report(backend, m)
    print(
        "targets: restart among 10,000 <= 1.5x among 10; start per child at the largest N"
        " <= 2x a TaskGroup.start task and <= 1.5x per child at 1,000"
    )
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
