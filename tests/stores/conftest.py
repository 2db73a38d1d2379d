"""Fixtures for the Redis store tests: real `redis-server` processes (one, TLS, a cluster).

When `redis-server` is missing the tests are skipped with a clear reason, except when
the environment sets REQUIRE_SERVICES=1 (CI), where they fail. When the `redis` extra
(coredis) is not installed, the test files are not collected (the summary says so),
except under REQUIRE_SERVICES=1, where their import error fails the run.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Iterator

import pytest

from actors.testing import RedisCluster, RedisServer, redis_server_path
from actors.testing import redis_cluster as start_redis_cluster
from actors.testing import redis_server as start_redis_server

PASSWORD = "hunter2-do-not-log-me"


def new_app() -> str:
    """A fresh key namespace, so tests sharing a server never see each other's keys."""
    return f"test-{uuid.uuid4().hex[:8]}"


_NO_COREDIS = importlib.util.find_spec("coredis") is None
if _NO_COREDIS and os.environ.get("REQUIRE_SERVICES") != "1":
    collect_ignore_glob = ["test_*.py"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _NO_COREDIS:
        terminalreporter.write_line(
            "tests/stores: Redis store tests NOT RUN, coredis is missing "
            "(pip install -e '.[redis]'; REQUIRE_SERVICES=1 makes this an error)"
        )


def _require_redis() -> None:
    if redis_server_path() is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture(name="redis_server")
def redis_server_fixture() -> Iterator[RedisServer]:
    """A fresh redis-server without a password."""
    _require_redis()
    with start_redis_server() as server:
        yield server


@pytest.fixture
def secured_redis() -> Iterator[RedisServer]:
    """A fresh redis-server with `requirepass PASSWORD`."""
    _require_redis()
    with start_redis_server(password=PASSWORD) as server:
        yield server


@pytest.fixture
def tls_redis() -> Iterator[RedisServer]:
    """A fresh TLS-only redis-server requiring client certificates (made for the test)."""
    _require_redis()
    with start_redis_server(tls=True) as server:
        yield server


@pytest.fixture(scope="module")
def shared_cluster() -> Iterator[RedisCluster]:
    """A 3-master cluster with one replica each, shared by a module's non-destructive tests."""
    _require_redis()
    with start_redis_cluster(masters=3, replicas=1) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster() -> Iterator[RedisCluster]:
    """A fresh 3-master cluster with one replica each, for a test that fails one over."""
    _require_redis()
    with start_redis_cluster(masters=3, replicas=1) as cluster:
        yield cluster
