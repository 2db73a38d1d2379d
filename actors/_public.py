"""Presenting a package's exports under the package's own name."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import attrs

__all__ = ["publish"]


def publish(namespace: MutableMapping[str, Any], package: str, *, resolve: bool = False) -> None:
    """Gives each export listed in `namespace["__all__"]` the public `package` as its
    `__module__` (as trio does), so reprs, docs and pickles name the public path.

    With `resolve`, attrs classes get their string annotations resolved first, while
    they still name their own private module (the configs cattrs loads need it).
    """
    exports = [namespace[name] for name in namespace["__all__"]]
    for obj in exports if resolve else ():
        if isinstance(obj, type) and attrs.has(obj):
            attrs.resolve_types(obj)
    for obj in exports:
        if "._" in getattr(obj, "__module__", ""):
            obj.__module__ = package
