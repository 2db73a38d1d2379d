"""What every benchmark script shares: `--quick` / `--json PATH` and the JSON report.
(Not a benchmark itself: `.ci/run` skips files starting with `_`.)"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any


def parse_args(
    doc: str | None, *, quick_help: str, flags: Mapping[str, str] | None = None
) -> argparse.Namespace:
    """Parses the common flags, and a script's own on/off `flags` (name: help). (The
    library is quiet unless logging is configured, so its events cost the benchmarks
    nothing to print.)"""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    for flag, text in (flags or {}).items():
        parser.add_argument(f"--{flag}", action="store_true", help=text)
    return parser.parse_args()


def write_json(path: str | None, report: dict[str, Any]) -> None:
    """Writes `report` to `path` (when `--json` was given)."""
    if path:
        with open(path, "w") as fh:
            json.dump(report, fh, indent=2)
