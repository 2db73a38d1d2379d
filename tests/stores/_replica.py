"""One replica of the multi-process limiter contract (run as a subprocess).

Usage: python _replica.py URL APP BACKEND RATE BURST SECONDS TASKS

Connects, prints "ready", reads a wall-clock instant START_AT from stdin, waits until
then, and runs TASKS tasks acquiring one unit each from a token bucket (RATE/s, BURST)
shared through Redis until START_AT + SECONDS. Prints the number of admissions as JSON.
"""

from __future__ import annotations

import json
import logging
import sys
import time

import anyio
import structlog

from actors import RateLimited
from actors.resilience import TokenBucket, create_limiter
from actors.stores.redis import FailurePolicy, open_redis_stores


async def replica(url: str, app: str, rate: float, burst: float, seconds: float, tasks: int) -> int:
    admitted = 0
    async with open_redis_stores(url=url, app=app) as stores:
        assert stores.available
        limiter = create_limiter(
            TokenBucket.per_second(rate, capacity=burst),
            name="shared",
            store=stores.limiter_store(FailurePolicy.fail_closed()),
        )
        print("ready", flush=True)
        start_at = float(await anyio.to_thread.run_sync(sys.stdin.readline))
        await anyio.sleep(max(0.0, start_at - time.time()))
        # The end instant, aligned to the wall clock whatever the sleep overshoot.
        end = anyio.current_time() + (start_at + seconds - time.time())

        async def worker() -> None:
            nonlocal admitted
            while anyio.current_time() < end:
                try:
                    await limiter.acquire(deadline=end)
                except RateLimited:
                    return
                if anyio.current_time() > end:
                    # Decided by the server after the window (it answers before we see
                    # the reply, so anything seen before `end` was decided before it).
                    return
                admitted += 1

        async with anyio.create_task_group() as group:
            for _ in range(tasks):
                group.start_soon(worker)
        assert stores.metrics().errors == 0
    return admitted


def main() -> None:
    structlog.configure(  # warnings to stderr: stdout carries the protocol
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    url, app, backend = sys.argv[1:4]
    rate, burst, seconds = map(float, sys.argv[4:7])
    tasks = int(sys.argv[7])
    count = anyio.run(replica, url, app, rate, burst, seconds, tasks, backend=backend)
    print(json.dumps({"admitted": count}))


if __name__ == "__main__":
    main()
