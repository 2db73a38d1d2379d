"""Declaring supervision trees: child specs, supervisor specs, restart policies.

Everything here is a frozen attrs value validated on construction: a bad tree raises
`ConfigError` naming the child and the field before anything starts. `SupervisorSpec`
is itself a valid child, so trees nest.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, Literal, TypeAlias, TypeVar

import attrs

from actors import Actor, ActorConfig, ConfigError
from actors.lowlevel import (
    check_instance,
    check_name,
    check_non_negative_int,
    finite,
    finite_non_negative,
    positive,
    unit_interval,
)

__all__ = [
    "AutoShutdown",
    "Backoff",
    "ChildSpec",
    "OnCrash",
    "RestartType",
    "Strategy",
    "SupervisorSpec",
    "WhileRestarting",
]

Req = TypeVar("Req")
Resp = TypeVar("Resp")

BRUTAL_KILL: Literal["brutal_kill"] = "brutal_kill"
Shutdown: TypeAlias = float | Literal["brutal_kill"]


class Strategy(enum.Enum):
    """Which children restart when one fails (OTP semantics)."""

    ONE_FOR_ONE = "one_for_one"
    """Only the failed child."""
    ONE_FOR_ALL = "one_for_all"
    """Every child: the others are stopped in reverse order, then all start in order."""
    REST_FOR_ONE = "rest_for_one"
    """The failed child and the children started after it."""


class RestartType(enum.Enum):
    """When a child that exited is restarted."""

    PERMANENT = "permanent"
    """Always."""
    TRANSIENT = "transient"
    """Only after an abnormal exit (a crash); a normal stop is final."""
    TEMPORARY = "temporary"
    """Never, not even when a sibling's failure takes it down under one_for_all."""


class AutoShutdown(enum.Enum):
    """Whether significant children exiting normally shut the supervisor down."""

    NEVER = "never"
    ANY_SIGNIFICANT = "any_significant"
    ALL_SIGNIFICANT = "all_significant"


class WhileRestarting(enum.Enum):
    """What a call to a child does while the child is restarting (or backing off)."""

    WAIT = "wait"
    """Queue for the new incarnation, within the call's deadline (the default)."""
    FAIL = "fail"
    """Raise `ActorRestarting` at once."""


class OnCrash(enum.Enum):
    """What happens to messages still queued when a child crashes."""

    FAIL = "fail"
    """Their callers get `ActorDown` at once, with the crash as `reason` (the default,
    as OTP: a crashed process's mailbox dies with it and monitoring callers learn it)."""
    KEEP = "keep"
    """They wait for the next incarnation; ones whose deadline passes are skipped."""


_E = TypeVar("_E", bound=enum.Enum)


def _to_enum(kind: type[_E], field: str, value: object) -> _E:
    if isinstance(value, kind):
        return value
    try:
        return kind(value)
    except ValueError:
        names = [member.value for member in kind]
        raise ConfigError(field, value, f"must be one of {names}") from None


def _to_strategy(value: object) -> Strategy:
    return _to_enum(Strategy, "strategy", value)


def _to_restart(value: object) -> RestartType:
    return _to_enum(RestartType, "restart", value)


def _to_auto_shutdown(value: object) -> AutoShutdown:
    return _to_enum(AutoShutdown, "auto_shutdown", value)


def _to_while_restarting(value: object) -> WhileRestarting:
    return _to_enum(WhileRestarting, "while_restarting", value)


def _to_on_crash(value: object) -> OnCrash:
    return _to_enum(OnCrash, "on_crash", value)


def _child_id(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if "/" in check_name(attr.name, value):
        raise ConfigError(attr.name, value, "must be a non-empty string without '/'")


def _flag(inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    check_instance(f"{inst.id}.{attr.name}", value, bool)  # named after the spec's id


def _to_children(value: Iterable[Child]) -> tuple[Child, ...]:
    """A list (or any iterable) of child specs as a tuple; checked at run time too."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise ConfigError("children", value, "must be a sequence of ChildSpec or SupervisorSpec")
    return tuple(value)


def _shutdown(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if value == BRUTAL_KILL:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(attr.name, value, "must be seconds > 0 (or inf), or 'brutal_kill'")


@attrs.frozen(kw_only=True)
class Backoff:
    """Delay before each restart of a child: exponential from `min` to `max`, jittered.

    The n-th consecutive restart of a child (n = 0 for the first) waits
    `min(max, min * multiplier**n)`, scaled by a random factor in `[1 - jitter,
    1 + jitter]` and capped at `max`. A child that ran for `reset_after` seconds before
    crashing starts again from `min`. Backoff sets the pace of restarts; the
    supervisor's intensity (max_restarts in period) decides when to give up.

    Attributes:
        min: First delay, seconds (0 restarts at once).
        max: Largest delay, seconds.
        multiplier: Growth per consecutive restart (>= 1).
        jitter: Fraction of randomness, in [0, 1].
        reset_after: Seconds of stable running after which the delay resets.
    """

    min: float = attrs.field(default=0.01, validator=finite_non_negative)
    max: float = attrs.field(default=5.0, validator=finite_non_negative)
    multiplier: float = attrs.field(default=2.0, validator=finite)
    jitter: float = attrs.field(default=0.2, validator=unit_interval)
    reset_after: float = attrs.field(default=30.0, validator=positive)

    @multiplier.validator
    def _check_multiplier(self, attr: attrs.Attribute[float], value: float) -> None:
        if not value >= 1:
            raise ConfigError(attr.name, value, "must be a number >= 1")

    def __attrs_post_init__(self) -> None:
        if self.max < self.min:
            raise ConfigError("max", self.max, f"must be >= min ({self.min})")

    @classmethod
    def none(cls) -> Backoff:
        """No delay: restart at once, like plain OTP."""
        return cls(min=0.0, max=0.0, jitter=0.0)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The delay before consecutive restart number `attempt` (0-based)."""
        try:
            grown = self.min * self.multiplier**attempt if self.min else 0.0
        except OverflowError:  # a long crash loop: the growth passed any float
            grown = math.inf
        base = min(self.max, grown)
        if self.jitter and base:
            base *= 1 + self.jitter * (2 * rng.random() - 1)
        return min(self.max, max(0.0, base))


@attrs.frozen(kw_only=True)
class ChildSpec(Generic[Req, Resp]):
    """How to run one worker child.

    Generic in the actor's request and reply types (inferred from `factory`), so the
    spec is also a typed key: `sup.ref(spec)` is an `ActorRef[Req, Resp]`.

    Attributes:
        id: Unique among its siblings; no '/' (paths use it).
        factory: Builds a fresh `Actor` for each (re)start.
        restart: `RestartType` (default PERMANENT).
        shutdown: Seconds an orderly stop may take in all (the current messages and
            `on_stop`) before the child is cancelled hard, or "brutal_kill" to cancel
            at once. It replaces the child's `ActorConfig.shutdown_timeout` when the
            supervisor stops it.
        significant: With the supervisor's auto_shutdown, this child's normal exit can
            shut the supervisor down (must be TRANSIENT or TEMPORARY, under a supervisor
            whose auto_shutdown is not NEVER).
        config: The child address's `ActorConfig` (mailbox size, call timeout, ...).
        while_restarting: `WhileRestarting`: calls wait for the new incarnation (default)
            or fail fast with `ActorRestarting`.
        on_crash: `OnCrash`: queued messages are failed with `ActorDown` when the child
            crashes (default) or kept for the next incarnation.
    """

    id: str = attrs.field(validator=_child_id)
    factory: Callable[[], Actor[Req, Resp]] = attrs.field()
    restart: RestartType = attrs.field(default=RestartType.PERMANENT, converter=_to_restart)
    shutdown: Shutdown = attrs.field(default=5.0, validator=_shutdown)
    significant: bool = attrs.field(default=False, validator=_flag)
    config: ActorConfig = attrs.field(factory=ActorConfig)
    while_restarting: WhileRestarting = attrs.field(
        default=WhileRestarting.WAIT, converter=_to_while_restarting
    )
    on_crash: OnCrash = attrs.field(default=OnCrash.FAIL, converter=_to_on_crash)

    @factory.validator
    def _check_factory(self, attr: attrs.Attribute[Any], value: object) -> None:
        if not callable(value):
            raise ConfigError(f"{self.id}.factory", value, "must be callable")

    @config.validator
    def _check_config(self, attr: attrs.Attribute[Any], value: object) -> None:
        check_instance(f"{self.id}.config", value, ActorConfig)

    def __attrs_post_init__(self) -> None:
        _check_significant(self.id, self.significant, self.restart)


def _check_significant(child_id: str, significant: bool, restart: RestartType) -> None:
    if significant and restart is RestartType.PERMANENT:
        raise ConfigError(
            f"{child_id}.significant", True, "a significant child must be transient or temporary"
        )


Child: TypeAlias = "ChildSpec[Any, Any] | SupervisorSpec"


@attrs.frozen(kw_only=True)
class SupervisorSpec:
    """A supervisor: its children, restart strategy, intensity and backoff.

    A `SupervisorSpec` is also a valid child of another supervisor; then `restart`,
    `shutdown` and `significant` apply to it as a child (shutdown defaults to infinity,
    as for OTP supervisors: it gets all the time its own children need).

    Attributes:
        id: The supervisor's name (and child id when nested).
        children: Child specs, started in this order and stopped in reverse.
        strategy: `Strategy` (default ONE_FOR_ONE).
        max_restarts: Restarts allowed within `period` seconds, counted across all
            children (one per failure, even when a strategy restarts several). One more
            and the supervisor stops its children and fails to its parent (0: the first
            failure does, as OTP's intensity 0).
        period: The intensity window, seconds (inf: restarts are counted forever).
        backoff: `Backoff` before each restart.
        auto_shutdown: `AutoShutdown` (default NEVER; with NEVER no child may be
            significant, as OTP refuses that spec).
        restart, shutdown, significant: As for `ChildSpec`, when nested.
    """

    id: str = attrs.field(validator=_child_id)
    children: tuple[Child, ...] = attrs.field(default=(), converter=_to_children)
    strategy: Strategy = attrs.field(default=Strategy.ONE_FOR_ONE, converter=_to_strategy)
    max_restarts: int = attrs.field(default=3)
    period: float = attrs.field(default=5.0, validator=positive)
    backoff: Backoff = attrs.field(factory=Backoff)
    auto_shutdown: AutoShutdown = attrs.field(
        default=AutoShutdown.NEVER, converter=_to_auto_shutdown
    )
    restart: RestartType = attrs.field(default=RestartType.PERMANENT, converter=_to_restart)
    shutdown: Shutdown = attrs.field(default=math.inf, validator=_shutdown)
    significant: bool = attrs.field(default=False, validator=_flag)

    @max_restarts.validator
    def _check_max_restarts(self, attr: attrs.Attribute[int], value: int) -> None:
        check_non_negative_int(f"{self.id}.max_restarts", value)

    @backoff.validator
    def _check_backoff(self, attr: attrs.Attribute[Any], value: object) -> None:
        check_instance(f"{self.id}.backoff", value, Backoff)

    @children.validator
    def _check_children(self, attr: attrs.Attribute[Any], value: Sequence[Any]) -> None:
        seen: set[str] = set()
        for child in value:
            if not isinstance(child, ChildSpec | SupervisorSpec):
                raise ConfigError(
                    f"{self.id}.children", child, "must be ChildSpec or SupervisorSpec"
                )
            if child.id in seen:
                raise ConfigError(f"{self.id}.children", child.id, "duplicate child id")
            seen.add(child.id)

    def __attrs_post_init__(self) -> None:
        _check_significant(self.id, self.significant, self.restart)
        for index, child in enumerate(self.children):
            check_significant_allowed(self, child, f"{self.id}.children[{index}].significant")


def check_significant_allowed(spec: SupervisorSpec, child: Child, field: str) -> None:
    """A significant child needs a supervisor that can auto-shut-down (OTP refuses it
    under `auto_shutdown=never`)."""
    if child.significant and spec.auto_shutdown is AutoShutdown.NEVER:
        raise ConfigError(
            field,
            True,
            f"child {child.id!r} is significant but supervisor {spec.id!r} has"
            " auto_shutdown='never'; use 'any_significant' or 'all_significant'",
        )
