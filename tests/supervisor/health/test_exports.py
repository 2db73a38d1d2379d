"""The public faces of supervisor.health and supervisor.fallback."""

from __future__ import annotations

import importlib
import inspect

import pytest

PACKAGES = ["supervisor.health", "supervisor.fallback"]


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_complete_and_sorted(package: str) -> None:
    """__all__ is sorted and names every public attribute once."""
    module = importlib.import_module(package)
    exported = list(module.__all__)
    assert exported == sorted(exported)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == set(exported)


@pytest.mark.parametrize("package", PACKAGES)
def test_exports_claim_the_public_module(package: str) -> None:
    """Every exported class and function reports the public package as its module."""
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        if isinstance(value, type) or inspect.isfunction(value):
            assert value.__module__ == package, name
