"""What tracing costs a `ServiceActor` call: off, a no-op SDK, an SDK that samples nothing,
a recording SDK.

Run: python tests/benchmarks/tracing.py [--quick] [--json PATH] [--instructions]

For each backend, in one process, rounds interleaved so that the settings share the
machine's noise, it measures the CPU time per call (process time / calls, 16 callers)
of two `ServiceActor` calls under each setting, handed to the library with
`actors.instrument`:

- *echo*: the LLM kind's pipeline around an in-process echo client, the CPU-bound
  worst case (no I/O at all, so everything tracing adds shows);
- *http*: the LLM client's chat call to the mock OpenAI-compatible server (hypercorn)
  over loopback, W3C traceparent injected: the realistic call. The server runs in its
  own process, so the CPU time is the caller's alone, as it would be against a
  remote provider.

The settings:

- *off*: no provider (opentelemetry-api installed, nothing set): the baseline;
- *off again*: the same, measured again: its ratio shows the run's noise;
- *no-op*: a provider whose tracers do nothing (the API's `NoOpTracer`), that the
  library cannot tell from an SDK: it takes its traced path, so the cost is the
  library's own;
- *unsampled*: the SDK's `TracerProvider` with a sampler that records nothing
  (``ParentBased(ALWAYS_OFF)``), the setting of an application that traces a fraction
  of its requests;
- *recording*: the SDK recording every span into an in-memory exporter;
- *metrics*: the SDK's `MeterProvider` (an in-memory reader) and no tracer: the
  convention's duration histogram per attempt.

Each call is made either from untraced code (every call a new trace, so the SDK's
sampler decides once per call) or inside a caller's own span (an agent turn: one per
caller, opened with the same SDK, so that its cost is shared by all its calls). The
SDK's own part of a new trace is priced alone in the same rounds: its `start_span` of
an unsampled root, the context around it and its end, with no library involved.
Ratios are a setting's cost / off within each round; the report gives min / median /
max over the rounds. ``--instructions`` counts instructions per call instead (callgrind,
deterministic to about 1 %; about 20 minutes). Target: no-op and unsampled <= 1.10x off
(tracing on with an SDK that records nothing costs at most 10 % of a service call).
Ratios are reported, never enforced.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
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
from tests.benchmarks import _instructions
from tests.benchmarks._cli import parse_args, write_json
from tests.benchmarks._provider import provider
from tests.benchmarks.service_throughput import EchoClient  # an in-process LLM client

POOL = 16
SETTINGS = ("off", "off again", "no-op", "unsampled", "recording", "metrics")
CASES = ("echo, untraced", "echo, in a span", "http, untraced", "http, in a span")
TARGET = 1.10


class NoOpSDK(trace.TracerProvider):
    """A provider whose tracers do nothing (the API's `NoOpTracer`), handed over as an
    SDK would be: the library cannot tell it from one, so it takes its traced path, and
    the cost is the library's own."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return trace.NoOpTracer()


class Setting:
    """One way of handing (or not) an SDK to the library."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.exporter = InMemorySpanExporter()
        self.tracer_provider: trace.TracerProvider | None = None
        self.meter_provider: MeterProvider | None = None
        if name == "no-op":
            self.tracer_provider = NoOpSDK()
        elif name == "unsampled":
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


async def _calls(
    ref: ActorRef[Any, Any], make: Callable[[int], Any], calls: int, span: Any
) -> None:
    """`calls` calls of `ref`, POOL callers at once, each inside `span()`."""
    per_caller = calls // POOL

    async def caller() -> None:
        with span():
            for i in range(per_caller):
                await ref.call(make(i))

    async with anyio.create_task_group() as tg:
        for _ in range(POOL):
            tg.start_soon(caller)


class Services:
    """The two service actors measured, and how each case calls them."""

    def __init__(self, echo: ActorRef[int, int], llm: ActorRef[Any, Any]) -> None:
        self.echo = echo
        self.llm = llm
        self.request = ChatRequest.user("hi", max_tokens=8)

    def run(self, setting: Setting, case: str, calls: int) -> Awaitable[Any]:
        """`calls` calls as `case` makes them, in `setting`."""
        span = setting.turn if case.endswith("in a span") else nullcontext
        if case.startswith("echo"):
            return _calls(self.echo, int, calls, span)
        return _calls(self.llm, lambda _: self.request, calls, span)


@asynccontextmanager
async def services(url: str) -> AsyncIterator[Services]:
    """The echo and the LLM service actors, the LLM's connections warm."""
    echo = Service(
        "echo", lambda: EchoClient("echo"), ServiceConfig.for_llm(pool=PoolConfig(max_size=POOL))
    )
    llm = Service(
        "llm",
        lambda: LLMClient("llm", f"{url}/v1", model="m", max_connections=POOL),
        ServiceConfig.for_llm(pool=PoolConfig(max_size=POOL)),
    )
    async with (
        open_actor(echo.actor(), config=echo.config.actor) as echo_ref,
        open_actor(llm.actor(), config=llm.config.actor) as llm_ref,
    ):
        found = Services(echo_ref, llm_ref)
        await _calls(llm_ref, lambda _: found.request, POOL, nullcontext)
        yield found


def sdk_root(calls: int) -> float:
    """Microseconds of CPU time per new trace the unsampled SDK starts by itself: the
    `start_span` of a root like the library's, the context holding it, and its end."""
    tracer = TracerProvider(sampler=ParentBased(ALWAYS_OFF)).get_tracer("bench")
    internal = trace.SpanKind.INTERNAL
    ctx = trace.set_span_in_context(trace.INVALID_SPAN)
    start = time.process_time()
    for i in range(calls):
        attributes = {"actor": "echo", "message": "int", "id": str(i)}
        span = tracer.start_span("call echo", ctx, internal, attributes)
        trace.set_span_in_context(span, ctx)
        span.end()
    return (time.process_time() - start) / calls * 1e6


async def measure(url: str, calls: int, http_calls: int, rounds: int) -> dict[str, Any]:
    """CPU time per call of every case under every setting, rounds interleaved."""
    settings = [Setting(name) for name in SETTINGS]
    costs: dict[str, dict[str, list[float]]] = {
        case: {name: [] for name in SETTINGS} for case in CASES
    }
    roots: list[float] = []
    async with services(url) as found:
        for _ in range(rounds):
            roots.append(sdk_root(calls))
            for setting in settings:
                with setting:
                    for case, by_setting in costs.items():
                        n = calls if case.startswith("echo") else http_calls
                        gc.collect()
                        start = time.process_time()
                        await found.run(setting, case, n)
                        cost = (time.process_time() - start) / (n // POOL * POOL) * 1e6
                        by_setting[setting.name].append(cost)
    report: dict[str, Any] = {"sdk_root_us": statistics.median(roots)}
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


async def _one(url: str, name: str, case: str, calls: int) -> None:
    """What `--instructions` counts: a warm-up, then `calls` calls of one case."""
    async with services(url) as found:
        with Setting(name) as setting:
            await found.run(setting, case, 4 * POOL)
            gc.collect()
            gc.freeze()  # the collector's old objects stay out of the count
            await found.run(setting, case, calls)


INSTRUCTION_SETTINGS = ("off", "no-op", "unsampled", "metrics")


def instructions(url: str) -> dict[str, Any]:
    """Instructions per call (callgrind) of every case under the settings that matter
    for the target, and of the SDK's own new trace."""
    script = str(Path(__file__).resolve())
    python = sys.executable
    report: dict[str, Any] = {"backends": {}}
    runs = [
        (backend, case, name)
        for backend in ("asyncio", "trio")
        for case in CASES
        for name in INSTRUCTION_SETTINGS
    ]
    counted: dict[tuple[str, str, str], float] = {}
    for kind, small, large in (("echo", 800, 4_000), ("http", 64, 256)):
        chosen = [run for run in runs if run[1].startswith(kind)]
        commands = [[python, script, "--one", url, *run] for run in chosen]
        counted.update(zip(chosen, _instructions.per_call(commands, small, large), strict=True))
    (root,) = _instructions.per_call(
        [[python, script, "--one", url, "-", "sdk root", "-"]], 2_000, 12_000
    )
    report["sdk_root"] = root
    print(f"instructions per call (callgrind); the unsampled SDK's own new trace: {root:,.0f}")
    print(f"{'backend':8} {'case':16} {'setting':10} {'instructions':>12} {'/ off':>6}  target")
    for backend, case, name in runs:
        value = counted[backend, case, name]
        ratio = value / counted[backend, case, "off"]
        report["backends"].setdefault(backend, {}).setdefault(case, {})[name] = {
            "instructions": value,
            "ratio": ratio,
        }
        target = ""
        if name in ("no-op", "unsampled"):
            target = f"<= {TARGET:.2f}: {'met' if ratio <= TARGET else 'NOT met'}"
        print(f"{backend:8} {case:16} {name:10} {value:12,.0f} {ratio:6.3f}  {target}")
    return report


def _spread(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def main() -> int:
    args = parse_args(
        __doc__,
        quick_help="few calls, two rounds",
        flags={"instructions": "count instructions per call with callgrind instead"},
    )
    if args.instructions:
        with provider(latency=0.0) as url:
            write_json(args.json, instructions(url))
        return 0
    calls, http_calls, rounds = (1_600, 320, 2) if args.quick else (6_400, 640, 9)
    report: dict[str, Any] = {"pool": POOL, "rounds": rounds, "backends": {}}
    print(f"per-round ratios to off, min/median/max over {rounds} rounds")
    print(f"{'backend':8} {'case':16} {'setting':10} {'us/call':>9} {'/ off':>17}  target")
    with provider(latency=0.0) as url:
        for backend in ("asyncio", "trio"):
            found = anyio.run(measure, url, calls, http_calls, rounds, backend=backend)
            report["backends"][backend] = found
            for case in CASES:
                for name, result in found[case].items():
                    low, mid, high = result["ratio"]
                    target = ""
                    if name in ("no-op", "unsampled"):
                        verdict = "met" if mid <= TARGET else "NOT met"
                        target = f"<= {TARGET:.2f}: {verdict}"
                    print(
                        f"{backend:8} {case:16} {name:10} {result['us_per_call']:9.2f}"
                        f" {low:5.2f}/{mid:5.2f}/{high:5.2f}  {target}"
                    )
            root = found["sdk_root_us"]
            echo_off = found["echo, untraced"]["off"]["us_per_call"]
            print(
                f"{backend:8} the unsampled SDK's own new trace (no library): {root:.2f} us,"
                f" {root / echo_off:.2f} of an echo call"
            )
    print(
        "'untraced' starts a trace per call, so its unsampled ratio includes the SDK's own"
        " new trace (priced alone above); 'off again' shows the run's noise"
    )
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--one":  # run by `instructions`
        _, _, url, backend, case, name, calls = sys.argv
        if case == "sdk root":
            sdk_root(200)
            gc.collect()
            gc.freeze()
            sdk_root(int(calls))
        else:
            anyio.run(_one, url, name, case, int(calls), backend=backend)
    else:
        sys.exit(main())
