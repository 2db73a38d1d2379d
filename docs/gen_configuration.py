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
from actors import ServiceConfig
from actors.resilience import (
    GCRA,
    AdaptiveConcurrency,
    BreakerConfig,
    BulkheadConfig,
    RetryPolicy,
    SlidingWindow,
    TokenBucket,
)
from actors.testing import ChaosConfig, LoadConfig
from supervisor.fallback import CacheConfig
from supervisor.groups import FailoverPolicy, GroupConfig, HedgePolicy, Routing, StreamRecovery
from supervisor.health import HealthConfig

CLASSES: list[tuple[str, list[type]]] = [
    ("Actors", [actors.ActorConfig]),
    ("Supervision", [sv.SupervisorSpec, sv.ChildSpec, sv.Backoff]),
    ("Service actors", [ServiceConfig, actors.PoolConfig]),
    (
        "Resilience",
        [
            RetryPolicy,
            BreakerConfig,
            TokenBucket,
            SlidingWindow,
            GCRA,
            BulkheadConfig,
            AdaptiveConcurrency,
            actors.ResilienceConfig,
        ],
    ),
    ("Health and fallback", [HealthConfig, CacheConfig]),
    (
        "Service groups",
        [GroupConfig, Routing, FailoverPolicy, HedgePolicy, StreamRecovery],
    ),
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
    if isinstance(d, attrs.Factory):  # type: ignore[arg-type]  # a class its stubs type as a function
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


def _seconds(value: float | None) -> str:
    if value is None or math.isinf(value):
        return "none"
    return f"{value:g} s"


def verdicts() -> list[str]:
    """The one table of what each verdict means to every layer (from `ErrorClass`)."""
    lines = [
        "## Verdicts\n",
        "Every attempt's outcome is judged once, by the service kind's classifier, and",
        "every layer acts on that verdict ([classification](resilience/classification.md)).\n",
        "| verdict | meaning | retried | breaker records | passed to a fallback |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines.extend(
        f"| `{verdict.name}` | {_CLASS_MEANING[verdict.name]} | "
        f"{'yes' if verdict.retried else 'no'} | {verdict.breaker_outcome} | "
        f"{'yes' if verdict.routable else 'no'} |"
        for verdict in actors.ErrorClass
    )
    lines.append("")
    return lines


_CLASS_MEANING = {
    "RETRYABLE": "transient service trouble: timeouts, dropped connections, 5xx, 529, 408, "
    "409, deadlocks, serialization failures, a closed MCP transport",
    "THROTTLED": "a rate-limit answer (429 that is not a quota or spend limit): the limits "
    "resync from its headers and hold every caller until its `retry-after`",
    "PERMANENT": "a service failure a retry will not fix: 401, 403, quota exhausted",
    "REJECTED": "the caller's mistake, answered by a healthy service: 400, 404, 422, a tool "
    "error, a constraint violation or syntax error, invalid JSON-RPC params",
    "IGNORED": "not an outcome of the service: our own refusals (`CircuitOpen`, "
    "`RateLimited`, `BulkheadFull`, `DeadlineExceeded`), a `ConfigError`",
}


def kinds() -> list[str]:
    """The presets of every kind of service (from `actors.KINDS`)."""
    lines = [
        "## Kinds of service\n",
        "Each `ServiceKind` holds its classifier and presets; `RetryPolicy.for_llm()`,",
        "`BreakerConfig.for_database()`, `ServiceConfig.for_mcp()`, `@resilient.http()` and",
        '`preset = "..."` in TOML all read this table.\n',
        "| kind | classifier | attempts | backoff | attempt timeout | breaker window | "
        "opens at | slow call | open for | call timeout | pool |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind in actors.KINDS.values():
        retry, breaker = kind.retry, kind.breaker
        unit = "s" if breaker.window == "time" else "calls"
        window = f"{breaker.window_size} {unit}"
        opens = f"{breaker.failure_rate_threshold:.0%} failures (min {breaker.minimum_calls})"
        if breaker.consecutive_failures is not None:
            opens += f" or {breaker.consecutive_failures} in a row"
        slow = (
            "off"
            if math.isinf(breaker.slow_call_duration)
            else f"> {breaker.slow_call_duration:g} s at {breaker.slow_call_rate_threshold:.0%}"
        )
        pool = f"{kind.pool.max_size}"
        if kind.max_concurrency is not None:
            pool += f" ({kind.max_concurrency} at once)"
        lines.append(
            f"| `{kind.name}` | `{type(kind.classifier).__name__}` | {retry.attempts} | "
            f"{retry.backoff_initial:g} s -> {retry.backoff_max:g} s | "
            f"{_seconds(retry.attempt_timeout)} | {window} | {opens} | {slow} | "
            f"{breaker.open_duration:g} s (x{breaker.open_backoff_multiplier:g} up to "
            f"{breaker.max_open_duration:g} s) | {_seconds(kind.actor.call_timeout)} | {pool} |"
        )
    lines.append("")
    return lines


def render() -> str:
    """The whole page."""
    lines = [HEADER, *verdicts(), *kinds()]
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
