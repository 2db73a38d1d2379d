"""Redis limiter: acquire latency against a plain Redis INCR, and 50-task throughput.

Run: python tests/benchmarks/redis_limiter.py [--quick] [--json PATH]

Starts its own redis-server on a free loopback port, then a local 3-master Redis
Cluster (one replica each). For each backend and each deployment, in one process and
the same run, it measures:
- a plain `INCR` round trip through the same client library (coredis), one at a time;
- `limiter.acquire()` on a `RedisLimiterStore` (one EVALSHA of the limiter script, the
  server's clock, a token bucket that never runs dry), one at a time;
- both again from 50 concurrent tasks in one process (acquires per second).
It prints microseconds per call and the ratio acquire / INCR of the same backend and
deployment (on the cluster, INCR goes through coredis's cluster client too).
Target: sequential acquire <= 1.5x the INCR round trip.

Without redis-server (or coredis) it says so and exits 0, unless REQUIRE_SERVICES=1,
where it exits 1.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from tests.benchmarks._cli import parse_args, write_json

TASKS = 50


async def _timed(run: Callable[[], Awaitable[None]], calls: int) -> float:
    gc.collect()
    start = time.perf_counter()
    await run()
    return (time.perf_counter() - start) / calls * 1e6


def _sequential(op: Callable[[], Awaitable[Any]], n: int) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        for _ in range(n):
            await op()

    return run


def _concurrent(op: Callable[[], Awaitable[Any]], n: int) -> Callable[[], Awaitable[None]]:
    per_task = n // TASKS

    async def task() -> None:
        for _ in range(per_task):
            await op()

    async def run() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(TASKS):
                group.start_soon(task)

    return run


async def _measure(
    url: str, cluster: bool, sequential: int, concurrent: int, rounds: int
) -> dict[str, float]:
    import coredis

    from actors.stores._redis_client import close_leftovers
    from actors.stores.redis import open_redis_stores

    parts = url.split("//")[1].split("/", maxsplit=1)[0].split(":")
    plain: Any = (
        coredis.RedisCluster(host=parts[0], port=int(parts[1]))
        if cluster
        else coredis.Redis.from_url(url)
    )
    try:
        async with (
            plain as client,
            open_redis_stores(url=url, app="bench", cluster=cluster) as stores,
        ):
            return await _rounds(client, stores, sequential, concurrent, rounds)
    finally:
        close_leftovers(plain)


async def _rounds(
    client: Any, stores: Any, sequential: int, concurrent: int, rounds: int
) -> dict[str, float]:
    from actors.resilience import TokenBucket, create_limiter

    assert stores.available, "redis-server did not answer"
    limiter = create_limiter(
        TokenBucket.per_second(1e9), name="bench", store=stores.limiter_store()
    )

    async def incr() -> None:
        await client.incr("bench:incr")

    acquire = limiter.acquire
    for op in (incr, acquire):  # warm up connections, scripts and caches
        await _sequential(op, 200)()
        await _concurrent(op, TASKS * 4)()
    results: dict[str, list[float]] = {
        "incr_us": [],
        "acquire_us": [],
        "incr_concurrent_us": [],
        "acquire_concurrent_us": [],
    }
    for _ in range(rounds):
        results["incr_us"].append(await _timed(_sequential(incr, sequential), sequential))
        results["acquire_us"].append(await _timed(_sequential(acquire, sequential), sequential))
        results["incr_concurrent_us"].append(
            await _timed(_concurrent(incr, concurrent), concurrent)
        )
        results["acquire_concurrent_us"].append(
            await _timed(_concurrent(acquire, concurrent), concurrent)
        )
    assert stores.metrics().errors == 0
    medians = {name: statistics.median(values) for name, values in results.items()}
    # The ratio of each round (INCR and acquire measured back to back), then the median:
    # steadier than a ratio of medians on a machine shared with other work.
    medians["ratio"] = statistics.median(
        acquire / incr
        for acquire, incr in zip(results["acquire_us"], results["incr_us"], strict=True)
    )
    medians["acquires_per_s_50_tasks"] = 1e6 / medians["acquire_concurrent_us"]
    medians["incrs_per_s_50_tasks"] = 1e6 / medians["incr_concurrent_us"]
    return medians


def _missing(reason: str) -> int:
    required = os.environ.get("REQUIRE_SERVICES") == "1"
    print(
        f"redis_limiter benchmark not run: {reason}" + (" (REQUIRE_SERVICES=1)" if required else "")
    )
    return 1 if required else 0


def main() -> int:
    args = parse_args(__doc__, quick_help="a few thousand calls, seconds")
    try:
        import coredis  # noqa: F401
    except ImportError:
        return _missing("coredis is not installed (pip install 'actorvisor[redis]')")
    from actors.testing import redis_cluster, redis_server, redis_server_path

    if redis_server_path() is None:
        return _missing("redis-server is not installed (apt-get install redis-server)")

    sequential, concurrent, rounds = (500, 2_000, 3) if args.quick else (5_000, 50_000, 7)
    report: dict[str, dict[str, float]] = {}
    with redis_server() as server:
        for backend in ("asyncio", "trio"):
            report[backend] = anyio.run(
                _measure, server.url, False, sequential, concurrent, rounds, backend=backend
            )
    with redis_cluster(masters=3, replicas=1) as cluster:
        for backend in ("asyncio", "trio"):
            report[f"{backend} cluster"] = anyio.run(
                _measure, cluster.url, True, sequential, concurrent, rounds, backend=backend
            )
    header = f"{'backend':16} {'INCR us':>8} {'acquire us':>10} {'ratio':>6}"
    print(f"{header} {'acquires/s (50 tasks)':>22}")
    for backend, r in report.items():
        print(
            f"{backend:16} {r['incr_us']:8.1f} {r['acquire_us']:10.1f} {r['ratio']:6.2f} "
            f"{r['acquires_per_s_50_tasks']:22,.0f}"
        )
        print(
            f"{'':16} 50 tasks: INCR {r['incr_concurrent_us']:.1f} us/op "
            f"({r['incrs_per_s_50_tasks']:,.0f}/s), acquire {r['acquire_concurrent_us']:.1f} us/op"
        )
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
