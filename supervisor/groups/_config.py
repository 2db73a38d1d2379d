"""A service group's configuration: frozen records, and loading them from dicts or TOML.

::

    [groups.llm]
    routing = "quota_headroom"          # or a table: [groups.llm.routing] kind = ...
    share = 0.6                         # of the remaining time, per member tried
    min_healthy = 2                     # healthy while at least this many can serve
    avoid_at = "unhealthy"              # skip members this unhealthy (or "degraded")
    members = ["east", "west", "backup"]   # service names, or a table with weights:
                                        # [groups.llm.members.east] weight = 2

    [groups.llm.failover]               # FailoverPolicy
    attempts = 3                        # members tried per request (default: all)

    [groups.llm.hedge]                  # HedgePolicy (absent: no hedging)
    quantile = 0.95
    budget = 0.05

    [groups.llm.stream_recovery]        # StreamRecovery (absent: off)
    max_recoveries = 1

    [groups.llm.actor]                  # ActorConfig of the group's address (absent:
    call_timeout = 30.0                 # its first member's)

Every value is checked by the record's own validators (the same validators as every
other configuration, from `actors.lowlevel`) and loaded with the same strict loader as
the resilience tables (`actors.lowlevel.structure_config`): no silent ``"3"`` → 3,
unknown keys refused, and every error a `ConfigError` naming the dotted field
(``groups.llm.hedge.budget``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container, Mapping
from typing import Any, Final, Literal, get_args

import attrs

from actors import ActorConfig, ConfigError
from actors.lowlevel import (
    check_finite_positive,
    check_name,
    finite_positive,
    fraction,
    instance_of,
    non_negative,
    optional,
    parse_toml,
    positive_int,
    structure_config,
    unit_interval,
)
from supervisor.health._state import HealthStatus

__all__ = [
    "DEFAULT_INSTRUCTION",
    "FailoverPolicy",
    "GroupConfig",
    "GroupSpec",
    "HedgePolicy",
    "Routing",
    "StreamRecovery",
    "load_groups_config",
    "load_groups_toml",
]

RoutingKind = Literal[
    "round_robin",
    "weighted",
    "least_in_flight",
    "peak_ewma",
    "quota_headroom",
    "consistent_hash",
]
ROUTING_KINDS: Final[tuple[str, ...]] = get_args(RoutingKind)

DEFAULT_INSTRUCTION: Final = (
    "Your previous reply was cut off after the text above. Continue it from exactly "
    "where it stopped: do not repeat anything and do not add a preamble."
)
"""What an OpenAI-compatible member is told after the partial answer when it takes over
a broken stream (an Anthropic member continues its own prefilled turn instead)."""


def _kind(_inst: Any, attr: attrs.Attribute[str], value: object) -> None:
    if value not in ROUTING_KINDS:
        raise ConfigError(attr.name, value, f"must be one of {', '.join(ROUTING_KINDS)}")


def _key(_inst: Any, attr: attrs.Attribute[str | None], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not all(part.isidentifier() for part in value.split(".")):
        raise ConfigError(attr.name, value, "must be a dotted path of names, e.g. 'extra.user'")


def _above_one(_inst: Any, attr: attrs.Attribute[float], value: object) -> None:
    if check_finite_positive(attr.name, value) <= 1:
        raise ConfigError(attr.name, value, "must be a number > 1")


def _open_fraction(_inst: Any, attr: attrs.Attribute[float | None], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ConfigError(attr.name, value, "must be a number in (0, 1)")


@attrs.frozen(kw_only=True)
class Routing:
    """How a group picks the member for a request.

    Attributes:
        kind: "round_robin"; "weighted" (smooth weighted round-robin by each member's
            weight); "least_in_flight" (fewest of the group's requests in progress);
            "peak_ewma" (power of two random choices, the lower latency x load, as
            Finagle); "quota_headroom" (the most room left in its rate limits, never
            one whose limits would make the request wait past its deadline);
            "consistent_hash" (a request key always to the same member, with bounded
            load).
        key: consistent_hash: a dotted path into the request giving its key (e.g.
            "extra.user"); None: the conversation's opening (a chat request's first
            two messages), so one conversation stays on one deployment.
        load_factor: consistent_hash: a member takes at most this many times the mean
            load before the key moves on to the next member of the ring (> 1).
        replicas: consistent_hash: points per member on the ring.
        decay: peak_ewma: seconds over which the latency average forgets.
    """

    kind: RoutingKind = attrs.field(default="round_robin", validator=_kind)
    key: str | None = attrs.field(default=None, validator=_key)
    load_factor: float = attrs.field(default=1.25, validator=_above_one)
    replicas: int = attrs.field(default=64, validator=positive_int)
    decay: float = attrs.field(default=10.0, validator=finite_positive)


def _to_routing(value: object) -> object:
    if not isinstance(value, str):
        return value
    if value not in ROUTING_KINDS:
        raise ConfigError("routing", value, f"must be one of {', '.join(ROUTING_KINDS)}")
    return Routing(kind=value)  # type: ignore[arg-type]


@attrs.frozen(kw_only=True)
class FailoverPolicy:
    """How many members a request may try; the group's retry is the failover.

    A failover goes to a member that has not failed this request yet, at once (no
    backoff: it is another deployment), within the request's deadline.

    Attributes:
        attempts: Members tried per request, the first included (None: every member).
        budget_ratio: Failovers allowed per request over `budget_ttl` (a Finagle-style
            retry budget), in [0, 1]; None: no budget (a group of distinct deployments
            is not a retry storm on one service).
        budget_min_per_second: Failovers always allowed per second under a budget.
        budget_ttl: The budget's window, seconds.
    """

    attempts: int | None = attrs.field(default=None, validator=optional(positive_int))
    budget_ratio: float | None = attrs.field(default=None, validator=optional(unit_interval))
    budget_min_per_second: float = attrs.field(default=10.0, validator=non_negative)
    budget_ttl: float = attrs.field(default=10.0, validator=finite_positive)


@attrs.frozen(kw_only=True)
class HedgePolicy:
    """Hedged requests: after a delay without an answer, the same request to another
    member; the first success wins and the other is cancelled (its reserved cost
    released). Only for idempotent requests, and never beyond the budget.

    Attributes:
        delay: Seconds before hedging (also the delay while fewer than `min_samples`
            latencies are known, when `quantile` is set).
        quantile: Hedge at this quantile of the group's recent member latencies (e.g.
            0.95) instead of the fixed delay; None: the fixed delay. It is the
            quantile of each hedged request's first member latency; one that lost
            its race counts as slower than every answer (it was, at least, slower
            than the delay), so hedging never drags its own delay down.
        min_samples: Latencies needed before the quantile is used.
        budget: Extra requests at most this fraction of the requests (over
            `budget_ttl`), in [0, 1].
        min_per_second: Hedges always allowed per second on top of the fraction.
        budget_ttl: The budget's window, seconds.
        max_hedges: Extra requests per request (each after another delay).
        idempotent: Decides which requests may be hedged; default: chat completions,
            read-only SQL queries, MCP tool listings and requests whose
            ``idempotent`` attribute is True. A SQL write is never hedged, whatever
            it says. (Not settable from configuration files.)
    """

    delay: float = attrs.field(default=0.5, validator=finite_positive)
    quantile: float | None = attrs.field(default=None, validator=_open_fraction)
    min_samples: int = attrs.field(default=20, validator=positive_int)
    budget: float = attrs.field(default=0.05, validator=unit_interval)
    min_per_second: float = attrs.field(default=0.0, validator=non_negative)
    budget_ttl: float = attrs.field(default=10.0, validator=finite_positive)
    max_hedges: int = attrs.field(default=1, validator=positive_int)
    idempotent: Callable[[Any], bool] | None = attrs.field(default=None, eq=False)

    @idempotent.validator
    def _check_idempotent(self, attr: attrs.Attribute[Any], value: object) -> None:
        if value is not None and not callable(value):
            raise ConfigError(attr.name, value, "must be a function of the request, or None")

    def __attrs_post_init__(self) -> None:
        if math.isinf(self.min_per_second):
            raise ConfigError("min_per_second", self.min_per_second, "must be finite")


def _instruction(_inst: Any, attr: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(attr.name, value, "must be a non-empty string")


@attrs.frozen(kw_only=True)
class StreamRecovery:
    """Continuing a broken stream on another member (LLM groups, opt-in).

    When a streamed answer breaks after some of it reached the caller (`on_chunk`),
    the next member gets the original messages plus the partial answer: an
    Anthropic member as its own assistant turn to continue (prefill), an
    OpenAI-compatible one as an assistant message followed by `instruction`. The
    caller's `on_chunk` sees one continuous text; the reply is a `RecoveredResponse`
    saying where it broke.

    Attributes:
        max_recoveries: Breaks recovered per request (then the failure is raised).
        instruction: The user message sent after the partial answer to an
            OpenAI-compatible member.
    """

    max_recoveries: int = attrs.field(default=1, validator=positive_int)
    instruction: str = attrs.field(default=DEFAULT_INSTRUCTION, validator=_instruction)


def _avoid(value: object) -> HealthStatus:
    if isinstance(value, HealthStatus):
        status = value
    else:
        try:
            status = HealthStatus(value)
        except ValueError:
            raise ConfigError("avoid_at", value, "must be 'degraded' or 'unhealthy'") from None
    if status is HealthStatus.HEALTHY:
        raise ConfigError("avoid_at", value, "must be 'degraded' or 'unhealthy'")
    return status


@attrs.frozen(kw_only=True)
class GroupConfig:
    """Everything a `ServiceGroup` applies to its requests (its members keep their own
    breaker, limits and health).

    Attributes:
        routing: How a member is picked (`Routing`, or its kind's name).
        failover: How many members a request may try.
        share: The fraction of the remaining time a member gets while another member
            could still answer, in (0, 1]; the last one gets all that remains.
        hedge: Hedged requests (None: none).
        stream_recovery: Continuing broken streams on another member (None: off).
        min_healthy: The group is healthy while at least this many members can serve
            (degraded below, unhealthy at none).
        avoid_at: Members whose health source says this or worse are skipped (tried
            only when nothing else is left).
        max_concurrency: Requests the group handles at once.
        actor: The group address's settings (mailbox, call timeout); None: those of
            its first member's service.
    """

    routing: Routing = attrs.field(
        factory=Routing, converter=_to_routing, validator=instance_of(Routing)
    )
    failover: FailoverPolicy = attrs.field(
        factory=FailoverPolicy, validator=instance_of(FailoverPolicy)
    )
    share: float = attrs.field(default=0.6, validator=fraction)
    hedge: HedgePolicy | None = attrs.field(
        default=None, validator=optional(instance_of(HedgePolicy))
    )
    stream_recovery: StreamRecovery | None = attrs.field(
        default=None, validator=optional(instance_of(StreamRecovery))
    )
    min_healthy: int = attrs.field(default=1, validator=positive_int)
    avoid_at: HealthStatus = attrs.field(default=HealthStatus.UNHEALTHY, converter=_avoid)
    max_concurrency: int = attrs.field(default=256, validator=positive_int)
    actor: ActorConfig | None = attrs.field(
        default=None, validator=optional(instance_of(ActorConfig))
    )


def _weight(_inst: Any, attr: attrs.Attribute[Any], value: tuple[tuple[str, float], ...]) -> None:
    for member, weight in value:
        check_name(f"{attr.name}", member)
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not 0 < weight < math.inf
        ):
            raise ConfigError(f"{attr.name}.{member}.weight", weight, "must be a finite number > 0")


@attrs.frozen(kw_only=True)
class GroupSpec:
    """A group as a configuration file describes it: its config and its members (by
    service name, with their weights). Build it with `ServiceGroup.from_spec`.

    Attributes:
        config: The group's configuration.
        members: ``(service name, weight)`` per member, in order.
    """

    config: GroupConfig = attrs.field(factory=GroupConfig, validator=instance_of(GroupConfig))
    members: tuple[tuple[str, float], ...] = attrs.field(default=(), validator=_weight)

    def check_members(self, known: Container[str], *, field: str = "members") -> None:
        """Checks that every member names a `known` service.

        Raises:
            ConfigError: The first member that names none (field ``{field}.{name}``).
        """
        for name, _weight in self.members:
            if name not in known:
                raise ConfigError(f"{field}.{name}", name, "names no service")


for _cls in (Routing, FailoverPolicy, HedgePolicy, StreamRecovery):
    attrs.resolve_types(_cls, globalns=globals())
del _cls

_SECTIONS: Final[dict[str, type[Any]]] = {
    "failover": FailoverPolicy,
    "hedge": HedgePolicy,
    "stream_recovery": StreamRecovery,
    "actor": ActorConfig,
}
_KEYS: Final = frozenset(
    {"routing", "share", "min_healthy", "avoid_at", "max_concurrency", "members", *_SECTIONS}
)


def _members(data: object, path: str) -> tuple[tuple[str, float], ...]:
    if isinstance(data, list | tuple):
        for index, name in enumerate(data):
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{path}[{index}]", name, "must be a service name")
        if len(set(data)) != len(data):
            raise ConfigError(path, data, "names a member twice")
        return tuple((name, 1.0) for name in data)
    if not isinstance(data, Mapping):
        raise ConfigError(path, data, "must be an array of service names or a table of members")
    members = []
    for name, table in data.items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"{path}.{name}", table, "must be a table (e.g. { weight = 2 })")
        unknown = set(table) - {"weight"}
        if unknown:
            key = sorted(unknown)[0]
            raise ConfigError(f"{path}.{name}.{key}", table[key], "unknown key (known: weight)")
        weight = table.get("weight", 1.0)
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not 0 < weight < math.inf
        ):
            raise ConfigError(f"{path}.{name}.weight", weight, "must be a finite number > 0")
        members.append((str(name), float(weight)))
    return tuple(members)


def load_group_config(data: Mapping[str, Any], *, path: str = "") -> GroupSpec:
    """Loads one group's table (see the module docstring).

    Raises:
        ConfigError: Anything invalid; ``field`` is the dotted path of the culprit.
    """

    def join(key: str) -> str:
        return f"{path}.{key}" if path else key

    if not isinstance(data, Mapping):
        raise ConfigError(path or "group", data, "must be a table")
    for key in data:
        if key not in _KEYS:
            raise ConfigError(
                join(str(key)), data[key], f"unknown key (known: {', '.join(sorted(_KEYS))})"
            )
    fields: dict[str, Any] = {}
    routing = data.get("routing")
    if isinstance(routing, str):
        fields["routing"] = routing
    elif routing is not None:
        fields["routing"] = structure_config(Routing, routing, join("routing"))
    for key, cls in _SECTIONS.items():
        if key in data:
            fields[key] = structure_config(cls, data[key], join(key))
    for key in ("share", "min_healthy", "max_concurrency"):
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(join(key), value, "must be a number")
            fields[key] = value
    if "avoid_at" in data:
        fields["avoid_at"] = data["avoid_at"]
    try:
        config = GroupConfig(**fields)
    except ConfigError as exc:
        raise ConfigError(join(exc.field), exc.value, exc.reason) from None
    members = _members(data.get("members", ()), join("members"))
    return GroupSpec(config=config, members=members)


def load_groups_config(data: Mapping[str, Any]) -> dict[str, GroupSpec]:
    """Loads the ``groups`` table: one `GroupSpec` per group name.

    Other top-level keys are left alone (the same file may hold ``services`` and a
    ``supervisor``).

    Raises:
        ConfigError: A missing or malformed ``groups`` table, or an invalid value
            (``field`` like ``groups.llm.hedge.quantile``).
    """
    groups = data.get("groups")
    if not isinstance(groups, Mapping):
        raise ConfigError("groups", groups, "must be a table of group tables")
    return {
        str(name): load_group_config(table, path=f"groups.{name}") for name, table in groups.items()
    }


def load_groups_toml(text: str) -> dict[str, GroupSpec]:
    """Loads ``[groups.<name>]`` tables from a TOML document (see `load_groups_config`).

    Raises:
        ConfigError: Invalid TOML (field ``toml``) or an invalid value.
    """
    return load_groups_config(parse_toml(text))
