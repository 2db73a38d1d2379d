"""The figure agents care about: how much of a provider's quota each client gets.

Run: python tests/benchmarks/quota.py [--quick] [--json PATH]

A mock provider runs in its own process (`MockLLM` with a `Quota`, on hypercorn): per
API key it enforces requests and tokens over a rolling window and answers 429 with
``retry-after`` and ``x-ratelimit-*`` beyond them. 50 agent workers (a closed loop,
mixed prompt sizes: 12 to 250 prompt tokens) drive it for three windows through, one
after another, each with its own key:

- **ours**: an LLM service actor, `ServiceConfig.for_llm` given the provider's limits
  (its default preset: LLM retry and breaker, cold start, reserve-then-reconcile);
- **openai SDK**: the official `openai` client with its default retries (2);
- **httpx2 + tenacity**: httpx2 with tenacity retrying 429 and 5xx (exponential
  jitter, 6 attempts), a common hand-rolled client.

Two scenarios each: a *cold* window, and a window that *starts full* (another client
of the same key spent the whole token limit just before). For each it reports
goodput (tokens served within the run / tokens the provider could have admitted
during it: its token limit per window times the windows, minus what the pre-fill
spent),
429s received, failed requests, and p50/p99 latency of successes. Ratios are reported,
never enforced.
"""

from __future__ import annotations

import functools
import math
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks._cli import parse_args, write_json
from tests.benchmarks._provider import provider

if TYPE_CHECKING:
    from actors import Service
    from actors.resilience import BreakerStateStore, LimiterStore
    from actors.services import ChatRequest, ChatResponse

WORKERS = 50
LATENCY = 0.05
MODEL = "mock"


def _prompt(rng: random.Random) -> str:
    return " ".join("word" for _ in range(rng.randint(10, 200)))  # 12-250 tokens


class Tally:
    """What one client got: successes, tokens, 429s, failures (by error), latencies."""

    def __init__(self, fill: Callable[[], Awaitable[int]] | None = None) -> None:
        self.fill = fill  # spends the window as the run starts (the "full" scenario)
        self.prefilled = 0
        self.ok = 0
        self.tokens = 0
        self.throttled = 0
        self.failures: Counter[str] = Counter()
        self.latencies: list[float] = []

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def dump(self) -> dict[str, Any]:
        """The counts, for another process to `merge`."""
        return {
            "ok": self.ok,
            "tokens": self.tokens,
            "throttled": self.throttled,
            "failures": dict(self.failures),
            "latencies": self.latencies,
        }

    def merge(self, dumped: dict[str, Any]) -> None:
        """Adds what another process's tally `dump`ed."""
        self.ok += dumped["ok"]
        self.tokens += dumped["tokens"]
        self.throttled += dumped["throttled"]
        self.failures.update(dumped["failures"])
        self.latencies.extend(dumped["latencies"])

    def row(self, available: float, seconds: float) -> dict[str, Any]:
        lat = sorted(self.latencies)
        p50 = statistics.median(lat) if lat else math.nan
        p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else math.nan
        return {
            "goodput": self.tokens / available,
            "tokens": self.tokens,
            "ok": self.ok,
            "answered_429": self.throttled,
            "share_429": self.throttled / max(1, self.ok + self.failed),
            "failed": self.failed,
            "failed_by_breaker": self.failures["CircuitOpen"],
            "failures": dict(self.failures),
            "requests_per_s": (self.ok + self.failed) / seconds,
            "p50_s": p50,
            "p99_s": p99,
        }


async def _control(url: str, command: dict[str, Any]) -> None:
    import httpx2

    async with httpx2.AsyncClient() as http:
        (await http.post(f"{url}/_control", json=command)).raise_for_status()


async def reset_provider(url: str, limits: dict[str, float], window: float) -> None:
    """Forgets every key's window and sets the provider's limits."""
    quota = {
        "requests_per_minute": int(limits["requests"]),
        "tokens_per_minute": int(limits["tokens"]),
        "window": window,
    }
    await _control(url, {"reset": True, "latency": LATENCY, "quota": quota})


async def fill(url: str, key: str, tokens: int) -> int:
    """Spends `key`'s token window (in a few quick requests, until the provider says
    429); returns the tokens spent."""
    import httpx2

    spent = 0
    async with httpx2.AsyncClient(base_url=url, timeout=30) as http:
        for share in (0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625):
            words = int(tokens * share * 4 / 5)  # the mock counts a token per 4 characters
            body = {
                "model": MODEL,
                "max_tokens": 1,
                "messages": [{"role": "user", "content": "word " * words}],
            }
            reply = await http.post(
                "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
            )
            if reply.status_code == 200:
                spent += int(reply.json()["usage"]["total_tokens"])
    return spent


Call = Callable[[str], Awaitable[int]]


async def drive(
    call: Call, seconds: float, tally: Tally, seed: int, workers: int = WORKERS
) -> None:
    """Runs `workers` closed-loop agents through `call` for `seconds` (pre-filling the
    window first when `tally.fill` says so), counting into `tally`."""
    rng = random.Random(seed)
    start = anyio.current_time()
    if tally.fill is not None:
        tally.prefilled = await tally.fill()
    # Measured from the first pre-fill request, so the run spans exactly `seconds` of the
    # provider's windows (a rolling window admits a full burst at each boundary).
    end = start + seconds

    async def worker() -> None:
        while True:
            start = anyio.current_time()
            try:
                used = await call(_prompt(rng))
            except Exception as exc:
                tally.failures[type(exc).__name__] += 1
                continue
            tally.ok += 1
            tally.tokens += used
            tally.latencies.append(anyio.current_time() - start)

    # The run ends for everyone at `end`: calls still in flight are cancelled and not
    # counted, so only tokens served within the run count.
    with anyio.move_on_at(end):
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)


def llm_service(
    url: str,
    key: str,
    limits: dict[str, float],
    window: float,
    *,
    name: str = "quota",
    limiter_store: LimiterStore | None = None,
    breaker_store: BreakerStateStore | None = None,
) -> Service[ChatRequest, ChatResponse]:
    """Our LLM service for `key`: the default preset, given the provider's limits."""
    from actors import Secret, Service, ServiceConfig
    from actors.resilience import SlidingWindow
    from actors.services.llm import LLMClient

    config = ServiceConfig.for_llm(
        limits={
            "requests": SlidingWindow(limit=limits["requests"], window=window),
            "tokens": SlidingWindow(limit=limits["tokens"], window=window),
        },
    )
    return Service(
        name,
        lambda: LLMClient(name, f"{url}/v1", model=MODEL, api_key=Secret(key)),
        config,
        limiter_store=limiter_store,
        breaker_store=breaker_store,
    )


@asynccontextmanager
async def serving(service: Service[ChatRequest, ChatResponse]) -> AsyncIterator[Call]:
    """Runs `service`'s actor; yields the agents' call (a chat request, its tokens)."""
    from actors import open_actor
    from actors.services import ChatRequest

    async with open_actor(service.actor(), name=service.name, config=service.config.actor) as ref:

        async def call(prompt: str) -> int:
            reply = await ref.call(ChatRequest.user(prompt, max_tokens=32))
            return int(reply.usage.total_tokens)

        yield call


async def run_ours(
    url: str, key: str, seconds: float, limits: dict[str, float], window: float, tally: Tally
) -> None:
    service = llm_service(url, key, limits, window)
    async with serving(service) as call:
        await drive(call, seconds, tally, seed=1)
    tally.throttled = service.stats.verdicts.get("throttled", 0)


async def run_openai(url: str, key: str, seconds: float, tally: Tally) -> None:
    import httpx2
    import openai

    async def count(response: httpx2.Response) -> None:
        if response.status_code == 429:
            tally.throttled += 1

    async with httpx2.AsyncClient(
        event_hooks={"response": [count]}, limits=httpx2.Limits(max_connections=WORKERS)
    ) as http:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, http_client=http)

        async def call(prompt: str) -> int:
            reply = await client.chat.completions.create(
                model=MODEL, max_tokens=32, messages=[{"role": "user", "content": prompt}]
            )
            assert reply.usage is not None
            return reply.usage.total_tokens

        await drive(call, seconds, tally, seed=1)


async def run_tenacity(url: str, key: str, seconds: float, tally: Tally) -> None:
    import httpx2
    import tenacity

    class Retryable(Exception):
        pass

    async with httpx2.AsyncClient(
        base_url=url,
        headers={"authorization": f"Bearer {key}"},
        limits=httpx2.Limits(max_connections=WORKERS),
        timeout=60,
    ) as http:

        @tenacity.retry(
            retry=tenacity.retry_if_exception_type(Retryable),
            wait=tenacity.wait_random_exponential(multiplier=0.5, max=30),
            stop=tenacity.stop_after_attempt(6),
            sleep=anyio.sleep,
            reraise=True,
        )
        async def call(prompt: str) -> int:
            body = {
                "model": MODEL,
                "max_tokens": 32,
                "messages": [{"role": "user", "content": prompt}],
            }
            reply = await http.post("/v1/chat/completions", json=body)
            if reply.status_code == 429:
                tally.throttled += 1
            if reply.status_code == 429 or reply.status_code >= 500:
                raise Retryable(reply.status_code)
            reply.raise_for_status()
            return int(reply.json()["usage"]["total_tokens"])

        await drive(call, seconds, tally, seed=1)


CLIENTS = ("ours", "openai SDK", "httpx2 + tenacity")


async def scenario(
    url: str, name: str, full: bool, window: float, seconds: float, limits: dict[str, float]
) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for client in CLIENTS:
        key = f"sk-bench-{name}-{client}".replace(" ", "")
        await reset_provider(url, limits, window)
        tally = Tally(functools.partial(fill, url, key, int(limits["tokens"])) if full else None)
        started = time.perf_counter()
        if client == "ours":
            await run_ours(url, key, seconds, limits, window, tally)
        elif client == "openai SDK":
            await run_openai(url, key, seconds, tally)
        else:
            await run_tenacity(url, key, seconds, tally)
        available = limits["tokens"] * seconds / window - tally.prefilled
        rows[client] = tally.row(available, time.perf_counter() - started)
    return rows


def provider_limits(window: float) -> dict[str, float]:
    """1,200 requests and 120,000 tokens a minute, per window (tokens bind first)."""
    return {"requests": 1_200.0 * window / 60, "tokens": 120_000.0 * window / 60}


def print_rows(title: str, rows: dict[str, dict[str, Any]]) -> None:
    """Prints one scenario's table (one row per client)."""
    print(f"\n{title}")
    print(
        f"  {'client':28} {'goodput':>8} {'served':>7} {'429s':>6} {'429 %':>6} "
        f"{'failed':>7} {'breaker':>7} {'p50 s':>7} {'p99 s':>7}"
    )
    for client, row in rows.items():
        print(
            f"  {client:28} {row['goodput']:8.1%} {row['ok']:7d} "
            f"{row['answered_429']:6d} {row['share_429']:6.1%} {row['failed']:7d} "
            f"{row['failed_by_breaker']:7d} {row['p50_s']:7.2f} {row['p99_s']:7.2f}"
        )


def main() -> int:
    args = parse_args(__doc__, quick_help="three 4 s windows per run, for CI")
    window, windows = (4.0, 3) if args.quick else (20.0, 3)
    seconds = window * windows
    limits = provider_limits(window)
    report: dict[str, Any] = {
        "window_s": window,
        "run_s": seconds,
        "limits_per_window": limits,
        "workers": WORKERS,
        "scenarios": {},
    }
    with provider(LATENCY) as url:
        for name, full in (("cold", False), ("full", True)):
            rows = anyio.run(scenario, url, name, full, window, seconds, limits)
            report["scenarios"][name] = rows
            print_rows(
                f"{name} window: provider {limits['requests']:g} requests and "
                f"{limits['tokens']:g} tokens per {window:g} s window, {seconds:g} s run, "
                f"{WORKERS} workers",
                rows,
            )
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
