"""Service groups: tail latency with hedging, quota-aware routing, adaptive concurrency.

Run: python tests/benchmarks/groups.py [--quick] [--json PATH]

Every scenario runs the mock LLM in process (`httpx2.ASGITransport`) on virtual time,
on asyncio and on trio, each figure beside its baseline in the same run:

- **tail latency**: three members; each request takes the median latency (x0.8-1.2)
  or, one time in twenty, ten times it. p50 and p99 of a closed-loop load with hedging
  at the 94th percentile of the first members' latency (budget 6 %) beside the same
  load without hedging, and the extra requests hedging sent. (With exactly 5 % slow
  requests the 95th percentile is the knife edge between fast and slow answers; the
  94th sits at the top of the fast ones.)
- **quota**: three members with different tokens-per-minute quotas enforced by the
  mock (429 beyond them), each member's limits set to its quota (the LLM preset:
  cold start, reserve-then-reconcile). A closed loop offering several times the summed
  quota: goodput (tokens served over the summed quota of the run) and the share of
  requests the providers answered 429, quota-headroom routing beside round-robin.
- **adaptive concurrency**: one service with `ServiceConfig.adaptive` against a mock
  that answers 32 requests at once (16 more wait, the rest get 503), halving to 16
  mid-run. The share of 503s, and how long after the halving the throughput is back to
  90 % of the new capacity, beside a fixed concurrency limit at the old capacity.

Virtual time makes the figures exact and repeatable: they measure decisions (which
member, when to hedge, which limit), not CPU. Ratios are reported, never enforced: the
script exits 0 whatever they are.
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import supervisor as sv
from actors import ActorConfig, Service, ServiceConfig, ServiceResponseError, open_actor
from actors.resilience import AdaptiveConcurrency, BulkheadConfig, RetryPolicy, create_bulkhead
from actors.services import ChatRequest
from actors.services.llm import LLMClient
from actors.testing import Behaviour, MockLLM, Quota, virtual_time_backend
from supervisor.groups import GroupConfig, HedgePolicy, ServiceGroup, member
from tests.benchmarks._cli import parse_args, write_json

MEDIAN = 0.1  # seconds: the tail scenario's median latency


def _client(name: str, mock: MockLLM, connections: int = 64) -> Any:
    transport = httpx2.ASGITransport(app=mock)
    return lambda: LLMClient(
        name, "http://mock/v1", model="m", transport=transport, max_connections=connections
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


# ------------------------------------------------------------------------ tail latency


async def _tail(requests: int, hedge: bool, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    mocks = {name: MockLLM() for name in ("a", "b", "c")}
    for mock in mocks.values():
        mock.script(
            *(
                Behaviour.ok(
                    latency=MEDIAN * (10.0 if rng.random() < 0.05 else rng.uniform(0.8, 1.2))
                )
                for _ in range(requests * 2)
            )
        )
    config = ServiceConfig.for_llm(breaker=None, actor=ActorConfig(call_timeout=60))
    members = [member(name, _client(name, mock), config) for name, mock in mocks.items()]
    policy = HedgePolicy(delay=MEDIAN * 2, quantile=0.94, min_samples=50, budget=0.06)
    group = ServiceGroup(
        "llm", members, GroupConfig(routing="least_in_flight", hedge=policy if hedge else None)
    )
    latencies: list[float] = []
    left = requests
    async with sv.start(sv.SupervisorSpec(id="app", children=[group.spec()])):

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                start = anyio.current_time()
                await group.call(ChatRequest.user("hi", max_tokens=16), timeout=30)
                latencies.append(anyio.current_time() - start)

        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(worker)
    stats = group.stats
    p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    return {
        "p50_s": p50,
        "p99_s": p99,
        "p99_over_p50": p99 / p50,
        "extra_requests": stats.hedges / stats.requests,
        "hedge_wins": stats.hedge_wins,
    }


# ------------------------------------------------------------------------------ quota

QUOTAS = {"small": 20_000, "medium": 40_000, "large": 60_000}  # tokens per minute


async def _quota(minutes: float, routing: str, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    mocks = {
        name: MockLLM(latency=0.5, quota=Quota(tokens_per_minute=tpm))
        for name, tpm in QUOTAS.items()
    }
    members = [
        member(
            name,
            _client(name, mock),
            ServiceConfig.for_llm(
                tokens_per_minute=QUOTAS[name],
                breaker=None,
                max_concurrency=64,
                actor=ActorConfig(call_timeout=60, mailbox_size=1000),
            ),
        )
        for name, mock in mocks.items()
    ]
    group = ServiceGroup("llm", members, GroupConfig(routing=routing))
    tokens = 0
    refused = 0
    async with sv.start(sv.SupervisorSpec(id="app", children=[group.spec()])):
        stop = anyio.current_time() + minutes * 60

        async def worker() -> None:
            nonlocal tokens, refused
            while anyio.current_time() < stop:
                words = rng.randint(50, 400)
                request = ChatRequest.user(" ".join(["word"] * words), max_tokens=100)
                try:
                    reply = await group.call(request, timeout=20)
                except Exception:
                    refused += 1
                    await anyio.sleep(0.5)
                    continue
                if anyio.current_time() <= stop:  # what the provider admitted in the run
                    tokens += reply.usage.total_tokens

        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(worker)
    answered = [s for mock in mocks.values() for s in mock.served]
    throttled = sum(1 for s in answered if s.status == 429)
    summed = sum(QUOTAS.values()) * minutes  # windows of a minute, from an empty start
    stats = group.stats
    return {
        "goodput": tokens / summed,
        "share_429": throttled / max(1, len(answered)),
        "provider_requests": len(answered),
        "member_calls_per_success": stats.attempts / max(1, stats.succeeded),
        "refused_locally": refused,
    }


# ------------------------------------------------------------------ adaptive concurrency

CAPACITY, BACKLOG = 32, 16
WINDOW = 0.5  # seconds over which throughput is measured


async def _adaptive(seconds: float, limit: str) -> dict[str, Any]:
    """`limit`: "adaptive", "fixed" (the best static limit before the halving: every
    place and the backlog) or "none"."""
    mock = MockLLM(latency=MEDIAN, capacity=CAPACITY, backlog=BACKLOG)
    adaptive = AdaptiveConcurrency(initial=4, max_limit=200, max_queued=10_000)
    config = ServiceConfig(
        retry=RetryPolicy(attempts=1, budget_ratio=None),
        breaker=None,
        max_concurrency=256,
        adaptive=adaptive if limit == "adaptive" else None,
    )
    config = attrs.evolve(config, pool=attrs.evolve(config.pool, max_size=256))
    service = Service("llm", _client("llm", mock, 256), config)
    fixed = (
        create_bulkhead(
            BulkheadConfig(max_concurrent=CAPACITY + BACKLOG, max_queued=10_000), name="fixed"
        )
        if limit == "fixed"
        else None
    )
    counts = {"ok": 0, "503": 0}
    done: list[float] = []
    half = seconds / 2
    async with open_actor(service.actor(), mailbox_size=10_000, call_timeout=60) as ref:
        start = anyio.current_time()
        stop = start + seconds

        async def call() -> None:
            if fixed is None:
                await ref.call(ChatRequest.user("hi", max_tokens=8), timeout=30)
                return
            async with fixed.slot():
                await ref.call(ChatRequest.user("hi", max_tokens=8), timeout=30)

        async def worker() -> None:
            while anyio.current_time() < stop:
                try:
                    await call()
                except ServiceResponseError:
                    counts["503"] += 1
                    await anyio.sleep(MEDIAN)  # a client backs off before trying again
                else:
                    counts["ok"] += 1
                    done.append(anyio.current_time() - start)

        async def halve() -> None:
            await anyio.sleep(half)
            mock.control({"capacity": CAPACITY // 2})

        async with anyio.create_task_group() as tg:
            tg.start_soon(halve)
            for _ in range(160):
                tg.start_soon(worker)
    wanted = 0.9 * CAPACITY // 2 / MEDIAN * WINDOW  # answers per window at 90 % of capacity
    recovery = math.inf
    for step in range(int(half / 0.05)):
        begin = half + step * 0.05
        if begin + WINDOW > seconds:
            break
        if sum(1 for t in done if begin <= t < begin + WINDOW) >= wanted:
            recovery = begin + WINDOW - half  # the end of the first good window
            break
    total = counts["ok"] + counts["503"]
    concurrency = service.concurrency
    return {
        "share_503": counts["503"] / total,
        "recovery_s": recovery,
        "final_limit": None if concurrency is None else concurrency.metrics().limit,
        "requests": total,
    }


# ------------------------------------------------------------------------------- main


LIMITS = {
    "adaptive": "adaptive",
    "fixed": f"fixed {CAPACITY + BACKLOG}",
    "none": "no limit",
}


def _run(backend: str, coro: Any, *args: Any) -> Any:
    name, options = virtual_time_backend(backend)
    return anyio.run(coro, *args, backend=name, backend_options=options)


def main() -> int:
    args = parse_args(__doc__, quick_help="fewer requests, shorter runs (well under a minute)")
    tail_requests = 1000 if args.quick else 6000
    quota_minutes = 2.0 if args.quick else 5.0
    adaptive_seconds = 8.0 if args.quick else 30.0
    report: dict[str, Any] = {"backends": {}}
    for backend in ("asyncio", "trio"):
        result: dict[str, Any] = {}
        hedged = _run(backend, _tail, tail_requests, True, 1)
        plain = _run(backend, _tail, tail_requests, False, 1)
        result["tail"] = {"hedged": hedged, "no_hedging": plain}
        print(f"{backend}: tail latency ({tail_requests} requests; 5 % take 10x the median)")
        for label, row in (("hedging", hedged), ("no hedging", plain)):
            print(
                f"  {label:12} p50 {row['p50_s']:.3f}s  p99 {row['p99_s']:.3f}s"
                f"  p99/p50 {row['p99_over_p50']:.2f}  extra requests {row['extra_requests']:.1%}"
            )
        headroom = _run(backend, _quota, quota_minutes, "quota_headroom", 2)
        rr = _run(backend, _quota, quota_minutes, "round_robin", 2)
        result["quota"] = {"quota_headroom": headroom, "round_robin": rr}
        print(
            f"{backend}: quota ({quota_minutes:g} min, quotas {sorted(QUOTAS.values())} tokens/min)"
        )
        for label, row in (("headroom", headroom), ("round-robin", rr)):
            print(
                f"  {label:12} goodput {row['goodput']:.1%} of the summed quota"
                f"  429s {row['share_429']:.2%} of {row['provider_requests']} requests"
                f"  member calls per answer {row['member_calls_per_success']:.2f}"
            )
        rows = {name: _run(backend, _adaptive, adaptive_seconds, name) for name in LIMITS}
        result["adaptive"] = rows
        print(
            f"{backend}: adaptive concurrency (capacity {CAPACITY} -> {CAPACITY // 2}"
            f" at {adaptive_seconds / 2:g}s, backlog {BACKLOG}, 160 callers)"
        )
        for name, row in rows.items():
            limit = "" if row["final_limit"] is None else f"  (limit {row['final_limit']:.1f})"
            print(
                f"  {LIMITS[name]:17} 503s {row['share_503']:6.2%} of {row['requests']:5} requests"
                f"  90 % of the new capacity {row['recovery_s']:.2f}s after the halving{limit}"
            )
        report["backends"][backend] = result
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
