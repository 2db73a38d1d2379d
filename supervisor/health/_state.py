"""The per-service health state machine: a pure, clock-injected core.

::

                 failures_to_degrade               failures_to_unhealthy
    HEALTHY ───(consecutive failed probes)──► DEGRADED ───(consecutive failed probes)──► UNHEALTHY
       ▲                                          │                                         │
       └──────── successes_to_recover consecutive successful probes ◄──────────────────────┘

The *probe level* above has hysteresis: a single failed or successful probe never flips
it (unless the thresholds are 1). The *status* a service reports is the worst of:

- its probe level;
- its breaker's signal: OPEN / FORCED_OPEN give at least `HealthConfig.breaker_open`
  (UNHEALTHY by default), HALF_OPEN gives at least DEGRADED;
- its dependencies: while a service it `depends_on` is UNHEALTHY, it is at least DEGRADED.

`HealthTable` holds one `ServiceState` per service and returns the `HealthTransition`s
each input causes (dependants included); it never reads a clock or emits anything. The
async `HealthMonitor` feeds it with `anyio.current_time()` and turns transitions into
events and metrics.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

import attrs

from actors import ConfigError
from actors.lowlevel import check_instance, check_name, finite_positive, instance_of, positive_int
from actors.resilience import BreakerState
from supervisor._errors import UnknownService

__all__ = [
    "HealthConfig",
    "HealthStatus",
    "HealthTable",
    "HealthTransition",
    "ServiceState",
    "worst",
]


class HealthStatus(enum.Enum):
    """How well a service works; the value is the name used in reports and events."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"

    @property
    def severity(self) -> int:
        """0 for HEALTHY, 1 for DEGRADED, 2 for UNHEALTHY (higher is worse)."""
        return _SEVERITY[self]


_HEALTHY = HealthStatus.HEALTHY
_DEGRADED = HealthStatus.DEGRADED
_UNHEALTHY = HealthStatus.UNHEALTHY
_SEVERITY = {_HEALTHY: 0, _DEGRADED: 1, _UNHEALTHY: 2}


def worst(statuses: Iterable[HealthStatus]) -> HealthStatus:
    """The worst of `statuses` (HEALTHY for none)."""
    result = _HEALTHY
    for status in statuses:
        if _SEVERITY[status] > _SEVERITY[result]:
            result = status
    return result


# --------------------------------------------------------------------------- config


def _jitter(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ConfigError(attr.name, value, "must be a number in [0, 1)")


def _unhealthy_after(inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    positive_int(inst, attr, value)
    if value < inst.failures_to_degrade:
        raise ConfigError(
            attr.name, value, f"must be >= failures_to_degrade ({inst.failures_to_degrade})"
        )


def _to_names(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Iterable):
        raise ConfigError("depends_on", value, "must be a sequence of service names")
    return tuple(value)


def _names(_inst: Any, attr: attrs.Attribute[Any], value: tuple[object, ...]) -> None:
    for name in value:
        check_name(attr.name, name)
    if len(set(value)) != len(value):
        raise ConfigError(attr.name, value, "must not repeat a name")


def _status(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if value not in (_DEGRADED, _UNHEALTHY):
        raise ConfigError(attr.name, value, "must be HealthStatus.DEGRADED or UNHEALTHY")


def _to_status(value: object) -> object:
    if isinstance(value, str):
        try:
            return HealthStatus(value)
        except ValueError:
            return value
    return value


@attrs.frozen(kw_only=True)
class HealthConfig:
    """How one service is probed and judged.

    Attributes:
        interval: Seconds between the starts of two probes.
        jitter: Each interval is randomised by ±`jitter` (a fraction in [0, 1)).
        timeout: Seconds a probe may take; a probe still running then is a failure.
        failures_to_degrade: Consecutive failed probes that take HEALTHY to DEGRADED.
        failures_to_unhealthy: Consecutive failed probes (counted from the first) that
            make the service UNHEALTHY; >= `failures_to_degrade` (equal: straight down).
        successes_to_recover: Consecutive successful probes that make it HEALTHY again.
        required: Whether readiness (`/readyz`) and the overall status depend on it; an
            optional service makes the overall status at most DEGRADED.
        ready_when_degraded: Whether a DEGRADED required service still counts as ready.
        breaker_open: The status an OPEN (or forced open) breaker implies at least.
        depends_on: Names of services this one needs; while one of them is UNHEALTHY,
            this one is at least DEGRADED.
    """

    interval: float = attrs.field(default=10.0, validator=finite_positive)
    jitter: float = attrs.field(default=0.1, validator=_jitter)
    timeout: float = attrs.field(default=5.0, validator=finite_positive)
    failures_to_degrade: int = attrs.field(default=2, validator=positive_int)
    failures_to_unhealthy: int = attrs.field(default=5, validator=_unhealthy_after)
    successes_to_recover: int = attrs.field(default=2, validator=positive_int)
    required: bool = attrs.field(default=True, validator=instance_of(bool))
    ready_when_degraded: bool = attrs.field(default=True, validator=instance_of(bool))
    breaker_open: HealthStatus = attrs.field(
        default=_UNHEALTHY, converter=_to_status, validator=_status
    )
    depends_on: tuple[str, ...] = attrs.field(default=(), converter=_to_names, validator=_names)


# --------------------------------------------------------------------------- state


@attrs.frozen
class HealthTransition:
    """One change of a service's status.

    Attributes:
        reason: "probe_failures", "probes_recovered", "breaker_open",
            "breaker_half_open", "breaker_closed", "dependency_unhealthy",
            "dependency_recovered" or "removed_dependency".
    """

    service: str
    from_status: HealthStatus
    to_status: HealthStatus
    reason: str
    at: float


_BREAKER_OPEN = frozenset({BreakerState.OPEN, BreakerState.FORCED_OPEN})


@attrs.define(eq=False)
class ServiceState:
    """The mutable health record of one service (owned by a `HealthTable`)."""

    name: str
    config: HealthConfig
    status: HealthStatus = _HEALTHY
    probe_level: HealthStatus = _HEALTHY
    breaker_state: BreakerState | None = None
    unhealthy_dependencies: frozenset[str] = frozenset()
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    probes: int = 0
    failed_probes: int = 0
    last_probe_at: float | None = None
    last_latency: float | None = None
    last_ok: bool | None = None
    last_error: str | None = None
    since: float = 0.0

    def floor(self) -> HealthStatus:
        """The status implied by everything except the probe level."""
        floor = _HEALTHY
        breaker = self.breaker_state
        if breaker in _BREAKER_OPEN:
            floor = self.config.breaker_open
        elif breaker is BreakerState.HALF_OPEN:
            floor = _DEGRADED
        if self.unhealthy_dependencies and floor is _HEALTHY:
            floor = _DEGRADED
        return floor

    def compute(self) -> HealthStatus:
        """The status the inputs imply now."""
        floor = self.floor()
        level = self.probe_level
        return level if _SEVERITY[level] >= _SEVERITY[floor] else floor


@attrs.define(eq=False)
class HealthTable:
    """Health records of many services and the dependency links between them.

    Not thread-safe; every method is synchronous and never blocks. Methods that take
    `now` return the transitions they caused, dependants' included, in order.
    """

    _states: dict[str, ServiceState] = attrs.field(factory=dict, init=False)

    def __contains__(self, name: object) -> bool:
        return name in self._states

    def __len__(self) -> int:
        return len(self._states)

    def names(self) -> list[str]:
        """Service names in the order they were added."""
        return list(self._states)

    def get(self, name: str) -> ServiceState:
        """The record of `name`.

        Raises:
            UnknownService: No such service.
        """
        try:
            return self._states[name]
        except KeyError:
            raise UnknownService(name, f"no health record for {name!r}") from None

    def states(self) -> list[ServiceState]:
        """Every record, in the order they were added."""
        return list(self._states.values())

    def add(self, name: str, config: HealthConfig, *, now: float) -> list[HealthTransition]:
        """Adds a service (HEALTHY until its probes or inputs say otherwise).

        Raises:
            ConfigError: The name is taken or empty, depends on itself, or closes a
                dependency cycle.
        """
        check_name("name", name)
        if name in self._states:
            raise ConfigError("name", name, "a service with this name is already monitored")
        check_instance("config", config, HealthConfig)
        if name in config.depends_on:
            raise ConfigError("depends_on", config.depends_on, f"{name!r} cannot depend on itself")
        cycle = self._cycle_through(name, config.depends_on)
        if cycle:
            raise ConfigError(
                "depends_on", config.depends_on, "dependency cycle: " + " -> ".join(cycle)
            )
        state = ServiceState(name, config, since=now)
        self._states[name] = state
        unhealthy = frozenset(
            dep
            for dep in config.depends_on
            if dep in self._states and self._states[dep].status is _UNHEALTHY
        )
        out: list[HealthTransition] = []
        if unhealthy:
            state.unhealthy_dependencies = unhealthy
            self._settle(state, "dependency_unhealthy", now, out)
        return out

    def _cycle_through(self, name: str, deps: tuple[str, ...]) -> list[str]:
        """A dependency path from one of `deps` back to `name`, if there is one."""
        stack: list[tuple[str, list[str]]] = [(dep, [name, dep]) for dep in deps]
        seen: set[str] = set()
        while stack:
            current, path = stack.pop()
            if current == name:
                return path
            if current in seen or current not in self._states:
                continue
            seen.add(current)
            stack.extend((dep, [*path, dep]) for dep in self._states[current].config.depends_on)
        return []

    def remove(self, name: str, *, now: float) -> list[HealthTransition]:
        """Forgets a service; its dependants stop counting it as unhealthy.

        Raises:
            UnknownService: No such service.
        """
        self.get(name)
        del self._states[name]
        out: list[HealthTransition] = []
        for other in self._states.values():
            if name in other.unhealthy_dependencies:
                other.unhealthy_dependencies = other.unhealthy_dependencies - {name}
                self._settle(other, "removed_dependency", now, out)
        return out

    def record_probe(
        self,
        name: str,
        *,
        ok: bool,
        now: float,
        latency: float | None = None,
        error: str | None = None,
    ) -> list[HealthTransition]:
        """Records one probe result.

        Args:
            ok: Whether the probe succeeded.
            latency: Seconds the probe took (`None` if unknown).
            error: The failure's type name (ignored when `ok`).

        Raises:
            UnknownService: No such service.
        """
        state = self.get(name)
        cfg = state.config
        state.probes += 1
        state.last_probe_at = now
        state.last_latency = latency
        state.last_ok = ok
        if ok:
            state.last_error = None
            state.consecutive_failures = 0
            state.consecutive_successes += 1
            if (
                state.probe_level is not _HEALTHY
                and state.consecutive_successes >= cfg.successes_to_recover
            ):
                state.probe_level = _HEALTHY
            reason = "probes_recovered"
        else:
            state.failed_probes += 1
            state.last_error = error
            state.consecutive_successes = 0
            state.consecutive_failures += 1
            failures = state.consecutive_failures
            if failures >= cfg.failures_to_unhealthy:
                state.probe_level = _UNHEALTHY
            elif failures >= cfg.failures_to_degrade and state.probe_level is _HEALTHY:
                state.probe_level = _DEGRADED
            reason = "probe_failures"
        out: list[HealthTransition] = []
        self._settle(state, reason, now, out)
        return out

    def set_breaker(
        self, name: str, breaker: BreakerState | None, *, now: float
    ) -> list[HealthTransition]:
        """Records the state of the service's breaker (`None`: no breaker).

        Raises:
            UnknownService: No such service.
        """
        state = self.get(name)
        if state.breaker_state is breaker:
            return []
        state.breaker_state = breaker
        if breaker in _BREAKER_OPEN:
            reason = "breaker_open"
        elif breaker is BreakerState.HALF_OPEN:
            reason = "breaker_half_open"
        else:
            reason = "breaker_closed"
        out: list[HealthTransition] = []
        self._settle(state, reason, now, out)
        return out

    def _settle(
        self, state: ServiceState, reason: str, now: float, out: list[HealthTransition]
    ) -> None:
        """Recomputes `state` and, when it changed, propagates to its dependants."""
        new = state.compute()
        old = state.status
        if new is old:
            return
        state.status = new
        state.since = now
        out.append(HealthTransition(state.name, old, new, reason, now))
        was_unhealthy, is_unhealthy = old is _UNHEALTHY, new is _UNHEALTHY
        if was_unhealthy == is_unhealthy:
            return
        for other in self._states.values():
            if state.name not in other.config.depends_on:
                continue
            if is_unhealthy:
                other.unhealthy_dependencies = other.unhealthy_dependencies | {state.name}
                self._settle(other, "dependency_unhealthy", now, out)
            else:
                other.unhealthy_dependencies = other.unhealthy_dependencies - {state.name}
                self._settle(other, "dependency_recovered", now, out)
