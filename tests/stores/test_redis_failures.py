"""Redis going away: the failure policy applies, nothing hangs, state resumes on return."""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

import anyio
import pytest

from actors import CircuitOpen, ConfigError, RateLimited
from actors.resilience import (
    BreakerConfig,
    BreakerState,
    TokenBucket,
    create_breaker,
    create_limiter,
)
from actors.stores._redis_client import make_client
from actors.stores.redis import (
    FailurePolicy,
    RedisOptions,
    RedisStores,
    open_redis_stores,
)
from actors.testing import RedisServer, capture_events
from tests.stores.conftest import PASSWORD, new_app

pytestmark = pytest.mark.anyio

FAST = {"op_timeout": 0.2, "reconnect_min": 0.02, "reconnect_max": 0.1, "sync_interval": 0.05}


def named(events: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [event for event in events if event["event"] == name]


async def wait_until_available(stores: RedisStores, limit: float = 2.0) -> float:
    start = anyio.current_time()
    with anyio.fail_after(limit):
        while not stores.available:  # noqa: ASYNC110 (polls another replica's state)
            await anyio.sleep(0.005)
    return anyio.current_time() - start


async def admitted_now(store: Any, key: str, bucket: TokenBucket, tries: int) -> int:
    count = 0
    for _ in range(tries):
        admitted, _ = await store.decide(key, [(key, bucket, 1)], now=anyio.current_time())
        count += admitted
    return count


async def test_fail_open_admits_one_nth_locally(redis_server: RedisServer) -> None:
    """With Redis killed, fail-open admits what is left of 1/N of the burst locally (the
    10 admitted through Redis count against the 25) and reports the outage."""
    bucket = TokenBucket.per_hour(100)  # no refill within the test
    with capture_events() as events:
        async with open_redis_stores(url=redis_server.url, app=new_app(), **FAST) as stores:
            store = stores.limiter_store(FailurePolicy.fail_open(replicas=4))
            assert await admitted_now(store, "k", bucket, 10) == 10
            redis_server.kill()
            assert await admitted_now(store, "k", bucket, 40) == 15
            metrics = stores.metrics()
    assert not metrics.available
    assert metrics.errors >= 1
    assert metrics.outages == 1
    assert metrics.fallback_decisions == 40
    [down] = named(events, "store.unavailable")
    assert down["log_level"] == "warning"
    assert "ConnectionError" in down["error"]


async def test_fail_open_starts_an_outage_from_each_replicas_own_use(
    redis_server: RedisServer,
) -> None:
    """A replica that used its 1/N share through Redis admits nothing more locally when
    Redis dies; one that used none of it gets the whole share: the replicas together
    stay within the limit over the outage, not a limit above it."""
    bucket = TokenBucket.per_hour(20)  # no refill within the test
    policy = FailurePolicy.fail_open(replicas=2)
    app = new_app()
    with capture_events():
        async with (
            open_redis_stores(url=redis_server.url, app=app, **FAST) as one,
            open_redis_stores(url=redis_server.url, app=app, **FAST) as two,
        ):
            busy, idle = one.limiter_store(policy), two.limiter_store(policy)
            assert await admitted_now(busy, "k", bucket, 10) == 10
            redis_server.kill()
            assert await admitted_now(busy, "k", bucket, 10) == 0
            assert await admitted_now(idle, "k", bucket, 20) == 10


@pytest.mark.parametrize(
    ("operation", "units", "left"),
    [("charge", 6.0, 4), ("resync", 4.0, 2)],
    ids=["charge", "resync"],
)
async def test_fail_open_mirrors_what_redis_was_told_locally(
    redis_server: RedisServer, operation: str, units: float, left: int
) -> None:
    """What Redis is told while it answers also applies to this replica's local share,
    so the outage that follows admits only what is left of it: a charge (a reconciled
    reservation) of 6 uses it (20 / 2 - 6 = 4); a resync from the provider's headers to
    4 remaining lowers it to 1/N of them (2 replicas: 2)."""
    bucket = TokenBucket.per_hour(20)
    async with open_redis_stores(url=redis_server.url, app=new_app(), **FAST) as stores:
        store = stores.limiter_store(FailurePolicy.fail_open(replicas=2))
        tell = store.charge if operation == "charge" else store.resync
        await tell("k", "k", bucket, units, now=anyio.current_time())
        with capture_events():
            redis_server.kill()
            assert await admitted_now(store, "k", bucket, 10) == left


async def test_fail_closed_rejects_within_the_deadline(redis_server: RedisServer) -> None:
    """With Redis killed, a fail-closed limiter raises RateLimited instead of admitting."""
    async with open_redis_stores(url=redis_server.url, app=new_app(), **FAST) as stores:
        limiter = create_limiter(
            TokenBucket.per_second(100),
            name="svc",
            store=stores.limiter_store(FailurePolicy.fail_closed()),
        )
        await limiter.acquire()
        redis_server.kill()
        start = anyio.current_time()
        with pytest.raises(RateLimited) as caught:
            await limiter.acquire(deadline=start + 0.01)
        assert anyio.current_time() - start < 0.1
        assert caught.value.retry_after >= 0.02
        with pytest.raises(RateLimited):  # a longer deadline waits for Redis, then gives up
            await limiter.acquire(deadline=anyio.current_time() + 0.3)
        assert stores.metrics().closed_rejections >= 2


async def test_a_frozen_server_costs_at_most_the_op_timeout(redis_server: RedisServer) -> None:
    """A hung Redis (SIGSTOP) is given up after op_timeout, then answered locally at once."""
    bucket = TokenBucket.per_minute(100)
    async with open_redis_stores(url=redis_server.url, app=new_app(), **FAST) as stores:
        store = stores.limiter_store(FailurePolicy.fail_open(replicas=2))
        assert await admitted_now(store, "k", bucket, 1) == 1
        redis_server.pause()
        try:
            start = anyio.current_time()
            assert await admitted_now(store, "k", bucket, 1) == 1
            first = anyio.current_time() - start
            start = anyio.current_time()
            assert await admitted_now(store, "k", bucket, 10) == 10
            later = anyio.current_time() - start
        finally:
            redis_server.resume()
        assert 0.2 <= first < 0.6
        assert later < 0.1
        assert stores.metrics().timeouts == 1


async def test_the_callers_deadline_bounds_a_round_trip(redis_server: RedisServer) -> None:
    """A caller's cancel scope shorter than op_timeout cuts the hung round trip at once."""
    async with open_redis_stores(
        url=redis_server.url, app=new_app(), **(FAST | {"op_timeout": 5.0})
    ) as stores:
        limiter = create_limiter(
            TokenBucket.per_second(10), name="svc", store=stores.limiter_store()
        )
        await limiter.acquire()
        redis_server.pause()
        try:
            start = anyio.current_time()
            with anyio.move_on_after(0.1) as scope:
                await limiter.acquire()
            elapsed = anyio.current_time() - start
        finally:
            redis_server.resume()
    assert scope.cancelled_caught
    assert elapsed < 0.3


async def test_state_resumes_when_redis_returns(redis_server: RedisServer) -> None:
    """After a restart on the same port the stores recover and share state again."""
    bucket = TokenBucket.per_minute(6)
    app = new_app()
    with capture_events() as events:
        async with (
            open_redis_stores(url=redis_server.url, app=app, **FAST) as one,
            open_redis_stores(url=redis_server.url, app=app, **FAST) as two,
        ):
            first = one.limiter_store(FailurePolicy.fail_open(replicas=2))
            second = two.limiter_store(FailurePolicy.fail_open(replicas=2))
            redis_server.kill()
            await admitted_now(first, "k", bucket, 1)
            await admitted_now(second, "k", bucket, 1)
            redis_server.restart()
            await wait_until_available(one)
            await wait_until_available(two)
            # Shared again: 6 in total between the two, not 3 each locally.
            assert await admitted_now(first, "k", bucket, 4) == 4
            assert await admitted_now(second, "k", bucket, 4) == 2
    recovered = named(events, "store.recovered")
    assert len(recovered) == 2
    assert all(event["log_level"] == "info" for event in recovered)


@pytest.mark.parametrize("policy", ["fail_open", "fail_closed"])
async def test_refused_acquires_never_starve_the_reconnection_probe(
    redis_server: RedisServer, policy: str
) -> None:
    """A loop of refused acquires while Redis is down still lets the probe reconnect."""
    failure = (
        FailurePolicy.fail_open(replicas=1)
        if policy == "fail_open"
        else FailurePolicy.fail_closed()
    )
    with capture_events():
        async with open_redis_stores(url=redis_server.url, app=new_app(), **FAST) as stores:
            limiter = create_limiter(
                TokenBucket.per_minute(1, capacity=1),
                name="svc",
                store=stores.limiter_store(failure),
            )
            await limiter.acquire()  # empty on the server
            redis_server.kill()
            with pytest.raises(RateLimited):  # fail-open: its local limit's one unit first
                for _ in range(2):
                    await limiter.acquire(deadline=anyio.current_time())
            assert not stores.available
            redis_server.restart()
            restarted = time.monotonic()
            refused = 0
            # Nothing but refused acquires, bounded in real time: before acquire was a
            # checkpoint the probe never ran inside this loop.
            while not stores.available and time.monotonic() < restarted + 5.0:
                try:
                    await limiter.acquire(deadline=anyio.current_time())
                except RateLimited:
                    refused += 1
            recovered_after = time.monotonic() - restarted
            metrics = stores.metrics()
    assert metrics.available
    assert refused > 0
    assert recovered_after < 1.0  # reconnect_max is 0.1 s


async def test_breaker_state_survives_an_outage(redis_server: RedisServer) -> None:
    """A breaker opened while Redis is down is pushed to the restarted server and shared."""
    app = new_app()
    config = BreakerConfig(open_duration=5.0, open_jitter=0.0)
    async with (
        open_redis_stores(url=redis_server.url, app=app, **FAST) as one,
        open_redis_stores(url=redis_server.url, app=app, **FAST) as two,
    ):
        first = create_breaker("svc", config, store=one.breaker_store)
        second = create_breaker("svc", config, store=two.breaker_store)
        redis_server.kill()
        first.force(BreakerState.OPEN)  # works locally while Redis is down
        with pytest.raises(CircuitOpen):
            first.acquire()
        redis_server.restart()
        with anyio.fail_after(2):
            while second.state is not BreakerState.OPEN:  # noqa: ASYNC110 (polls another replica's state)
                await anyio.sleep(0.005)


async def test_redis_down_at_start_does_not_fail_startup() -> None:
    """Opening the stores with nothing listening reports unavailable and fails open."""
    bucket = TokenBucket.per_minute(10)
    with capture_events() as events:
        async with open_redis_stores(url="redis://127.0.0.1:1/0", app=new_app(), **FAST) as stores:
            assert not stores.available
            store = stores.limiter_store(FailurePolicy.fail_open(replicas=2))
            assert await admitted_now(store, "k", bucket, 10) == 5
    assert len(named(events, "store.unavailable")) == 1


async def test_the_password_never_shows(secured_redis: RedisServer) -> None:
    """The password is in no repr, event or error, whether right or wrong."""
    url_with_secret = f"redis://:{PASSWORD}@127.0.0.1:{secured_redis.port}/0"
    texts: list[str] = []
    with capture_events() as events:
        async with open_redis_stores(url=url_with_secret, app=new_app(), **FAST) as stores:
            assert stores.available
            store = stores.limiter_store()
            assert (await store.decide("k", [("k", TokenBucket.per_second(1), 1)], now=0.0))[0]
            texts += [repr(stores), repr(stores.options), repr(store), stores.options.safe_url]
        async with open_redis_stores(
            url=secured_redis.url, password=PASSWORD, app=new_app(), **FAST
        ) as stores:
            assert stores.available
            texts.append(repr(stores.options))
        wrong = PASSWORD[::-1]
        async with open_redis_stores(
            url=secured_redis.url, password=wrong, app=new_app(), **FAST
        ) as stores:
            assert not stores.available
            texts.append(repr(stores.options))
    texts += [str(event) for event in events]
    texts.append(repr(secured_redis))
    [down] = named(events, "store.unavailable")
    assert "Authentication" in down["error"] or "WRONGPASS" in down["error"]
    for text in texts:
        assert PASSWORD not in text
        assert PASSWORD[::-1] not in text
    assert "***" in repr(RedisOptions(url=url_with_secret))


def test_config_errors_hide_the_password() -> None:
    """A bad URL or password is reported without the secret."""
    with pytest.raises(ConfigError) as caught:
        RedisOptions(url=f"http://:{PASSWORD}@host/0")
    assert PASSWORD not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        RedisOptions(password="")
    assert caught.value.value is None
    with pytest.raises(ConfigError):
        RedisOptions(op_timeout=0)
    with pytest.raises(ConfigError):
        FailurePolicy(mode="maybe")  # type: ignore[arg-type]


def test_tls_options_build_a_tls_client() -> None:
    """tls=True (or a rediss:// URL) gives the connection pool an SSL context."""
    for options in (RedisOptions(tls=True), RedisOptions(url="rediss://127.0.0.1:6380/0")):
        client = make_client(options)
        assert client.connection_pool.connection_kwargs.get("ssl_context") is not None
    plain = make_client(RedisOptions())
    assert plain.connection_pool.connection_kwargs.get("ssl_context") is None


async def test_reconnection_probes_back_off(redis_server: RedisServer) -> None:
    """While Redis stays down, probes get sparser (doubling from 20 ms up to 100 ms)."""
    async with open_redis_stores(url=redis_server.url, app=new_app(), **FAST) as stores:
        store = stores.limiter_store()
        redis_server.kill()
        await admitted_now(store, "k", TokenBucket.per_second(10), 1)
        await anyio.sleep(0.6)
        probes = stores.metrics().errors - 1
    # Without backoff a 20 ms period would probe 30 times; with it, about 8.
    assert 3 <= probes <= 15


async def test_an_error_in_the_block_propagates_unwrapped(redis_server: RedisServer) -> None:
    """An exception raised inside `open_redis_stores` comes out as itself, not in a group."""
    with pytest.raises(KeyError):
        async with open_redis_stores(url=redis_server.url, app=new_app(), **FAST):
            raise KeyError("from the block")
