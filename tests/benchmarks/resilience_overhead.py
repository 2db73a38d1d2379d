"""Success-path cost of the resilience layers against a bare await and other libraries.

Run: python tests/benchmarks/resilience_overhead.py [--quick] [--json PATH]

For each backend, in one process and the same run (interleaved repeats, medians), it
measures microseconds per call of:
- a bare ``await`` of a trivial coroutine (the floor);
- our full `resilient` stack (bulkhead, retry, breaker with its slow-call timing,
  limiter: the one resilience pipeline), success path; again with a breaker that
  times nothing (like aiobreaker) and with the LLM presets (an attempt timeout too,
  so one cancel scope per attempt);
- each of our primitives alone: `Retrier.call`, `CircuitBreaker.call`,
  `Limiter.acquire` (huge capacity) before the await, `async with bulkhead.slot()`;
- where importable: tenacity (``async for attempt in AsyncRetrying(...)`` and the
  ``@retry`` decorator), stamina, and on asyncio only aiobreaker, purgatory, aiolimiter
  and the equal-featured stack: an `asyncio.Semaphore` (bulkhead) + tenacity
  (retry) + aiobreaker (breaker) + aiolimiter (limiter).
It prints each case's cost, its overhead above the bare await, and the ratios behind the
targets: our full stack, slow-call timing on, at least 8x cheaper than the
semaphore+tenacity+aiobreaker+aiolimiter stack, and at least 10x cheaper than tenacity's
AsyncRetrying alone (ratios of total per-call cost). What each side has: ours times
every call for the breaker's slow-call rate; aiobreaker times nothing and counts
consecutive failures; both stacks bound concurrency, retry and rate-limit. It also
measures limiter accuracy on virtual time: over 10 virtual seconds at 100 req/s the
admitted count must be within 1 % of the limit.

Ratios are reported, never enforced: the script exits 0 whatever they are.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from actors import RateLimited
from actors.resilience import (
    GCRA,
    BreakerConfig,
    BulkheadConfig,
    LimitConfig,
    RetryPolicy,
    SlidingWindow,
    TokenBucket,
    create_breaker,
    create_bulkhead,
    create_limiter,
    create_retrier,
    resilient,
)
from actors.testing import virtual_time_backend

Case = Callable[[int], Awaitable[Any]]

HUGE = 1e12
"""Limiter capacity that never runs out during a benchmark."""


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


async def bare(x: int) -> int:
    return x


def _ours() -> dict[str, Case]:
    # The default breaker detects slow calls: two clock reads per call.
    full = resilient(
        retry=RetryPolicy(),
        breaker=BreakerConfig(),
        limiter=TokenBucket.per_second(HUGE),
        bulkhead=BulkheadConfig(max_concurrent=1000),
        name="bench",
    )(bare)
    # Like aiobreaker, which times nothing: failure counting only.
    untimed = resilient(
        retry=RetryPolicy(),
        breaker=BreakerConfig(slow_call_duration=math.inf),
        limiter=TokenBucket.per_second(HUGE),
        bulkhead=BulkheadConfig(max_concurrent=1000),
        name="bench-untimed",
    )(bare)
    llm = resilient.llm(
        limiter=TokenBucket.per_second(HUGE),
        bulkhead=BulkheadConfig(max_concurrent=1000),
        name="bench-llm",
    )(bare)
    retrier = create_retrier(RetryPolicy(), service="bench")
    breaker = create_breaker("bench", BreakerConfig())
    limiter = create_limiter(TokenBucket.per_second(HUGE), name="bench")
    bulkhead = create_bulkhead(BulkheadConfig(max_concurrent=1000), name="bench")

    async def retry_alone(x: int) -> int:
        return await retrier.call(bare, x)

    async def breaker_alone(x: int) -> int:
        return await breaker.call(bare, x)

    async def limiter_alone(x: int) -> int:
        await limiter.acquire()
        return await bare(x)

    async def bulkhead_alone(x: int) -> int:
        async with bulkhead.slot():
            return await bare(x)

    return {
        "bare await": bare,
        "ours: full stack": full,
        "ours: full stack, no slow-call timing": untimed,
        "ours: full stack, llm presets": llm,
        "ours: retrier": retry_alone,
        "ours: breaker": breaker_alone,
        "ours: limiter": limiter_alone,
        "ours: bulkhead": bulkhead_alone,
    }


def _portable() -> dict[str, Case]:
    """Baselines that run on asyncio and trio."""
    cases: dict[str, Case] = {}
    if _have("tenacity"):
        import tenacity

        async def tenacity_async_retrying(x: int) -> int:
            async for attempt in tenacity.AsyncRetrying(
                stop=tenacity.stop_after_attempt(3),
                wait=tenacity.wait_random_exponential(multiplier=0.1, max=10),
                retry=tenacity.retry_if_exception_type((TimeoutError, ConnectionError)),
                reraise=True,
            ):
                with attempt:
                    return await bare(x)
            raise AssertionError("unreachable")  # pragma: no cover

        @tenacity.retry(
            stop=tenacity.stop_after_attempt(3),
            wait=tenacity.wait_random_exponential(multiplier=0.1, max=10),
            retry=tenacity.retry_if_exception_type((TimeoutError, ConnectionError)),
            reraise=True,
        )
        async def tenacity_decorator(x: int) -> int:
            return await bare(x)

        cases["tenacity: AsyncRetrying"] = tenacity_async_retrying
        cases["tenacity: @retry"] = tenacity_decorator
    if _have("stamina"):
        import stamina

        @stamina.retry(on=(TimeoutError, ConnectionError), attempts=3)
        async def stamina_retry(x: int) -> int:
            return await bare(x)

        cases["stamina: @retry"] = stamina_retry
    return cases


def _asyncio_only() -> dict[str, Case]:
    cases: dict[str, Case] = {}
    have_stack = _have("tenacity") and _have("aiobreaker") and _have("aiolimiter")
    if _have("aiobreaker"):
        import aiobreaker  # type: ignore[import-untyped]

        cb = aiobreaker.CircuitBreaker(fail_max=5)

        async def aiobreaker_call(x: int) -> int:
            result: int = await cb.call_async(bare, x)
            return result

        cases["aiobreaker"] = aiobreaker_call
    if _have("purgatory"):
        from purgatory import AsyncCircuitBreakerFactory

        factory = AsyncCircuitBreakerFactory(default_threshold=5)

        @factory("bench")  # type: ignore[untyped-decorator]
        async def purgatory_call(x: int) -> int:
            return await bare(x)

        cases["purgatory"] = purgatory_call
    if _have("aiolimiter"):
        from aiolimiter import AsyncLimiter

        lim = AsyncLimiter(HUGE, 1)

        async def aiolimiter_call(x: int) -> int:
            async with lim:
                return await bare(x)

        cases["aiolimiter"] = aiolimiter_call
    if have_stack:
        import asyncio

        import aiobreaker
        import tenacity
        from aiolimiter import AsyncLimiter

        stack_cb = aiobreaker.CircuitBreaker(fail_max=5)
        stack_lim = AsyncLimiter(HUGE, 1)
        stack_sem = asyncio.Semaphore(1000)

        async def stack(x: int) -> int:
            async with stack_sem:
                async for attempt in tenacity.AsyncRetrying(
                    stop=tenacity.stop_after_attempt(3),
                    wait=tenacity.wait_random_exponential(multiplier=0.1, max=10),
                    retry=tenacity.retry_if_exception_type((TimeoutError, ConnectionError)),
                    reraise=True,
                ):
                    with attempt:
                        async with stack_lim:
                            result: int = await stack_cb.call_async(bare, x)
                            return result
            raise AssertionError("unreachable")  # pragma: no cover

        cases["semaphore+tenacity+aiobreaker+aiolimiter"] = stack
    return cases


async def _timed(case: Case, n: int) -> float:
    gc.collect()
    start = time.perf_counter()
    for i in range(n):
        await case(i)
    return (time.perf_counter() - start) / n * 1e6


async def measure(backend: str, n: int, repeats: int) -> dict[str, float]:
    cases = _ours() | _portable()
    if backend == "asyncio":
        cases |= _asyncio_only()
    for case in cases.values():  # warm up (caches, first-call allocations)
        await _timed(case, max(100, n // 20))
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):  # interleaved, so every case shares the machine's noise
        for name, case in cases.items():
            samples[name].append(await _timed(case, n))
    return {name: statistics.median(values) for name, values in samples.items()}


# --------------------------------------------------------------------------- accuracy


async def _admitted_in(config: LimitConfig, seconds: float, callers: int) -> int:
    """Counts admissions in ``[start, start + seconds]`` with `callers` greedy callers."""
    limiter = create_limiter(config, name="accuracy")
    end = anyio.current_time() + seconds
    admitted = 0

    async def caller() -> None:
        nonlocal admitted
        while True:
            try:
                await limiter.acquire(1, deadline=end)
            except RateLimited:  # the next admission would come after the end
                return
            admitted += 1

    async with anyio.create_task_group() as tg:
        for _ in range(callers):
            tg.start_soon(caller)
    return admitted


ACCURACY_CASES: dict[str, LimitConfig] = {
    "token_bucket": TokenBucket.per_second(100, capacity=1),
    "sliding_window": SlidingWindow.per_second(100),
    "gcra": GCRA.per_second(100),
}


def limiter_accuracy(backend: str) -> dict[str, dict[str, float]]:
    """Admitted requests over 10 virtual seconds at 100 req/s, 10 greedy callers."""
    name, options = virtual_time_backend(backend)
    results: dict[str, dict[str, float]] = {}
    for kind, config in ACCURACY_CASES.items():
        admitted = anyio.run(_admitted_in, config, 10.0, 10, backend=name, backend_options=options)
        limit = 100 * 10
        results[kind] = {
            "admitted": admitted,
            "limit": limit,
            "error": abs(admitted - limit) / limit,
        }
    return results


# --------------------------------------------------------------------------- report


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, for CI")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args()
    n, repeats = (1_000, 3) if args.quick else (20_000, 7)
    report: dict[str, Any] = {"calls_per_run": n, "repeats": repeats, "backends": {}}
    for backend in ("asyncio", "trio"):
        m = anyio.run(measure, backend, n, repeats, backend=backend)
        floor = m["bare await"]
        ours = m["ours: full stack"]
        ours_untimed = m["ours: full stack, no slow-call timing"]
        print(f"\n{backend}: {n} calls x {repeats} repeats, median us/call")
        print(f"  {'case':34} {'us/call':>9} {'overhead':>9} {'vs ours':>8}")
        for name, value in m.items():
            print(f"  {name:34} {value:9.3f} {value - floor:9.3f} {value / ours:7.1f}x")
        targets = {
            "stack_vs_semaphore_tenacity_aiobreaker_aiolimiter": (
                _ratio(m.get("semaphore+tenacity+aiobreaker+aiolimiter"), ours),
                8.0,
            ),
            "stack_vs_tenacity_async_retrying": (
                _ratio(m.get("tenacity: AsyncRetrying"), ours),
                10.0,
            ),
            "untimed_stack_vs_semaphore_tenacity_aiobreaker_aiolimiter": (
                _ratio(m.get("semaphore+tenacity+aiobreaker+aiolimiter"), ours_untimed),
                8.0,
            ),
        }
        for target, (ratio, wanted) in targets.items():
            if ratio is None:
                print(f"  {target}: not measured (library missing or asyncio-only)")
            else:
                verdict = "met" if ratio >= wanted else "NOT met"
                print(f"  {target}: {ratio:.1f}x (target >= {wanted:g}x: {verdict})")
        accuracy = limiter_accuracy(backend)
        for kind, row in accuracy.items():
            verdict = "met" if row["error"] <= 0.01 else "NOT met"
            print(
                f"  limiter accuracy {kind:15} admitted {row['admitted']:.0f} of "
                f"{row['limit']:.0f} in 10 virtual s: error {row['error']:.2%} "
                f"(target <= 1 %: {verdict})"
            )
        report["backends"][backend] = {
            "us_per_call": m,
            "ratios": {name: ratio for name, (ratio, _) in targets.items()},
            "targets": {name: wanted for name, (_, wanted) in targets.items()},
            "limiter_accuracy": accuracy,
        }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
