"""The SQL service on real SQLite files, through the ServiceActor (both backends, real time)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import anyio
import attrs
import pytest

from actors import CallTimeout, QueryError, RetryPolicy, ServiceUnavailable, open_actor
from actors.services import Service, ServiceConfig
from actors.services.sql import Query, QueryResult, SQLiteClient, Transaction

pytestmark = pytest.mark.anyio

INFINITE = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


def service(path: Path, **changes: object) -> Service[Query | Transaction, object]:
    config = ServiceConfig.for_database(
        retry=RetryPolicy.for_database(backoff_initial=0.01, backoff_max=0.05, budget_ratio=None)
    )
    return Service(
        "db", lambda: SQLiteClient("db", path, busy_timeout=0.05), attrs.evolve(config, **changes)
    )


async def test_parameterised_queries_round_trip(tmp_path: Path) -> None:
    """Create, insert with parameters, and select through the actor."""
    svc = service(tmp_path / "a.db")
    async with open_actor(svc.actor()) as ref:
        await ref.call(Query("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)"))
        await ref.call(Query("INSERT INTO t (name) VALUES (?)", ["ada"]))
        await ref.call(Query("INSERT INTO t (name) VALUES (:name)", {"name": "bob'; DROP TABLE t"}))
        result = await ref.call(Query("SELECT id, name FROM t ORDER BY id"))
    assert isinstance(result, QueryResult)
    assert result.rows == [(1, "ada"), (2, "bob'; DROP TABLE t")]
    assert result.columns == ("id", "name")


async def test_transaction_is_atomic(tmp_path: Path) -> None:
    """A failing statement rolls the whole transaction back."""
    svc = service(tmp_path / "a.db")
    async with open_actor(svc.actor()) as ref:
        await ref.call(Query("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
        with pytest.raises(QueryError) as info:
            await ref.call(
                Transaction(
                    [
                        Query("INSERT INTO t (name) VALUES (?)", ["x"]),
                        Query("INSERT INTO t (name) VALUES (?)", ["x"]),
                    ]
                )
            )
        assert "UNIQUE" in str(info.value)
        count = await ref.call(Query("SELECT count(*) FROM t", fetch="one"))
    assert count.rows == [(0,)]


async def test_syntax_error_is_permanent(tmp_path: Path) -> None:
    """A syntax error is a QueryError after exactly one attempt; the actor stays up."""
    svc = service(tmp_path / "a.db")
    async with open_actor(svc.actor()) as ref:
        with pytest.raises(QueryError) as info:
            await ref.call(Query("SELEC nonsense"))
        assert info.value.service == "db"
        assert svc.stats.attempts == 1
        assert (await ref.call(Query("SELECT 1", fetch="one"))).rows == [(1,)]


async def test_locked_database_is_retried_and_recovers(tmp_path: Path) -> None:
    """ "database is locked" is retryable: the call succeeds once the lock is released."""
    path = tmp_path / "a.db"
    svc = service(path)
    async with open_actor(svc.actor()) as ref:
        await ref.call(Query("CREATE TABLE t (x INTEGER)"))
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")

        async def release() -> None:
            await anyio.sleep(0.08)
            blocker.execute("COMMIT")

        async with anyio.create_task_group() as tg:
            tg.start_soon(release)
            await ref.call(Query("INSERT INTO t VALUES (1)"), timeout=5)
        blocker.close()
        assert svc.stats.attempts >= 2
        assert (await ref.call(Query("SELECT count(*) FROM t"))).rows == [(1,)]


async def test_deadline_interrupts_a_runaway_query(tmp_path: Path) -> None:
    """A query running past the caller's deadline is interrupted: CallTimeout on time,
    the worker thread is freed, the connection is replaced, and the next query works."""
    svc = service(tmp_path / "a.db")
    async with open_actor(svc.actor()) as ref:
        start = time.monotonic()
        with pytest.raises(CallTimeout):
            await ref.call(Query(INFINITE, fetch="one"), timeout=0.3)
        assert time.monotonic() - start < 2.0
        assert (await ref.call(Query("SELECT 2", fetch="one"), timeout=2)).rows == [(2,)]
    assert svc.stats.requests == 2
    assert svc.stats.failures_by_class == {}  # an abandoned call is not a failure


async def test_cancellation_stops_the_statement(tmp_path: Path) -> None:
    """Cancelling the caller interrupts the statement (the thread does not run on)."""
    svc = service(tmp_path / "a.db")
    async with open_actor(svc.actor()) as ref:
        with anyio.move_on_after(0.2):
            await ref.call(Query(INFINITE, fetch="one"), timeout=30)
        start = time.monotonic()
        assert (await ref.call(Query("SELECT 3", fetch="one"), timeout=5)).rows == [(3,)]
        assert time.monotonic() - start < 2.0


async def test_unopenable_database_is_unavailable(tmp_path: Path) -> None:
    """A database path that cannot be opened is ServiceUnavailable (retryable), then
    the caller gets it once retries are exhausted; the actor stays up."""
    svc = service(tmp_path / "missing-dir" / "a.db")
    async with open_actor(svc.actor()) as ref:
        with pytest.raises(ServiceUnavailable):
            await ref.call(Query("SELECT 1"))
        assert ref.alive
    assert svc.stats.attempts == 3
