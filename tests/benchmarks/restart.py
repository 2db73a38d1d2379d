"""Supervision costs at scale: a restart among many siblings, starting many idle
children, memory per idle supervised actor and the first call to a hibernated one, each
against its baseline in the same run.

Run: python tests/benchmarks/restart.py [--quick] [--json PATH]

- Restart among N siblings (N = 10, 1,000, 10,000; one_for_one, backoff off): a
  child in the middle is crashed by a call; the clock runs from the crash until a call
  to the same ref is answered by its next incarnation. Median over many restarts.
  Baseline: the same restart among 10 siblings. Target: among 10,000 <= 1.5x among 10
  (the bookkeeping is O(1) per restart).
- Start N idle children (N = 1,000, 10,000, 100,000): from entering `sv.start` until
  the block begins (every child started in order, each ready before the next), per
  child. Idle children start hibernated: no task. Baselines, per task, for the same N
  in the same round: N bare anyio tasks each started with `TaskGroup.start` (ready
  before the next: the same ordering guarantee) and parked on an event; and, as the
  floor, N tasks spawned with `start_soon`. Targets: per child at 100,000 <= 2x a
  `TaskGroup.start` task; per child at 100,000 within 1.5x of per child at 1,000
  (starting is O(N)). The largest N is also started with CPython's cyclic garbage
  collector off (`gc.disable()` around the start), to show how much of the growth with
  N is the collector's passes over a larger heap.
- Memory: tracemalloc's traced size before and after starting a supervisor with N idle
  children, divided by N: hibernated (the default), and awake (`hibernate_after=None`:
  each holds its task); the same for N bare parked tasks (the floor any task-per-actor
  runtime pays). Target: <= 1.5 KiB per hibernated actor.
- Wake-up: N hibernated children are each called once (the first call starts the
  child's task), then each again while awake (a warm call), CPU time per call; the
  ratio is per round. Target: first call <= 2x a warm call.

Every ratio is reported as min / median / max over interleaved rounds (each round
measures ours and the baselines back to back, so they share the machine's noise).
Times are the process's CPU time (`time.process_time`): the benchmark machines are
shared, and wall-clock time would add other processes' turns; everything measured here
is CPU-bound and single-threaded. `--quick` (CI) runs fewer restarts and smaller N.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the root: tests.benchmarks

import supervisor as sv
from actors import Actor, ActorConfig
from tests.benchmarks._cli import parse_args, write_json

WAKE_AFTER = 0.5  # hibernate_after of the wake-up measure (longer than one pass of calls)


class Echo(Actor[Any, Any]):
    async def handle(self, msg: Any) -> Any:
        if msg == "crash":
            raise RuntimeError("crash")
        return msg


def _children(count: int, config: ActorConfig | None = None) -> list[sv.ChildSpec[Any, Any]]:
    cfg = config or ActorConfig()
    return [sv.ChildSpec(id=f"c{i}", factory=Echo, config=cfg) for i in range(count)]


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


async def start_supervised(count: int, *, collector: bool = True) -> float:
    """Seconds per child to start `count` idle supervised children."""
    spec = sv.SupervisorSpec(id="bench", children=_children(count))
    gc.collect()
    if not collector:
        gc.disable()
    try:
        start = time.process_time()
        async with sv.start(spec):
            elapsed = time.process_time() - start
    finally:
        gc.enable()
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


async def memory_supervised(children: int, config: ActorConfig) -> float:
    """Traced bytes per idle supervised child."""
    spec = sv.SupervisorSpec(id="bench", children=_children(children, config))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    async with sv.start(spec) as sup:
        await anyio.wait_all_tasks_blocked()
        gc.collect()
        during = tracemalloc.get_traced_memory()[0]
        assert sup.count_children().active == children
    tracemalloc.stop()
    return (during - before) / children


async def memory_bare(children: int) -> float:
    """Traced bytes per bare parked task."""
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
    return (during - before) / children


async def wake_up(children: int, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds per first call to a hibernated child, and per warm call, per round."""
    config = ActorConfig(hibernate_after=WAKE_AFTER)
    spec = sv.SupervisorSpec(id="bench", children=_children(children, config))
    first: list[float] = []
    warm: list[float] = []
    async with sv.start(spec) as sup:
        refs = [sup.ref(f"c{i}") for i in range(children)]
        for _ in range(rounds):
            assert all(ref.hibernating for ref in refs), "not hibernated yet"
            gc.collect()
            start = time.process_time()
            for ref in refs:
                await ref.call(1)
            middle = time.process_time()
            for ref in refs:
                await ref.call(1)
            end = time.process_time()
            assert not any(ref.hibernating for ref in refs), "slept during the measure"
            first.append((middle - start) / children)
            warm.append((end - middle) / children)
            await anyio.sleep(2.5 * WAKE_AFTER)  # they all hibernate again (2x at most)
    return first, warm


def _spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def _ratios(ours: list[float], base: list[float]) -> dict[str, float]:
    return _spread([a / b for a, b in zip(ours, base, strict=True)])


async def measure(
    siblings: list[int],
    restarts: int,
    sizes: list[int],
    rounds: int,
    memory_children: int,
    wake_children: int,
) -> dict[str, Any]:
    restart = {n: await restart_latency(n, restarts) for n in siblings}
    runs: dict[int, dict[str, list[float]]] = {
        n: {"supervised": [], "tg_start": [], "start_soon": []} for n in sizes
    }
    largest, smallest = sizes[-1], sizes[0]
    no_gc: list[float] = []
    for _ in range(rounds):  # interleaved: each round measures every size and baseline
        for n in sizes:
            row = runs[n]
            row["supervised"].append(await start_supervised(n))
            row["tg_start"].append(await start_bare(n))
            row["start_soon"].append(await spawn_bare(n))
        no_gc.append(await start_supervised(largest, collector=False))
    hibernated = [await memory_supervised(memory_children, ActorConfig()) for _ in range(3)]
    awake = await memory_supervised(memory_children, ActorConfig(hibernate_after=None))
    task = await memory_bare(memory_children)
    first, warm = await wake_up(wake_children, rounds)
    sup_small, sup_large = runs[smallest]["supervised"], runs[largest]["supervised"]
    return {
        "restart_median_ms": {str(n): t * 1e3 for n, t in restart.items()},
        "restart_ratio_vs_10": {str(n): t / restart[siblings[0]] for n, t in restart.items()},
        "start_us_per_child": {
            str(n): {key: _spread([v * 1e6 for v in values]) for key, values in row.items()}
            for n, row in runs.items()
        },
        "start_ratio_vs_tg_start": {
            str(n): _ratios(row["supervised"], row["tg_start"]) for n, row in runs.items()
        },
        "start_ratio_vs_start_soon": {
            str(n): _ratios(row["supervised"], row["start_soon"]) for n, row in runs.items()
        },
        "start_per_child_largest_vs_smallest": _ratios(sup_large, sup_small),
        "start_per_child_largest_gc_off_vs_smallest": _ratios(no_gc, sup_small),
        "tg_start_per_task_largest_vs_smallest": _ratios(
            runs[largest]["tg_start"], runs[smallest]["tg_start"]
        ),
        "bytes_per_hibernated_actor": min(hibernated),
        "bytes_per_awake_idle_actor": awake,
        "bytes_per_parked_task": task,
        "first_call_us": _spread([v * 1e6 for v in first]),
        "warm_call_us": _spread([v * 1e6 for v in warm]),
        "first_call_vs_warm": _ratios(first, warm),
    }


def _fmt(spread: dict[str, float], digits: int = 2) -> str:
    return "/".join(f"{spread[key]:.{digits}f}" for key in ("min", "median", "max"))


def _report(backend: str, m: dict[str, Any]) -> None:
    print(f"[{backend}] restart among N siblings (median; ratio vs 10):")
    for n, ms in m["restart_median_ms"].items():
        print(f"    {int(n):>7,}: {ms:8.3f} ms  {m['restart_ratio_vs_10'][n]:5.2f}x")
    print(
        f"[{backend}] start N idle children, us per child, median"
        " (supervised | TaskGroup.start | start_soon); ratios min/median/max:"
    )
    for n, row in m["start_us_per_child"].items():
        print(
            f"    {int(n):>7,}: {row['supervised']['median']:6.2f} |"
            f" {row['tg_start']['median']:6.2f} | {row['start_soon']['median']:5.2f}"
            f"   {_fmt(m['start_ratio_vs_tg_start'][n])} x tg.start,"
            f" {_fmt(m['start_ratio_vs_start_soon'][n])} x start_soon"
        )
    print(
        f"    per child, largest N vs smallest: {_fmt(m['start_per_child_largest_vs_smallest'])}"
        f" (collector off at the largest: {_fmt(m['start_per_child_largest_gc_off_vs_smallest'])};"
        f" a TaskGroup.start task: {_fmt(m['tg_start_per_task_largest_vs_smallest'])})"
    )
    print(
        f"[{backend}] memory per idle supervised actor: hibernated"
        f" {m['bytes_per_hibernated_actor'] / 1024:.2f} KiB, awake"
        f" {m['bytes_per_awake_idle_actor'] / 1024:.2f} KiB; a parked bare task"
        f" {m['bytes_per_parked_task'] / 1024:.2f} KiB"
    )
    print(
        f"[{backend}] first call to a hibernated actor {_fmt(m['first_call_us'], 1)} us,"
        f" warm call {_fmt(m['warm_call_us'], 1)} us: {_fmt(m['first_call_vs_warm'])} x"
    )


def main() -> int:
    args = parse_args(__doc__, quick_help="fewer restarts, smaller N (seconds)")
    siblings = [10, 1_000, 10_000]
    if args.quick:
        restarts, sizes, rounds, memory, wake = 30, [1_000, 5_000], 5, 2_000, 500
    else:
        restarts, sizes, rounds, memory, wake = 300, [1_000, 10_000, 100_000], 5, 10_000, 2_000
    report: dict[str, Any] = {
        "restarts": restarts,
        "siblings": siblings,
        "sizes": sizes,
        "rounds": rounds,
        "memory_children": memory,
        "wake_children": wake,
        "backends": {},
    }
    for backend in ("asyncio", "trio"):
        m = anyio.run(measure, siblings, restarts, sizes, rounds, memory, wake, backend=backend)
        report["backends"][backend] = m
        _report(backend, m)
    print(
        "targets: restart among 10,000 <= 1.5x among 10; start per child at the largest N"
        " <= 2x a TaskGroup.start task and <= 1.5x per child at 1,000; <= 1.5 KiB per"
        " hibernated actor; first call <= 2x a warm call"
    )
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
