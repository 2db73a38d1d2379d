"""A hung query on a one-connection database service is cancelled when its caller gives
up: on a real PostgreSQL server and a real SQLite file (both backends, real time).

Without PostgreSQL installed its tests skip, except where REQUIRE_SERVICES=1 (CI): there
a missing server fails the run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from actors import CallTimeout, PoolConfig, Secret, Service, ServiceConfig, open_actor
from actors.services.sql import PostgresClient, Query, SQLiteClient
from actors.testing import PostgresServer

pytestmark = pytest.mark.anyio

CALL_TIMEOUT = 1.0
PROMPT = 1.0  # seconds; the hung statement alone would hold the connection 3 s longer


def one_connection(name: str, client: Any) -> Service[Any, Any]:
    """A database service whose pool has one connection (so it handles one at a time)."""
    return Service(name, client, ServiceConfig.for_database(pool=PoolConfig(max_size=1)))


def postgres_service(server: PostgresServer, name: str) -> Service[Any, Any]:
    secret = Secret(server.password)
    return one_connection(
        name, lambda: PostgresClient(name, server.dsn_without_password(), password=secret)
    )


async def _time_out(ref: Any, query: Query) -> float:
    """Calls `query` with a 1 s timeout, expects CallTimeout, returns when it came."""
    start = time.monotonic()
    with pytest.raises(CallTimeout):
        await ref.call(query, timeout=CALL_TIMEOUT)
    elapsed = time.monotonic() - start
    assert CALL_TIMEOUT <= elapsed < CALL_TIMEOUT + 0.5
    return time.monotonic()


async def test_postgres_hung_query_is_cancelled_at_the_callers_timeout(
    postgres: PostgresServer,
) -> None:
    """pg_sleep(4) under a 1 s call timeout: CallTimeout at 1 s, the statement leaves
    pg_stat_activity soon after, and the next query on the one connection is prompt."""
    marker = "abandon-real-1"
    sleeper = Query(f"SELECT pg_sleep(4) /* {marker} */")
    activity = Query(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s",
        [f"%{marker} */"],
    )
    async with (
        open_actor(postgres_service(postgres, "pg").actor()) as ref,
        open_actor(postgres_service(postgres, "pg-monitor").actor()) as monitor,
    ):
        timed_out = await _time_out(ref, sleeper)
        assert (await ref.call(Query("SELECT 42"), timeout=5)).rows == [(42,)]
        assert time.monotonic() - timed_out < PROMPT
        active = None
        while time.monotonic() - timed_out < PROMPT:
            active = (await monitor.call(activity, timeout=5)).rows
            if active == [(0,)]:
                break
            await anyio.sleep(0.05)
        assert active == [(0,)]


async def test_postgres_stop_after_an_abandoned_query_is_prompt(postgres: PostgresServer) -> None:
    """Stopping the actor right after its caller gave up on pg_sleep(4) does not wait."""
    async with open_actor(postgres_service(postgres, "pg").actor()) as ref:
        await _time_out(ref, Query("SELECT pg_sleep(4) /* abandon-real-2 */"))
        leaving = time.monotonic()
    assert time.monotonic() - leaving < PROMPT


# An endless statement: SQLite stops it only when interrupted.
ENDLESS = Query(
    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n"
)


async def test_sqlite_endless_query_is_interrupted_at_the_callers_timeout(tmp_path: Path) -> None:
    """An endless SQLite statement under a 1 s timeout: CallTimeout at 1 s, and the next
    query on the one connection is answered at once; stopping is prompt."""
    path = tmp_path / "abandon.db"
    service = one_connection("sqlite", lambda: SQLiteClient("sqlite", path))
    async with open_actor(service.actor()) as ref:
        timed_out = await _time_out(ref, ENDLESS)
        assert (await ref.call(Query("SELECT 7"), timeout=5)).rows == [(7,)]
        assert time.monotonic() - timed_out < PROMPT
        await _time_out(ref, ENDLESS)
        leaving = time.monotonic()
    assert time.monotonic() - leaving < PROMPT
