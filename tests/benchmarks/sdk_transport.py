"""The official SDKs through a service actor: per-request cost against the bare SDK.

Run: python tests/benchmarks/sdk_transport.py [--quick] [--json PATH]

The mock LLM server (hypercorn on 127.0.0.1, in this process, no latency) is served
once per backend. The same SDK call (a chat completion of a short prompt, answered
with a JSON body) is made sequentially, in interleaved rounds, by:

- the bare SDK: `AsyncOpenAI` / `AsyncAnthropic` with its own httpx2 connection pool
  to the mock, retries off (``max_retries=0``) — the SDK and the network, nothing else;
- the same SDK from `openai_client(ref)` / `anthropic_client(ref)`: every request goes
  through `ActorTransport`, the actor's mailbox, the service's pipeline with the LLM
  presets (retry, a breaker timing every call, a requests-per-minute and a
  tokens-per-minute limit with its cold start, the pool), `SDKClient` pricing the body
  with our token estimate and reading the answer (bounded) for its usage, which
  reconciles the reservation, and the rate-limit headers resync.

It prints microseconds per request of each, by the wall clock and in CPU time (this
process's, the mock's share included on both sides: steadier than the wall clock on a
busy machine), and the ratio ours / bare (median of the per-round ratios; target
<= 1.2x), per SDK and backend. Ratios are reported, never
enforced: the script exits 0 whatever they are.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anthropic
import anyio
import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the root: tests.benchmarks

from actors import Service, ServiceConfig, open_actor
from actors.integrations import SDKClient, anthropic_client, openai_client
from actors.services.anthropic import AnthropicClient
from actors.services.llm import LLMClient
from actors.testing import MockLLMServer, serve_mock_llm
from tests.benchmarks._cli import parse_args, write_json

MESSAGES = [{"role": "user", "content": "Say hello in five words."}]
TARGET = 1.2


def openai_call(client: Any) -> Callable[[], Awaitable[object]]:
    async def call() -> object:
        return await client.chat.completions.create(
            model="mock-gpt", messages=MESSAGES, max_tokens=32
        )

    return call


def anthropic_call(client: Any) -> Callable[[], Awaitable[object]]:
    async def call() -> object:
        return await client.messages.create(model="mock-claude", messages=MESSAGES, max_tokens=32)

    return call


async def timed(call: Callable[[], Awaitable[object]], requests: int) -> tuple[float, float]:
    """Wall and CPU microseconds per request (CPU: this process, the mock included)."""
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(requests):
        await call()
    wall = (time.perf_counter() - start) / requests * 1e6
    return wall, (time.process_time() - cpu) / requests * 1e6


def service(sdk: str, server: MockLLMServer) -> Service[Any, Any]:
    config = ServiceConfig.for_llm(requests_per_minute=1e9, tokens_per_minute=1e12)
    if sdk == "openai":
        return Service(
            "gpt", lambda: SDKClient(LLMClient("gpt", server.base_url, model="mock-gpt")), config
        )
    return Service(
        "claude",
        lambda: SDKClient(AnthropicClient("claude", server.base_url, model="mock-claude")),
        config,
    )


async def compare(sdk: str, server: MockLLMServer, requests: int, rounds: int) -> dict[str, Any]:
    svc = service(sdk, server)
    make: Callable[..., openai.AsyncOpenAI | anthropic.AsyncAnthropic]
    if sdk == "openai":
        bare_client: Any = openai.AsyncOpenAI(
            base_url=server.base_url, api_key="sk-bench", max_retries=0
        )
        make, call_of = openai_client, openai_call
    else:
        bare_client = anthropic.AsyncAnthropic(
            base_url=server.url, api_key="sk-bench", max_retries=0
        )
        make, call_of = anthropic_client, anthropic_call
    bare_us: list[tuple[float, float]] = []
    ours_us: list[tuple[float, float]] = []
    async with open_actor(svc.actor(), config=svc.config.actor) as ref:
        async with bare_client, make(ref) as ours_client:
            bare, ours = call_of(bare_client), call_of(ours_client)
            await timed(bare, 20)  # warm up: connections, the SDKs' lazy setup
            await timed(ours, 20)
            for _ in range(rounds):
                bare_us.append(await timed(bare, requests))
                ours_us.append(await timed(ours, requests))
    report: dict[str, Any] = {"service_requests": svc.stats.requests}
    for index, clock in enumerate(("wall", "cpu")):
        bare_t = [t[index] for t in bare_us]
        ours_t = [t[index] for t in ours_us]
        ratios = [o / b for o, b in zip(ours_t, bare_t, strict=True)]
        report[clock] = {
            "bare_us": statistics.median(bare_t),
            "ours_us": statistics.median(ours_t),
            "overhead_us": statistics.median(ours_t) - statistics.median(bare_t),
            "ratio": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
        }
    return report


async def measure(requests: int, rounds: int) -> dict[str, Any]:
    async with serve_mock_llm() as server:
        return {
            sdk: await compare(sdk, server, requests, rounds) for sdk in ("openai", "anthropic")
        }


def main() -> int:
    args = parse_args(__doc__, quick_help="fewer requests and rounds")
    requests, rounds = (100, 3) if args.quick else (500, 7)
    report: dict[str, Any] = {"requests_per_round": requests, "rounds": rounds, "backends": {}}
    print(
        f"{'backend':8} {'sdk':10} {'clock':5} {'bare us':>9} {'ours us':>9} {'+us':>8}"
        f" {'ratio':>7}  range"
    )
    for backend in ("asyncio", "trio"):
        results = anyio.run(measure, requests, rounds, backend=backend)
        report["backends"][backend] = results
        for sdk, result in results.items():
            for clock in ("wall", "cpu"):
                m = result[clock]
                print(
                    f"{backend:8} {sdk:10} {clock:5} {m['bare_us']:9.1f} {m['ours_us']:9.1f}"
                    f" {m['overhead_us']:8.1f} {m['ratio']:7.3f}"
                    f"  {m['ratio_min']:.3f}-{m['ratio_max']:.3f}"
                    f"  {'met' if m['ratio'] <= TARGET else 'NOT met'}"
                )
    print(
        f"target: the SDK through the actor <= {TARGET}x the bare SDK per request"
        " (median of per-round ratios)"
    )
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
