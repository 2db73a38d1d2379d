"""The README's and the docs' Python examples, type-checked as a user's `mypy --strict`
would see them.

A ```python block is a complete example (its imports included) and is checked here; a
fragment that leans on names from around it (``ref``, ``sup``, a top-level ``await``)
is fenced ```py instead, so it is rendered alike but not taken for a program.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.typing._mypy import ROOT, run_mypy

BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
PAGES = [ROOT / "README.md", *sorted(ROOT.joinpath("docs").rglob("*.md"))]


def python_blocks(page: Path) -> list[str]:
    """The ```python blocks of a Markdown page, in order."""
    return BLOCK.findall(page.read_text())


def test_every_complete_example_type_checks(tmp_path: Path) -> None:
    """Every ```python block of README.md and docs/ passes mypy --strict as a module of
    its own (one mypy run over them all)."""
    paths = []
    for page in PAGES:
        stem = page.relative_to(ROOT).with_suffix("").as_posix().replace("/", "_")
        for index, code in enumerate(python_blocks(page)):
            path = tmp_path / f"{stem.replace('-', '_')}_{index}.py"
            path.write_text(code)
            paths.append(path)
    assert len(paths) >= 8, "the complete examples went missing"
    run_mypy(paths)


def test_python_blocks_are_fenced_python_or_py() -> None:
    """Code in the docs is fenced ```python (checked) or ```py (a fragment): no other
    spelling slips past both the type check and the import check."""
    odd = [
        f"{page.relative_to(ROOT)}: {fence}"
        for page in PAGES
        for fence in re.findall(r"^```(python3|py3|Python|pycon)\s*$", page.read_text(), re.M)
    ]
    assert odd == []
