"""A load generator: closed loop (N callers) or open loop (a target rate), with a latency
histogram, outcome counts and a deadline check.

    report = await run_load(lambda i: ref.call(request(i), timeout=2),
                            LoadConfig(callers=50, duration=10, timeout=2))
    print(report.summary())

Every request is accounted for: `sent == sum(outcomes.values())`. An outcome is "ok",
or the exception's class name, or whatever `classify` returns for the result (e.g.
"fallback" for an answer served by a fallback). `late` counts requests that resolved
after their deadline plus `slack`: the runtime promises there are none.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import attrs

from actors._errors import ConfigError
from actors._validate import non_negative, optional, positive, positive_int

__all__ = ["LatencyHistogram", "LoadConfig", "LoadReport", "run_load"]

# Bucket upper bounds (seconds): 50 us .. ~200 s, about 10 % apart.
_BOUNDS = tuple(50e-6 * 1.1**i for i in range(160))


@attrs.define
class LatencyHistogram:
    """Log-spaced latency buckets (about 10 % wide), O(1) memory in the number of samples."""

    counts: list[int] = attrs.field(factory=lambda: [0] * (len(_BOUNDS) + 1))
    total: int = 0
    maximum: float = 0.0

    def record(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(_BOUNDS, seconds)] += 1
        self.total += 1
        self.maximum = max(self.maximum, seconds)

    def percentile(self, fraction: float) -> float:
        """The bucket upper bound at or above the `fraction` (0..1) of samples."""
        if not self.total:
            return 0.0
        wanted = math.ceil(fraction * self.total)
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= wanted:
                return min(_BOUNDS[index] if index < len(_BOUNDS) else math.inf, self.maximum)
        return self.maximum  # pragma: no cover


@attrs.frozen(kw_only=True)
class LoadConfig:
    """How much load to generate. Give `callers` (closed loop) or `rate` (open loop), and
    `duration` and/or `requests` to stop.

    Attributes:
        callers: Concurrent callers, each sending its next request when the previous ends.
        rate: Requests per second to start, whatever the answers (open loop).
        poisson: Open loop with exponential inter-arrival times instead of even spacing.
        max_in_flight: Open loop: requests allowed in flight (beyond: counted as "shed").
        duration: Seconds to generate load.
        requests: Requests to send in all.
        timeout: The deadline each request has (for the late check), seconds.
        slack: Scheduling slack allowed past a deadline before a resolution is "late".
        seed: Seeds the open-loop arrival jitter.
    """

    callers: int | None = attrs.field(default=None, validator=optional(positive_int))
    rate: float | None = attrs.field(default=None, validator=optional(positive))
    poisson: bool = False
    max_in_flight: int = attrs.field(default=10_000, validator=positive_int)
    duration: float | None = attrs.field(default=None, validator=optional(positive))
    requests: int | None = attrs.field(default=None, validator=optional(positive_int))
    timeout: float = attrs.field(default=5.0, validator=positive)
    slack: float = attrs.field(default=0.05, validator=non_negative)
    seed: int | None = None

    def __attrs_post_init__(self) -> None:
        if (self.callers is None) == (self.rate is None):
            raise ConfigError("callers", self.callers, "give exactly one of callers and rate")
        if self.duration is None and self.requests is None:
            raise ConfigError("duration", None, "give a duration, a request count, or both")


@attrs.define
class LoadReport:
    """What happened: counts by outcome, latencies, and deadline violations."""

    sent: int = 0
    outcomes: Counter[str] = attrs.field(factory=Counter)
    latency: LatencyHistogram = attrs.field(factory=LatencyHistogram)
    late: int = 0
    max_overrun: float = 0.0
    elapsed: float = 0.0

    @property
    def accounted(self) -> bool:
        """True when every request sent has exactly one outcome."""
        return self.sent == sum(self.outcomes.values())

    def summary(self) -> str:
        """One line per figure, for humans."""
        throughput = self.sent / self.elapsed if self.elapsed else 0.0
        outcomes = ", ".join(f"{key}={value}" for key, value in sorted(self.outcomes.items()))
        return (
            f"sent {self.sent} in {self.elapsed:.2f}s ({throughput:.0f}/s): {outcomes}\n"
            f"latency p50 {self.latency.percentile(0.5) * 1e3:.2f} ms, "
            f"p99 {self.latency.percentile(0.99) * 1e3:.2f} ms, "
            f"max {self.latency.maximum * 1e3:.2f} ms; late {self.late} "
            f"(max overrun {self.max_overrun * 1e3:.2f} ms)"
        )


async def run_load(
    call: Callable[[int], Awaitable[Any]],
    config: LoadConfig,
    *,
    classify: Callable[[Any], str] | None = None,
) -> LoadReport:
    """Drives `call(i)` as configured and reports every outcome.

    Args:
        call: Sends request number `i` (it should apply `config.timeout` itself).
        config: Closed or open loop, and when to stop.
        classify: Names the outcome of a successful result (default "ok").

    Returns:
        The report. Exceptions (`Exception` only) are outcomes, named by class.
    """
    report = LoadReport()
    start = anyio.current_time()
    stop = start + config.duration if config.duration is not None else math.inf
    limit = config.requests if config.requests is not None else math.inf
    counter = 0

    def take() -> int | None:
        nonlocal counter
        if counter >= limit or anyio.current_time() >= stop:
            return None
        counter += 1
        report.sent += 1
        return counter - 1

    async def one(index: int) -> None:
        began = anyio.current_time()
        try:
            result = await call(index)
        except Exception as exc:
            outcome = type(exc).__name__
        else:
            outcome = classify(result) if classify is not None else "ok"
        ended = anyio.current_time()
        report.outcomes[outcome] += 1
        report.latency.record(ended - began)
        overrun = ended - (began + config.timeout)
        if overrun > config.slack:
            report.late += 1
            report.max_overrun = max(report.max_overrun, overrun)

    async with anyio.create_task_group() as tg:
        if config.callers is not None:

            async def caller() -> None:
                while (index := take()) is not None:
                    await one(index)

            for _ in range(config.callers):
                tg.start_soon(caller)
        else:
            assert config.rate is not None
            rng = random.Random(config.seed)
            in_flight = 0

            async def tracked(index: int) -> None:
                nonlocal in_flight
                try:
                    await one(index)
                finally:
                    in_flight -= 1

            next_at = start
            while (index := take()) is not None:
                if in_flight >= config.max_in_flight:
                    report.outcomes["shed"] += 1
                else:
                    in_flight += 1
                    tg.start_soon(tracked, index)
                gap = rng.expovariate(config.rate) if config.poisson else 1 / config.rate
                next_at += gap
                await anyio.sleep_until(next_at)
    report.elapsed = anyio.current_time() - start
    return report
