"""What tracing costs a `ServiceActor` call: off, an SDK that samples nothing, a recording SDK.

Run: python tests/benchmarks/tracing.py [--quick] [--json PATH]

For each backend, in one process, rounds interleaved so that the settings share the
machine's noise, it measures the CPU time per call (process time / calls) of a
`ServiceActor` call (the LLM kind's pipeline around an in-process echo client: the
CPU-bound worst case, 16 callers) under each setting, handed to the library with
`actors.instrument`:

- *off*: no provider (opentelemetry-api installed, nothing set): the baseline;
- *off again*: the same, measured again: its ratio shows the run's noise;
- *unsampled*: the SDK's `TracerProvider` with a sampler that records nothing
  (``ParentBased(ALWAYS_OFF)``), the no-op setting of an application that traces a
  fraction of its requests;
- *recording*: the SDK recording every span into an in-memory exporter;
- *metrics*: the SDK's `MeterProvider` (an in-memory reader) and no tracer: the
  convention's duration histogram per attempt.

Each call is made either from untraced code (every call a new trace: the sampler is
asked once per call) or inside a caller's own span (an agent turn: one per caller,
opened with the same SDK, so that its cost is shared by all its calls). A third case
sends each call through the LLM client to the mock OpenAI-compatible server over
loopback HTTP (hypercorn, in process), W3C traceparent injected: the realistic call.
Ratios are a setting's cost / off within each round; the report gives min / median /
max over the rounds. Target: unsampled <= 1.10x off (a non-sampled SDK costs at most
10 % of a service call). Ratios are reported, never enforced.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import anyio
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the root: tests.benchmarks

from actors import ActorRef, PoolConfig, Service, ServiceConfig, instrument, open_actor
from actors.services import ChatRequest
from actors.services.llm import LLMClient
from actors.testing import serve_mock_llm
from tests.benchmarks._cli import parse_args, write_json
from tests.benchmarks.service_throughput import EchoClient  # an in-process LLM client

POOL = 16
SETTINGS = ("off", "off again", "unsampled", "recording", "metrics")
CASES = ("untraced caller", "inside a span", "llm over http")
TARGET = 1.10


class Setting:
    """One way of handing (or not) an SDK to the library."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.exporter = InMemorySpanExporter()
        self.tracer_provider: TracerProvider | None = None
        self.meter_provider: MeterProvider | None = None
        if name == "unsampled":
            self.tracer_provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
        elif name == "recording":
            self.tracer_provider = TracerProvider()
            self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        elif name == "metrics":
            self.meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])

    def __enter__(self) -> Setting:
        instrument(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)
        return self

    def __exit__(self, *exc_info: object) -> None:
        instrument()
        self.exporter.clear()

    def turn(self) -> AbstractContextManager[Any]:
        """A caller's own span, from the application's tracer in this setting."""
        provider = self.tracer_provider
        tracer = trace.get_tracer("bench") if provider is None else provider.get_tracer("bench")
        return tracer.start_as_current_span("turn")


async def _timed(
    ref: ActorRef[Any, Any], make: Callable[[int], Any], calls: int, span: Any
) -> float:
    """Microseconds of CPU time per call, POOL callers at once."""
    per_caller = calls // POOL

    async def caller() -> None:
        with span():
            for i in range(per_caller):
                await ref.call(make(i))

    gc.collect()
    start = time.process_time()
    async with anyio.create_task_group() as tg:
        for _ in range(POOL):
            tg.start_soon(caller)
    return (time.process_time() - start) / (per_caller * POOL) * 1e6


def echo_service() -> Service[int, int]:
    return Service(
        "echo", lambda: EchoClient("echo"), ServiceConfig.for_llm(pool=PoolConfig(max_size=POOL))
    )


async def measure(calls: int, http_calls: int, rounds: int) -> dict[str, Any]:
    settings = [Setting(name) for name in SETTINGS]
    costs: dict[str, dict[str, list[float]]] = {
        case: {name: [] for name in SETTINGS} for case in CASES
    }
    async with serve_mock_llm() as server:
        echo = echo_service()
        llm = Service(
            "llm",
            lambda: LLMClient("llm", server.base_url, model="m", max_connections=POOL),
            ServiceConfig.for_llm(pool=PoolConfig(max_size=POOL)),
        )
        request = ChatRequest.user("hi", max_tokens=8)
        async with (
            open_actor(echo.actor(), config=echo.config.actor) as echo_ref,
            open_actor(llm.actor(), config=llm.config.actor) as llm_ref,
        ):
            await llm_ref.call(request)  # warm up the connections
            for _ in range(rounds):
                for setting in settings:
                    with setting:
                        costs["untraced caller"][setting.name].append(
                            await _timed(echo_ref, int, calls, nullcontext)
                        )
                        costs["inside a span"][setting.name].append(
                            await _timed(echo_ref, int, calls, setting.turn)
                        )
                        costs["llm over http"][setting.name].append(
                            await _timed(llm_ref, lambda _: request, http_calls, nullcontext)
                        )
    report: dict[str, Any] = {}
    for case, by_setting in costs.items():
        base = by_setting["off"]
        report[case] = {
            name: {
                "us_per_call": statistics.median(values),
                "ratio": _spread([value / off for value, off in zip(values, base, strict=True)]),
            }
            for name, values in by_setting.items()
        }
    return report


def _spread(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def main() -> int:
    args = parse_args(__doc__, quick_help="few calls, two rounds")
    calls, http_calls, rounds = (1_600, 320, 2) if args.quick else (6_400, 640, 9)
    report: dict[str, Any] = {"pool": POOL, "rounds": rounds, "backends": {}}
    print(f"per-round ratios to off, min/median/max over {rounds} rounds")
    print(f"{'backend':8} {'case':16} {'setting':10} {'us/call':>9} {'/ off':>17}  target")
    for backend in ("asyncio", "trio"):
        found = anyio.run(measure, calls, http_calls, rounds, backend=backend)
        report["backends"][backend] = found
        for case, by_setting in found.items():
            for name, result in by_setting.items():
                low, mid, high = result["ratio"]
                target = ""
                if name == "unsampled":
                    verdict = "met" if mid <= TARGET else "NOT met"
                    target = f"<= {TARGET:.2f}: {verdict}"
                print(
                    f"{backend:8} {case:16} {name:10} {result['us_per_call']:9.2f}"
                    f" {low:5.2f}/{mid:5.2f}/{high:5.2f}  {target}"
                )
    print(
        "an untraced caller starts a trace per call: its ratio includes the SDK's own root"
        " sampling decision; 'off again' shows the run's noise"
    )
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
