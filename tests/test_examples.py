"""Every example runs to completion on both backends (so none can rot)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# The demo agent has tests of its own (tests/test_demo.py): its compressed chaos
# schedule with every invariant, and a run with recovery broken on purpose.
TESTED_ELSEWHERE = {"demo_agent"}
EXAMPLES = sorted(
    path
    for path in (Path(__file__).parent.parent / "examples").glob("*.py")
    if not path.name.startswith("_") and path.stem not in TESTED_ELSEWHERE
)

# Examples on a framework that runs on one backend only, and why.
ONE_BACKEND = {"pydantic_ai_agent": ("asyncio", "pydantic-ai creates asyncio tasks itself")}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_example_runs(example: Path, backend: str) -> None:
    """The example exits 0 within a minute."""
    only = ONE_BACKEND.get(example.stem)
    if only is not None and backend != only[0]:
        pytest.skip(f"{example.stem} runs on {only[0]} only: {only[1]}")
    result = subprocess.run(
        [sys.executable, str(example), "--backend", backend],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
