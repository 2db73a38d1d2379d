"""The public face: `__all__` lists the public names, each living in the public package."""

from __future__ import annotations

import importlib
import inspect

import pytest

PACKAGES = [
    "actors",
    "actors.integrations",
    "actors.resilience",
    "actors.services",
    "actors.testing",
    "supervisor",
    "supervisor.fallback",
    "supervisor.health",
]


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_complete(package: str) -> None:
    """__all__ (kept sorted by ruff's RUF022) names every public attribute once."""
    module = importlib.import_module(package)
    exported = list(module.__all__)
    assert len(exported) == len(set(exported))
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, type(importlib))
    }
    assert public == set(exported)


@pytest.mark.parametrize(
    "package",
    [
        "actors",
        "actors.integrations",
        "actors.services",
        "supervisor",
        "supervisor.fallback",
        "supervisor.health",
    ],
)
def test_exports_claim_the_public_module(package: str) -> None:
    """Every exported class and function reports the public package as its module."""
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        if isinstance(value, type) or inspect.isfunction(value):
            assert value.__module__ == package, name


def test_import_actors_stays_light() -> None:
    """Importing actors does not import optional extras or the supervisor."""
    import subprocess
    import sys

    code = (
        "import sys, actors; "
        "bad = [m for m in ('httpx', 'mcp', 'psycopg', 'coredis', 'prometheus_client', "
        "'supervisor', 'trio') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
