"""`ServiceGroup`: one stable ref over several deployments of a service.

::

    group = ServiceGroup("llm", [member("east", east_client), member("west", west_client)],
                         GroupConfig(routing="quota_headroom", hedge=HedgePolicy(quantile=0.95)))
    spec = SupervisorSpec(id="app", children=[group.spec()])
    async with supervisor.start(spec) as sup:
        reply = await group.ref.call(ChatRequest.user("hi"))     # any ActorRef user can
        router = route(group.ref, canned_answer("busy"))         # a primary, or a fallback

The group is a subtree of the supervision tree::

    llm                 supervisor (one_for_one)
    ├── members         supervisor: one service actor per member (dynamic: join/leave)
    │   ├── east
    │   └── west
    └── group           the group's actor: its ref is `group.ref`

Each request goes through the one resilience pipeline (`actors.lowlevel.Pipeline`):
its operation picks a member with the routing strategy and calls it; its retry is
the failover (`supervisor.groups._failover`): each retry goes at once to a member that
has not failed this request, within the request's one deadline, of which each member
gets `GroupConfig.share` while another could still answer. Members keep their own
breaker, limits and health, and make one attempt each (one layer retries). A member
is skipped while its breaker is open (the cooldown), and held back while its health is
`avoid_at` or worse, it is not running, or it asked to be left alone (``retry-after``):
held-back members are tried only when no other member is left. When every member has
failed or been skipped the request fails with the last failure (marked with its
verdict, so a fallback router takes over), or `GroupUnavailable` when no member could
be tried at all.

Hedging (`HedgePolicy`) races a second member against a slow first one inside one
attempt: the first success wins, the loser is cancelled (its member's pipeline returns
its reservation; cancellation is never a failure). Stream recovery (`StreamRecovery`)
continues a broken stream on the next member (`supervisor.groups._stream`).

Cancellation: a caller giving up (its deadline, or cancelled) cancels the group's
handler, which cancels the member calls in progress; nothing is counted as a failure.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import anyio
import attrs

from actors import (
    Actor,
    ActorConfig,
    ActorRef,
    ActorState,
    ActorStopped,
    ConfigError,
    ErrorClass,
    ErrorClassifier,
    LatencyRecorder,
    Service,
    current_deadline,
)
from actors.lowlevel import Pipeline, add_event, check_name, emit, now_or_none, server_delay
from actors.lowlevel import now as _now
from actors.resilience import RetryBudget
from actors.services import ChatRequest
from supervisor._errors import GroupUnavailable, UnknownService
from supervisor._passing import breaker_cooling, passes_on
from supervisor._spec import ChildSpec, SupervisorSpec, WhileRestarting
from supervisor._supervisor import Supervisor
from supervisor.groups._config import GroupConfig, GroupSpec, HedgePolicy
from supervisor.groups._failover import MemberVerdicts, failover_retrier
from supervisor.groups._idempotent import hedgeable
from supervisor.groups._member import GroupMember, MemberState
from supervisor.groups._strategies import RoutingStrategy, strategy_for
from supervisor.groups._stream import Relay
from supervisor.health._monitor import HealthMonitor
from supervisor.health._state import HealthStatus

__all__ = ["GroupStats", "MemberInfo", "ServiceGroup"]

HealthSource = Callable[[str], HealthStatus]
MEMBERS: Final = "members"
"""The id of the supervisor holding a group's members."""
FRONT: Final = "group"
"""The id of the group's own actor (its ref is the group's ref)."""
_RUNNING: Final = ActorState.RUNNING
_HEALTHY: Final = HealthStatus.HEALTHY
_QUANTILE_REFRESH: Final = 0.05  # seconds a hedge delay read from the quantile is reused


@attrs.frozen
class GroupStats:
    """A snapshot of a group's counters (the same first fields as `ServiceStats`).

    Attributes:
        requests: Requests handled.
        succeeded: Requests answered with a success.
        failed: Requests that ended in a failure (cancellations are neither).
        attempts: Requests sent to members (hedges included).
        in_flight: Requests being handled now.
        failovers: Retries on another member.
        hedges: Hedged requests sent.
        hedge_wins: Requests the hedge answered first.
        hedges_denied: Hedges the budget refused.
        recoveries: Broken streams continued on another member.
        unavailable: Requests no member could take (`GroupUnavailable`).
    """

    requests: int
    succeeded: int
    failed: int
    attempts: int
    in_flight: int
    failovers: int
    hedges: int
    hedge_wins: int
    hedges_denied: int
    recoveries: int
    unavailable: int


@attrs.frozen
class MemberInfo:
    """One row of `ServiceGroup.members()`.

    Attributes:
        id: The member's child id.
        name: Its actor name (its path in the tree).
        state: Its address's state ("running", "restarting", ...; "new" before start).
        serving: Whether it is a candidate for new requests now.
        weight: Its share under weighted routing.
        in_flight: The group's requests in progress on it.
        served: Requests it answered for the group.
        failed: Requests it failed for the group.
        latency: Its peak-EWMA latency, seconds (None before its first answer).
        breaker: Its breaker's state (None without a breaker).
        health: What the group's health source says (None without one).
        concurrency: Its adaptive concurrency limit now (None without one; see
            `ServiceConfig.adaptive`).
    """

    id: str
    name: str
    state: str
    serving: bool
    weight: float
    in_flight: int
    served: int
    failed: int
    latency: float | None
    breaker: str | None
    health: str | None
    concurrency: float | None = None


@attrs.define(eq=False)
class _Counters:
    attempts: int = 0
    hedges: int = 0
    hedge_wins: int = 0
    hedges_denied: int = 0
    recoveries: int = 0
    unavailable: int = 0


class _Call:
    """One request's state across its attempts."""

    __slots__ = ("broke", "deadline", "hedged", "relay", "tried")

    def __init__(self, deadline: float, relay: Relay | None, hedged: bool) -> None:
        self.deadline = deadline
        self.relay = relay
        self.hedged = hedged
        self.tried: set[str] = set()
        self.broke = False  # the last attempt broke a stream after delivering text


class _Race:
    """The contenders of one hedged attempt."""

    __slots__ = ("failed", "failures", "settled", "started", "value", "winner")

    def __init__(self) -> None:
        self.started = 1
        self.failures: list[Exception] = []
        self.failed: list[MemberState] = []
        self.winner: MemberState | None = None
        self.value: Any = None
        self.settled = anyio.Event()


class _Front(Actor[Any, Any]):
    """The group's actor: each request it handles goes through the group's pipeline."""

    def __init__(self, group: ServiceGroup) -> None:
        self.group = group
        self.max_concurrency = group.config.max_concurrency

    def crashes_on(self, exc: Exception) -> bool:
        """Never: a failure goes to its caller, and the group's state lives in the
        `ServiceGroup`, which a restart would not renew."""
        return False

    async def handle(self, msg: Any) -> Any:
        """Serves one request through the group."""
        return await self.group._serve(msg)

    async def probe(self) -> None:
        """Fails while fewer than `GroupConfig.min_healthy` members can serve."""
        self.group._check_healthy()


class ServiceGroup:
    """A supervised group of service actors behind one ref (see the module docstring).

    Made once, like a `Service`: it holds the group's lasting state (its members'
    states, the routing strategy, the hedge budget, metrics and latency), which
    outlives restarts of its actors.

    Attributes:
        name: The group's name (its subtree's id, events, errors).
        config: Its configuration.
        pipeline: The resilience pipeline every request runs through.
        latency: Recent latency of its members' answers (hedge delays read it).
    """

    def __init__(
        self,
        name: str,
        members: Iterable[GroupMember[Any, Any]],
        config: GroupConfig | None = None,
        *,
        strategy: RoutingStrategy | None = None,
        health: HealthSource | HealthMonitor | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """Checks everything and makes the group's lasting state.

        Args:
            name: The group's name (no '/').
            members: Its initial members (more may join while it runs).
            config: Defaults to `GroupConfig()` (round-robin, failover to every member).
            strategy: A routing strategy object replacing `config.routing`'s.
            health: Members' health by actor name (e.g. a `HealthMonitor` watching the
                tree, or its `status`): members at `config.avoid_at` or worse are held
                back.
            rng: Randomness of the peak_ewma strategy (seed it for reproducible picks).

        Raises:
            ConfigError: A bad name, config, member, health source or strategy; two
                members with one id; members of different kinds of service.
        """
        if "/" in check_name("name", name):
            raise ConfigError("name", name, "must not contain '/'")
        config = GroupConfig() if config is None else config
        if not isinstance(config, GroupConfig):
            raise ConfigError("config", type(config).__name__, "must be a GroupConfig")
        if strategy is not None and not isinstance(strategy, RoutingStrategy):
            raise ConfigError("strategy", strategy, "must have choose() and members_changed()")
        if isinstance(health, HealthMonitor):
            health = health.status
        if health is not None and not callable(health):
            raise ConfigError("health", health, "must be a HealthMonitor or a function of a name")
        self.name = name
        self.config = config
        self._health = health
        self._strategy: RoutingStrategy = (
            strategy if strategy is not None else strategy_for(config.routing, rng)
        )
        self._members: list[MemberState] = []
        self._by_id: dict[str, MemberState] = {}
        self._joined = 0
        specs = list(members)
        for spec in specs:
            self._check_member(spec)
            self._join(self._state(spec))
        first = specs[0].service if specs else None
        classifier = MemberVerdicts(
            first.pipeline.classifier if first is not None else ErrorClassifier()
        )
        self._actor_config = (
            config.actor
            if config.actor is not None
            else (first.config.actor if first is not None else ActorConfig())
        )
        self.latency = LatencyRecorder()
        self._counters = _Counters()
        self.pipeline = Pipeline(
            name,
            classifier,
            retrier=failover_retrier(name, config.failover, classifier),
            retry_on=self._retries,
        )
        hedge = config.hedge
        self._hedgeable = None if hedge is None else hedgeable(hedge.idempotent)
        self._hedge_budget = (
            None
            if hedge is None
            else RetryBudget(
                ratio=hedge.budget, min_per_second=hedge.min_per_second, ttl=hedge.budget_ttl
            )
        )
        self._hedge_delay = (0.0, -1.0)  # (delay, computed at)
        # The first member's latency of each hedged request (the hedge delay is its
        # quantile): one that lost its race is recorded as slower than any answer, so
        # the quantile is never pulled down by the requests hedging itself cut short.
        # 32 buckets per octave (quantiles within 1.1 %) over the last 30 s.
        self._primaries = LatencyRecorder(
            slice_seconds=3.0, slices=10, lowest=1e-4, buckets_per_octave=32
        )
        self._front: _Front | None = None

    @classmethod
    def from_spec(
        cls,
        name: str,
        spec: GroupSpec,
        services: Mapping[str, Service[Any, Any]],
        **options: Any,
    ) -> ServiceGroup:
        """A group from a loaded `GroupSpec`, its members found by service name.

        Args:
            name: The group's name.
            spec: From `load_groups_config` / `load_groups_toml`.
            services: Services by name; each member names one (and is its child id).
            **options: As for the constructor (`strategy`, `health`, `rng`).

        Raises:
            ConfigError: A member naming no service (``members.<name>``), or as the
                constructor.
        """
        spec.check_members(services)
        members = [
            GroupMember(id=service_name, service=services[service_name], weight=weight)
            for service_name, weight in spec.members
        ]
        return cls(name, members, spec.config, **options)

    # -- the tree ------------------------------------------------------------------------

    def spec(self) -> SupervisorSpec:
        """The group's subtree, to put in a supervision tree (once)."""
        members = SupervisorSpec(id=MEMBERS, children=[self._child(m) for m in self._members])
        front = ChildSpec(id=FRONT, factory=self._new_front, config=self._actor_config)
        return SupervisorSpec(id=self.name, children=(members, front))

    def _child(self, state: MemberState) -> ChildSpec[Any, Any]:
        return ChildSpec(
            id=state.id,
            factory=state.new_actor,
            config=state.service.config.actor,
            while_restarting=WhileRestarting.FAIL,  # fail over at once, never wait
        )

    def _new_front(self) -> _Front:
        self._front = _Front(self)
        return self._front

    @property
    def ref(self) -> ActorRef[Any, Any]:
        """The group's stable address (valid across restarts).

        Raises:
            ActorStopped: The group's subtree has not been started.
        """
        if self._front is None:
            raise ActorStopped(self.name)
        return self._front.ref

    async def call(self, request: Any, *, timeout: float | None = None) -> Any:
        """`group.ref.call(request, timeout=timeout)` (see `ActorRef.call`)."""
        return await self.ref.call(request, timeout=timeout)

    # -- membership ------------------------------------------------------------------

    def _check_member(self, spec: object) -> None:
        if not isinstance(spec, GroupMember):
            raise ConfigError("members", spec, "must be GroupMember (see supervisor.groups.member)")
        if spec.id in self._by_id:
            raise ConfigError("members", spec.id, "two members share this id")
        if self._members and spec.service.kind is not self._members[0].service.kind:
            raise ConfigError(
                f"members.{spec.id}.service",
                spec.service.kind.name,
                f"a group's members are of one kind ({self._members[0].service.kind.name})",
            )

    def _state(self, spec: GroupMember[Any, Any]) -> MemberState:
        self._joined += 1
        return MemberState(spec, self._joined, decay=self.config.routing.decay)

    def _join(self, state: MemberState) -> None:
        self._members.append(state)
        self._by_id[state.id] = state
        self._strategy.members_changed(self._members)

    def _members_supervisor(self, sup: Supervisor) -> Supervisor:
        front = self.ref.name  # ".../<group>/group"
        prefix = f"{sup.path}/"
        if not front.startswith(prefix):
            raise ConfigError("sup", sup.path, f"is not an ancestor of group {self.name!r}")
        group_path = front[len(prefix) :].rpartition("/")[0]
        return sup.supervisor(f"{group_path}/{MEMBERS}" if group_path else MEMBERS)

    async def add_member(self, sup: Supervisor, spec: GroupMember[Any, Any]) -> ActorRef[Any, Any]:
        """Starts a new member and routes to it once it runs.

        Args:
            sup: A running supervisor the group's subtree is under (e.g. the root).
            spec: The member.

        Returns:
            The member's ref.

        Raises:
            ConfigError: As the constructor, or `sup` is not above the group.
            ActorDown: The member failed to start (it is not added).
            ActorStopped: The group is not running.
        """
        self._check_member(spec)
        members = self._members_supervisor(sup)
        state = self._state(spec)
        ref = await members.start_child(self._child(state))
        assert ref is not None
        self._join(state)
        emit("group.member_joined", group=self.name, member=state.id)
        return ref

    async def remove_member(self, sup: Supervisor, member_id: str) -> None:
        """Stops routing to a member, then stops it (within its shutdown).

        Requests it is handling finish or, if it is stopped first, fail over.

        Raises:
            ConfigError: No such member, or `sup` is not above the group.
        """
        state = self._by_id.get(member_id)
        if state is None:
            raise ConfigError("member_id", member_id, f"is not a member of group {self.name!r}")
        members = self._members_supervisor(sup)
        self._members.remove(state)
        del self._by_id[member_id]
        self._strategy.members_changed(self._members)
        await members.terminate_child(member_id)
        if any(child.id == member_id for child in members.which_children()):
            await members.delete_child(member_id)  # a static member keeps its spec otherwise
        emit("group.member_left", group=self.name, member=member_id)

    # -- introspection -------------------------------------------------------------------

    @property
    def stats(self) -> GroupStats:
        """A snapshot of the counters (never a checkpoint)."""
        metrics = self.pipeline.metrics
        retrier = self.pipeline.retrier
        counters = self._counters
        return GroupStats(
            requests=metrics.calls,
            succeeded=metrics.successes,
            failed=metrics.failures,
            attempts=counters.attempts,
            in_flight=metrics.in_flight,
            failovers=0 if retrier is None else retrier.metrics.retries,
            hedges=counters.hedges,
            hedge_wins=counters.hedge_wins,
            hedges_denied=counters.hedges_denied,
            recoveries=counters.recoveries,
            unavailable=counters.unavailable,
        )

    def members(self) -> list[MemberInfo]:
        """Every member in join order, with what the group knows of it now."""
        now = now_or_none() or 0.0
        rows = []
        for state in self._members:
            actor = state.actor
            breaker = state.service.breaker
            limit = state.service.concurrency
            health = self._health_of(state)
            rows.append(
                MemberInfo(
                    id=state.id,
                    name=state.name,
                    state="new" if actor is None else state.ref.state.value,
                    serving=self._serving(state, now),
                    weight=state.weight,
                    in_flight=state.in_flight,
                    served=state.served,
                    failed=state.failed,
                    latency=state.latency(now) if state.samples else None,
                    breaker=None if breaker is None else breaker.state.value,
                    health=None if health is None else health.value,
                    concurrency=None if limit is None else limit.limit,
                )
            )
        return rows

    def member_services(self) -> dict[str, Service[Any, Any]]:
        """The `Service` of each started member by its actor name (its path in the
        tree): what the dashboard shows on the members' nodes."""
        return {state.name: state.service for state in self._members if state.actor is not None}

    def status(self) -> HealthStatus:
        """HEALTHY while at least `min_healthy` members can serve, DEGRADED while one
        can, UNHEALTHY when none can."""
        now = now_or_none() or 0.0
        serving = sum(1 for state in self._members if self._serving(state, now))
        if serving >= self.config.min_healthy:
            return _HEALTHY
        return HealthStatus.DEGRADED if serving else HealthStatus.UNHEALTHY

    def _check_healthy(self) -> None:
        if self.status() is not _HEALTHY:
            now = now_or_none() or 0.0
            raise GroupUnavailable(
                self.name,
                {s.id: self._why_not(s, now) or "serving" for s in self._members},
            )

    # -- availability --------------------------------------------------------------------

    def _health_of(self, state: MemberState) -> HealthStatus | None:
        if self._health is None or state.actor is None:
            return None
        try:
            return self._health(state.name)
        except UnknownService:
            return None

    def _why_not(self, state: MemberState, now: float) -> str | None:
        """Why a member is not serving now (None: it is)."""
        if breaker_cooling(state.service.breaker, now):
            return "breaker open"
        if state.actor is None or state.ref.state is not _RUNNING:
            return "not running"
        if state.throttled_until > now:
            return "rate limited"
        health = self._health_of(state)
        if health is not None and health.severity >= self.config.avoid_at.severity:
            return health.value
        return None

    def _serving(self, state: MemberState, now: float) -> bool:
        return self._why_not(state, now) is None

    def _pick(self, request: Any, call: _Call, now: float) -> MemberState:
        """The member for the next attempt: a serving one, else a held-back one."""
        serving: list[MemberState] = []
        held_back: list[MemberState] = []
        reasons: dict[str, str] = {}
        for state in self._members:
            if state.id in call.tried:
                reasons[state.id] = "tried"
                continue
            why = self._why_not(state, now)
            if why is None:
                serving.append(state)
                continue
            reasons[state.id] = why
            if why != "breaker open":
                held_back.append(state)
        for candidates in (serving, held_back):
            if candidates:
                picked = self._strategy.choose(candidates, request, now=now, deadline=call.deadline)
                if picked is not None:
                    return picked
                for state in candidates:
                    reasons[state.id] = "would wait past the deadline"
        self._counters.unavailable += 1
        emit("group.unavailable", level="warning", group=self.name, reasons=reasons)
        raise GroupUnavailable(self.name, reasons)

    def _more(self, call: _Call, now: float) -> bool:
        """Whether another member could still be tried for this request."""
        return any(
            state.id not in call.tried and not breaker_cooling(state.service.breaker, now)
            for state in self._members
        )

    # -- serving ---------------------------------------------------------------------------

    async def _serve(self, request: Any) -> Any:
        relay = None
        if isinstance(request, ChatRequest) and request.stream and request.on_chunk is not None:
            relay = Relay(request.on_chunk)
        hedged = self._hedgeable is not None and relay is None and self._hedgeable(request)
        if hedged:
            assert self._hedge_budget is not None
            self._hedge_budget.deposit(_now())
        call = _Call(current_deadline(), relay, hedged)
        result = await self.pipeline.call(self._attempt, (request, call), {}, None)
        if relay is not None and relay.breaks:
            self._counters.recoveries += relay.breaks
            emit("group.stream_recovered", group=self.name, breaks=relay.breaks)
            return relay.finish(result)
        return result

    def _retries(self, exc: Exception, verdict: ErrorClass, request: Any, call: _Call) -> bool:
        """The pipeline's `retry_on`: fail over while it makes sense (module docstring)."""
        if isinstance(exc, GroupUnavailable) or not passes_on(exc, verdict):
            return False  # (no member could be picked: another attempt picks none either)
        if call.broke:
            assert call.relay is not None
            recovery = self.config.stream_recovery
            if recovery is None or call.relay.breaks > recovery.max_recoveries:
                return False
        return self._more(call, _now())

    def _timeout(self, call: _Call, now: float, more: bool) -> float | None:
        remaining = call.deadline - now
        if remaining == float("inf"):
            return None
        if remaining <= 0:
            raise GroupUnavailable(self.name, {"*": "no time left"})
        return remaining * self.config.share if more else remaining

    async def _attempt(self, request: Any, call: _Call) -> Any:
        """One attempt of the pipeline: pick a member and send (maybe hedged)."""
        now = _now()
        first = self._pick(request, call, now)
        call.tried.add(first.id)
        call.broke = False
        more = self._more(call, now)
        hedge = self.config.hedge
        if hedge is not None and call.hedged and more:
            return await self._race(hedge, first, request, call)
        return await self._send(first, request, call, self._timeout(call, now, more))

    async def _send(
        self, state: MemberState, request: Any, call: _Call, timeout: float | None
    ) -> Any:
        """Calls one member; learns its latency, throttling and stream breaks."""
        relay = call.relay
        message = request
        if relay is not None:
            recovery = self.config.stream_recovery
            instruction = "" if recovery is None else recovery.instruction
            message = relay.request_for(request, state.id, state.wire, instruction)
        costs = state.service.costs(request) if state.service.limits is not None else {}
        state.in_flight += 1
        state.charge(costs, 1.0)
        self._counters.attempts += 1
        start = _now()
        try:
            value = await state.ref.call(message, timeout=timeout)
        except Exception as exc:
            state.failed += 1
            delay = server_delay(exc)  # its retry-after, or its own limiter's
            if delay:
                state.throttled_until = max(state.throttled_until, _now() + delay)
            if relay is not None and relay.broke(exc):
                call.broke = True
            raise
        finally:
            state.in_flight -= 1
            state.charge(costs, -1.0)
        end = _now()
        state.served += 1
        state.observe(end - start, end)
        self.latency.record(end - start, end)
        return value

    # -- hedging ---------------------------------------------------------------------------

    def _delay(self, hedge: HedgePolicy, now: float) -> float:
        """The hedge delay: fixed, or the quantile of the first members' latencies
        (refreshed every 50 ms)."""
        if hedge.quantile is None:
            return hedge.delay
        delay, at = self._hedge_delay
        if now - at < _QUANTILE_REFRESH and at >= 0:
            return delay
        delay = hedge.delay
        primaries = self._primaries
        if primaries.count(now) >= hedge.min_samples:
            delay = primaries.quantile(hedge.quantile, now) or hedge.delay
        self._hedge_delay = (delay, now)
        return delay

    async def _race(self, hedge: HedgePolicy, first: MemberState, request: Any, call: _Call) -> Any:
        """Sends to `first`, then to another member after each hedge delay without an
        answer (within the budget); the first success wins, the others are cancelled."""
        start = now = _now()
        delay = self._delay(hedge, now)
        race = _Race()
        budget = self._hedge_budget
        assert budget is not None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._contend, race, first, request, call, self._timeout(call, now, True))
            hedges = 0
            while hedges < hedge.max_hedges:
                with anyio.move_on_after(delay):
                    await race.settled.wait()
                now = _now()
                if race.settled.is_set() or not self._more(call, now):
                    break
                try:
                    other = self._pick(request, call, now)
                except GroupUnavailable:
                    break
                if not budget.try_withdraw(now):
                    self._counters.hedges_denied += 1
                    break
                call.tried.add(other.id)
                hedges += 1
                race.started += 1
                self._counters.hedges += 1
                emit("group.hedged", level="debug", group=self.name, member=other.id)
                add_event(
                    "actorvisor.group.hedged",
                    {
                        "actorvisor.group": self.name,
                        "actorvisor.member": other.id,
                        "actorvisor.hedge": hedges,
                    },
                )
                more = self._more(call, now)
                tg.start_soon(
                    self._contend, race, other, request, call, self._timeout(call, now, more)
                )
            await race.settled.wait()
            tg.cancel_scope.cancel()  # the losers: their members return what they reserved
        end = _now()
        if race.winner is first:
            self._primaries.record(end - start, end)
        elif race.winner is not None:
            self._counters.hedge_wins += 1
            if first not in race.failed:  # slower than the delay: ranked above every answer
                self._primaries.record(self._primaries.highest, end)
        if race.winner is None:
            raise race.failures[-1]
        return race.value

    async def _contend(
        self, race: _Race, state: MemberState, request: Any, call: _Call, timeout: float | None
    ) -> None:
        start = _now()
        try:
            value = await self._send(state, request, call, timeout)
        except Exception as exc:
            race.failures.append(exc)
            race.failed.append(state)
            if len(race.failures) == race.started:
                race.settled.set()
            return
        except BaseException:
            if race.winner is not None:  # lost the race: it took at least this long
                end = _now()
                state.observe(end - start, end)
            raise
        if race.winner is None:
            race.winner = state
            race.value = value
            race.settled.set()

    def __repr__(self) -> str:
        return f"<ServiceGroup {self.name!r} members={[m.id for m in self._members]}>"
