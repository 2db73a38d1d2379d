"""The README's Python examples, type-checked as a user's `mypy --strict` would see them."""

from __future__ import annotations

import re
from pathlib import Path

from tests.typing._mypy import ROOT, run_mypy

BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks(page: Path) -> list[str]:
    """The ```python blocks of a Markdown page, in order."""
    return BLOCK.findall(page.read_text())


def test_readme_python_blocks_type_check(tmp_path: Path) -> None:
    """Every ```python block of README.md passes mypy --strict as a module of its own."""
    blocks = python_blocks(ROOT / "README.md")
    assert blocks, "README.md has no python block"
    paths = []
    for index, code in enumerate(blocks):
        path = tmp_path / f"readme_block_{index}.py"
        path.write_text(code)
        paths.append(path)
    run_mypy(paths)
