"""Loading a supervision tree from a dict or a TOML document.

Factories cannot be written in TOML, so a child names one: `factory = "llm"` is looked
up in the `factories` mapping you pass. A child table is a worker when it has `factory`,
a supervisor when it has `children` (an empty array for a supervisor of dynamic
children only); one with neither, or both, is refused. Unknown keys, unknown enum names
and bad values raise `ConfigError` naming the path to the field
(`root.children[1].strategy`).

::

    [supervisor]
    id = "agent"
    strategy = "one_for_one"
    max_restarts = 3
    period = 5
    backoff = { min = 0.05, max = 5, multiplier = 2, jitter = 0.2, reset_after = 30 }

    [[supervisor.children]]
    id = "llm"
    factory = "llm"
    restart = "permanent"
    shutdown = 5              # seconds, or "brutal_kill"
    call_timeout = 30         # ActorConfig fields may appear inline
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from actors import Actor, ActorConfig, ConfigError
from supervisor._spec import Backoff, Child, ChildSpec, SupervisorSpec

__all__ = ["spec_from_dict", "spec_from_toml"]

Factories = Mapping[str, Callable[[], Actor[Any, Any]]]

_ACTOR_KEYS = {field.name for field in attrs.fields(ActorConfig)}
_CHILD_KEYS = {
    "id",
    "factory",
    "restart",
    "shutdown",
    "significant",
    "while_restarting",
    "on_crash",
}
_SUPERVISOR_KEYS = {
    "id",
    "children",
    "strategy",
    "max_restarts",
    "period",
    "backoff",
    "auto_shutdown",
    "restart",
    "shutdown",
    "significant",
}
_BACKOFF_KEYS = {field.name for field in attrs.fields(Backoff)}


def _table(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(path, value, "must be a table")
    return value


def _unknown(data: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"{path}.{key}", data[key], f"unknown key; allowed: {sorted(allowed)}"
            )


def _build(kind: Callable[..., Any], path: str, **kwargs: Any) -> Any:
    """`kind(**kwargs)`, its `ConfigError` renamed to the field's path in the document.

    The specs name a field by itself ("period") or after the spec's id ("db.factory",
    "agent.children[0].significant"); either way it is re-rooted at `path`.
    """
    try:
        return kind(**kwargs)
    except ConfigError as exc:
        own = kwargs.get("id")
        field = exc.field
        if isinstance(own, str) and field.startswith(f"{own}."):
            field = field[len(own) + 1 :]
        raise ConfigError(f"{path}.{field}", exc.value, exc.reason) from None
    except TypeError as exc:
        raise ConfigError(path, None, str(exc)) from None


def _child(data: object, path: str, factories: Factories) -> Child:
    table = _table(data, path)
    if "id" not in table:
        raise ConfigError(f"{path}.id", None, "missing: every child needs an id")
    worker, supervisor = "factory" in table, "children" in table
    if worker == supervisor:
        raise ConfigError(
            path,
            table["id"],
            "a child table needs `factory` (a worker) or `children` (a supervisor; an"
            " empty array for dynamic children only)" + (", not both" if worker else ""),
        )
    if supervisor:
        return _supervisor(table, path, factories)
    _unknown(table, _CHILD_KEYS | _ACTOR_KEYS, path)
    name = table["factory"]
    if not isinstance(name, str):
        raise ConfigError(f"{path}.factory", name, "must be a factory's name (a string)")
    if name not in factories:
        raise ConfigError(f"{path}.factory", name, f"no such factory; known: {sorted(factories)}")
    actor_options = {key: table[key] for key in table if key in _ACTOR_KEYS}
    spec_options = {key: table[key] for key in table if key in _CHILD_KEYS - {"factory"}}
    config = _build(ActorConfig, path, **actor_options)
    return _build(ChildSpec, path, factory=factories[name], config=config, **spec_options)  # type: ignore[no-any-return]


def _supervisor(data: Mapping[str, Any], path: str, factories: Factories) -> SupervisorSpec:
    _unknown(data, _SUPERVISOR_KEYS, path)
    if "id" not in data:
        raise ConfigError(f"{path}.id", None, "missing: every supervisor needs an id")
    options = dict(data)
    children = options.pop("children", [])
    if not isinstance(children, list):
        raise ConfigError(f"{path}.children", children, "must be an array of tables")
    if "backoff" in options:
        backoff = _table(options["backoff"], f"{path}.backoff")
        _unknown(backoff, _BACKOFF_KEYS, f"{path}.backoff")
        options["backoff"] = _build(Backoff, f"{path}.backoff", **backoff)
    specs = [
        _child(child, f"{path}.children[{index}]", factories)
        for index, child in enumerate(children)
    ]
    return _build(SupervisorSpec, path, children=specs, **options)  # type: ignore[no-any-return]


def spec_from_dict(data: Mapping[str, Any], factories: Factories) -> SupervisorSpec:
    """Builds a `SupervisorSpec` from plain data (e.g. parsed TOML or JSON).

    Args:
        data: The root supervisor's table (with `children`).
        factories: Actor factories by the names the children use.

    Raises:
        ConfigError: Naming the path to the first bad field.
    """
    table = _table(data, "supervisor")
    own = table.get("id")
    return _supervisor(table, own if isinstance(own, str) else "supervisor", factories)


def spec_from_toml(source: str | Path, factories: Factories) -> SupervisorSpec:
    """Builds a `SupervisorSpec` from a TOML file path or TOML text with a `[supervisor]` table.

    Raises:
        ConfigError: The TOML does not parse, or a field is bad.
    """
    text = source.read_text() if isinstance(source, Path) else source
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("toml", None, str(exc)) from None
    if "supervisor" not in document:
        raise ConfigError("supervisor", None, "missing [supervisor] table")
    return spec_from_dict(_table(document["supervisor"], "supervisor"), factories)
