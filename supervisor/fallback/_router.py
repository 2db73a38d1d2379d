"""`FallbackRouter`: a primary service with ordered fallbacks, and a reply that says where
it came from.

::

    router = route(
        llm_ref,                                   # the primary: an ActorRef or async fn
        cheap_llm_ref, canned_answer("busy"),      # fallbacks, in order
        health=monitor.status,                     # skip targets that are DEGRADED or worse
        breaker=llm_breaker,                       # skip the primary while its breaker is open
        cache=create_cache(ttl=300, key=lambda req: req.prompt),
    )
    reply = await router.call(request)             # Routed(value, source, stale)

Rules, for each call, in order:

1. The primary, then each fallback, is *skipped* while its breaker is OPEN (and its
   open duration has not elapsed) or FORCED_OPEN, or while the health source says it
   is `avoid_at` (DEGRADED by default) or worse. Exception: a target whose breaker is
   due for trial calls (HALF_OPEN, or OPEN past its open duration) is called whatever
   its health says, because only trial calls can close the breaker (and the breaker's
   open state is itself what keeps the health low); the breaker bounds the trials and
   refuses extra calls fast with `CircuitOpen`, which routes on. A target the health
   source does not know (it raises `UnknownService`) is not skipped for health.
2. A target that is tried and fails with a *routable* error passes the request on:
   our refusals (`CircuitOpen`, `RateLimited`, `BulkheadFull`, `DeadlineExceeded`),
   `CallError`s other than `CallCycle` (timeout, full mailbox, actor down /
   restarting / stopped), and failures whose verdict is RETRYABLE, THROTTLED or
   PERMANENT (`ErrorClass.routable`; a service actor's pipeline has already judged
   them, and the router reads that verdict rather than judging again). A REJECTED
   failure (the caller's mistake) or another IGNORED one (a `ConfigError`) is raised
   to the caller at once: a fallback would fail the same way. An unexpected exception
   from a function target is PERMANENT for the custom classifier and so passes on: a
   fallback's job is to answer when the primary cannot (give `classifier=` a rule to
   raise it instead).
3. A `ResponseCache` among the fallbacks serves fresh entries at its place in the order
   (`source="cache"`); a cache given as `cache=` but not listed goes last. The primary's
   replies are stored in it.
4. When every target failed or was skipped, the targets skipped *only* for their
   health are tried once more (health is advisory; breakers are not).
5. Then a stale cache entry is served (`stale=True`); otherwise `FallbackExhausted` is
   raised, listing every attempt, caused by the last failure.

Time: one deadline covers every route (`timeout`, or the router's, or the handled
message's). While a later target could still answer, each target gets `share` (0.6
by default) of what remains, so a hung primary leaves its fallbacks time to answer;
the last one gets the rest. When no time is left the router stops trying.

So every request gets a primary reply, a fallback reply, a cached reply, or a clear
error. Cancellation is never a routable failure: it propagates at once.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import anyio
import attrs

from actors import ActorRef, CallTimeout, Classifier, ConfigError, current_deadline
from actors.lowlevel import (
    add_event,
    check_finite_positive,
    check_number,
    emit,
    kind_named,
    verdict_of,
)
from actors.lowlevel import now as _current_time
from actors.resilience import BreakerState, CircuitBreaker
from supervisor._errors import FallbackExhausted, UnknownService
from supervisor._passing import breaker_cooling, passes_on
from supervisor.fallback._cache import ResponseCache
from supervisor.health._metrics import record_routed
from supervisor.health._monitor import HealthMonitor
from supervisor.health._state import HealthStatus

__all__ = [
    "FallbackRouter",
    "Routed",
    "Target",
    "plan_routes",
    "route",
    "target",
]

Req = TypeVar("Req")
Resp = TypeVar("Resp")

HealthSource = Callable[[str], HealthStatus]
PRIMARY = "primary"
CACHE = "cache"
_OPEN = BreakerState.OPEN
_FORCED_OPEN = BreakerState.FORCED_OPEN
_HALF_OPEN = BreakerState.HALF_OPEN


@attrs.frozen(slots=True)
class Routed(Generic[Resp]):
    """A reply and where it came from.

    Attributes:
        value: The reply.
        source: "primary", "fallback:<name>" or "cache" (a nested router's fallback
            adds its own source: "fallback:<router>:fallback:<name>").
        stale: True only for an expired cache entry served because every route failed.
    """

    value: Resp
    source: str
    stale: bool = False

    @property
    def from_fallback(self) -> bool:
        """Whether anything but the primary answered."""
        return self.source != PRIMARY


@attrs.frozen(kw_only=True)
class Target(Generic[Req, Resp]):
    """One place a router can send a request; build it with `target`.

    Attributes:
        name: Shown in `Routed.source` ("fallback:<name>") and events.
        invoke: Awaits the reply for `(request, timeout)`.
        service: The health source's name for it (`None`: never skipped for health).
        breaker: Peeked at to skip the target while open.
        cache: Set for a cache route (then `invoke` is unused).
        router: Set when the target is another router (for cycle checks).
    """

    name: str
    invoke: Callable[[Req, float | None], Awaitable[Any]] = attrs.field(repr=False)
    service: str | None = None
    breaker: CircuitBreaker | None = attrs.field(default=None, repr=False)
    cache: ResponseCache[Req, Resp] | None = attrs.field(default=None, repr=False)
    router: FallbackRouter[Req, Resp] | None = attrs.field(default=None, repr=False)


def target(
    obj: Any,
    *,
    name: str | None = None,
    service: str | None = None,
    breaker: CircuitBreaker | None = None,
) -> Target[Any, Any]:
    """Wraps an `ActorRef`, an async function, a `ResponseCache` or a router as a target.

    Args:
        obj: An `ActorRef` (called with its share of the router's deadline), an async
            callable taking the request (cancelled when its share runs out: then it
            failed with `CallTimeout`), a `ResponseCache`, a `FallbackRouter`, or a
            `Target`.
        name: Default: the ref's name, the function's `__name__`, the cache's name, or
            the router's name.
        service: The health name (default: a ref's name; none for functions).
        breaker: A breaker to peek at before calling.

    Raises:
        ConfigError: `obj` is none of the above.
    """
    if isinstance(obj, Target):
        if name is None and service is None and breaker is None:
            return obj
        return attrs.evolve(
            obj,
            name=name or obj.name,
            service=service if service is not None else obj.service,
            breaker=breaker if breaker is not None else obj.breaker,
        )
    if isinstance(obj, ActorRef):
        ref: ActorRef[Any, Any] = obj

        def call_ref(request: Any, timeout: float | None) -> Awaitable[Any]:
            return ref.call(request, timeout=timeout)  # no extra coroutine frame

        return Target(
            name=name or ref.name,
            invoke=call_ref,
            service=service if service is not None else ref.name,
            breaker=breaker,
        )
    if isinstance(obj, ResponseCache):
        cache: ResponseCache[Any, Any] = obj

        async def never(request: Any, timeout: float | None) -> Any:  # pragma: no cover
            raise AssertionError("a cache route is never invoked")

        return Target(name=name or CACHE, invoke=never, cache=cache)
    if isinstance(obj, FallbackRouter):
        router: FallbackRouter[Any, Any] = obj

        async def call_router(request: Any, timeout: float | None) -> Any:
            return await router.call(request, timeout=timeout)

        return Target(
            name=name or router.name,
            invoke=call_router,
            service=service,
            router=router,
            breaker=breaker,
        )
    if callable(obj):
        fn: Callable[[Any], Awaitable[Any]] = obj

        async def call_fn(request: Any, timeout: float | None) -> Any:
            if timeout is None:
                return await fn(request)
            with anyio.move_on_after(timeout):
                return await fn(request)
            raise CallTimeout(label, timeout)  # only reached when its share ran out

        found = name or getattr(obj, "__name__", None)
        if not isinstance(found, str) or not found or found == "<lambda>":
            raise ConfigError("name", found, "give a function target a name (target(fn, name=...))")
        label: str = found
        return Target(name=label, invoke=call_fn, service=service, breaker=breaker)
    raise ConfigError(
        "target", obj, "must be an ActorRef, an async callable, a ResponseCache or a router"
    )


def _node_names(tgt: Target[Any, Any]) -> list[str]:
    """The names a target answers to: its own, and a nested router's primary's."""
    names = [tgt.name]
    if tgt.router is not None and tgt.router.primary.name != tgt.name:
        names.append(tgt.router.primary.name)
    return names


def _check_cycles(tgt: Target[Any, Any], path: list[str]) -> None:
    """Raises ConfigError if `tgt`, or a nested router's route, leads back onto `path`."""
    names = _node_names(tgt)
    for name in names:
        if name in path:
            raise ConfigError("fallbacks", name, "fallback cycle: " + " -> ".join([*path, name]))
    if tgt.router is not None:
        for inner in tgt.router.targets[1:]:
            if inner.cache is None:
                _check_cycles(inner, [*path, *names])


@attrs.define(eq=False)
class FallbackRouter(Generic[Req, Resp]):
    """Routes each request to the first target that can answer; build it with `route`.

    Attributes:
        name: Used in events, metrics and errors (default: the primary's name).
        targets: The primary first, then the fallbacks (caches included) in order.
        health: Returns a target's `HealthStatus` by its service name.
        avoid_at: Skip targets whose health is this or worse.
        classifier: Judges failures no pipeline has judged yet (routable verdicts
            pass the request on).
        cache: Stores the primary's replies; serves stale ones when all else failed.
        timeout: The default budget of a call, for all its routes together (None: the
            handled message's deadline, if any).
        share: The fraction of the remaining budget a target gets while a later target
            could still answer; the last one gets all that remains.
    """

    name: str
    targets: tuple[Target[Req, Resp], ...]
    health: HealthSource | None
    avoid_at: HealthStatus
    classifier: Classifier
    cache: ResponseCache[Req, Resp] | None
    timeout: float | None = None
    share: float = 0.6
    _avoid_severity: int = attrs.field(init=False, repr=False)
    _skip_until: dict[str, float] = attrs.field(factory=dict, init=False, repr=False)
    _routes: tuple[tuple[Target[Req, Resp], str], ...] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._avoid_severity = self.avoid_at.severity
        self._routes = tuple(
            (tgt, PRIMARY if i == 0 else f"fallback:{tgt.name}")
            for i, tgt in enumerate(self.targets)
        )
        for tgt in self.targets:
            if tgt.breaker is not None:
                tgt.breaker.add_listener(self._forget_skip(tgt.name))

    def _forget_skip(self, name: str) -> Callable[[Any], None]:
        def forget(_transition: Any) -> None:
            self._skip_until.pop(name, None)

        return forget

    @property
    def primary(self) -> Target[Req, Resp]:
        """The first target."""
        return self.targets[0]

    def _skip_reason(self, tgt: Target[Req, Resp]) -> str | None:
        breaker = tgt.breaker
        if breaker is not None:
            state = breaker.state
            if state is _OPEN or state is _FORCED_OPEN:
                now = _current_time()
                until = self._skip_until.get(tgt.name)
                if until is not None and now < until:
                    return "breaker open"
                if breaker_cooling(breaker, now):
                    self._skip_until[tgt.name] = now + breaker.metrics(now).retry_after
                    return "breaker open"
                # Due to half-open: a trial call must reach the service even though the
                # breaker keeps its health low, or it never closes.
                return None
            if state is _HALF_OPEN:
                return None  # trial calls (the breaker bounds them; extra ones fail fast)
        health = self.health
        if health is not None and tgt.service is not None:
            try:
                status = health(tgt.service)
            except UnknownService:  # not monitored: no health information
                return None
            if status.severity >= self._avoid_severity:
                return "unhealthy"
        return None

    def routable(self, exc: Exception) -> bool:
        """Whether `exc` passes the request on to the next route (see the module doc)."""
        return passes_on(exc, verdict_of(exc, self.classifier))

    async def call(self, request: Req, *, timeout: float | None = None) -> Routed[Resp]:
        """Sends `request` along the routes (see the module docstring).

        One deadline covers every route: `timeout` (default: the router's `timeout`,
        else the deadline of the message being handled). While a later target could
        still answer, a target gets `share` of what remains, so a hung primary leaves
        the fallbacks time to answer; the last one gets the rest. A checkpoint whenever
        a target is awaited; serving from the cache is not. Cancellation propagates at
        once and is never counted as a failure.

        Raises:
            FallbackExhausted: No route answered in time and no cached reply was
                servable.
            Exception: A non-routable failure of a target, as it was raised.
        """
        budget = self.timeout if timeout is None else timeout
        if budget is not None and not budget > 0:
            raise ConfigError("timeout", budget, "must be > 0")
        deadline = current_deadline() if budget is None else _current_time() + budget
        attempts: list[tuple[str, str]] = []
        health_skipped: list[tuple[Target[Req, Resp], str]] = []
        last: Exception | None = None
        routes = self._routes
        for index, (tgt, source) in enumerate(routes):
            cache = tgt.cache
            if cache is not None:
                hit, value = cache.get(request)
                if hit:
                    return self._served(Routed(value, CACHE), attempts)  # type: ignore[arg-type]
                attempts.append((tgt.name, "cache miss"))
                continue
            why = self._skip_reason(tgt)
            if why is not None:
                attempts.append((tgt.name, f"skipped: {why}"))
                if why == "unhealthy":
                    health_skipped.append((tgt, source))
                continue
            more = bool(health_skipped) or self._more_after(index)
            share = self._share(deadline, more)
            if share is not None and share <= 0:
                attempts.append((tgt.name, "no time left"))
                break
            try:
                value = await tgt.invoke(request, share)
            except Exception as exc:
                if not self.routable(exc):
                    raise
                attempts.append((tgt.name, type(exc).__name__))
                last = exc
                continue
            return self._reply(tgt, source, request, value, attempts)
        for position, (tgt, source) in enumerate(health_skipped):
            share = self._share(deadline, position + 1 < len(health_skipped))
            if share is not None and share <= 0:
                attempts.append((tgt.name, "last resort: no time left"))
                break
            try:
                value = await tgt.invoke(request, share)
            except Exception as exc:
                if not self.routable(exc):
                    raise
                attempts.append((tgt.name, f"last resort: {type(exc).__name__}"))
                last = exc
                continue
            return self._reply(tgt, source, request, value, attempts)
        if self.cache is not None:
            hit, value = self.cache.get_stale(request)
            if hit:
                return self._served(Routed(value, CACHE, stale=True), attempts)  # type: ignore[arg-type]
            attempts.append((CACHE, "no stale entry"))
        emit("fallback.exhausted", level="warning", router=self.name, attempts=attempts)
        add_event(
            "actorvisor.fallback.exhausted",
            {"actorvisor.router": self.name, "actorvisor.fallback.tried": len(attempts)},
        )
        raise FallbackExhausted(self.name, attempts) from last

    def _more_after(self, index: int) -> bool:
        """Whether a target after `index` could still be tried (not skipped by its breaker)."""
        for tgt, _source in self._routes[index + 1 :]:
            if tgt.cache is None and self._skip_reason(tgt) != "breaker open":
                return True
        return False

    def _share(self, deadline: float, more: bool) -> float | None:
        """The seconds the next target gets (None: no deadline applies)."""
        if deadline == math.inf:
            return None
        remaining = deadline - _current_time()
        return remaining * self.share if more and remaining > 0 else remaining

    def _reply(
        self,
        tgt: Target[Req, Resp],
        source: str,
        request: Req,
        value: Any,
        attempts: list[tuple[str, str]],
    ) -> Routed[Resp]:
        if tgt.router is not None and isinstance(value, Routed):
            inner: Routed[Resp] = value
            if inner.source != PRIMARY:
                source = f"{source}:{inner.source}"
            return self._served(Routed(inner.value, source, inner.stale), attempts)
        if source == PRIMARY:
            if self.cache is not None:
                self.cache.put(request, value)
            if not attempts:
                record_routed(self.name, PRIMARY)
                return Routed(value, PRIMARY)
        return self._served(Routed(value, source), attempts)

    def _served(self, routed: Routed[Resp], attempts: list[tuple[str, str]]) -> Routed[Resp]:
        record_routed(self.name, routed.source)
        if routed.source != PRIMARY:
            reason = attempts[0][1] if attempts else ""
            emit(
                "fallback.used",
                router=self.name,
                source=routed.source,
                stale=routed.stale,
                reason=reason,
            )
            add_event(
                "actorvisor.fallback.used",
                {
                    "actorvisor.router": self.name,
                    "actorvisor.fallback.source": routed.source,
                    "actorvisor.fallback.stale": routed.stale,
                    "actorvisor.fallback.reason": reason,
                },
            )
        return routed

    async def __call__(self, request: Req) -> Routed[Resp]:
        """`router(request)` is `router.call(request)`."""
        return await self.call(request)


def route(
    primary: Any,
    *fallbacks: Any,
    name: str | None = None,
    health: HealthSource | HealthMonitor | None = None,
    avoid_at: HealthStatus | str = HealthStatus.DEGRADED,
    breaker: CircuitBreaker | None = None,
    classifier: Classifier | str = "custom",
    cache: ResponseCache[Any, Any] | None = None,
    timeout: float | None = None,
    share: float = 0.6,
) -> FallbackRouter[Any, Any]:
    """Builds a `FallbackRouter`; every check happens here, before any call.

    Build a router once and keep it: it adds a listener to every breaker it peeks at.

    Args:
        primary: An `ActorRef`, an async callable, or a `Target` (see `target`).
        *fallbacks: Tried in order; the same kinds, plus `ResponseCache`s and routers.
        name: The router's name (default: the primary's name).
        health: Returns a `HealthStatus` by service name (e.g. `monitor.status`), or
            a `HealthMonitor`: then targets without a breaker also get the breaker
            the monitor watches for their service (added to it before this call).
        avoid_at: Skip targets at this status or worse ("degraded" or "unhealthy").
        breaker: The primary's breaker, peeked at to skip it while open.
        classifier: A `Classifier`, or a service type for `classifier_for`
            ("generic", "llm", "database", "mcp").
        cache: Stores primary replies; if not listed among `fallbacks` it is consulted
            after them, and serves stale entries when every route failed.
        timeout: The default budget of a call for all its routes together.
        share: The fraction of the remaining budget a target gets while a later
            target could still answer, in (0, 1] (1: the primary may spend it all).

    Raises:
        ConfigError: An unusable target, two targets with the same name, a fallback
            cycle (the primary reachable again through a nested router), a bad
            `avoid_at` or classifier, or `health` given while no route has a service
            name it could be asked about.
    """
    first = target(primary, breaker=breaker)
    rest = [target(fb) for fb in fallbacks]
    if isinstance(health, HealthMonitor):
        monitor = health
        health = monitor.status
        first, *rest = [_with_monitored_breaker(t, monitor) for t in (first, *rest)]
    if cache is not None and not any(t.cache is cache for t in rest):
        rest.append(target(cache))
    if cache is None:
        listed = [t.cache for t in rest if t.cache is not None]
        if len(listed) > 1:
            raise ConfigError("fallbacks", len(listed), "list at most one ResponseCache")
        cache = listed[0] if listed else None
    targets = (first, *rest)
    if health is not None and all(t.service is None for t in targets):
        raise ConfigError(
            "health",
            type(health).__name__,
            "no route has a service name to ask it about (a function target has none:"
            " name it with target(fn, service=...))",
        )
    seen: set[str] = set()
    for tgt in targets:
        if tgt.name in seen:
            raise ConfigError(
                "fallbacks",
                tgt.name,
                "two routes share this name (a fallback cycle, or name them with target())",
            )
        seen.add(tgt.name)
    router_name = name or first.name
    root = [router_name, *(n for n in _node_names(first) if n != router_name)]
    for tgt in rest:
        if tgt.cache is None:
            _check_cycles(tgt, root)
    if isinstance(avoid_at, str):
        try:
            avoid_at = HealthStatus(avoid_at)
        except ValueError:
            raise ConfigError("avoid_at", avoid_at, "must be 'degraded' or 'unhealthy'") from None
    if avoid_at is HealthStatus.HEALTHY:
        raise ConfigError("avoid_at", avoid_at.value, "must be 'degraded' or 'unhealthy'")
    clf = (
        kind_named(classifier, field="classifier").classifier
        if isinstance(classifier, str)
        else classifier
    )
    if not isinstance(clf, Classifier):
        raise ConfigError("classifier", classifier, "must be a Classifier or a service type")
    if timeout is not None:
        check_finite_positive("timeout", timeout)
    if not 0 < check_number("share", share) <= 1:
        raise ConfigError("share", share, "must be in (0, 1]")
    return FallbackRouter(router_name, targets, health, avoid_at, clf, cache, timeout, share)


def _with_monitored_breaker(tgt: Target[Any, Any], monitor: HealthMonitor) -> Target[Any, Any]:
    """`tgt` with the breaker the monitor watches for its service, unless it has one."""
    if tgt.breaker is not None or tgt.service is None or tgt.service not in monitor:
        return tgt
    found = monitor.breaker_of(tgt.service)
    return tgt if found is None else attrs.evolve(tgt, breaker=found)


def plan_routes(
    services: Mapping[str, Any],
    fallbacks: Mapping[str, Sequence[str]],
    **options: Any,
) -> dict[str, FallbackRouter[Any, Any]]:
    """Builds one router per service from a name graph, rejecting cycles.

    Fallbacks chain: with ``{"a": ["b"], "b": ["c"]}`` the router of "a" tries a, b, c
    (depth first, each service once).

    Args:
        services: Targets by name (`ActorRef`, async callable, `ResponseCache`, ...).
        fallbacks: For each service name, the names it falls back to, in order.
        **options: Passed to `route` for every router (`health`, `classifier`, ...).

    Raises:
        ConfigError: An unknown name, or a cycle such as a -> b -> a (the message
            shows the cycle).
    """
    for owner, names in fallbacks.items():
        for fallback in (owner, *names):
            if fallback not in services:
                raise ConfigError(f"fallbacks.{owner}", fallback, "no service with this name")

    def chain(name: str, path: list[str], out: list[str]) -> None:
        for nxt in fallbacks.get(name, ()):
            if nxt in path:
                raise ConfigError(
                    f"fallbacks.{path[0]}", nxt, "fallback cycle: " + " -> ".join([*path, nxt])
                )
            if nxt not in out:
                out.append(nxt)
            chain(nxt, [*path, nxt], out)

    routers: dict[str, FallbackRouter[Any, Any]] = {}
    for name in services:
        order: list[str] = []
        chain(name, [name], order)
        routers[name] = route(
            target(services[name], name=name),
            *(target(services[n], name=n) for n in order),
            name=name,
            **options,
        )
    return routers
