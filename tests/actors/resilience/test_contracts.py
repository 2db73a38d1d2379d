"""The call contracts, at the level a user sees them.

Each test is one symptom of "two paths for one idea" that the one pipeline fixes,
driven through `@resilient`, `ref.call` or `sv.start`, on both backends and on
virtual time (durations are exact).
"""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import pytest

import supervisor as sv
from actors import (
    ActorConfig,
    AttemptTimeout,
    CallTimeout,
    CircuitOpen,
    DeadlineExceeded,
    HTTPClassifier,
    InvalidRequest,
    LLMClassifier,
    RateLimited,
    Service,
    ServiceConfig,
    ServiceResponseError,
    ServiceStats,
    open_actor,
)
from actors.resilience import (
    BreakerConfig,
    CircuitBreaker,
    MultiLimit,
    RetryPolicy,
    TokenBucket,
    create_retrier,
)
from actors.testing import retry_testing_mode
from supervisor.fallback import route
from tests.actors.scripted import settle
from tests.actors.services.fake import (
    FAST_RETRY,
    Backend,
    FakeClient,
    Reply,
    client_factory,
    config,
    count_breaker,
    scripted_function,
    status,
)

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


def tree(*services: Service[Any, Any]) -> sv.SupervisorSpec:
    """A supervisor over one service actor per service, in order."""
    return sv.SupervisorSpec(
        id="root",
        backoff=sv.Backoff.none(),
        children=[
            sv.ChildSpec(id=service.name, factory=service.actor, config=service.config.actor)
            for service in services
        ],
    )


def counts(breaker: CircuitBreaker | None) -> tuple[int, int, int, int]:
    """(successes, failures, ignored, cancelled) of a breaker."""
    assert breaker is not None
    metrics = breaker.metrics()
    return (
        metrics.successes + metrics.slow_successes,
        metrics.failures + metrics.slow_failures,
        metrics.ignored,
        metrics.cancelled,
    )


# --- a hung service: attempt timeouts are failures, never crashes -----------------------


async def test_attempt_timeouts_against_a_hung_service_keep_the_tree_up() -> None:
    """`RetryPolicy(attempt_timeout=0.3)` against a hung service: the caller gets
    `AttemptTimeout` after 3 x 0.3 s, the breaker counts 3 failures, the actor never
    crashes, and a router's fallback still answers."""
    hung = Backend(default="hang")
    primary = Service(
        "primary",
        client_factory(hung),
        config(retry=attrs.evolve(FAST_RETRY, attempt_timeout=0.3), breaker=count_breaker(20)),
    )
    backup = Service("backup", client_factory(Backend()), config())
    async with sv.start(tree(primary, backup)) as sup:
        ref = sup.ref("primary")
        start = anyio.current_time()
        with pytest.raises(AttemptTimeout):
            await ref.call("x")
        assert anyio.current_time() - start == pytest.approx(0.9, abs=1e-9)
        router = route(ref, sup.ref("backup"), timeout=5.0)
        routed = await router.call("y")
        assert (routed.value, routed.from_fallback) == ("ok:y", True)
        await settle()
        assert [child.restarts for child in sup.which_children()] == [0, 0]
        assert ref.alive
    assert counts(primary.breaker) == (0, 6, 0, 0)
    assert hung.cancelled == 6


# --- deadlines ----------------------------------------------------------------------------


async def test_the_retry_timeout_ends_a_decorated_call_in_flight() -> None:
    """`timeout=1.0, attempt_timeout=0.8` against a hang ends at exactly 1.0 s with
    `DeadlineExceeded` under `@resilient`; only the attempt timeout is a breaker failure."""
    fn = scripted_function(
        Backend(default="hang"),
        retry=attrs.evolve(FAST_RETRY, attempts=5, timeout=1.0, attempt_timeout=0.8),
        breaker=count_breaker(20),
    )
    start = anyio.current_time()
    with pytest.raises(DeadlineExceeded):
        await fn("x")
    assert anyio.current_time() - start == pytest.approx(1.0, abs=1e-9)
    assert counts(fn.resilience.breaker) == (0, 1, 0, 1)


async def test_the_retry_timeout_ends_a_service_call_in_flight() -> None:
    """The same policy through a service actor ends the same way at the same time."""
    backend = Backend(default="hang")
    service = Service(
        "svc",
        client_factory(backend),
        config(
            retry=attrs.evolve(FAST_RETRY, attempts=5, timeout=1.0, attempt_timeout=0.8),
            breaker=count_breaker(20),
        ),
    )
    async with open_actor(service.actor()) as ref:
        start = anyio.current_time()
        with pytest.raises(DeadlineExceeded):
            await ref.call("x")
        assert anyio.current_time() - start == pytest.approx(1.0, abs=1e-9)
    assert counts(service.breaker) == (0, 1, 0, 1)
    assert backend.cancelled == 2


async def test_the_retrier_never_sleeps_into_an_enclosing_deadline() -> None:
    """Under `anyio.fail_after(1.5)`, a retry whose backoff would end past it is not
    slept: the call gives up at once with the last failure, as the limiter does."""
    policy = RetryPolicy(attempts=10, backoff_initial=1.0, backoff_max=2.0, budget_ratio=None)
    retrier = create_retrier(policy, service="svc", random=lambda: 1.0)  # delays 1 s, 2 s
    fn = scripted_function(
        Backend(outcomes=[status(503, message="first"), status(503, message="second")]),
        retry=retrier,
        classifier=LLMClassifier(),
    )
    start = anyio.current_time()
    with anyio.fail_after(1.5), pytest.raises(ServiceResponseError, match="second"):
        await fn("x")
    assert anyio.current_time() - start == pytest.approx(1.0, abs=1e-9)
    assert retrier.metrics.give_ups["deadline"] == 1


async def test_the_limiter_refuses_at_once_within_an_enclosing_deadline() -> None:
    """Under `anyio.fail_after(0.5)`, capacity only free in 1 s is refused at once."""
    fn = scripted_function(Backend(), limiter=TokenBucket(rate=1, period=1.0, capacity=1))
    await fn("first")
    start = anyio.current_time()
    with anyio.fail_after(0.5), pytest.raises(RateLimited):
        await fn("second")
    assert anyio.current_time() == start


# --- one verdict, whichever surface judges it ---------------------------------------------


async def test_a_401_counts_the_same_under_the_decorator_and_the_service_actor() -> None:
    """Three 401s judged by the same `LLMClassifier` are three breaker failures under
    `@resilient` and under a `ServiceActor`, each after one attempt."""
    decorated_backend = Backend(default=status(401))
    fn = scripted_function(
        decorated_backend, retry=FAST_RETRY, breaker=count_breaker(20), classifier=LLMClassifier()
    )
    actor_backend = Backend(default=status(401))
    service = Service(
        "svc",
        client_factory(actor_backend, classifier=LLMClassifier()),
        config(breaker=count_breaker(20)),
    )
    async with open_actor(service.actor()) as ref:
        for _ in range(3):
            with pytest.raises(ServiceResponseError):
                await fn("x")
            with pytest.raises(ServiceResponseError):
                await ref.call("x")
    assert counts(fn.resilience.breaker) == counts(service.breaker) == (0, 3, 0, 0)
    assert decorated_backend.requests == actor_backend.requests == 3


class GenericClient(FakeClient):
    """A custom HTTP client as the docs once wrote one: ``service_type = "generic"``."""

    service_type = "generic"


@pytest.mark.parametrize(
    "make_client",
    [
        pytest.param(lambda backend: client_factory(backend, kind="custom"), id="custom"),
        pytest.param(lambda backend: client_factory(backend, kind="http"), id="http"),
        pytest.param(lambda backend: lambda: GenericClient(backend), id="service_type-generic"),
    ],
)
async def test_a_custom_clients_500s_are_retried_counted_and_routed(make_client: Any) -> None:
    """A non-LLM client raising `ServiceResponseError(500)` is retried to exhaustion,
    each attempt a breaker failure, and the router's fallback answers."""
    failing = Backend(default=status(500))
    primary = Service("primary", make_client(failing), config(breaker=count_breaker(20)))
    backup = Service("backup", client_factory(Backend()), config())
    async with sv.start(tree(primary, backup)) as sup:
        routed = await route(sup.ref("primary"), sup.ref("backup"), timeout=5.0).call("q")
    assert (routed.value, routed.from_fallback) == ("ok:q", True)
    assert failing.requests == 3
    assert counts(primary.breaker) == (0, 3, 0, 0)
    assert primary.stats.verdicts == {"retryable": 3}


# --- rate-limit answers: a signal for the limiter, not a failure ---------------------------


async def test_a_rate_limit_answer_never_opens_the_breaker() -> None:
    """However many 429s (no quota code) arrive, the breaker stays closed: they are
    retried after the server's delay and counted as neither success nor failure."""
    backend = Backend(outcomes=[status(429, headers={"retry-after": "1"})] * 6)
    service = Service(
        "svc",
        client_factory(backend),
        config(retry=attrs.evolve(FAST_RETRY, attempts=4), breaker=count_breaker(2)),
    )
    async with open_actor(service.actor()) as ref:
        start = anyio.current_time()
        with pytest.raises(ServiceResponseError):
            await ref.call("a", timeout=10)
        assert anyio.current_time() - start == pytest.approx(3.0, abs=1e-9)
        assert await ref.call("b", timeout=10) == "ok:b"  # after two more 429s
    assert service.breaker is not None
    assert service.breaker.metrics().state.value == "closed"
    assert counts(service.breaker) == (1, 0, 6, 0)
    assert (service.stats.verdicts, service.stats.succeeded) == ({"throttled": 6}, 1)


async def test_a_rate_limit_answer_holds_the_limits_for_every_caller() -> None:
    """A 429 with ``retry-after: 2`` holds the limits until then: another caller's
    request, sent meanwhile, reaches the service only at t = 2 s, with the retry."""
    seen: list[tuple[str, float]] = []

    def answer(request: str) -> str:
        seen.append((request, anyio.current_time()))
        return request

    backend = Backend(outcomes=[status(429, headers={"retry-after": "2"})], default=answer)
    service = Service(
        "svc",
        client_factory(backend),
        config(limits={"requests": TokenBucket.per_second(100)}, breaker=count_breaker(2)),
    )
    async with open_actor(service.actor()) as ref, anyio.create_task_group() as tg:
        start = anyio.current_time()
        tg.start_soon(ref.call, "first")
        await anyio.sleep(0.5)
        tg.start_soon(ref.call, "second")
    ordered = sorted((request, at - start) for request, at in seen)
    assert [request for request, _ in ordered] == ["first", "second"]
    assert [waited for _, waited in ordered] == pytest.approx([2.0, 2.0], abs=1e-9)
    assert counts(service.breaker) == (2, 0, 1, 0)


# --- the LLM preset detects slow and hung providers ------------------------------------------


def scaled_llm(**retry: Any) -> ServiceConfig:
    """The LLM kind's presets with every duration divided by 100 (slow 0.6 s, attempt
    0.9 s, call 1.2 s) and rates applied from 4 calls."""
    return ServiceConfig.for_llm(
        retry=RetryPolicy.for_llm(
            attempt_timeout=0.9, backoff_initial=0.005, backoff_max=0.3, **retry
        ),
        breaker=BreakerConfig.for_llm(slow_call_duration=0.6, minimum_calls=4),
        actor=ActorConfig(call_timeout=1.2),
    )


async def test_the_llm_preset_opens_on_slow_calls() -> None:
    """Calls slower than the slow-call threshold (but within the attempt timeout) open
    the breaker once they are 80 % of the window."""
    backend = Backend(latency=0.7)
    service = Service("llm", client_factory(backend), scaled_llm())
    async with open_actor(service.actor(), config=service.config.actor) as ref:
        for _ in range(4):
            assert await ref.call("x") == "ok:x"
        with pytest.raises(CircuitOpen):
            await ref.call("x")
    assert service.breaker is not None
    metrics = service.breaker.metrics()
    assert (metrics.slow_successes, metrics.state.value) == (4, "open")
    assert backend.requests == 4


async def test_the_llm_preset_opens_on_attempt_timeouts() -> None:
    """A hung provider: each call's attempts are cut by the attempt timeout (failures),
    the caller's own deadline is a cancellation, and the breaker opens."""
    backend = Backend(default="hang")
    service = Service("llm", client_factory(backend), scaled_llm(attempts=1))
    async with open_actor(service.actor(), config=service.config.actor) as ref:
        for _ in range(4):
            start = anyio.current_time()
            with pytest.raises(AttemptTimeout):
                await ref.call("x")
            assert anyio.current_time() - start == pytest.approx(0.9, abs=1e-9)
        with pytest.raises(CircuitOpen):
            await ref.call("x")
    assert service.breaker is not None
    metrics = service.breaker.metrics()
    assert (metrics.slow_failures + metrics.failures, metrics.cancelled) == (4, 0)
    assert metrics.state.value == "open"


async def test_the_llm_preset_sees_a_hung_provider_through_abandoned_slow_calls() -> None:
    """Without an attempt timeout (the LLM kind's default), attempts abandoned at the
    caller's 1.2 s deadline ran past the slow-call threshold: slow calls, never failures,
    and the slow-call rate opens the breaker."""
    backend = Backend(default="hang")
    scaled = scaled_llm(attempts=1)
    assert scaled.retry is not None
    service = Service(
        "llm",
        client_factory(backend),
        attrs.evolve(scaled, retry=attrs.evolve(scaled.retry, attempt_timeout=None)),
    )
    async with open_actor(service.actor(), config=service.config.actor) as ref:
        for _ in range(4):
            with pytest.raises(CallTimeout):
                await ref.call("x")
            await settle()
        with pytest.raises(CircuitOpen):
            await ref.call("x")
    assert service.breaker is not None
    metrics = service.breaker.metrics()
    assert (metrics.failures + metrics.slow_failures, metrics.slow_successes) == (0, 4)
    assert (metrics.cancelled, metrics.state.value) == (4, "open")


async def test_a_callers_deadline_under_the_llm_preset_is_never_a_failure() -> None:
    """With retries (no backoff), the caller's 1.2 s deadline cuts the second attempt:
    the first attempt's timeout is a failure, the cut one a cancellation."""
    backend = Backend(default="hang")
    service = Service("llm", client_factory(backend), scaled_llm(attempts=4))
    async with open_actor(service.actor(), config=service.config.actor) as ref:
        start = anyio.current_time()
        with retry_testing_mode(), pytest.raises(CallTimeout):
            await ref.call("x")
        assert anyio.current_time() - start == pytest.approx(1.2, abs=1e-9)
        await settle()
    assert counts(service.breaker) == (0, 1, 0, 1)
    assert backend.requests == backend.cancelled == 2


# --- a service's lasting state exists from construction --------------------------------------


async def test_a_services_breaker_limits_and_stats_exist_before_the_tree_starts() -> None:
    """`Service.breaker`, `.limits` and `.stats` are there at construction and are the
    very objects the running actors use."""
    service = Service(
        "svc",
        client_factory(Backend()),
        config(breaker=count_breaker(20), limits={"requests": TokenBucket.per_second(10)}),
    )
    breaker, limits = service.breaker, service.limits
    assert isinstance(breaker, CircuitBreaker)
    assert isinstance(limits, MultiLimit)
    assert service.stats == ServiceStats(
        requests=0, succeeded=0, failed=0, attempts=0, in_flight=0, incarnations=0, verdicts={}
    )
    async with sv.start(tree(service)) as sup:
        assert await sup.ref("svc").call("x") == "ok:x"
    assert service.breaker is breaker
    assert service.limits is limits
    assert (breaker.metrics().successes, limits.metrics().admitted) == (1, 1)
    assert (service.stats.succeeded, service.stats.incarnations) == (1, 1)


async def test_a_request_the_limits_can_never_admit_is_refused_in_the_callers_task() -> None:
    """A request costing more tokens than the limit holds is an `InvalidRequest` for that
    caller; it never reaches the actor or the service."""
    backend = Backend(estimate=5_000)
    service = Service(
        "svc",
        client_factory(backend),
        config(limits={"tokens": TokenBucket.per_minute(1_000)}),
    )
    async with open_actor(service.actor()) as ref:
        with pytest.raises(InvalidRequest) as info:
            await ref.call("too long")
        backend.estimate = 10
        assert await ref.call("short") == "ok:short"
    assert info.value.field == "cost.tokens"
    assert backend.requests == 1
    assert service.stats.requests == 1


# --- reserve, then reconcile ---------------------------------------------------------------


LIMITS = {"requests": TokenBucket.per_minute(100), "tokens": TokenBucket.per_minute(1_000)}


async def test_reserve_then_reconcile_is_the_same_under_both_surfaces() -> None:
    """A 300-token estimate reconciled to 40 used tokens leaves the same room under
    `@resilient(usage=...)` as under a service actor."""
    reply = Reply(text="done", tokens=40)
    fn = scripted_function(
        Backend(default=reply),
        limiter=LIMITS,
        cost=lambda _request: {"requests": 1, "tokens": 300},
        usage=lambda answer: {"tokens": answer.tokens},
    )
    service = Service(
        "svc", client_factory(Backend(default=reply, estimate=300)), config(limits=LIMITS)
    )
    async with open_actor(service.actor()) as ref:
        assert await fn("x") == reply
        assert await ref.call("x") == reply
        decorated = fn.resilience.limiter
        assert isinstance(decorated, MultiLimit)
        assert service.limits is not None
        room = decorated.metrics().available
        assert room == service.limits.metrics().available
    assert room == {"requests": pytest.approx(99.0), "tokens": pytest.approx(960.0)}


# --- returned values judged as failures -------------------------------------------------------


async def test_a_returned_503_is_retried_and_returned_once_retries_run_out() -> None:
    """Under `HTTPClassifier`, a returned value with ``status_code = 503`` is a retryable
    failure: retried, counted by the breaker, and returned when the attempts run out."""
    failing = Reply(text="busy", status_code=503)
    backend = Backend(default=failing)
    fn = scripted_function(
        backend, retry=FAST_RETRY, breaker=count_breaker(20), classifier=HTTPClassifier()
    )
    assert await fn("x") is failing
    assert backend.requests == 3
    assert counts(fn.resilience.breaker) == (0, 3, 0, 0)


async def test_a_returned_503_then_a_200_returns_the_200() -> None:
    """A judged failure followed by a good value returns the good value."""
    good = Reply(text="fine")
    backend = Backend(outcomes=[Reply(status_code=503)], default=good)
    service = Service(
        "svc", client_factory(backend, kind="http"), config(breaker=count_breaker(20))
    )
    async with open_actor(service.actor()) as ref:
        assert await ref.call("x") is good
    assert backend.requests == 2
    assert counts(service.breaker) == (1, 1, 0, 0)
    assert (service.stats.verdicts, service.stats.succeeded) == ({"retryable": 1}, 1)
