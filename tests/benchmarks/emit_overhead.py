"""Cost of one lifecycle event: the quiet default, with the dashboard's feed, against the
leanest structlog setup.

Run: python tests/benchmarks/emit_overhead.py [--quick] [--json PATH]

Each case emits the same info event (and a warning event) in a tight loop inside a
running asyncio loop, best of several rounds, nanoseconds per event:

- quiet default: nothing configured, the stdlib "actors" logger has only its
  NullHandler (what every application gets until it configures logging).
- + dashboard feed: the same with one `health_app`'s recent-events feed subscribed;
  then again once the feed is dropped (it unsubscribes: back to the quiet default).
- structlog filtered (baseline): `structlog.configure(wrapper_class=
  make_filtering_bound_logger(CRITICAL))`, the cheapest way to silence structlog, and
  what the library's events cost before they became quiet by default (the event goes
  to structlog's filtering logger and the metric counter, exactly as before).

Ratios are against the baseline; the feed's ratio is against the quiet default.
"""

from __future__ import annotations

import gc
import logging
import math
import sys
import timeit
from pathlib import Path
from typing import Any

import anyio
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the root: tests.benchmarks

from actors._events import emit
from supervisor.health._feed import open_feed
from tests.benchmarks._cli import parse_args, write_json


def _info() -> None:
    emit("actor.started", actor="agent/llm", max_concurrency=8)


def _warning() -> None:
    emit("retry.scheduled", level="warning", service="llm", attempt=2, delay=0.25)


def _structlog_filtered() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))


def measure(number: int, rounds: int) -> dict[str, Any]:
    """Best ns per event of each case; the cases take turns in every round (less noise)."""
    results: dict[str, Any] = {}
    for level, fn in (("info", _info), ("warning", _warning)):
        best = {"baseline": math.inf, "quiet": math.inf, "feed": math.inf, "dropped": math.inf}
        for _ in range(rounds):
            _structlog_filtered()
            best["baseline"] = min(best["baseline"], timeit.timeit(fn, number=number))
            structlog.reset_defaults()
            best["quiet"] = min(best["quiet"], timeit.timeit(fn, number=number))
            feed = open_feed(200)
            best["feed"] = min(best["feed"], timeit.timeit(fn, number=number))
            del feed
            gc.collect()
            best["dropped"] = min(best["dropped"], timeit.timeit(fn, number=number))
        ns = {case: seconds / number * 1e9 for case, seconds in best.items()}
        results[level] = {
            "structlog_filtered_ns": ns["baseline"],
            "quiet_default_ns": ns["quiet"],
            "with_feed_ns": ns["feed"],
            "after_feed_dropped_ns": ns["dropped"],
            "quiet_vs_baseline": ns["quiet"] / ns["baseline"],
            "feed_vs_quiet": ns["feed"] / ns["quiet"],
        }
    return results


async def in_loop(number: int, rounds: int) -> dict[str, Any]:
    return measure(number, rounds)  # inside a running loop, as the library emits


def main() -> None:
    args = parse_args(__doc__, quick_help="fewer events per round")
    number, rounds = (20_000, 3) if args.quick else (200_000, 7)
    results = anyio.run(in_loop, number, rounds)
    for level, row in results.items():
        print(
            f"{level:8} baseline {row['structlog_filtered_ns']:7.0f} ns   "
            f"quiet default {row['quiet_default_ns']:7.0f} ns "
            f"({row['quiet_vs_baseline']:.2f}x)   "
            f"+ dashboard feed {row['with_feed_ns']:7.0f} ns ({row['feed_vs_quiet']:.2f}x quiet)   "
            f"feed dropped {row['after_feed_dropped_ns']:7.0f} ns"
        )
    write_json(args.json, {"events": results})


if __name__ == "__main__":
    main()
