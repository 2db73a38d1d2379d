"""Running mypy from a test, with the project's configuration (pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).parent.parent.parent


def run_mypy(paths: Sequence[str | Path], *, cwd: Path = ROOT) -> None:
    """Runs `mypy --strict` over `paths` and fails with its report unless it is clean."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", *map(str, paths)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
