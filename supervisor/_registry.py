"""Service registry: find service actors by name, version and metadata.

::

    registry = ServiceRegistry(health=monitor.status)
    registry.register("llm", sup.ref("llm-v2"), version="2.1.0", tags={"openai"})
    inst = registry.lookup("llm", version=">=2", healthy_only=True)   # the highest match
    await inst.ref.call(request)

Versions are dotted non-negative integers ("2", "2.1", "2.1.0"; missing parts count as
0). A specifier is one or more comma-separated clauses, all of which must hold:
``>=2``, ``>1.4``, ``<3``, ``<=2.1``, ``==1.*`` (prefix match), ``!=1.2.*``, ``==2.1.0``,
``~=2.1`` (compatible: ``>=2.1, ==2.*``). Anything else is a `ConfigError`.

Registration follows the actor's lifecycle: an instance whose ref is no longer alive
(`ref.alive` is False: stopped or down for good) is dropped the next time its name is
looked up, and `deregister` removes one explicitly. The registry is a plain object the
application owns (no global state); it is not thread-safe.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from actors import ConfigError
from actors.lowlevel import emit
from supervisor._errors import UnknownService
from supervisor.health._state import HealthStatus

__all__ = [
    "ServiceInstance",
    "ServiceRegistry",
    "Version",
    "VersionSpec",
]


# --------------------------------------------------------------------------- versions

_VERSION = re.compile(r"\d+(?:\.\d+)*")
_CLAUSE = re.compile(r"\s*(~=|==|!=|>=|<=|>|<)\s*(\d+(?:\.\d+)*)(\.\*)?\s*")


@attrs.frozen(order=True)
class Version:
    """A dotted version; compares numerically with trailing zeros ignored (2 == 2.0.0)."""

    key: tuple[int, ...] = attrs.field(repr=False)
    text: str = attrs.field(order=False, eq=False)

    @classmethod
    def parse(cls, text: object) -> Version:
        """Parses "2", "2.1", "2.1.0", ... (a leading "v" is accepted).

        Raises:
            ConfigError: Anything else (field ``version``).
        """
        if isinstance(text, Version):
            return text
        if not isinstance(text, str):
            raise ConfigError("version", text, "must be a string such as '2.1.0'")
        body = text.strip()
        if body[:1] in ("v", "V"):
            body = body[1:]
        if not _VERSION.fullmatch(body):
            raise ConfigError("version", text, "must be dotted integers such as '2.1.0'")
        return cls(_trim(tuple(int(part) for part in body.split("."))), body)

    def __str__(self) -> str:
        return self.text


def _trim(parts: tuple[int, ...]) -> tuple[int, ...]:
    end = len(parts)
    while end > 1 and parts[end - 1] == 0:
        end -= 1
    return parts[:end]


def _pad(parts: tuple[int, ...], width: int) -> tuple[int, ...]:
    return parts + (0,) * (width - len(parts))


@attrs.frozen
class _Clause:
    op: str
    parts: tuple[int, ...]
    wildcard: bool

    def holds(self, version: tuple[int, ...]) -> bool:
        if self.wildcard:
            prefix = _pad(version, len(self.parts))[: len(self.parts)] == self.parts
            return prefix if self.op == "==" else not prefix
        width = max(len(version), len(self.parts))
        return _COMPARE[self.op](_pad(version, width), _pad(self.parts, width))


_COMPARE: dict[str, Callable[[tuple[int, ...], tuple[int, ...]], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


@attrs.frozen
class VersionSpec:
    """A parsed version specifier such as ">=2, <3" or "==1.*"."""

    text: str
    clauses: tuple[_Clause, ...] = attrs.field(repr=False)

    @classmethod
    def parse(cls, text: object) -> VersionSpec:
        """Parses a specifier (see the module docstring for the grammar).

        Raises:
            ConfigError: It does not parse (field ``version``).
        """
        if isinstance(text, VersionSpec):
            return text
        if not isinstance(text, str) or not text.strip():
            raise ConfigError("version", text, "must be a specifier such as '>=2' or '==1.*'")
        clauses: list[_Clause] = []
        for raw in text.split(","):
            match = _CLAUSE.fullmatch(raw)
            if match is None:
                raise ConfigError(
                    "version",
                    text,
                    f"cannot parse {raw.strip()!r}; use clauses such as '>=2', '<3', '==1.*'",
                )
            op, number, star = match.groups()
            parts = tuple(int(part) for part in number.split("."))
            if star and op not in ("==", "!="):
                raise ConfigError("version", text, f"'.*' only goes with == or !=, not {op}")
            if op == "~=":
                if len(parts) < 2:
                    raise ConfigError("version", text, "'~=' needs at least two parts (~=2.1)")
                clauses.append(_Clause(">=", parts, wildcard=False))
                clauses.append(_Clause("==", parts[:-1], wildcard=True))
            else:
                clauses.append(_Clause(op, parts, wildcard=bool(star)))
        return cls(text.strip(), tuple(clauses))

    def contains(self, version: Version | str) -> bool:
        """Whether `version` satisfies every clause."""
        key = Version.parse(version).key
        return all(clause.holds(key) for clause in self.clauses)

    def __contains__(self, version: object) -> bool:
        if not isinstance(version, Version | str):
            return False
        return self.contains(version)

    def __str__(self) -> str:
        return self.text


# --------------------------------------------------------------------------- registry


def _strings(field: str, value: object) -> frozenset[str]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, Iterable) or any(not isinstance(v, str) or not v for v in value):
        raise ConfigError(field, value, "must be a collection of non-empty strings")
    return frozenset(value)


@attrs.frozen(kw_only=True)
class ServiceInstance:
    """One registered instance of a service.

    Attributes:
        health_name: The name asked of the health source (defaults to `ref.name`).
    """

    name: str
    ref: Any
    version: Version
    tags: frozenset[str] = frozenset()
    capabilities: frozenset[str] = frozenset()
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    health_name: str

    @property
    def alive(self) -> bool:
        """Whether the ref still accepts messages (True for refs that cannot tell)."""
        return bool(getattr(self.ref, "alive", True))


HealthSource = Callable[[str], HealthStatus]


@attrs.define(eq=False)
class ServiceRegistry:
    """Named, versioned service instances; create one per application.

    Attributes:
        health: Returns a service's `HealthStatus` by name (e.g. `monitor.status`);
            needed for `healthy_only` lookups. A name it does not know (it raises
            `UnknownService`) counts as not healthy.
    """

    health: HealthSource | None = None
    _services: dict[str, list[ServiceInstance]] = attrs.field(factory=dict, init=False)

    def register(
        self,
        name: str,
        ref: Any,
        *,
        version: str | Version = "0",
        tags: Iterable[str] = (),
        capabilities: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        health_name: str | None = None,
    ) -> ServiceInstance:
        """Registers `ref` as an instance of `name` (again, or another ref equal to it,
        such as a second `sup.ref("llm")`: replaces its old entry).

        Args:
            ref: Usually an `ActorRef`; anything with an `alive` property is dropped
                once it turns False.
            health_name: The health source's name for it (default: `ref.name`, else
                `name`).

        Raises:
            ConfigError: An empty name, an unparsable version, bad tags.
        """
        if not isinstance(name, str) or not name:
            raise ConfigError("name", name, "must be a non-empty string")
        instance = ServiceInstance(
            name=name,
            ref=ref,
            version=Version.parse(version),
            tags=_strings("tags", tags),
            capabilities=_strings("capabilities", capabilities),
            metadata=dict(metadata or {}),
            health_name=health_name or getattr(ref, "name", None) or name,
        )
        instances = self._services.setdefault(name, [])
        instances[:] = [old for old in instances if old.ref != ref]
        instances.append(instance)
        emit("registry.registered", service=name, version=str(instance.version))
        return instance

    def deregister(self, name: str, ref: Any = None) -> int:
        """Removes the instance of `name` with this `ref`, or every instance of `name`.

        Returns:
            How many instances were removed.

        Raises:
            UnknownService: `name` is not registered (or `ref` is not one of its).
        """
        instances = self._services.get(name)
        if not instances:
            raise UnknownService(name)
        keep = [] if ref is None else [inst for inst in instances if inst.ref != ref]
        removed = len(instances) - len(keep)
        if removed == 0:
            raise UnknownService(name, f"{ref!r} is not registered under {name!r}")
        self._forget(name, keep, reason="deregistered", count=removed)
        return removed

    def _forget(self, name: str, keep: list[ServiceInstance], *, reason: str, count: int) -> None:
        if keep:
            self._services[name] = keep
        else:
            del self._services[name]
        emit("registry.deregistered", service=name, instances=count, reason=reason)

    def names(self) -> list[str]:
        """Registered names (instances not yet found stopped included), sorted."""
        return sorted(self._services)

    def __contains__(self, name: object) -> bool:
        return name in self._services

    def instances(
        self,
        name: str,
        *,
        version: str | VersionSpec | None = None,
        tags: Iterable[str] = (),
        capabilities: Iterable[str] = (),
        healthy_only: bool = False,
    ) -> list[ServiceInstance]:
        """Every live instance of `name` that matches, highest version first.

        Stopped instances are deregistered on the way. An empty list means the name is
        known but nothing matches.

        Raises:
            UnknownService: `name` is not registered (or every instance has stopped).
            ConfigError: `version` does not parse.
        """
        spec = None if version is None else VersionSpec.parse(version)
        want_tags = _strings("tags", tags)
        want_caps = _strings("capabilities", capabilities)
        if healthy_only and self.health is None:
            raise ConfigError("healthy_only", True, "the registry has no health source")
        instances = self._services.get(name)
        if not instances:
            raise UnknownService(name)
        live = [inst for inst in instances if inst.alive]
        if len(live) != len(instances):
            self._forget(name, live, reason="stopped", count=len(instances) - len(live))
            if not live:
                raise UnknownService(name, f"every instance of {name!r} has stopped")
        matches = [
            inst
            for inst in live
            if (spec is None or spec.contains(inst.version))
            and want_tags <= inst.tags
            and want_caps <= inst.capabilities
            and (not healthy_only or self._healthy(inst))
        ]
        matches.sort(key=lambda inst: inst.version, reverse=True)
        return matches

    def lookup(
        self,
        name: str,
        *,
        version: str | VersionSpec | None = None,
        tags: Iterable[str] = (),
        capabilities: Iterable[str] = (),
        healthy_only: bool = False,
    ) -> ServiceInstance:
        """The highest-versioned live instance of `name` that matches every condition.

        Among instances of equal version, the one registered first wins.

        Raises:
            UnknownService: `name` is unknown, or no instance matches (the message says
                which condition failed and lists the registered versions).
            ConfigError: `version` does not parse.
        """
        matches = self.instances(
            name,
            version=version,
            tags=tags,
            capabilities=capabilities,
            healthy_only=healthy_only,
        )
        if matches:
            return matches[0]
        wanted = []
        if version is not None:
            wanted.append(f"version {version}")
        if tags:
            wanted.append(f"tags {sorted(_strings('tags', tags))}")
        if capabilities:
            wanted.append(f"capabilities {sorted(_strings('capabilities', capabilities))}")
        if healthy_only:
            wanted.append("healthy")
        known = ", ".join(str(inst.version) for inst in self._services.get(name, ()))
        raise UnknownService(
            name,
            f"no instance of {name!r} matches {' and '.join(wanted)} (registered: {known})",
        )

    def _healthy(self, instance: ServiceInstance) -> bool:
        assert self.health is not None
        try:
            return self.health(instance.health_name) is HealthStatus.HEALTHY
        except UnknownService:
            return False
