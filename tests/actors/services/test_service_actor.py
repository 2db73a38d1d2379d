"""ServiceActor against an in-process fake service: the request path and its contracts."""

from __future__ import annotations

import anyio
import attrs
import pytest

import supervisor as sv
from actors import (
    CallTimeout,
    CircuitOpen,
    ConfigError,
    Secret,
    Service,
    ServiceConfig,
    ServiceResponseError,
    ServiceUnavailable,
    open_actor,
)
from actors.resilience import TokenBucket
from actors.testing import capture_events
from tests.actors.scripted import settle
from tests.actors.services.fake import (
    FAST_RETRY,
    Backend,
    FakeClient,
    client_factory,
    config,
    count_breaker,
    status,
    unavailable,
)

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


async def test_success_path() -> None:
    """A request goes through the pool to the client and back."""
    backend = Backend()
    service = Service("fake", client_factory(backend), config())
    async with open_actor(service.actor(), name="fake") as ref:
        assert await ref.call("hi") == "ok:hi"
    assert backend.requests == 1
    assert service.stats.succeeded == 1
    assert backend.opened == backend.closed == 1


async def test_retryable_errors_are_retried_and_recover() -> None:
    """Two dropped connections then success: three attempts, one reply."""
    backend = Backend(outcomes=[unavailable(), status(503)])
    service = Service("fake", client_factory(backend), config())
    async with open_actor(service.actor()) as ref:
        assert await ref.call("x") == "ok:x"
    assert backend.requests == 3
    assert service.stats.attempts == 3


async def test_permanent_errors_surface_at_once() -> None:
    """A 401 is not retried: the caller gets it after one attempt; the actor stays up."""
    backend = Backend(outcomes=[status(401, message="bad key")])
    service = Service("fake", client_factory(backend), config())
    async with open_actor(service.actor()) as ref:
        with pytest.raises(ServiceResponseError) as info:
            await ref.call("x")
        assert info.value.status_code == 401
        assert ref.alive
        assert await ref.call("y") == "ok:y"
    assert backend.requests == 2


async def test_quota_429_is_not_retried() -> None:
    """A 429 for an exhausted quota is permanent; a rate 429 is retried."""
    backend = Backend(outcomes=[status(429, code="insufficient_quota")])
    service = Service("fake", client_factory(backend), config())
    async with open_actor(service.actor()) as ref:
        with pytest.raises(ServiceResponseError):
            await ref.call("x")
        backend.outcomes = [status(429, headers={"retry-after-ms": "10"})]
        assert await ref.call("y") == "ok:y"
    assert backend.requests == 3


async def test_hung_service_times_out_at_the_deadline_without_leaking() -> None:
    """A hung request ends with CallTimeout at the caller's deadline; the connection is
    closed (the work was cancelled), never leaked."""
    backend = Backend(default="hang")
    service = Service("fake", client_factory(backend), config())
    async with open_actor(service.actor()) as ref:
        start = anyio.current_time()
        with pytest.raises(CallTimeout):
            await ref.call("x", timeout=2)
        assert anyio.current_time() - start == pytest.approx(2, abs=1e-9)
        await settle()
        assert backend.cancelled == 1
        backend.default = "ok"
        assert await ref.call("y") == "ok:y"
    assert backend.opened == backend.closed


async def test_breaker_opens_and_fails_fast_without_io() -> None:
    """Under a failing service the breaker opens; while open, calls fail fast with
    CircuitOpen and the service sees no request."""
    backend = Backend(default=unavailable())
    breaker = count_breaker(4, open_duration=10.0)
    service = Service("fake", client_factory(backend), config(retry=None, breaker=breaker))
    async with open_actor(service.actor()) as ref:
        for _ in range(4):
            with pytest.raises(ServiceUnavailable):
                await ref.call("x")
        seen = backend.requests
        start = anyio.current_time()
        with pytest.raises(CircuitOpen) as info:
            await ref.call("x")
        assert anyio.current_time() == start
        assert backend.requests == seen
        assert 0 < info.value.retry_after <= 10
        backend.default = "ok"
        await anyio.sleep(10)
        assert await ref.call("trial") == "ok:trial"
        assert service.breaker is not None
        assert service.breaker.state.value == "closed"


async def test_open_breaker_stops_retries() -> None:
    """Retries stop as soon as the breaker opens (CircuitOpen is never retried)."""
    backend = Backend(default=unavailable())
    breaker = count_breaker(2, open_duration=10.0)
    retry = attrs.evolve(FAST_RETRY, attempts=10)
    service = Service("fake", client_factory(backend), config(retry=retry, breaker=breaker))
    async with open_actor(service.actor()) as ref:
        with pytest.raises(CircuitOpen):
            await ref.call("x")
    assert backend.requests == 2


async def test_the_callers_mistakes_do_not_open_the_breaker() -> None:
    """A 400 is the caller's mistake answered by a healthy service: a breaker success."""
    backend = Backend(default=status(400))
    breaker = count_breaker(2, open_duration=10.0)
    service = Service("fake", client_factory(backend), config(breaker=breaker))
    async with open_actor(service.actor()) as ref:
        for _ in range(5):
            with pytest.raises(ServiceResponseError):
                await ref.call("x")
    assert backend.requests == 5
    assert service.breaker is not None
    metrics = service.breaker.metrics()
    assert (metrics.state.value, metrics.successes, metrics.failures) == ("closed", 5, 0)
    assert service.stats.verdicts == {"rejected": 5}


async def test_credential_failures_open_the_breaker() -> None:
    """A 401 is not retried but is a failure of the service: it opens the breaker."""
    backend = Backend(default=status(401))
    service = Service(
        "fake", client_factory(backend), config(breaker=count_breaker(2, open_duration=10.0))
    )
    async with open_actor(service.actor()) as ref:
        for _ in range(2):
            with pytest.raises(ServiceResponseError):
                await ref.call("x")
        with pytest.raises(CircuitOpen):
            await ref.call("x")
    assert backend.requests == 2
    assert service.stats.verdicts == {"permanent": 2}


async def test_concurrent_requests_up_to_the_pool_size() -> None:
    """Requests run concurrently, bounded by the pool size."""
    backend = Backend(latency=1.0)
    service = Service("fake", client_factory(backend), config())
    async with open_actor(service.actor()) as ref:
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(ref.call, str(i))
        assert anyio.current_time() - start == pytest.approx(2, abs=1e-9)  # 8 / pool of 4
    assert backend.opened == backend.closed <= 4


async def test_rate_limit_paces_requests() -> None:
    """A requests-per-second limit paces calls: 5 at 1/s with burst 1 take 4 s."""
    backend = Backend()
    limits = {"requests": TokenBucket.per_second(1, capacity=1)}
    service = Service("fake", client_factory(backend), config(limits=limits))
    async with open_actor(service.actor()) as ref:
        start = anyio.current_time()
        for i in range(5):
            await ref.call(str(i), timeout=10)
        assert anyio.current_time() - start == pytest.approx(4, abs=1e-6)


async def test_breaker_and_limiter_survive_a_restart() -> None:
    """A crash restarts the actor with a new pool; its breaker and limit state stay."""
    backend = Backend(default=unavailable())
    breaker = count_breaker(2, open_duration=60.0)
    limits = {"requests": TokenBucket.per_minute(10, capacity=10)}
    service = Service(
        "fake", client_factory(backend), config(retry=None, breaker=breaker, limits=limits)
    )
    spec = sv.SupervisorSpec(
        id="root",
        backoff=sv.Backoff.none(),
        children=[sv.ChildSpec(id="fake", factory=service.actor, config=service.config.actor)],
    )
    async with sv.start(spec) as sup:
        ref = sup.ref("fake")
        for _ in range(2):
            with pytest.raises(ServiceUnavailable):
                await ref.call("x")
        assert service.breaker is not None
        assert service.breaker.state.value == "open"
        assert service.limits is not None
        before = service.limits.metrics()
        await sup.restart_child("fake")
        assert service.stats.incarnations == 2
        assert service.breaker.state.value == "open"
        with pytest.raises(CircuitOpen):
            await ref.call("x")
        after = service.limits.metrics()
        assert after.admitted >= before.admitted
    assert backend.opened == backend.closed


async def test_unexpected_error_crashes_and_the_supervisor_restarts() -> None:
    """A bug (a non-ActorError escaping the client) crashes the actor; the caller gets
    it; the supervisor restarts the actor with a fresh client."""
    backend = Backend(outcomes=[lambda _r: dict[str, object]()["missing"]])

    class Buggy(FakeClient):
        async def request(self, conn: object, request: str) -> str:
            outcome = self.backend.next_outcome()
            if callable(outcome):
                outcome(request)
            return f"ok:{request}"

    service = Service("fake", lambda: Buggy(backend), config(retry=None))
    spec = sv.SupervisorSpec(
        id="root",
        backoff=sv.Backoff.none(),
        children=[sv.ChildSpec(id="fake", factory=service.actor)],
    )
    async with sv.start(spec) as sup:
        with pytest.raises(KeyError):
            await sup.ref("fake").call("x")
        await settle()  # the restart (Backoff.none) completes
        assert sup.which_children()[0].restarts == 1
        assert await sup.ref("fake").call("y") == "ok:y"
    assert service.stats.incarnations == 2


async def test_probe_bypasses_the_breaker() -> None:
    """probe() reaches the service even while the breaker is open."""
    backend = Backend(default=unavailable())
    breaker = count_breaker(2, open_duration=60.0)
    service = Service("fake", client_factory(backend), config(retry=None, breaker=breaker))
    async with open_actor(service.actor()) as ref:
        for _ in range(2):
            with pytest.raises(ServiceUnavailable):
                await ref.call("x")
        await ref.probe()
        backend.probe_ok = False
        with pytest.raises(ServiceUnavailable):
            await ref.probe()


async def test_secrets_stay_out_of_reprs_and_events() -> None:
    """A Secret's value appears in no repr, str, event or error message."""
    secret = Secret("sk-very-secret-value")
    assert "sk-very" not in repr(secret)
    assert "sk-very" not in str(secret)
    assert secret.reveal() == "sk-very-secret-value"
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(secret)
    backend = Backend(outcomes=[status(401, message="invalid key")])

    class Keyed(FakeClient):
        def __init__(self) -> None:
            super().__init__(backend)
            self.api_key = secret

    service = Service("fake", Keyed, config())
    with capture_events() as events:
        async with open_actor(service.actor()) as ref:
            with pytest.raises(ServiceResponseError) as info:
                await ref.call("x")
    assert "sk-very" not in str(info.value)
    assert "sk-very" not in repr(service.actor().client.__dict__)
    assert all("sk-very" not in repr(event) for event in events)


async def test_secret_from_a_missing_env_var_is_a_config_error() -> None:
    """Secret.from_env names the variable (never a value) when it is unset."""
    with pytest.raises(ConfigError, match="ACTORS_TEST_NOPE"):
        Secret.from_env("ACTORS_TEST_NOPE")


async def test_bad_service_arguments() -> None:
    """Invalid service arguments raise ConfigError naming the field."""
    with pytest.raises(ConfigError, match="name"):
        Service("", client_factory(Backend()))
    with pytest.raises(ConfigError, match="client"):
        Service("x", 42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_concurrency"):
        ServiceConfig(max_concurrency=0)
    with pytest.raises(ConfigError, match=r"limits\.tokens"):
        ServiceConfig(limits={"tokens": 100})


async def test_abandoned_calls_are_not_breaker_failures() -> None:
    """Callers that time out or are cancelled never count against the breaker."""
    backend = Backend(default="hang")
    service = Service("fake", client_factory(backend), config(retry=None, breaker=count_breaker(2)))
    async with open_actor(service.actor()) as ref:
        for _ in range(4):
            with pytest.raises(CallTimeout):
                await ref.call("x", timeout=1)
            with anyio.move_on_after(0.5):
                await ref.call("y")
        await settle()
        assert service.breaker is not None
        metrics = service.breaker.metrics()
        assert metrics.failures == 0
        assert metrics.state.value == "closed"
        assert backend.cancelled == 8
