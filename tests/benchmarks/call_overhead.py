"""Cost of one actor hop: `ref.call` on an echo actor against the backend's floors.

Run: python tests/benchmarks/call_overhead.py [--quick] [--json PATH]

For each backend, in one process, rounds interleaved so that they share the machine's
noise, it measures the CPU time per call (process time / calls):
- the *lean floor*, the park/unpark mechanism the kernel itself is built on: a server
  task takes requests from a deque and wakes each caller directly (asyncio: a `Future`
  per reply, the server parked on a `Future`; trio: `wait_task_rescheduled` /
  `reschedule`, no channel, no `Event`);
- the *stdlib queue floor*, what one would write with the backend's own queue: asyncio
  `asyncio.Queue` + a `Future` reply; trio a memory channel + an `Event` reply;
- `ref.call` on an echo actor (sequential: `max_concurrency = 1`);
- `ref.call` on an echo actor with `max_concurrency = 16` (the concurrent loop that
  service actors use), with 100 callers only;
each with one caller at a time ("sequential") and with 100 concurrent callers.
The floors have no deadline, no correlation id, no crash monitoring and no mailbox
bound; `ref.call` has all of them. Ratios are ours / floor within each round; the
report gives min / median / max over the rounds.
Targets (against the lean floor): sequential <= 1.3x; 100 callers <= 1.5x.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the root: tests.benchmarks

from actors import Actor, open_actor
from tests.benchmarks._cli import parse_args, write_json

CONCURRENT = 100
TARGETS = {"sequential": 1.3, "concurrent": 1.5}


class Echo(Actor[int, int]):
    async def handle(self, msg: int) -> int:
        return msg


class ConcurrentEcho(Echo):
    max_concurrency = 16


Call = Callable[[int], Awaitable[Any]]


async def _timed(run: Callable[[], Awaitable[None]], calls: int) -> float:
    """Microseconds of this process's CPU time per call: the loop never waits on I/O
    here, and CPU time leaves out the time other tenants of a shared machine take."""
    gc.collect()
    start = time.process_time()
    await run()
    return (time.process_time() - start) / calls * 1e6


def _load(call: Call, n: int, concurrent: bool) -> Callable[[], Awaitable[None]]:
    if not concurrent:

        async def sequential() -> None:
            for i in range(n):
                await call(i)

        return sequential
    per_caller = n // CONCURRENT

    async def caller() -> None:
        for i in range(per_caller):
            await call(i)

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(CONCURRENT):
                tg.start_soon(caller)

    return run


async def _asyncio_queue_floor(n: int, concurrent: bool) -> float:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, asyncio.Future[int]]] = asyncio.Queue(maxsize=1000)

    async def server() -> None:
        while True:
            msg, fut = await queue.get()
            if not fut.done():
                fut.set_result(msg)

    async def call(msg: int) -> int:
        fut = loop.create_future()
        await queue.put((msg, fut))
        return await fut  # type: ignore[no-any-return]

    task = asyncio.ensure_future(server())
    try:
        return await _timed(_load(call, n, concurrent), n)
    finally:
        task.cancel()


async def _asyncio_lean_floor(n: int, concurrent: bool) -> float:
    loop = asyncio.get_running_loop()
    requests: deque[tuple[int, asyncio.Future[int]]] = deque()
    parked: list[asyncio.Future[None]] = []

    async def server() -> None:
        while True:
            while requests:
                msg, fut = requests.popleft()
                if not fut.done():
                    fut.set_result(msg)
            wake = loop.create_future()
            parked.append(wake)
            await wake

    async def call(msg: int) -> int:
        fut = loop.create_future()
        requests.append((msg, fut))
        if parked:
            parked.pop().set_result(None)
        return await fut  # type: ignore[no-any-return]

    task = asyncio.ensure_future(server())
    try:
        return await _timed(_load(call, n, concurrent), n)
    finally:
        task.cancel()


async def _trio_queue_floor(n: int, concurrent: bool) -> float:
    import trio

    send, receive = trio.open_memory_channel[tuple[int, list[Any], trio.Event]](1000)

    async def server() -> None:
        async for msg, box, event in receive:
            box.append(msg)
            event.set()

    async def call(msg: int) -> int:
        box: list[int] = []
        event = trio.Event()
        await send.send((msg, box, event))
        await event.wait()
        return box[0]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        result = await _timed(_load(call, n, concurrent), n)
        nursery.cancel_scope.cancel()
    return result


async def _trio_lean_floor(n: int, concurrent: bool) -> float:
    import outcome
    import trio

    lowlevel = trio.lowlevel
    requests: deque[tuple[int, Any]] = deque()
    parked: list[Any] = []

    def abort(_raise_cancel: Any) -> Any:
        return lowlevel.Abort.SUCCEEDED

    async def server() -> None:
        while True:
            while requests:
                msg, task = requests.popleft()
                lowlevel.reschedule(task, outcome.Value(msg))
            parked.append(lowlevel.current_task())
            await lowlevel.wait_task_rescheduled(abort)

    async def call(msg: int) -> int:
        requests.append((msg, lowlevel.current_task()))
        if parked:
            lowlevel.reschedule(parked.pop(), outcome.Value(None))
        return await lowlevel.wait_task_rescheduled(abort)  # type: ignore[no-any-return]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        result = await _timed(_load(call, n, concurrent), n)
        nursery.cancel_scope.cancel()
    return result


def _ours(actor: type[Echo]) -> Callable[[int, bool], Awaitable[float]]:
    async def measure(n: int, concurrent: bool) -> float:
        async with open_actor(actor(), mailbox_size=1000) as ref:
            return await _timed(_load(ref.call, n, concurrent), n)

    return measure


CASES: dict[str, tuple[str, ...]] = {
    "sequential": ("lean", "queue", "call"),
    "concurrent": ("lean", "queue", "call", "call_mc16"),
}


async def measure(backend: str, n: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    fns: dict[str, Callable[[int, bool], Awaitable[float]]] = {
        "lean": _asyncio_lean_floor if backend == "asyncio" else _trio_lean_floor,
        "queue": _asyncio_queue_floor if backend == "asyncio" else _trio_queue_floor,
        "call": _ours(Echo),
        "call_mc16": _ours(ConcurrentEcho),
    }
    results: dict[str, dict[str, list[float]]] = {case: {} for case in CASES}
    for _ in range(rounds):  # interleaved: every variant sees the same noise
        for case, variants in CASES.items():
            for variant in variants:
                us = await fns[variant](n, case == "concurrent")
                results[case].setdefault(variant, []).append(us)
    return results


def _spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def _fmt(spread: dict[str, float]) -> str:
    return f"{spread['min']:.2f}/{spread['median']:.2f}/{spread['max']:.2f}"


def main() -> int:
    args = parse_args(__doc__, quick_help="a few thousand calls, seconds")
    n, rounds = (2_000, 5) if args.quick else (20_000, 7)
    report: dict[str, Any] = {"calls_per_run": n, "rounds": rounds, "backends": {}}
    print(f"per-round ratios, min/median/max over {rounds} rounds of {n} calls")
    print(
        f"{'backend':8} {'case':11} {'variant':10} {'us/call (median)':>16}  "
        f"{'/ lean floor':>16}  {'/ queue floor':>16}  target"
    )
    for backend in ("asyncio", "trio"):
        results = anyio.run(measure, backend, n, rounds, backend=backend)
        rows: dict[str, Any] = {}
        for case, variants in results.items():
            lean, queue = variants["lean"], variants["queue"]
            for variant, values in variants.items():
                row: dict[str, Any] = {
                    "us_per_call": _spread(values),
                    "vs_lean": _spread([v / f for v, f in zip(values, lean, strict=True)]),
                    "vs_queue": _spread([v / f for v, f in zip(values, queue, strict=True)]),
                }
                target = TARGETS[case] if variant.startswith("call") else None
                row["target_vs_lean"] = target
                rows[f"{case}/{variant}"] = row
                print(
                    f"{backend:8} {case:11} {variant:10} {statistics.median(values):16.2f}  "
                    f"{_fmt(row['vs_lean']):>16}  {_fmt(row['vs_queue']):>16}  "
                    f"{'<= ' + str(target) if target else ''}"
                )
        report["backends"][backend] = rows
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
