"""FallbackRouter: routing rules, the Routed result, caches, cycles and bad input."""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest

from actors import (
    Actor,
    CircuitOpen,
    ConfigError,
    ErrorClass,
    ErrorClassifier,
    InvalidRequest,
    MailboxFull,
    ServiceResponseError,
    open_actor,
)
from actors.resilience import BreakerConfig, RetryPolicy, create_breaker, resilient
from actors.testing import capture_events
from supervisor.fallback import (
    FallbackExhausted,
    ResponseCache,
    Routed,
    create_cache,
    plan_routes,
    route,
    target,
)
from supervisor.health import HealthStatus

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


class Service:
    """An async callable that answers, or raises what it is told to."""

    def __init__(self, name: str, error: Exception | None = None) -> None:
        self.__name__ = name
        self.error = error
        self.calls: list[Any] = []

    async def __call__(self, request: Any) -> Any:
        self.calls.append(request)
        if self.error is not None:
            raise self.error
        return f"{self.__name__}:{request}"


def health_of(**statuses: HealthStatus) -> Any:
    return lambda name: statuses.get(name, HealthStatus.HEALTHY)


async def test_healthy_primary_answers_and_says_so() -> None:
    """A working primary answers with source 'primary', not stale."""
    primary, backup = Service("a"), Service("b")
    routed = await route(primary, backup).call("q")
    assert routed == Routed("a:q", "primary", stale=False)
    assert not routed.from_fallback
    assert backup.calls == []


async def test_retryable_failure_moves_to_the_next_fallback() -> None:
    """A retryable failure of the primary is answered by the first working fallback."""
    primary, b, c = Service("a", ConnectionError()), Service("b", TimeoutError()), Service("c")
    with capture_events() as events:
        routed = await route(primary, b, c).call("q")
    assert routed == Routed("c:q", "fallback:c")
    assert routed.from_fallback
    [used] = [e for e in events if e["event"] == "fallback.used"]
    assert (used["router"], used["source"], used["reason"]) == (
        "a",
        "fallback:c",
        "ConnectionError",
    )


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(ServiceResponseError("a", 400, message="bad request"), id="400"),
        pytest.param(ServiceResponseError("a", 422, message="bad request"), id="422"),
        pytest.param(InvalidRequest("a", "messages", "bad request: empty"), id="invalid-request"),
    ],
)
async def test_the_callers_mistake_is_raised_not_routed(error: Exception) -> None:
    """A REJECTED failure (the caller's mistake) reaches the caller; no fallback is tried."""
    primary, backup = Service("a", error), Service("b")
    with pytest.raises(type(error), match="bad request"):
        await route(primary, backup).call("q")
    assert backup.calls == []


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(ServiceResponseError("a", 401, message="bad key"), id="401"),
        pytest.param(ServiceResponseError("a", 429, code="insufficient_quota"), id="quota"),
        pytest.param(ServiceResponseError("a", 429), id="throttled"),
        pytest.param(ServiceResponseError("a", 503), id="503"),
    ],
)
async def test_a_service_failure_is_routed_even_when_not_retried(error: Exception) -> None:
    """PERMANENT, THROTTLED and RETRYABLE failures of the primary go to the fallback."""
    primary, backup = Service("a", error), Service("b")
    assert (await route(primary, backup).call("q")).source == "fallback:b"


async def test_the_router_reads_the_pipelines_verdict() -> None:
    """A failure judged by a pipeline is routed by that verdict, not judged again."""
    calls = 0

    @resilient(
        retry=RetryPolicy(attempts=2, backoff_initial=0, backoff_max=0, budget_ratio=None),
        classifier=ErrorClassifier(overrides={KeyError: ErrorClass.REJECTED}),
    )
    async def primary(_request: str) -> str:
        nonlocal calls
        calls += 1
        raise KeyError("the caller's mistake, for this service")

    backup = Service("b")
    router = route(primary, backup, classifier=ErrorClassifier())  # would call it PERMANENT
    with pytest.raises(KeyError):
        await router.call("q")
    assert (calls, backup.calls) == (1, [])


async def test_an_unjudged_failure_is_judged_by_the_routers_classifier() -> None:
    """A failure no pipeline judged gets the router's classifier's verdict."""
    primary, backup = Service("a", KeyError("mistake")), Service("b")
    router = route(
        primary, backup, classifier=ErrorClassifier(overrides={KeyError: ErrorClass.REJECTED})
    )
    with pytest.raises(KeyError):
        await router.call("q")
    assert (await route(primary, backup).call("q")).source == "fallback:b"


async def test_circuit_open_from_the_primary_is_routed() -> None:
    """A primary that fails fast with CircuitOpen is answered by the fallback."""
    primary, backup = Service("a", CircuitOpen("a", 5.0)), Service("b")
    assert (await route(primary, backup).call("q")).source == "fallback:b"


async def test_open_breaker_skips_the_primary_until_it_may_half_open() -> None:
    """While the breaker is open the primary is not called; after open_duration it is."""
    breaker = create_breaker(
        "a", BreakerConfig(consecutive_failures=1, open_duration=10, open_jitter=0)
    )
    primary, backup = Service("a"), Service("b")
    router = route(primary, backup, breaker=breaker)
    breaker.on_failure(breaker.acquire())
    assert (await router.call(1)).source == "fallback:b"
    await anyio.sleep(9.9)
    assert (await router.call(2)).source == "fallback:b"
    assert primary.calls == []
    await anyio.sleep(0.1)
    assert (await router.call(3)).source == "primary"  # let through for its trial
    assert primary.calls == [3]


async def test_unhealthy_primary_is_skipped_by_health() -> None:
    """A primary the health source calls DEGRADED is skipped."""
    primary, backup = Service("a"), Service("b")
    router = route(target(primary, service="a"), backup, health=health_of(a=HealthStatus.DEGRADED))
    assert (await router.call("q")).source == "fallback:b"
    assert primary.calls == []


async def test_avoid_at_unhealthy_keeps_using_a_degraded_primary() -> None:
    """With avoid_at='unhealthy' a DEGRADED primary is still used."""
    primary, backup = Service("a"), Service("b")
    router = route(
        target(primary, service="a"),
        backup,
        health=health_of(a=HealthStatus.DEGRADED),
        avoid_at="unhealthy",
    )
    assert (await router.call("q")).source == "primary"


async def test_health_skipped_primary_is_the_last_resort() -> None:
    """If every fallback fails, a primary skipped for health only is tried once more."""
    primary, backup = Service("a"), Service("b", ConnectionError())
    router = route(target(primary, service="a"), backup, health=health_of(a=HealthStatus.UNHEALTHY))
    assert (await router.call("q")).source == "primary"


async def test_primary_replies_fill_the_cache_and_stale_is_served_only_when_all_fail() -> None:
    """A stale entry is served (stale=True) only after every route failed."""
    cache: ResponseCache[str, str] = create_cache("c", ttl=1.0)
    primary, backup = Service("a"), Service("b")
    router = route(primary, backup, cache=cache)
    assert (await router.call("q")).source == "primary"
    await anyio.sleep(2)  # the entry is stale now
    primary.error = ConnectionError()
    assert await router.call("q") == Routed("b:q", "fallback:b")  # fallback before stale
    backup.error = ConnectionError()
    assert await router.call("q") == Routed("a:q", "cache", stale=True)


async def test_fresh_cache_in_the_fallback_list_answers_at_its_place() -> None:
    """A cache listed among the fallbacks answers fresh entries before later fallbacks."""
    cache: ResponseCache[str, str] = create_cache("c", ttl=60)
    primary, canned = Service("a"), Service("canned")
    router = route(primary, cache, canned)
    await router.call("q")
    primary.error = ConnectionError()
    assert await router.call("q") == Routed("a:q", "cache", stale=False)
    assert (await router.call("other")).source == "fallback:canned"


async def test_exhausted_routes_raise_a_clear_error_caused_by_the_last_failure() -> None:
    """With nothing to serve, FallbackExhausted lists every attempt."""
    last = ConnectionError("b down")
    router = route(Service("a", TimeoutError()), Service("b", last))
    with pytest.raises(FallbackExhausted) as info:
        await router.call("q")
    assert info.value.attempts == (("a", "TimeoutError"), ("b", "ConnectionError"))
    assert info.value.__cause__ is last
    assert "every route of 'a' failed" in str(info.value)


async def test_nested_router_reports_its_inner_source() -> None:
    """A router used as a fallback adds its own source to the reply's source."""
    inner = route(Service("b", ConnectionError()), Service("c"), name="backup")
    routed = await route(Service("a", ConnectionError()), inner).call("q")
    assert routed == Routed("c:q", "fallback:backup:fallback:c")


async def test_cancellation_is_not_routed() -> None:
    """Cancelling a routed call cancels it; no fallback is called."""

    async def slow(request: Any) -> Any:
        await anyio.sleep(10)

    backup = Service("b")
    router = route(target(slow, name="slow"), backup)
    with anyio.move_on_after(1) as scope:
        await router.call("q")
    assert scope.cancelled_caught
    assert backup.calls == []


class Busy(Actor[Any, Any]):
    """Blocks on every message until released."""

    def __init__(self) -> None:
        self.release = anyio.Event()

    async def handle(self, msg: Any) -> Any:
        await self.release.wait()
        return msg


async def test_actor_ref_failures_such_as_a_full_mailbox_are_routed() -> None:
    """An ActorRef primary whose mailbox is full (fail-fast) is answered by the fallback."""
    from actors import ActorConfig

    busy = Busy()
    async with open_actor(busy, config=ActorConfig(mailbox_size=1, call_full="fail")) as ref:
        router = route(ref, Service("b"))
        async with anyio.create_task_group() as tg:
            tg.start_soon(ref.call, "x")
            await anyio.sleep(0.1)  # "x" is being handled
            tg.start_soon(ref.call, "y")
            await anyio.sleep(0.1)  # "y" fills the mailbox
            assert ref.queued == 1
            routed = await router.call("z")
            assert routed.source == "fallback:b"
            with pytest.raises(MailboxFull):
                await ref.call("direct")
            busy.release.set()
        assert (await router.call("w")) == Routed("w", "primary")


async def test_timeout_is_one_deadline_shared_by_the_routes() -> None:
    """router.call(timeout=) is one budget: a hung primary gets its share (0.6), and the
    fallback the rest."""
    busy = Busy()
    async with open_actor(busy) as ref:
        start = anyio.current_time()
        routed = await route(ref, Service("b")).call("q", timeout=0.5)
        assert routed.source == "fallback:b"
        assert anyio.current_time() - start == pytest.approx(0.3, abs=1e-9)
        busy.release.set()


async def test_a_hung_primary_and_a_slow_fallback_end_by_the_deadline() -> None:
    """Two hung targets: the call fails with FallbackExhausted exactly at its deadline."""
    first, second = Busy(), Busy()
    async with open_actor(first) as a, open_actor(second, name="b") as b:
        start = anyio.current_time()
        with pytest.raises(FallbackExhausted):
            await route(a, b).call("q", timeout=2.0)
        assert anyio.current_time() - start == pytest.approx(2.0, abs=1e-9)
        first.release.set()
        second.release.set()


async def test_the_share_is_configurable() -> None:
    """route(share=0.9) gives the primary 90 % of the budget while a fallback waits."""
    busy = Busy()
    async with open_actor(busy) as ref:
        start = anyio.current_time()
        routed = await route(ref, Service("b"), share=0.9).call("q", timeout=1.0)
        assert routed.source == "fallback:b"
        assert anyio.current_time() - start == pytest.approx(0.9, abs=1e-9)
        busy.release.set()


async def test_a_function_target_is_cut_at_its_share() -> None:
    """A hung function target is cancelled at its share and the fallback answers."""

    async def hung(_request: str) -> str:
        await anyio.sleep(math.inf)
        raise AssertionError

    start = anyio.current_time()
    routed = await route(hung, Service("b")).call("q", timeout=1.0)
    assert routed.source == "fallback:b"
    assert anyio.current_time() - start == pytest.approx(0.6, abs=1e-9)


# --------------------------------------------------------------------------- configuration


def test_a_fallback_to_itself_is_a_cycle() -> None:
    """Listing the primary among its fallbacks is a ConfigError."""
    a = Service("a")
    with pytest.raises(ConfigError, match="cycle"):
        route(a, a)


def test_a_nested_router_leading_back_to_the_primary_is_a_cycle() -> None:
    """A -> (router B -> A) is rejected at configuration time."""
    a, b = Service("a"), Service("b")
    inner = route(b, a, name="backup")
    with pytest.raises(ConfigError, match=r"fallback cycle: a -> backup -> b -> a"):
        route(a, inner)


def test_plan_routes_chains_fallbacks_and_rejects_cycles() -> None:
    """plan_routes expands chains depth first and rejects a -> b -> a."""
    services = {"a": Service("a"), "b": Service("b"), "c": Service("c")}
    routers = plan_routes(services, {"a": ["b"], "b": ["c"]})
    assert [t.name for t in routers["a"].targets] == ["a", "b", "c"]
    assert [t.name for t in routers["c"].targets] == ["c"]
    with pytest.raises(ConfigError, match=r"fallback cycle: a -> b -> a"):
        plan_routes(services, {"a": ["b"], "b": ["a"]})
    with pytest.raises(ConfigError, match="no service"):
        plan_routes(services, {"a": ["zz"]})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"avoid_at": "healthy"}, "avoid_at"),
        ({"avoid_at": "bad"}, "avoid_at"),
        ({"classifier": "sql-ish"}, "classifier"),
    ],
)
def test_bad_router_options_are_config_errors(kwargs: dict[str, Any], field: str) -> None:
    """Bad options raise ConfigError naming the field."""
    with pytest.raises(ConfigError) as info:
        route(Service("a"), Service("b"), **kwargs)
    assert info.value.field == field


def test_a_health_source_no_route_can_use_is_refused() -> None:
    """Health given for function targets only (no service names) is a ConfigError, not
    silently ignored; naming one of them makes it usable."""
    health = health_of(a=HealthStatus.UNHEALTHY)
    with pytest.raises(ConfigError) as info:
        route(Service("a"), Service("b"), health=health)
    assert info.value.field == "health"
    router = route(target(Service("a"), service="a"), Service("b"), health=health)
    assert [t.service for t in router.targets] == ["a", None]


def test_unusable_targets_are_config_errors() -> None:
    """Non-callables and unnamed lambdas are rejected with a clear message."""
    with pytest.raises(ConfigError, match="ActorRef"):
        route(Service("a"), 42)
    with pytest.raises(ConfigError, match="name"):
        route(Service("a"), lambda req: req)
    with pytest.raises(ConfigError, match="at most one"):
        route(Service("a"), create_cache("x"), create_cache("y"))


async def test_targets_unknown_to_the_health_source_are_not_skipped() -> None:
    """A health source raising UnknownService for a target means 'no information'."""
    from supervisor import UnknownService

    def health(name: str) -> HealthStatus:
        raise UnknownService(name)

    router = route(target(Service("a"), service="a"), Service("b"), health=health)
    assert (await router.call("q")).source == "primary"


async def test_half_open_breaker_lets_trial_calls_through_despite_health() -> None:
    """A primary whose breaker is due for trials is called even if it looks UNHEALTHY."""
    breaker = create_breaker(
        "a", BreakerConfig(consecutive_failures=1, open_duration=5, open_jitter=0)
    )
    breaker.on_failure(breaker.acquire())
    primary = Service("a")
    router = route(
        target(primary, service="a"),
        Service("b"),
        health=health_of(a=HealthStatus.UNHEALTHY),
        breaker=breaker,
    )
    assert (await router.call(1)).source == "fallback:b"
    await anyio.sleep(5)
    assert (await router.call(2)).source == "primary"  # the trial
    assert primary.calls == [2]


async def test_nested_router_with_default_names_is_not_a_cycle() -> None:
    """route(a, route(b, c)) is fine: the inner router is named after its primary."""
    inner = route(Service("b", ConnectionError()), Service("c"))
    routed = await route(Service("a", ConnectionError()), inner).call("q")
    assert routed == Routed("c:q", "fallback:b:fallback:c")


def test_a_nested_router_whose_primary_is_ours_is_a_cycle() -> None:
    """A nested router whose primary is our primary (under another name) is a cycle."""
    a = Service("a")
    inner = route(a, Service("b"), name="backup")
    with pytest.raises(ConfigError, match=r"fallback cycle: a -> a"):
        route(a, inner)
