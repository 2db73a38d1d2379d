"""Generates docs/configuration.md from the configuration classes themselves.

Run: python docs/gen_configuration.py > docs/configuration.md
(tests/test_docs.py fails when the page and the code disagree.)
"""

from __future__ import annotations

import inspect
import math
import re
from typing import Any

import attrs

import actors
import supervisor as sv
from actors.services import ServiceConfig
from actors.testing import ChaosConfig, LoadConfig
from supervisor.fallback import CacheConfig
from supervisor.health import HealthConfig

CLASSES: list[tuple[str, list[type]]] = [
    ("Actors", [actors.ActorConfig]),
    ("Supervision", [sv.SupervisorSpec, sv.ChildSpec, sv.Backoff]),
    ("Service actors", [ServiceConfig, actors.PoolConfig]),
    (
        "Resilience",
        [
            actors.RetryPolicy,
            actors.BreakerConfig,
            actors.TokenBucket,
            actors.SlidingWindow,
            actors.GCRA,
            actors.BulkheadConfig,
            actors.ResilienceConfig,
        ],
    ),
    ("Health and fallback", [HealthConfig, CacheConfig]),
    ("Testing kit", [ChaosConfig, LoadConfig]),
]

HEADER = """# Configuration reference

Every configuration class, every field, its default and its meaning (units are in the
meanings; durations are seconds). Generated from the code by `docs/gen_configuration.py`;
`tests/test_docs.py` keeps this page and the code in step. Invalid values raise
`ConfigError` naming the field and the value, before anything starts. The same fields
load from TOML/dicts: supervision trees with `supervisor.spec_from_toml`, resilience
with `actors.load_services_toml` (see the guides linked from the [index](index.md)).
"""


def attr_docs(cls: type) -> dict[str, str]:
    doc = inspect.getdoc(cls) or ""
    out: dict[str, str] = {}
    m = re.search(r"Attributes:\n(.*?)(\n\S|\Z)", doc, re.S)
    if not m:
        return out
    cur = None
    for line in m.group(1).splitlines():
        mm = re.match(r"    (\w+(?:, \w+)*): (.*)", line)
        if mm:
            for name in mm.group(1).split(", "):
                out[name] = mm.group(2).strip()
            cur = mm.group(1).split(", ")
        elif cur and line.startswith("        "):
            for name in cur:
                out[name] += " " + line.strip()
    return out


def default(f: Any) -> str:
    d = f.default
    if isinstance(d, attrs.Factory):
        try:
            d = d.factory()
        except TypeError:
            return "(computed)"
        if attrs.has(type(d)):
            return f"`{type(d).__name__}()`"
    if d is attrs.NOTHING:
        return "required"
    if callable(d) and not isinstance(d, type):
        return "(built in)"
    if hasattr(d, "value") and hasattr(d, "name"):
        return f"`{d.value}`"
    if isinstance(d, float) and math.isinf(d):
        return "`inf`"
    return f"`{d!r}`"


def render() -> str:
    """The whole page."""
    lines = [HEADER]
    for title, group in CLASSES:
        lines.append(f"## {title}\n")
        for cls in group:
            mod = cls.__module__
            lines.append(f"### `{mod}.{cls.__name__}`\n")
            first = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
            lines.append(first + "\n")
            docs = attr_docs(cls)
            lines.append("| field | default | meaning |")
            lines.append("| --- | --- | --- |")
            for f in attrs.fields(cls):
                if f.name.startswith("_"):
                    continue
                meaning = docs.get(f.name, "").replace("|", "\\|")
                lines.append(f"| `{f.name}` | {default(f)} | {meaning} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
