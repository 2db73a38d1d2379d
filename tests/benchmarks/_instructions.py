"""Instructions per call, counted by valgrind's callgrind: deterministic to about 1 %,
where this machine's CPU timings move by tens of percent between rounds (other tenants,
frequency). (Not a benchmark itself: `.ci/run` skips files starting with `_`.)

A measured command runs some warm-up, then the number of calls given as its last
argument. It is run twice, with a small and a large number of calls; the difference of
the two totals divided by the difference of the calls is the cost of one call, without
the interpreter's start, the imports and the warm-up. Needs valgrind (Debian's
``valgrind`` package).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def available() -> bool:
    """Whether valgrind is installed."""
    return shutil.which("valgrind") is not None


def per_call(commands: Sequence[Sequence[str]], small: int, large: int) -> list[float]:
    """Instructions per call of each command (`small` < `large` calls), the commands
    counted in parallel, one per core."""
    runs = [(command, calls) for command in commands for calls in (small, large)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        totals = list(pool.map(lambda run: _total(*run), runs))
    return [(totals[2 * i + 1] - totals[2 * i]) / (large - small) for i in range(len(commands))]


def _total(command: Sequence[str], calls: int) -> int:
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command, str(calls)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0"},  # one dict layout
    )
    found = _REFS.search(done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no count: {done.stderr[-500:]}")
    return int(found.group(1).replace(",", ""))
