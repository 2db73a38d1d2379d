"""The docs describe the code as it is: the generated configuration reference is current,
and every relative link between pages resolves."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"


def test_configuration_reference_matches_the_code() -> None:
    """docs/configuration.md is exactly what docs/gen_configuration.py produces now."""
    spec = importlib.util.spec_from_file_location(
        "gen_configuration", DOCS / "gen_configuration.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.render()
    actual = (DOCS / "configuration.md").read_text()
    assert actual == expected, "run: python docs/gen_configuration.py > docs/configuration.md"


@pytest.mark.parametrize("page", sorted(DOCS.rglob("*.md")), ids=lambda p: str(p.relative_to(DOCS)))
def test_relative_links_resolve(page: Path) -> None:
    """Every relative Markdown link points at a file that exists."""
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
        assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_readme_example_runs(tmp_path: Path, backend: str) -> None:
    """The README's "Twenty lines" example runs as printed, on both backends."""
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Twenty lines", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "anyio.run(main)" in code
    code = code.replace("anyio.run(main)", f"anyio.run(main, backend={backend!r})", 1)
    script = tmp_path / "example.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "echo: Hello!" in result.stdout


def test_classification_page_states_the_verdicts_the_code_applies() -> None:
    """Every row of the verdict table in classification.md matches ErrorClass's columns."""
    from actors import ErrorClass

    text = (DOCS / "resilience" / "classification.md").read_text()
    rows = {
        cells[0].strip("` "): cells
        for line in text.splitlines()
        if line.startswith("| `")
        and len(cells := [c.strip() for c in line.strip("|").split("|")]) == 5
    }
    assert set(rows) == {verdict.name for verdict in ErrorClass}
    for verdict in ErrorClass:
        _, _, retried, breaker, fallback = rows[verdict.name]
        assert retried.startswith("yes") is verdict.retried
        assert breaker == {"failure": "a failure", "success": "a success"}.get(
            verdict.breaker_outcome, "nothing"
        )
        assert (fallback == "yes") is verdict.routable
