"""What every benchmark script shares: `--quick` / `--json PATH`, quiet logging, the
JSON report. (Not a benchmark itself: `.ci/run` skips files starting with `_`.)"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

import structlog


def parse_args(doc: str | None, *, quick_help: str) -> argparse.Namespace:
    """Parses the common flags and silences the library's events (printed tracebacks
    would dominate the timings)."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    return args


def write_json(path: str | None, report: dict[str, Any]) -> None:
    """Writes `report` to `path` (when `--json` was given)."""
    if path:
        with open(path, "w") as fh:
            json.dump(report, fh, indent=2)
