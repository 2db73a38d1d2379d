"""Every example runs to completion on both backends (so none can rot)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted(
    path
    for path in (Path(__file__).parent.parent / "examples").glob("*.py")
    if not path.name.startswith("_")
)


# Extra arguments keeping a long-running example short in the test run.
ARGS = {"demo_agent": ["--duration", "4", "--no-live"]}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_example_runs(example: Path, backend: str) -> None:
    """The example exits 0 within a minute."""
    result = subprocess.run(
        [sys.executable, str(example), "--backend", backend, *ARGS.get(example.stem, [])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
