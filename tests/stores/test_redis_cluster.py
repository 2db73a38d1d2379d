"""The Redis stores on a real 3-master Redis Cluster: one slot per limiter, failover."""

from __future__ import annotations

from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import coredis
import pytest

from actors import CircuitOpen, RateLimited
from actors.resilience import (
    BreakerConfig,
    BreakerState,
    TokenBucket,
    create_breaker,
    create_limiter,
    create_multi_limit,
)
from actors.stores._redis_client import close_leftovers
from actors.stores.redis import FailurePolicy, RedisStores, open_redis_stores
from actors.testing import RedisCluster, capture_events
from tests.stores.conftest import new_app

pytestmark = pytest.mark.anyio

FAST = {"op_timeout": 0.3, "reconnect_min": 0.05, "reconnect_max": 0.2, "sync_interval": 0.05}


@asynccontextmanager
async def on_cluster(cluster: RedisCluster, app: str) -> AsyncIterator[RedisStores]:
    async with open_redis_stores(url=cluster.url, app=app, cluster=True, **FAST) as stores:
        assert stores.available
        yield stores


@asynccontextmanager
async def raw_cluster(cluster: RedisCluster) -> AsyncIterator[coredis.RedisCluster[bytes]]:
    """A plain coredis cluster client (closing what coredis 6 leaves open)."""
    client: coredis.RedisCluster[bytes] = coredis.RedisCluster(
        host="127.0.0.1", port=cluster.nodes[0].port
    )
    try:
        async with client:
            yield client
    finally:
        close_leftovers(client)


def named(events: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [event for event in events if event["event"] == name]


async def admitted(limiter: Any, tries: int) -> int:
    count = 0
    for _ in range(tries):
        try:
            await limiter.acquire(deadline=anyio.current_time())
        except RateLimited:
            continue
        count += 1
    return count


async def test_replicas_share_one_limit_on_a_cluster(shared_cluster: RedisCluster) -> None:
    """Two clients of the cluster admit the burst once between them."""
    app = new_app()
    bucket = TokenBucket.per_hour(10)
    with capture_events():
        async with on_cluster(shared_cluster, app) as one, on_cluster(shared_cluster, app) as two:
            first = create_limiter(bucket, name="svc", store=one.limiter_store())
            second = create_limiter(bucket, name="svc", store=two.limiter_store())
            assert await admitted(first, 6) == 6
            assert await admitted(second, 6) == 4
            assert one.metrics().errors == two.metrics().errors == 0


async def test_a_multi_limits_keys_live_in_one_slot(shared_cluster: RedisCluster) -> None:
    """requests, tokens and the hold of one multi-limit hash to one slot (one script)."""
    app = new_app()
    async with on_cluster(shared_cluster, app) as stores:
        store = stores.limiter_store()
        multi = create_multi_limit(
            {"requests": TokenBucket.per_minute(10), "tokens": TokenBucket.per_minute(1000)},
            name="llm",
            store=store,
        )
        reservation = await multi.reserve(requests=1, tokens=800)
        await reservation.reconcile(tokens=300)
        await multi.hold_until(anyio.current_time() + 0.2)
        keys = [store.redis_key("actors:llm", f"actors:llm:{name}") for name in multi.limits]
        keys.append(store.hold_key("actors:llm"))
        async with raw_cluster(shared_cluster) as raw:
            slots = {await raw.cluster_keyslot(key) for key in keys}
            stored = [await raw.get(key) for key in keys]
        assert stores.metrics().errors == 0
    assert len(slots) == 1
    assert all(value is not None for value in stored)


async def test_limiters_spread_over_the_masters(shared_cluster: RedisCluster) -> None:
    """Different services hash to different slots (the cluster shares the load)."""
    async with on_cluster(shared_cluster, new_app()) as stores:
        store = stores.limiter_store()
        keys = [store.redis_key(f"actors:svc{i}", f"actors:svc{i}") for i in range(30)]
        async with raw_cluster(shared_cluster) as raw:
            masters = {shared_cluster.master_of(key).port for key in keys}
            assert len({await raw.cluster_keyslot(key) for key in keys}) > 1
    assert len(masters) == 3


async def test_a_hold_holds_every_client(shared_cluster: RedisCluster) -> None:
    """A hold made through one client of the cluster refuses the other's acquires."""
    app = new_app()
    bucket = TokenBucket.per_second(100)
    with capture_events():
        async with on_cluster(shared_cluster, app) as one, on_cluster(shared_cluster, app) as two:
            first = create_limiter(bucket, name="svc", store=one.limiter_store())
            second = create_limiter(bucket, name="svc", store=two.limiter_store())
            await first.hold_until(anyio.current_time() + 5.0)
            with pytest.raises(RateLimited) as info:
                await second.acquire(deadline=anyio.current_time() + 1.0)
    assert 4.0 < info.value.retry_after <= 5.0


async def test_a_breaker_opened_by_one_client_is_open_for_the_other(
    shared_cluster: RedisCluster,
) -> None:
    """Breaker records sync through the cluster (all of an app's breakers in one slot)."""
    app = new_app()
    config = BreakerConfig(open_duration=30.0, open_jitter=0.0)
    async with on_cluster(shared_cluster, app) as one, on_cluster(shared_cluster, app) as two:
        here = create_breaker("db", config, store=one.breaker_store)
        create_breaker("cache", config, store=one.breaker_store)
        await two.breaker_store.load("db", "cache")
        there = create_breaker("db", config, store=two.breaker_store)
        here.force(BreakerState.OPEN)
        with anyio.fail_after(2.0):
            while True:
                try:
                    there.on_success(there.acquire())
                except CircuitOpen:
                    break
                await anyio.sleep(0.01)
        assert one.metrics().errors == two.metrics().errors == 0


async def admit_until(limiters: list[Any], total: int, seconds: float) -> int:
    """Tries every limiter every 20 ms until `total` were admitted or `seconds` passed."""
    count = 0
    with anyio.move_on_after(seconds):
        while count < total:
            for limiter in limiters:
                count += await admitted(limiter, 1)
            await anyio.sleep(0.02)
    return count


@pytest.mark.parametrize("mode", ["fail_closed", "fail_open"])
async def test_a_master_failed_over_mid_run_loses_only_what_the_policy_allows(
    redis_cluster: RedisCluster, mode: str
) -> None:
    """Killing the master of a limit mid-run: fail-closed admits nothing while it is gone,
    and the promoted replica carries on from the replicated state (exactly the limit in
    all); fail-open admits at most 1/N of the limit per replica meanwhile."""
    app = new_app()
    bucket = TokenBucket.per_hour(20)  # no refill within the test
    policy = (
        FailurePolicy.fail_closed()
        if mode == "fail_closed"
        else FailurePolicy.fail_open(replicas=2)
    )
    with capture_events() as events:
        async with on_cluster(redis_cluster, app) as one, on_cluster(redis_cluster, app) as two:
            limiters = [
                create_limiter(bucket, name="svc", store=stores.limiter_store(policy))
                for stores in (one, two)
            ]
            before = await admit_until(limiters, 10, 5.0)
            key = limiters[0].store.redis_key(limiters[0].key, limiters[0].key)  # type: ignore[attr-defined]
            master = redis_cluster.master_of(key)
            assert master.command("WAIT", "1", "1000") == 1  # replicated before the kill
            redis_cluster.fail_over(key)

            async def promoted() -> None:
                await anyio.to_thread.run_sync(redis_cluster.wait_promoted, key, master)

            async with anyio.create_task_group() as tg:
                tg.start_soon(promoted)
                during = await admit_until(limiters, 40, 3.0)  # the failover takes ~2 s
            rest = await admit_until(limiters, 40, 3.0)
            local = sum(stores.metrics().fallback_decisions for stores in (one, two))
    assert before == 10
    assert named(events, "store.unavailable")
    assert named(events, "store.recovered")
    total = before + during + rest
    if mode == "fail_closed":
        assert local == 0
        assert total == 20  # nothing lost, nothing extra: the replica had the first 10
    else:
        assert 20 <= total <= 20 + 2 * 10  # the shared limit + each replica's 20 / 2
