"""Resilience configuration from dicts and TOML: one `ResilienceConfig` per service.

A service's table has optional sections, each loaded with cattrs into the frozen attrs
config of its primitive (so the primitive's own validators check every value)::

    [services.llm]
    preset = "llm"                      # start from a kind's presets: llm, http, database,
                                        # mcp, custom (see actors._kinds); override below
    classifier = "llm"                  # judge outcomes as this kind does (default: the
                                        # preset's kind, else custom)
    cost = 1                            # limiter units per attempt

    [services.llm.retry]                # RetryPolicy
    attempts = 5

    [services.llm.breaker]              # BreakerConfig
    open_duration = 20.0

    [services.llm.limiter]              # one limit: TokenBucket, SlidingWindow or GCRA
    kind = "token_bucket"
    rate = 500
    period = 60.0

    [services.llm.bulkhead]             # BulkheadConfig
    max_concurrent = 32

    [services.llm.adaptive]             # AdaptiveConcurrency: a concurrency limit learned
    initial = 8                         # from latency and 429/503 answers (instead of a
    max_limit = 64                      # fixed bulkhead)

or, instead of ``limiter``, several limits admitted together (a `MultiLimit`)::

    [services.llm.limits.requests]
    kind = "token_bucket"
    rate = 500
    period = 60.0
    [services.llm.limits.tokens]
    kind = "token_bucket"
    rate = 30000
    period = 60.0
    [services.llm.costs]
    requests = 1

A section set to ``false`` turns off what the preset provides. Every error is a
`ConfigError` whose ``field`` is the dotted path (``services.llm.retry.attempts``) and
whose ``value`` is the rejected value: unknown keys, wrong types (no silent ``"3"`` → 3
or ``true`` → 1), and every range the primitives check (thresholds outside (0, 1],
negative durations, zero rates, zero attempts, ...).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError

from actors._classify import Classifier
from actors._errors import ConfigError
from actors._kinds import KINDS, kind_named
from actors._validate import instance_of, optional
from actors.resilience._adaptive import AdaptiveConcurrency
from actors.resilience._breaker import BreakerConfig
from actors.resilience._bulkhead import BulkheadConfig
from actors.resilience._limiter import GCRA, LimitConfig, SlidingWindow, TokenBucket
from actors.resilience._retry import RetryPolicy

__all__ = [
    "PRESETS",
    "ResilienceConfig",
    "load_resilience_config",
    "load_resilience_toml",
    "load_services_config",
    "load_services_toml",
    "parse_toml",
    "structure_config",
]

LIMIT_KINDS: Final[dict[str, type[TokenBucket | SlidingWindow | GCRA]]] = {
    cls.kind: cls for cls in (TokenBucket, SlidingWindow, GCRA)
}

# --------------------------------------------------------------------------- the record


def _section(cls: type[Any]) -> Callable[[Any, attrs.Attribute[Any], object], None]:
    def check(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
        if value is not None and not isinstance(value, cls):
            raise ConfigError(attr.name, value, f"must be a {cls.__name__} or None")

    return check


def _limit(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, TokenBucket | SlidingWindow | GCRA):
        raise ConfigError(attr.name, value, "must be a TokenBucket, SlidingWindow, GCRA or None")


def _limits(inst: ResilienceConfig, attr: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(attr.name, value, "must be a non-empty mapping of limits or None")
    for key, limit in value.items():
        if not isinstance(key, str) or not key.isidentifier() or key == "deadline":
            raise ConfigError(f"limits.{key}", limit, "limit names are identifiers, not 'deadline'")
        if not isinstance(limit, TokenBucket | SlidingWindow | GCRA):
            raise ConfigError(
                f"limits.{key}", limit, "must be a TokenBucket, SlidingWindow or GCRA"
            )
    if inst.limiter is not None:
        raise ConfigError(attr.name, value, "give either limiter or limits, not both")


def _is_units(value: object) -> bool:
    """Whether `value` is a finite number >= 0 (not a bool)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value < math.inf


def _cost(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if not _is_units(value):
        raise ConfigError(attr.name, value, "must be a finite number >= 0")


def _costs(inst: ResilienceConfig, attr: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise ConfigError(attr.name, value, "must be a mapping of limit name to units")
    for key, units in value.items():
        if not _is_units(units):
            raise ConfigError(f"costs.{key}", units, "must be a finite number >= 0")
        if inst.limits is None or key not in inst.limits:
            raise ConfigError(f"costs.{key}", units, "names no limit of `limits`")


def _adaptive(inst: ResilienceConfig, attr: attrs.Attribute[Any], value: object) -> None:
    _section(AdaptiveConcurrency)(inst, attr, value)
    if value is not None and inst.bulkhead is not None:
        raise ConfigError(attr.name, value, "give either bulkhead or adaptive, not both")


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """A copy of a mapping; anything else is left for the validator to refuse."""
    return dict(value) if isinstance(value, Mapping) else value


@attrs.frozen(kw_only=True)
class ResilienceConfig:
    """Which resilience layers one service (or decorated function) uses, and how.

    Every section is optional; `None` means the layer is off.

    Attributes:
        retry: The retry policy.
        breaker: The circuit breaker's configuration.
        limiter: One rate limit.
        limits: Several named limits admitted together (requests/min and tokens/min);
            exclusive with `limiter`.
        bulkhead: The concurrency limit.
        adaptive: A concurrency limit learned from latency and drops, in the bulkhead's
            place (exclusive with `bulkhead`).
        cost: Units of `limiter` (or of every limit in `limits` not in `costs`)
            taken per attempt.
        costs: Units per named limit taken per attempt.
        classifier: Judges every attempt's outcome (None: the custom kind's).
    """

    retry: RetryPolicy | None = attrs.field(default=None, validator=_section(RetryPolicy))
    breaker: BreakerConfig | None = attrs.field(default=None, validator=_section(BreakerConfig))
    limiter: LimitConfig | None = attrs.field(default=None, validator=_limit)
    limits: Mapping[str, LimitConfig] | None = attrs.field(
        default=None, converter=_frozen_mapping, validator=_limits, hash=False
    )
    bulkhead: BulkheadConfig | None = attrs.field(default=None, validator=_section(BulkheadConfig))
    adaptive: AdaptiveConcurrency | None = attrs.field(default=None, validator=_adaptive)
    cost: float = attrs.field(default=1.0, validator=_cost)
    costs: Mapping[str, float] | None = attrs.field(
        default=None, converter=_frozen_mapping, validator=_costs, hash=False
    )
    classifier: Classifier | None = attrs.field(
        default=None, validator=optional(instance_of(Classifier))
    )

    @classmethod
    def preset(cls, name: str) -> ResilienceConfig:
        """The starting point of a kind of service: its retry, breaker and classifier.

        Args:
            name: A kind's name (``"llm"``, ``"http"``, ``"database"``, ``"mcp"``,
                ``"custom"``).

        Raises:
            ConfigError: Any other name (field ``preset``).
        """
        kind = kind_named(name, field="preset")
        return cls(retry=kind.retry, breaker=kind.breaker, classifier=kind.classifier)

    def limiter_cost(self) -> float | Mapping[str, float]:
        """The per-attempt cost to hand to the limiter layer."""
        if self.limits is None:
            return self.cost
        costs = dict.fromkeys(self.limits, self.cost)
        costs.update(self.costs or {})
        return costs


PRESETS: Final[tuple[str, ...]] = tuple(KINDS)

# --------------------------------------------------------------------------- converter


def _strict_int(value: object, _type: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError("", value, "must be an integer")
    return value


def _strict_float(value: object, _type: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError("", value, "must be a number")
    return value  # an int stays an int, so errors show the value as written


def _strict_str(value: object, _type: object) -> str:
    if not isinstance(value, str):
        raise ConfigError("", value, "must be a string")
    return value


def _strict_bool(value: object, _type: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError("", value, "must be true or false")
    return value


def _classifier(value: object, _type: object) -> Classifier:
    if isinstance(value, Classifier):
        return value  # an instance, kept from a preset
    try:
        return kind_named(value).classifier
    except ConfigError as exc:
        raise ConfigError("", value, exc.reason) from None


def _is_callable_type(tp: object) -> bool:
    if get_origin(tp) is Callable or tp is Callable:
        return True
    args = get_args(tp)
    return bool(args) and any(get_origin(arg) is Callable for arg in args)


def _callable_only(value: object, _type: object) -> object:
    if value is None or callable(value):
        return value  # kept from a preset or a default
    raise ConfigError("", value, "cannot be set from configuration (it is a function)")


def _is_set(tp: object) -> bool:
    return get_origin(tp) in (frozenset, set)


def _make_set(converter: cattrs.Converter) -> Callable[[object, object], frozenset[Any]]:
    def structure(value: object, tp: object) -> frozenset[Any]:
        if not isinstance(value, list | tuple | set | frozenset):
            raise ConfigError("", value, "must be an array")
        (item,) = get_args(tp)
        return frozenset(converter.structure(element, item) for element in value)

    return structure


def _is_literal(tp: object) -> bool:
    return get_origin(tp) is Literal


def _literal(value: object, tp: object) -> object:
    choices = get_args(tp)
    if value not in choices:
        raise ConfigError("", value, f"must be one of {', '.join(map(repr, choices))}")
    return value


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook(Classifier, _classifier)
    converter.register_structure_hook_func(_is_callable_type, _callable_only)
    converter.register_structure_hook_func(_is_literal, _literal)
    converter.register_structure_hook_func(_is_set, _make_set(converter))
    return converter


def _defining_modules() -> dict[type[Any], Any]:
    from actors.resilience import _adaptive, _breaker, _bulkhead, _limiter, _retry

    return {
        AdaptiveConcurrency: _adaptive,
        RetryPolicy: _retry,
        BreakerConfig: _breaker,
        BulkheadConfig: _bulkhead,
        TokenBucket: _limiter,
        SlidingWindow: _limiter,
        GCRA: _limiter,
    }


_DEFINED_IN: Final = _defining_modules()
# `actors/__init__.py` renames the public classes' ``__module__`` to ``"actors"``, where
# names such as `Literal` are not defined: resolve string annotations where they were
# written, before cattrs reads them.
for _cls, _module in _DEFINED_IN.items():
    attrs.resolve_types(_cls, globalns=vars(_module))
del _cls, _module
_CONVERTER: Final = _make_converter()

# --------------------------------------------------------------------------- errors


def _join(path: str, field: str) -> str:
    if not field:
        return path
    return f"{path}.{field}" if path else field


def _translate(exc: BaseException, path: str, data: object) -> ConfigError | None:
    """Finds the first leaf of a cattrs error tree and names it by its dotted path."""
    if isinstance(exc, ConfigError):
        return ConfigError(_join(path, exc.field), exc.value, exc.reason)
    if isinstance(exc, ForbiddenExtraKeysError):
        key = sorted(exc.extra_fields)[0]
        value = data.get(key) if isinstance(data, Mapping) else None
        known = ", ".join(sorted(a.name for a in attrs.fields(exc.cl)))
        return ConfigError(_join(path, key), value, f"unknown key (known: {known})")
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            field = ""
            for note in getattr(sub, "__notes__", ()):
                name = getattr(note, "name", None)
                if isinstance(name, str):
                    field = name
                    break
            sub_data = data.get(field) if field and isinstance(data, Mapping) else data
            found = _translate(sub, _join(path, field), sub_data)
            if found is not None:
                return found
        return None
    if isinstance(exc, Exception):
        return ConfigError(path or "config", data, f"{type(exc).__name__}: {exc}")
    return None


def structure_config(cls: type[Any], data: object, path: str, base: Any = None) -> Any:
    """Loads the attrs config `cls` from the table `data`, strictly: no silent
    conversions (``"3"`` is not 3), unknown keys refused, every error a `ConfigError`
    naming the dotted field under `path`. With `base`, `data` overrides its fields.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(path, data, "must be a table")
    merged: dict[str, Any] = {}
    if base is not None:
        merged = {a.alias: getattr(base, a.name) for a in attrs.fields(cls) if a.init}
    merged.update(data)
    try:
        return _CONVERTER.structure(merged, cls)
    except (ClassValidationError, ConfigError, ForbiddenExtraKeysError) as exc:
        error = _translate(exc, path, merged)
        if error is None:  # pragma: no cover  (every cattrs tree has a leaf)
            raise ConfigError(path, data, str(exc)) from exc
        raise error from None


def _limit_config(data: object, path: str) -> LimitConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(path, data, "must be a table")
    kind = data.get("kind")
    if kind is None:
        raise ConfigError(f"{path}.kind", None, f"is required: one of {', '.join(LIMIT_KINDS)}")
    cls = LIMIT_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ConfigError(f"{path}.kind", kind, f"must be one of {', '.join(LIMIT_KINDS)}")
    fields = {key: value for key, value in data.items() if key != "kind"}
    result: LimitConfig = structure_config(cls, fields, path)
    return result


_KEYS: Final = frozenset(
    {
        "preset",
        "classifier",
        "retry",
        "breaker",
        "limiter",
        "limits",
        "bulkhead",
        "adaptive",
        "cost",
        "costs",
    }
)


def load_resilience_config(data: Mapping[str, Any], *, path: str = "") -> ResilienceConfig:
    """Loads one service's resilience table (a dict, e.g. from TOML or JSON).

    Args:
        data: The table; see the module docstring for its keys.
        path: Dotted prefix for error fields (e.g. ``"services.llm"``).

    Returns:
        The validated configuration.

    Raises:
        ConfigError: Anything invalid; ``field`` is the dotted path of the culprit.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(path or "config", data, "must be a table")
    for key in data:
        if key not in _KEYS:
            raise ConfigError(
                _join(path, str(key)), data[key], f"unknown key (known: {', '.join(sorted(_KEYS))})"
            )
    preset_name = data.get("preset")
    if preset_name is None:
        base = ResilienceConfig()
    else:
        try:
            base = ResilienceConfig.preset(preset_name)
        except ConfigError as exc:
            raise ConfigError(_join(path, "preset"), exc.value, exc.reason) from None
    classifier = base.classifier
    if "classifier" in data:
        try:
            classifier = kind_named(data["classifier"], field="classifier").classifier
        except ConfigError as exc:
            raise ConfigError(_join(path, "classifier"), exc.value, exc.reason) from None

    def section(key: str, cls: type[Any], current: Any) -> Any:
        if key not in data:
            return current
        value = data[key]
        if value is False:
            return None
        return structure_config(cls, value, _join(path, key), current)

    if data.get("bulkhead", False) is not False and data.get("adaptive", False) is not False:
        raise ConfigError(
            _join(path, "adaptive"), data["adaptive"], "give either bulkhead or adaptive, not both"
        )
    retry = section("retry", RetryPolicy, base.retry)
    breaker = section("breaker", BreakerConfig, base.breaker)
    bulkhead = section("bulkhead", BulkheadConfig, base.bulkhead)
    adaptive = section("adaptive", AdaptiveConcurrency, None)
    limiter: LimitConfig | None = None
    if "limiter" in data and data["limiter"] is not False:
        limiter = _limit_config(data["limiter"], _join(path, "limiter"))
    limits: dict[str, LimitConfig] | None = None
    if "limits" in data and data["limits"] is not False:
        raw = data["limits"]
        limits_path = _join(path, "limits")
        if not isinstance(raw, Mapping) or not raw:
            raise ConfigError(limits_path, raw, "must be a non-empty table of limits")
        limits = {
            str(name): _limit_config(table, f"{limits_path}.{name}") for name, table in raw.items()
        }
    cost = data.get("cost", base.cost)
    costs = data.get("costs")
    try:
        return ResilienceConfig(
            retry=retry,
            breaker=breaker,
            limiter=limiter,
            limits=limits,
            bulkhead=bulkhead,
            adaptive=adaptive,
            cost=cost,
            costs=costs,
            classifier=classifier,
        )
    except ConfigError as exc:
        raise ConfigError(_join(path, exc.field), exc.value, exc.reason) from None


def parse_toml(text: str) -> dict[str, Any]:
    """The TOML document `text` as a dict.

    Raises:
        ConfigError: Invalid TOML (field ``toml``).
    """
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("toml", None, f"invalid TOML: {exc}") from None


def load_resilience_toml(text: str) -> ResilienceConfig:
    """Loads one service's resilience configuration from a TOML document.

    The document's top level is the service table (``preset``, ``[retry]``, ...).

    Raises:
        ConfigError: Invalid TOML (field ``toml``) or an invalid value.
    """
    return load_resilience_config(parse_toml(text))


def load_services_config(data: Mapping[str, Any]) -> dict[str, ResilienceConfig]:
    """Loads the ``services`` table: one `ResilienceConfig` per service name.

    Other top-level keys are left alone (the same file may configure other things);
    inside ``services`` every key is a service.

    Raises:
        ConfigError: A missing or malformed ``services`` table, or an invalid value
            (``field`` like ``services.llm.breaker.failure_rate_threshold``).
    """
    services = data.get("services")
    if not isinstance(services, Mapping):
        raise ConfigError("services", services, "must be a table of service tables")
    return {
        str(name): load_resilience_config(table, path=f"services.{name}")
        for name, table in services.items()
    }


def load_services_toml(text: str) -> dict[str, ResilienceConfig]:
    """Loads ``[services.<name>]`` tables from a TOML document (see `load_services_config`).

    Raises:
        ConfigError: Invalid TOML (field ``toml``) or an invalid value.
    """
    return load_services_config(parse_toml(text))
