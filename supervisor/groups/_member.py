"""A group's members: how one is declared (`GroupMember`, `member`), and what the group
knows about it while it runs (`MemberState`, read by the routing strategies)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Final, Generic, TypeVar

import attrs

from actors import (
    ActorRef,
    ActorStopped,
    ConfigError,
    Service,
    ServiceActor,
    ServiceClient,
    ServiceConfig,
)
from actors.lowlevel import check_id
from actors.resilience import BreakerState, BreakerStateStore, LimiterStore

__all__ = ["GroupMember", "MemberState", "member"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")

_OPEN: Final = BreakerState.OPEN
_FORCED_OPEN: Final = BreakerState.FORCED_OPEN


def _weight(_inst: Any, attr: attrs.Attribute[float], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ConfigError(attr.name, value, "must be a finite number > 0")


def _service(inst: GroupMember[Any, Any], attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, Service):
        raise ConfigError(f"members.{inst.id}.service", value, "must be an actors.Service")
    retry = value.config.retry
    if retry is not None and retry.attempts > 1:
        raise ConfigError(
            f"members.{inst.id}.retry.attempts",
            retry.attempts,
            "a group's member must not retry (attempts=1): the group's failover to another"
            " member is the one retry layer (build it with supervisor.groups.member)",
        )


@attrs.frozen(kw_only=True)
class GroupMember(Generic[Req, Resp]):
    """One deployment of a service in a group (generic in its service's request and
    reply types).

    Attributes:
        id: The member's child id in the group's tree (unique in the group; no '/').
        service: Its `Service`: its own breaker, limits, latency and health, which the
            group reads and never replaces. Its retry policy must make one attempt
            (the group's failover is the retry).
        weight: Its share under weighted routing (> 0).
    """

    id: str = attrs.field()
    service: Service[Req, Resp] = attrs.field(validator=_service, repr=False)
    weight: float = attrs.field(default=1.0, validator=_weight)

    @id.validator
    def _check_id(self, attr: attrs.Attribute[str], value: object) -> None:
        check_id("members.id", value)


def member(
    id: str,
    client: Callable[[], ServiceClient[Any, Req, Resp]],
    config: ServiceConfig | None = None,
    *,
    weight: float = 1.0,
    name: str | None = None,
    limiter_store: LimiterStore | None = None,
    breaker_store: BreakerStateStore | None = None,
) -> GroupMember[Req, Resp]:
    """A member with its own `Service`, built so that it makes one attempt per request.

    The config's (or the client kind's) retry policy keeps its timeouts but makes one
    attempt: the group retries by failing over to another member, and one layer
    retries, never two.

    Args:
        id: The member's child id.
        client: Builds the member's client (as for `Service`).
        config: Its `ServiceConfig` (default: the client kind's presets).
        weight: Its share under weighted routing.
        name: Its service name (breaker and limiter keys, events; default: `id`).
        limiter_store: Where its rate-limit state lives (e.g. Redis).
        breaker_store: Where its breaker state lives.

    Raises:
        ConfigError: As `Service` and `GroupMember`.
    """
    service_name = id if name is None else name
    if config is None:
        config = ServiceConfig.of_kind(client().kind)  # a client opens nothing until it runs
    retry = config.retry
    if retry is not None and retry.attempts != 1:
        config = attrs.evolve(config, retry=attrs.evolve(retry, attempts=1))
    service = Service(
        service_name,
        client,
        config,
        limiter_store=limiter_store,
        breaker_store=breaker_store,
    )
    return GroupMember(id=id, service=service, weight=weight)


class MemberState:
    """What a group knows about one member while it runs (strategies read it).

    Attributes:
        id: The member's child id.
        index: Its join number in the group (a stable order; never reused).
        weight: Its share under weighted routing.
        service: Its `Service` (breaker, limits, latency, `costs`).
        in_flight: The group's requests in progress on it (hedges included).
        pending: The limit costs of those requests, by limit name.
        throttled_until: Loop time until which it asked not to be called (its last
            ``retry-after``); `-inf` when it never did.
        samples: Latencies observed (successes).
        decay: Seconds over which its latency average forgets (`Routing.decay`).
        served: Requests it answered with a success for the group.
        failed: Requests it failed for the group (its refusals included).
    """

    __slots__ = (
        "_actor",
        "_ewma",
        "_stamp",
        "decay",
        "failed",
        "id",
        "in_flight",
        "index",
        "pending",
        "samples",
        "served",
        "service",
        "throttled_until",
        "weight",
    )

    def __init__(self, spec: GroupMember[Any, Any], index: int, *, decay: float = 10.0) -> None:
        self.id = spec.id
        self.index = index
        self.weight = spec.weight
        self.service: Service[Any, Any] = spec.service
        self.in_flight = 0
        self.pending: dict[str, float] = {}
        self.throttled_until = -math.inf
        self.samples = 0
        self.served = 0
        self.failed = 0
        self.decay = decay
        self._ewma = 0.0
        self._stamp = 0.0
        self._actor: ServiceActor[Any, Any] | None = None

    # -- the actor -------------------------------------------------------------------

    def new_actor(self) -> ServiceActor[Any, Any]:
        """The member's child factory: a fresh incarnation of its service."""
        actor = self.service.actor()
        self._actor = actor
        return actor

    @property
    def actor(self) -> ServiceActor[Any, Any] | None:
        """The latest incarnation (None before the first start)."""
        return self._actor

    @property
    def ref(self) -> ActorRef[Any, Any]:
        """The member's stable address.

        Raises:
            ActorStopped: It has never been started.
        """
        if self._actor is None:
            raise ActorStopped(self.id)
        return self._actor.ref

    @property
    def name(self) -> str:
        """The member's actor name (its path in the tree, as health sources know it)."""
        try:
            return self.ref.name
        except ActorStopped:
            return self.id

    @property
    def wire(self) -> str | None:
        """The wire format its client speaks ("openai", "anthropic"), if a chat client."""
        client = None if self._actor is None else self._actor.client
        wire_format = getattr(client, "wire_format", None)
        return getattr(wire_format, "name", None)

    # -- what the group learns ------------------------------------------------------------

    def latency(self, now: float) -> float:
        """The peak-EWMA latency at `now`: it jumps up to a slower answer at once and
        decays towards faster ones (and towards 0 while idle) over `decay` seconds."""
        return self._ewma * math.exp(-max(0.0, now - self._stamp) / self.decay)

    def observe(self, latency: float, now: float) -> None:
        """Folds one answer's latency into the peak EWMA (Finagle's PeakEwma)."""
        weight = math.exp(-max(0.0, now - self._stamp) / self.decay)
        current = self._ewma * weight
        if latency > current:
            self._ewma = latency
        else:
            self._ewma = current + latency * (1.0 - weight)
        self._stamp = now
        self.samples += 1

    def charge(self, costs: Mapping[str, float], sign: float) -> None:
        """Adds (sign 1) or removes (sign -1) one request's costs from `pending`."""
        pending = self.pending
        for key, cost in costs.items():
            pending[key] = pending.get(key, 0.0) + sign * cost

    def __repr__(self) -> str:
        return f"<MemberState {self.id!r} in_flight={self.in_flight}>"
