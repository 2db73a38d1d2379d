"""Fallback cost: a call served from the fallback cache while the primary's breaker is open,
against a plain successful `ref.call` of an echo actor, in the same run.

Run: python tests/benchmarks/fallback_cache.py [--quick] [--json PATH]

Cases (sequential calls, median of several runs, microseconds per call):

- ``ref.call``: `await ref.call(msg)` on an echo actor started with `actors.open_actor`
  (the baseline).
- ``cache (peek)``: `await router.call(msg)` where the router's primary is an actor whose
  breaker is OPEN; the router peeks at the breaker, skips the primary and serves a fresh
  entry of its `ResponseCache`. Target: <= 2x the baseline.
- ``router, primary ok``: for information, the router's success path: the echo actor
  as the primary, with a closed breaker, a health source and a cache to store into.
- ``cache (fail fast)``: for information, the same without peeking: the primary actor's
  handler raises `CircuitOpen` from its own breaker (one full `ref.call`), then the
  router serves the cache entry.

structlog is configured at WARNING (the library's info events are filtered out, as in
production); OpenTelemetry has no SDK set (its API is a no-op, as in a library).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from typing import Any

import anyio
import structlog

from actors import Actor, open_actor
from actors.resilience import BreakerConfig, BreakerState, CircuitBreaker, create_breaker
from supervisor.fallback import ResponseCache, create_cache, route
from supervisor.health import HealthStatus


class Echo(Actor[Any, Any]):
    async def handle(self, msg: Any) -> Any:
        return msg


class Guarded(Actor[Any, Any]):
    """A service actor whose breaker is open: every request fails fast with CircuitOpen."""

    crash_on_error = False

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker

    async def handle(self, msg: Any) -> Any:
        return await self.breaker.call(self._remote, msg)

    async def _remote(self, msg: Any) -> Any:  # never reached while open
        return msg


async def timed(n: int, fn: Any) -> float:
    start = time.perf_counter()
    for i in range(n):
        await fn(i % 64)
    return (time.perf_counter() - start) / n * 1e6


async def measure(n: int, repeats: int) -> dict[str, float]:
    breaker = create_breaker(
        "primary",
        BreakerConfig(
            consecutive_failures=1, open_duration=1e6, max_open_duration=1e6, open_jitter=0
        ),
    )
    breaker.on_failure(breaker.acquire())
    assert breaker.state is BreakerState.OPEN
    cache: ResponseCache[int, int] = create_cache("bench", ttl=1e9, max_entries=128)
    for i in range(64):
        cache.put(i, i)
    results: dict[str, list[float]] = {}
    ok = HealthStatus.HEALTHY
    async with (
        open_actor(Echo(), name="echo") as echo,
        open_actor(Guarded(breaker), name="primary") as primary,
    ):
        peek = route(primary, cache, breaker=breaker)
        fail_fast = route(primary, cache)
        healthy = route(echo, cache, breaker=create_breaker("echo"), health=lambda _name: ok)
        for _ in range(repeats):
            for key, fn in (
                ("ref.call", echo.call),
                ("cache (peek)", peek.call),
                ("cache (fail fast)", fail_fast.call),
                ("router, primary ok", healthy.call),
            ):
                results.setdefault(key, []).append(await timed(n, fn))
        routed = await peek.call(1)
        assert (routed.source, routed.value) == ("cache", 1), routed
    return {key: statistics.median(values) for key, values in results.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few thousand calls, seconds")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        cache_logger_on_first_use=True,
    )
    n, repeats = (2_000, 3) if args.quick else (20_000, 7)
    report: dict[str, Any] = {"calls_per_run": n, "repeats": repeats, "backends": {}}
    print(f"{'backend':8} {'case':18} {'us/call':>8} {'ratio':>6}  target")
    for backend in ("asyncio", "trio"):
        m = anyio.run(measure, n, repeats, backend=backend)
        base = m["ref.call"]
        rows = {}
        for case, target in (
            ("ref.call", None),
            ("cache (peek)", 2.0),
            ("cache (fail fast)", None),
            ("router, primary ok", None),
        ):
            ratio = m[case] / base
            rows[case] = {"us": m[case], "ratio": ratio, "target": target}
            goal = f"<= {target}" if target else ""
            print(f"{backend:8} {case:18} {m[case]:8.2f} {ratio:6.2f}  {goal}")
        report["backends"][backend] = rows
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
