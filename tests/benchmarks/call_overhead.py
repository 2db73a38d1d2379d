"""Cost of one actor hop: `ref.call` on an echo actor against the backend's native floor.

Run: python tests/benchmarks/call_overhead.py [--quick] [--json PATH]

For each backend, in one process and the same run, it measures:
- the native floor: asyncio, an `asyncio.Queue` plus a `Future` reply; trio, a memory
  channel plus an `Event` reply (a server task answering each request);
- `ref.call` on an echo actor, one caller at a time;
- both again with 100 concurrent callers (per-call cost = elapsed / calls).
It prints microseconds per call and the ratio to the floor of the same backend.
Targets: sequential <= 1.5x the floor; 100 concurrent callers <= 1.0x the floor's.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from _cli import parse_args, write_json

from actors import Actor, open_actor

CONCURRENT = 100


class Echo(Actor[int, int]):
    async def handle(self, msg: int) -> int:
        return msg


async def _timed(run: Callable[[], Awaitable[None]], calls: int) -> float:
    gc.collect()
    start = time.perf_counter()
    await run()
    return (time.perf_counter() - start) / calls * 1e6


def _sequential(call: Callable[[int], Awaitable[Any]], n: int) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        for i in range(n):
            await call(i)

    return run


def _concurrent(call: Callable[[int], Awaitable[Any]], n: int) -> Callable[[], Awaitable[None]]:
    per_caller = n // CONCURRENT

    async def caller() -> None:
        for i in range(per_caller):
            await call(i)

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(CONCURRENT):
                tg.start_soon(caller)

    return run


async def _asyncio_floor(n: int, concurrent: bool) -> float:
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
        return await fut

    task = asyncio.ensure_future(server())
    try:
        run = _concurrent(call, n) if concurrent else _sequential(call, n)
        return await _timed(run, n)
    finally:
        task.cancel()


async def _trio_floor(n: int, concurrent: bool) -> float:
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
        run = _concurrent(call, n) if concurrent else _sequential(call, n)
        result = await _timed(run, n)
        nursery.cancel_scope.cancel()
    return result


async def _ours(n: int, concurrent: bool) -> float:
    async with open_actor(Echo(), mailbox_size=1000) as ref:
        run = _concurrent(ref.call, n) if concurrent else _sequential(ref.call, n)
        return await _timed(run, n)


async def measure(backend: str, n: int, repeats: int) -> dict[str, float]:
    floor = _asyncio_floor if backend == "asyncio" else _trio_floor
    results: dict[str, list[float]] = {}
    for _ in range(repeats):  # interleave to share the machine's noise fairly
        for key, fn, conc in (
            ("floor_sequential", floor, False),
            ("call_sequential", _ours, False),
            ("floor_concurrent", floor, True),
            ("call_concurrent", _ours, True),
        ):
            results.setdefault(key, []).append(await fn(n, conc))
    return {key: statistics.median(values) for key, values in results.items()}


def main() -> int:
    args = parse_args(__doc__, quick_help="a few thousand calls, seconds")
    n, repeats = (2_000, 3) if args.quick else (50_000, 7)
    report: dict[str, Any] = {"calls_per_run": n, "repeats": repeats, "backends": {}}
    print(f"{'backend':8} {'case':12} {'floor us':>9} {'call us':>9} {'ratio':>6}  target")
    for backend in ("asyncio", "trio"):
        m = anyio.run(measure, backend, n, repeats, backend=backend)
        rows = {}
        for case, target in (("sequential", 1.5), ("concurrent", 1.0)):
            floor, ours = m[f"floor_{case}"], m[f"call_{case}"]
            ratio = ours / floor
            rows[case] = {"floor_us": floor, "call_us": ours, "ratio": ratio, "target": target}
            print(f"{backend:8} {case:12} {floor:9.2f} {ours:9.2f} {ratio:6.2f}  <= {target}")
        report["backends"][backend] = rows
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
