"""The demo's own settings: the ``[demo]``, ``[health]`` and ``[[chaos]]`` tables.

The ``[supervisor]`` and ``[services]`` tables are the library's (`spec_from_dict`,
`load_services_config`); the rest is read here and checked before anything starts: a
bad value is a `ConfigError` naming its dotted field (``chaos[3].for``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import attrs

from actors import ConfigError
from supervisor.health import HealthConfig

SERVICES: Final = ("llm", "llm_mini", "db", "tools")
LLM_FAULTS: Final = (
    "rate_limit_burst",  # 429 with retry-after-ms on every chat request
    "overloaded",  # 529 on every chat request
    "latency_spike",  # every answer waits `seconds` more
    "outage",  # every path answers 503, probes included
    "hang",  # chat requests never answer
    "drop",  # the connection is cut before the body
    "stream_error",  # streams break with an error event (plain requests get the 5xx)
    "capacity",  # at most `limit` requests at once, the rest 503
)
INSTANT_FAULTS: Final = {"crash": "db", "kill_mcp": "tools"}
KINDS: Final = (*LLM_FAULTS, *INSTANT_FAULTS)


@attrs.frozen(kw_only=True)
class Fault:
    """One chaos event: `kind` on `service` from `at` for `duration` seconds (0: instant).

    Attributes:
        seconds: The extra latency of a latency spike.
        limit: The concurrent requests a capacity fault leaves.
    """

    at: float
    kind: str
    service: str
    duration: float = 0.0
    seconds: float = 0.0
    limit: int = 0

    @property
    def ends(self) -> float:
        """When the fault stops (seconds into the run)."""
        return self.at + self.duration

    def label(self) -> str:
        return f"{self.kind} {self.service}"


@attrs.frozen(kw_only=True)
class Settings:
    """The demo's run: load, deadlines, bounds and the chaos schedule.

    Attributes:
        duration: Seconds of load.
        agents: Agent loops running turns concurrently.
        turn_timeout: The deadline of one whole turn (every model and tool call in it).
        recovery_bound: Seconds after a fault ends within which its service must be
            healthy again and have answered for real (not from a fallback).
        progress_window: Every window of this many seconds must finish a turn.
        lateness_tolerance: Seconds a call may overrun its deadline beyond what the
            event loop's own measured lateness explains.
        seed: Seeds the agents' choices.
        health: The probe configuration of each service.
        chaos: The faults, in time order.
    """

    duration: float
    agents: int
    turn_timeout: float
    recovery_bound: float
    progress_window: float
    lateness_tolerance: float
    seed: int
    health: Mapping[str, HealthConfig]
    chaos: tuple[Fault, ...]

    def shortened(self, duration: float) -> Settings:
        """The same run for `duration` seconds, without the faults that would not leave
        their recovery bound before its end."""
        if not duration > 0:
            raise ConfigError("duration", duration, "must be > 0")
        kept = tuple(f for f in self.chaos if f.ends + self.recovery_bound <= duration)
        return attrs.evolve(self, duration=duration, chaos=kept)


def _number(table: Mapping[str, Any], key: str, path: str, default: float | None = None) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{path}.{key}", value, "must be a finite number")
    if value < 0:
        raise ConfigError(f"{path}.{key}", value, "must be >= 0")
    return float(value)


def _positive(table: Mapping[str, Any], key: str, path: str, default: float) -> float:
    value = _number(table, key, path, default)
    if value <= 0:
        raise ConfigError(f"{path}.{key}", value, "must be > 0")
    return value


def _integer(table: Mapping[str, Any], key: str, path: str, default: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{path}.{key}", value, "must be an integer >= 1")
    return value


def _table(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(path, value, "must be a table")
    return value


def _unknown(table: Mapping[str, Any], known: set[str], path: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"{path}.{key}", table[key], f"unknown key (known: {sorted(known)})")


def _health(data: Mapping[str, Any]) -> dict[str, HealthConfig]:
    table = _table(data.get("health", {}), "health")
    _unknown(table, {"default", *SERVICES}, "health")
    base = dict(_table(table.get("default", {}), "health.default"))
    configs = {}
    for service in SERVICES:
        own = _table(table.get(service, {}), f"health.{service}")
        path = f"health.{service}" if service in table else "health.default"
        try:
            configs[service] = HealthConfig(**{**base, **own})
        except ConfigError as exc:
            raise ConfigError(f"{path}.{exc.field}", exc.value, exc.reason) from None
        except TypeError as exc:  # an unknown field
            raise ConfigError(path, None, str(exc)) from None
    return configs


def _fault(value: object, path: str) -> Fault:
    table = _table(value, path)
    kind = table.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{path}.kind", kind, f"must be one of {list(KINDS)}")
    at = _number(table, "at", path)
    if kind in INSTANT_FAULTS:
        _unknown(table, {"at", "kind", "service"}, path)
        service = table.get("service", INSTANT_FAULTS[kind])
        if service != INSTANT_FAULTS[kind]:
            raise ConfigError(
                f"{path}.service", service, f"{kind} applies to {INSTANT_FAULTS[kind]}"
            )
        return Fault(at=at, kind=kind, service=service)
    known = {"at", "kind", "service", "for"}
    if kind == "latency_spike":
        known.add("seconds")
    if kind == "capacity":
        known.add("limit")
    _unknown(table, known, path)
    service = table.get("service")
    if service not in ("llm", "llm_mini"):
        raise ConfigError(f"{path}.service", service, "must be 'llm' or 'llm_mini'")
    return Fault(
        at=at,
        kind=kind,
        service=service,
        duration=_positive(table, "for", path, 0.0),
        seconds=_positive(table, "seconds", path, 0.5) if kind == "latency_spike" else 0.0,
        limit=_integer(table, "limit", path, 1) if kind == "capacity" else 0,
    )


def load_settings(document: Mapping[str, Any], *, quick: bool = False) -> Settings:
    """Reads the demo's tables (with `quick`, the ``[quick]`` table's duration and chaos).

    Raises:
        ConfigError: A bad value, naming its dotted field; or a schedule that leaves a
            fault less than `recovery_bound` before the end of the run, or starts a
            fault on a service before the previous one there could have recovered.
    """
    demo = _table(document.get("demo", {}), "demo")
    _unknown(
        demo,
        {
            "duration",
            "agents",
            "turn_timeout",
            "recovery_bound",
            "progress_window",
            "lateness_tolerance",
            "seed",
        },
        "demo",
    )
    source, path = document, "chaos"
    duration = _positive(demo, "duration", "demo", 40.0)
    if quick:
        source = _table(document.get("quick", {}), "quick")
        _unknown(source, {"duration", "chaos"}, "quick")
        duration, path = _positive(source, "duration", "quick", 30.0), "quick.chaos"
    events = source.get("chaos", [])
    if not isinstance(events, list):
        raise ConfigError(path, events, "must be an array of tables ([[chaos]])")
    chaos = sorted((_fault(e, f"{path}[{i}]") for i, e in enumerate(events)), key=lambda f: f.at)
    settings = Settings(
        duration=duration,
        agents=_integer(demo, "agents", "demo", 8),
        turn_timeout=_positive(demo, "turn_timeout", "demo", 3.0),
        recovery_bound=_positive(demo, "recovery_bound", "demo", 5.0),
        progress_window=_positive(demo, "progress_window", "demo", 2.0),
        lateness_tolerance=_positive(demo, "lateness_tolerance", "demo", 0.02),
        seed=int(_number(demo, "seed", "demo", 7)),
        health=_health(document),
        chaos=tuple(chaos),
    )
    _check_schedule(settings, path)
    return settings


def _check_schedule(settings: Settings, path: str) -> None:
    bound = settings.recovery_bound
    previous: dict[str, Fault] = {}
    for index, fault in enumerate(settings.chaos):
        if fault.ends + bound > settings.duration:
            raise ConfigError(
                f"{path}[{index}].at",
                fault.at,
                f"ends at {fault.ends:g}s: the run ({settings.duration:g}s) must leave it "
                f"its recovery bound ({bound:g}s)",
            )
        before = previous.get(fault.service)
        if before is not None and fault.at < before.ends + bound:
            raise ConfigError(
                f"{path}[{index}].at",
                fault.at,
                f"{fault.service} is still within the recovery bound of "
                f"{before.label()} (until {before.ends + bound:g}s)",
            )
        previous[fault.service] = fault
