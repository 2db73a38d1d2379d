"""The `resilient` decorators on three simulated services: an LLM API, a database, an MCP server.

Run: python examples/resilient_functions.py [--backend trio]

Nothing touches the network: each "service" is an async function that fails the way the
real one does (HTTP 429/503 with retry headers, a deadlock, a broken transport), and
the decorators decide what is retried, what is counted, and when to stop calling.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors import CircuitOpen, load_resilience_toml
from actors.resilience import BreakerTransition, BulkheadConfig, RetryPolicy, TokenBucket, resilient


class APIError(Exception):
    """What an HTTP client raises: a status, headers and a provider error code."""

    def __init__(self, status_code: int, *, code: str = "", headers: dict[str, str] | None = None):
        super().__init__(f"HTTP {status_code} {code}".strip())
        self.status_code = status_code
        self.code = code
        self.headers = headers or {}


class DatabaseError(Exception):
    """What a database driver raises: an SQLSTATE code."""

    def __init__(self, sqlstate: str, message: str):
        super().__init__(message)
        self.sqlstate = sqlstate


def attempts_of(fn: Any) -> str:
    retrier = fn.resilience.retrier
    return f"{retrier.metrics.calls} calls, {retrier.metrics.retries} retries"


def show_transition(transition: BreakerTransition) -> None:
    print(
        f"    breaker {transition.name}: {transition.from_state.value} -> "
        f"{transition.to_state.value} ({transition.reason})"
    )


# --------------------------------------------------------------------------- LLM

llm_failures = [
    APIError(429, headers={"retry-after-ms": "150"}),  # rate limited: wait what it asks
    APIError(503),  # overloaded: back off and retry
]


@resilient.llm(
    # Fast backoff so the example runs in a blink; the preset is 0.5 s -> 30 s.
    retry=RetryPolicy.for_llm(backoff_initial=0.05, backoff_max=1.0),
    limiter={"requests": TokenBucket.per_minute(500), "tokens": TokenBucket.per_minute(30_000)},
    cost=lambda prompt: {"requests": 1, "tokens": 10 * len(prompt.split())},
    name="llm",
)
async def complete(prompt: str) -> str:
    """A chat completion: fails with the scripted errors first, then answers."""
    if llm_failures:
        raise llm_failures.pop(0)
    if "budget" in prompt:
        raise APIError(429, code="insufficient_quota")  # quota gone: retrying cannot help
    return prompt.upper()


async def llm_demo() -> None:
    print("LLM (resilient.llm): 429 with retry-after-ms, then 503, then success")
    print(f"  complete('hello world') -> {await complete('hello world')!r}")
    try:
        await complete("over budget")
    except APIError as exc:
        print(f"  complete('over budget') -> {exc} (permanent: not retried)")
    limiter = complete.resilience.limiter
    assert limiter is not None
    print(f"  {attempts_of(complete)}; limiter admitted {limiter.metrics().admitted_cost}")


# --------------------------------------------------------------------------- database

db_failures = [DatabaseError("40P01", "deadlock detected")]


@resilient.database(
    retry=RetryPolicy.for_database(backoff_initial=0.01),
    bulkhead=BulkheadConfig(max_concurrent=5, max_queued=10),  # the pool size
    name="orders-db",
)
async def query(sql: str) -> list[tuple[int, str]]:
    """A query: one deadlock (retryable), and a syntax error for bad SQL (permanent)."""
    await anyio.sleep(0.01)
    if db_failures:
        raise db_failures.pop(0)
    if not sql.startswith("SELECT"):
        raise DatabaseError("42601", "syntax error")
    return [(1, "book"), (2, "pen")]


async def db_demo() -> None:
    print("Database (resilient.database): a deadlock is retried, a syntax error is not")
    async with anyio.create_task_group() as tg:  # 8 concurrent callers, 5 slots
        for _ in range(8):
            tg.start_soon(query, "SELECT id, name FROM items")
    try:
        await query("SELEKT 1")
    except DatabaseError as exc:
        print(f"  query('SELEKT 1') -> {exc} (SQLSTATE {exc.sqlstate}: permanent)")
    bulkhead = query.resilience.bulkhead
    assert bulkhead is not None
    metrics = bulkhead.metrics()
    print(
        f"  {attempts_of(query)}; bulkhead: at most {metrics.max_active} at once, "
        f"{metrics.max_queued} waited for a slot"
    )


# --------------------------------------------------------------------------- MCP

MCP_CONFIG = """
preset = "mcp"

[retry]
backoff_initial = 0.01          # seconds; the preset waits 0.2 s -> 5 s

[breaker]
window_size = 6                 # judge the last 6 calls ...
minimum_calls = 6               # ... once there are 6
open_duration = 0.5             # seconds before a trial call

[limiter]
kind = "token_bucket"
rate = 50                       # requests per period
period = 1.0                    # seconds
"""

server = {"up": False}


@resilient.from_config(load_resilience_toml(MCP_CONFIG), name="tools")
async def call_tool(name: str) -> str:
    """An MCP tool call: the transport is broken until the server comes back."""
    if not server["up"]:
        raise anyio.BrokenResourceError("MCP transport closed")
    return f"{name}: done"


async def mcp_demo() -> None:
    print("MCP (resilient.from_config, TOML): the server is down, the breaker opens")
    breaker = call_tool.resilience.breaker
    assert breaker is not None
    breaker.add_listener(show_transition)
    for _ in range(3):
        try:
            await call_tool("search")
        except CircuitOpen as exc:
            print(f"  call_tool('search') -> circuit open, retry after {exc.retry_after:.2f}s")
        except anyio.BrokenResourceError as exc:
            print(f"  call_tool('search') -> {exc} after retries")
    server["up"] = True
    await anyio.sleep(0.5)
    print(f"  server back; after the open duration: {await call_tool('search')!r}")
    print(f"  {attempts_of(call_tool)}; breaker is {breaker.state.value}")


async def main() -> None:
    await llm_demo()
    print()
    await db_demo()
    print()
    await mcp_demo()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="resilient decorators on simulated services")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, backend=args.backend)
