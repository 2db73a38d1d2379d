"""A replica that opens a shared breaker on request (run as a subprocess).

Usage: python _breaker_replica.py URL APP BACKEND SYNC_INTERVAL

Connects, creates breaker "svc" on the Redis breaker store, prints "ready", and on the
line "open" from stdin forces it OPEN (open_duration 5 s), prints "opened", and keeps
running (syncing) until stdin closes.
"""

from __future__ import annotations

import logging
import sys

import anyio
import structlog

from actors.resilience import BreakerConfig, BreakerState, create_breaker
from actors.stores.redis import open_redis_stores


async def replica(url: str, app: str, sync_interval: float) -> None:
    async with open_redis_stores(url=url, app=app, sync_interval=sync_interval) as stores:
        assert stores.available
        await stores.breaker_store.load("svc")
        config = BreakerConfig(open_duration=5.0, open_jitter=0.0)
        breaker = create_breaker("svc", config, store=stores.breaker_store)
        print("ready", flush=True)
        line = await anyio.to_thread.run_sync(sys.stdin.readline)
        assert line.strip() == "open", line
        breaker.force(BreakerState.OPEN)
        print("opened", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)  # until the test closes stdin


def main() -> None:
    structlog.configure(  # warnings to stderr: stdout carries the protocol
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    url, app, backend, sync_interval = sys.argv[1:5]
    anyio.run(replica, url, app, float(sync_interval), backend=backend)


if __name__ == "__main__":
    main()
