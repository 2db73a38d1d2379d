"""The Redis stores over TLS: a TLS-only redis-server with certificates made for the test."""

from __future__ import annotations

import os
import tempfile

import anyio
import attrs
import pytest

from actors import ConfigError, RateLimited
from actors.resilience import TokenBucket, create_limiter
from actors.stores.redis import FailurePolicy, RedisOptions, open_redis_stores
from actors.testing import RedisServer, capture_events, make_tls_files
from tests.stores.conftest import new_app

pytestmark = pytest.mark.anyio

FAST = RedisOptions(op_timeout=0.3, connect_timeout=0.5, reconnect_min=0.05, reconnect_max=0.1)


def mutual_tls(server: RedisServer) -> RedisOptions:
    """FAST options for `server` with its CA and client certificate."""
    assert server.tls is not None
    return attrs.evolve(
        FAST,
        url=server.url,
        app=new_app(),
        tls_ca_file=server.tls.ca,
        tls_cert_file=server.tls.client_cert,
        tls_key_file=server.tls.client_key,
    )


async def test_a_limiter_works_over_mutual_tls(tls_redis: RedisServer) -> None:
    """With the CA and a client certificate, rediss:// limits like plain Redis."""
    assert tls_redis.url.startswith("rediss://")
    options = mutual_tls(tls_redis)
    async with open_redis_stores(options) as stores:
        assert stores.available
        limiter = create_limiter(TokenBucket.per_hour(3), name="svc", store=stores.limiter_store())
        for _ in range(3):
            await limiter.acquire()
        with pytest.raises(RateLimited):
            await limiter.acquire(deadline=anyio.current_time())
        assert stores.metrics().errors == 0


async def test_without_a_client_certificate_the_server_is_unavailable(
    tls_redis: RedisServer,
) -> None:
    """A server that requires client certificates refuses us: reported, policy applied."""
    assert tls_redis.tls is not None
    options = attrs.evolve(FAST, url=tls_redis.url, app=new_app(), tls_ca_file=tls_redis.tls.ca)
    with capture_events() as events:
        async with open_redis_stores(options) as stores:
            limiter = create_limiter(
                TokenBucket.per_hour(3),
                name="svc",
                store=stores.limiter_store(FailurePolicy.fail_closed()),
            )
            with pytest.raises(RateLimited):
                await limiter.acquire(deadline=anyio.current_time())
            assert not stores.available
    assert [e["event"] for e in events].count("store.unavailable") == 1


async def test_a_server_signed_by_another_ca_is_not_trusted(tls_redis: RedisServer) -> None:
    """A certificate from a CA we were not given fails verification: never connected."""
    with tempfile.TemporaryDirectory() as directory:
        other = make_tls_files(directory)
        options = attrs.evolve(
            FAST,
            url=tls_redis.url,
            app=new_app(),
            tls_ca_file=other.ca,
            tls_cert_file=other.client_cert,
            tls_key_file=other.client_key,
        )
        with capture_events() as events:
            async with open_redis_stores(options) as stores:
                assert not stores.available
    (event,) = [e for e in events if e["event"] == "store.unavailable"]
    assert event["url"] == tls_redis.url


def test_tls_files_need_tls() -> None:
    """CA or certificate files with a plain redis:// URL and tls off are a ConfigError."""
    with tempfile.NamedTemporaryFile() as ca, pytest.raises(ConfigError) as info:
        RedisOptions(url="redis://127.0.0.1:6379/0", tls_ca_file=ca.name)
    assert info.value.field == "tls"


def test_a_client_certificate_needs_its_key() -> None:
    """tls_cert_file without tls_key_file (or the reverse) is a ConfigError."""
    with tempfile.NamedTemporaryFile() as cert, pytest.raises(ConfigError) as info:
        RedisOptions(url="rediss://127.0.0.1:6380/0", tls_cert_file=cert.name)
    assert info.value.field == "tls_key_file"


def test_a_missing_file_is_named() -> None:
    """A TLS file that does not exist is a ConfigError naming the field."""
    missing = os.path.join(tempfile.gettempdir(), "no-such-ca.pem")
    with pytest.raises(ConfigError) as info:
        RedisOptions(url="rediss://127.0.0.1:6380/0", tls_ca_file=missing)
    assert info.value.field == "tls_ca_file"


async def test_an_unreadable_certificate_is_a_config_error() -> None:
    """A file that is not a PEM certificate fails at open, naming the field."""
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as junk:
        junk.write("not a certificate\n")
        junk.flush()
        options = RedisOptions(url="rediss://127.0.0.1:6380/0", tls_ca_file=junk.name)
        with pytest.raises(ConfigError) as info:
            async with open_redis_stores(options):
                pass
    assert info.value.field == "tls_ca_file"


def test_a_cluster_has_only_database_zero() -> None:
    """cluster=True with a database other than 0 is a ConfigError."""
    with pytest.raises(ConfigError) as info:
        RedisOptions(url="redis://127.0.0.1:7000/3", cluster=True)
    assert info.value.field == "url"
