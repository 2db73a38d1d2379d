"""The Redis breaker store: replicas share transitions within the sync bound."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import coredis
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from actors import CircuitOpen
from actors.resilience import BreakerConfig, BreakerState, CircuitBreaker, create_breaker
from actors.stores.redis import RedisStores, open_redis_stores
from actors.testing import RedisServer, capture_events
from tests.stores.conftest import new_app

pytestmark = pytest.mark.anyio

SYNC = 0.1
"""The sync interval used here; the bound is SYNC plus four round trips (ms each)."""

BOUND = SYNC + 0.15
"""What the tests allow: the interval plus 150 ms for round trips on a loaded machine."""


@asynccontextmanager
async def replica(server: RedisServer, app: str) -> AsyncIterator[RedisStores]:
    async with open_redis_stores(url=server.url, app=app, sync_interval=SYNC) as stores:
        assert stores.available
        yield stores


def breaker_on(stores: RedisStores, name: str = "svc") -> CircuitBreaker:
    config = BreakerConfig(
        window_size=4, minimum_calls=4, open_duration=5.0, open_jitter=0.0, half_open_permits=1
    )
    return create_breaker(name, config, store=stores.breaker_store)


async def seen_open_after(breaker: CircuitBreaker, limit: float) -> float:
    """Seconds until `breaker` rejects (polling every millisecond), at most `limit`."""
    start = anyio.current_time()
    with anyio.fail_after(limit):
        while True:
            try:
                breaker.on_success(breaker.acquire())
            except CircuitOpen:
                return anyio.current_time() - start
            await anyio.sleep(0.001)


async def test_opened_in_one_replica_is_open_in_another_within_the_bound(
    redis_server: RedisServer,
) -> None:
    """Failures that open the breaker in one replica open it in the other within the bound."""
    app = new_app()
    async with replica(redis_server, app) as one, replica(redis_server, app) as two:
        first, second = breaker_on(one), breaker_on(two)
        await anyio.sleep(SYNC * 1.5)  # both records settled
        for _ in range(4):
            first.on_failure(first.acquire())
        assert first.state is BreakerState.OPEN
        delay = await seen_open_after(second, BOUND + 0.5)
        assert delay <= BOUND
        retry_after = second.metrics().retry_after
    # The open duration is translated through the server clock, not restarted.
    assert 5.0 - BOUND - 0.1 <= retry_after <= 5.0


async def test_a_joining_replica_adopts_the_existing_state(redis_server: RedisServer) -> None:
    """A replica that loads before creating its breaker starts OPEN, not CLOSED."""
    app = new_app()
    async with replica(redis_server, app) as one:
        first = breaker_on(one)
        first.force(BreakerState.OPEN)
        await one.breaker_store.sync()
        async with replica(redis_server, app) as two:
            await two.breaker_store.load("svc")
            second = breaker_on(two)
            assert second.state is BreakerState.OPEN
            with pytest.raises(CircuitOpen) as caught:
                second.acquire()
    assert 4.5 <= caught.value.retry_after <= 5.0


async def test_a_joiner_without_load_converges_instead_of_resetting(
    redis_server: RedisServer,
) -> None:
    """A replica that creates its breaker blind does not overwrite the shared OPEN record."""
    app = new_app()
    async with replica(redis_server, app) as one:
        first = breaker_on(one)
        first.force(BreakerState.OPEN)
        await one.breaker_store.sync()
        async with replica(redis_server, app) as two:
            second = breaker_on(two)  # starts CLOSED generation 0 locally
            await seen_open_after(second, BOUND + 0.5)
            await anyio.sleep(SYNC * 2)
            await one.breaker_store.sync()
            assert first.state is BreakerState.OPEN
            assert second.state is BreakerState.OPEN


async def test_a_close_propagates_too(redis_server: RedisServer) -> None:
    """A reset (CLOSED) in one replica lets calls through in the other within the bound."""
    app = new_app()
    async with replica(redis_server, app) as one, replica(redis_server, app) as two:
        first, second = breaker_on(one), breaker_on(two)
        first.force(BreakerState.OPEN)
        await seen_open_after(second, BOUND + 0.5)
        first.reset()
        start = anyio.current_time()
        with anyio.fail_after(BOUND + 0.5):
            while second.state is not BreakerState.CLOSED:  # noqa: ASYNC110 (polls another replica's state)
                await anyio.sleep(0.001)
        assert anyio.current_time() - start <= BOUND
        second.on_success(second.acquire())


async def test_concurrent_transitions_converge_on_one_record(redis_server: RedisServer) -> None:
    """Two replicas opening at once end with the same record (the first writer's)."""
    app = new_app()
    async with replica(redis_server, app) as one, replica(redis_server, app) as two:
        first, second = breaker_on(one), breaker_on(two)
        await anyio.sleep(SYNC * 1.5)
        first.force(BreakerState.OPEN)
        second.force(BreakerState.FORCED_OPEN)
        await anyio.sleep(SYNC * 3)
        assert first.state is second.state
        assert first.metrics().last_transition_at is not None
        assert one.breaker_store.get("svc") is not None
        assert one.metrics().breaker_adoptions + two.metrics().breaker_adoptions >= 1


async def test_records_live_under_the_app_namespace(redis_server: RedisServer) -> None:
    """The record is one key '{<app>:breaker}:<name>' holding generation and state."""
    app = new_app()
    async with replica(redis_server, app) as one:
        breaker_on(one, "db").force(BreakerState.OPEN)
        await one.breaker_store.sync()
        async with coredis.Redis(host="127.0.0.1", port=redis_server.port) as raw:
            keys = [key.decode() async for key in raw.scan_iter(match=f"*{app}*")]
            value = await raw.get(f"{{{app}:breaker}}:db")
    assert keys == [f"{{{app}:breaker}}:db"]
    assert value is not None
    assert value.decode().startswith("1|open|")


async def test_a_malformed_record_is_reported_not_fatal(redis_server: RedisServer) -> None:
    """A record this version cannot read emits store.bad_record; the local copy stays."""
    app = new_app()
    with capture_events() as events:
        async with replica(redis_server, app) as one:
            breaker = breaker_on(one)
            await one.breaker_store.sync()
            async with coredis.Redis(host="127.0.0.1", port=redis_server.port) as raw:
                await raw.set(f"{{{app}:breaker}}:svc", "99|no-such-state|||")
            await one.breaker_store.sync()
            assert breaker.state is BreakerState.CLOSED
            assert one.metrics().breaker_syncs >= 2
    assert [e["breaker"] for e in events if e["event"] == "store.bad_record"] == ["svc"]


OTHER_BACKEND = {"asyncio": "trio", "trio": "asyncio"}


async def test_opened_in_another_process_is_open_here_within_the_bound(
    redis_server: RedisServer, anyio_backend: str
) -> None:
    """A breaker forced open in another OS process (other backend, own clock) is seen here."""
    app = new_app()
    script = Path(__file__).with_name("_breaker_replica.py")
    argv = [sys.executable, str(script), redis_server.url, app, OTHER_BACKEND[anyio_backend]]
    async with (
        replica(redis_server, app) as here,
        await anyio.open_process([*argv, str(SYNC)], stderr=None) as process,
    ):
        assert process.stdout is not None
        assert process.stdin is not None
        lines = BufferedByteReceiveStream(process.stdout)
        with anyio.fail_after(30):
            assert await lines.receive_until(b"\n", 100) == b"ready"
        breaker = breaker_on(here)
        await process.stdin.send(b"open\n")
        with anyio.fail_after(5):
            assert await lines.receive_until(b"\n", 100) == b"opened"
        delay = await seen_open_after(breaker, BOUND + 0.5)
        retry_after = breaker.metrics().retry_after
        await process.stdin.aclose()
    assert process.returncode == 0
    assert delay <= BOUND
    # The other process's open instant, translated through the server's clock.
    assert 5.0 - BOUND - 0.1 <= retry_after <= 5.0


async def test_a_transition_just_before_leaving_is_pushed(redis_server: RedisServer) -> None:
    """Leaving `open_redis_stores` right after a transition still shares it."""
    app = new_app()
    async with replica(redis_server, app) as one:
        breaker_on(one).force(BreakerState.OPEN)
    async with replica(redis_server, app) as two:
        await two.breaker_store.load("svc")
        assert breaker_on(two).state is BreakerState.OPEN
