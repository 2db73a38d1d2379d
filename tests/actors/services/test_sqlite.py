"""The SQL service on real SQLite files, through the ServiceActor (both backends, real time)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from actors import (
    CallTimeout,
    ConfigError,
    InvalidRequest,
    QueryError,
    Service,
    ServiceConfig,
    ServiceUnavailable,
    open_actor,
)
from actors.resilience import RetryPolicy
from actors.services.sql import Query, QueryResult, SQLiteClient, Transaction
from tests.actors.services.sql_replies import SQLRef, SQLService, fetch, transact

pytestmark = pytest.mark.anyio

INFINITE = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


def service(path: Path, **changes: Any) -> SQLService:
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
        count = await fetch(ref, Query("SELECT count(*) FROM t", fetch="one"))
    assert count.rows == [(0,)]


async def test_syntax_error_is_permanent(tmp_path: Path) -> None:
    """A syntax error is a QueryError after exactly one attempt; the actor stays up."""
    svc = service(tmp_path / "a.db")
    async with open_actor(svc.actor()) as ref:
        with pytest.raises(QueryError) as info:
            await ref.call(Query("SELEC nonsense"))
        assert info.value.service == "db"
        assert svc.stats.attempts == 1
        assert (await fetch(ref, Query("SELECT 1", fetch="one"))).rows == [(1,)]


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
        assert (await fetch(ref, Query("SELECT count(*) FROM t"))).rows == [(1,)]


async def test_deadline_interrupts_a_runaway_query(tmp_path: Path) -> None:
    """A query running past the caller's deadline is interrupted: CallTimeout on time,
    the worker thread is freed, the connection is replaced, and the next query works."""
    svc = service(tmp_path / "a.db")
    async with open_actor(svc.actor()) as ref:
        start = time.monotonic()
        with pytest.raises(CallTimeout):
            await ref.call(Query(INFINITE, fetch="one"), timeout=0.3)
        assert time.monotonic() - start < 2.0
        assert (await fetch(ref, Query("SELECT 2", fetch="one"), timeout=2)).rows == [(2,)]
    assert svc.stats.requests == 2
    assert svc.stats.failed == 0  # an abandoned call is not a failure


async def test_cancellation_stops_the_statement(tmp_path: Path) -> None:
    """Cancelling the caller interrupts the statement (the thread does not run on)."""
    svc = service(tmp_path / "a.db")
    async with open_actor(svc.actor()) as ref:
        with anyio.move_on_after(0.2):
            await ref.call(Query(INFINITE, fetch="one"), timeout=30)
        start = time.monotonic()
        assert (await fetch(ref, Query("SELECT 3", fetch="one"), timeout=5)).rows == [(3,)]
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


# -- requests a caller gets wrong: that caller fails, the actor carries on ---------------------


async def _still_serves(ref: SQLRef) -> None:
    assert ref.alive
    reply = await fetch(ref, Query("SELECT 1", fetch="one"), timeout=5)
    assert reply.rows == [(1,)]


async def test_integer_parameter_out_of_range_fails_only_its_caller(tmp_path: Path) -> None:
    """Query("SELECT ?", [2**70]) is InvalidRequest for that caller; the actor still serves."""
    svc = service(tmp_path / "a.db")
    async with open_actor(svc.actor()) as ref:
        with pytest.raises(InvalidRequest) as info:
            await ref.call(Query("SELECT ?", [2**70]), timeout=5)
        assert info.value.service == "db"
        assert info.value.field == "params[0]"
        await _still_serves(ref)


@pytest.mark.parametrize(
    "value",
    [2**70, -(2**63) - 1, object(), "\ud800"],
    ids=["2**70", "-2**63-1", "object", "surrogate"],
)
async def test_the_driver_refusing_a_parameter_is_translated(tmp_path: Path, value: object) -> None:
    """Past check_request, the driver's own refusal (OverflowError, a binding error,
    UnicodeEncodeError) reaches the caller as InvalidRequest naming the parameters."""
    client = SQLiteClient("db", tmp_path / "a.db")
    conn = await client.connect()
    try:
        with pytest.raises(InvalidRequest) as info:
            await client.request(conn, Query("SELECT ?", [value]))
        assert (info.value.service, info.value.field) == ("db", "params")
        result = await client.request(conn, Query("SELECT 1"))
        assert isinstance(result, QueryResult)
        assert result.rows == [(1,)]
    finally:
        await client.close(conn)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (2**63, "params[0]"),
        (-(2**63) - 1, "params[0]"),
        (object(), "params[0]"),
        ([1, 2], "params[0]"),
        ({"a": 1}, "params[0]"),
    ],
    ids=["2**63", "-2**63-1", "object", "list", "dict"],
)
def test_check_request_refuses_parameters_sqlite_cannot_store(value: object, field: str) -> None:
    """check_request names the parameter SQLite could not bind."""
    client = SQLiteClient("db", "unused.db")
    with pytest.raises(InvalidRequest) as info:
        client.check_request(Query("SELECT ?", [value]))
    assert (info.value.service, info.value.field) == ("db", field)


def test_check_request_names_the_statement_inside_a_transaction() -> None:
    """A bad parameter in a Transaction is named by its statement and position."""
    client = SQLiteClient("db", "unused.db")
    request = Transaction([Query("SELECT 1"), Query("SELECT :x", {"x": 2**64})])
    with pytest.raises(InvalidRequest) as info:
        client.check_request(request)
    assert info.value.field == "queries[1].params.x"


def test_check_request_accepts_every_type_sqlite_stores() -> None:
    """None, bool, 64-bit ints, floats, str, bytes-likes and adapted types pass."""
    import datetime

    client = SQLiteClient("db", "unused.db")
    values: list[object] = [
        None,
        True,
        2**63 - 1,
        -(2**63),
        1.5,
        "x",
        b"x",
        bytearray(b"x"),
        memoryview(b"x"),
    ]
    values.append(datetime.date(2020, 1, 2))  # adapted by sqlite3's default adapters
    client.check_request(Query("SELECT 1", values))  # raises if it refuses one


@pytest.mark.parametrize(
    "request_",
    [42, "SELECT 1", None, {"sql": "SELECT 1"}, [Query("SELECT 1")]],
    ids=["int", "str", "None", "dict", "list"],
)
def test_check_request_refuses_what_is_not_a_request(request_: object) -> None:
    """Anything but a Query or a Transaction is InvalidRequest naming `request`."""
    with pytest.raises(InvalidRequest) as info:
        SQLiteClient("db", "unused.db").check_request(request_)
    assert info.value.field == "request"


def test_a_string_is_not_a_transaction() -> None:
    """Transaction("SELECT 1") is refused (not eight one-character statements)."""
    with pytest.raises(InvalidRequest) as info:
        Transaction("SELECT 1")
    assert info.value.field == "queries"


def test_a_transaction_holds_only_queries() -> None:
    """Transaction([42]) is refused, naming the element."""
    with pytest.raises(InvalidRequest) as info:
        Transaction([Query("SELECT 1"), 42])
    assert info.value.field == "queries[1]"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sql": 42}, "sql"),
        ({"sql": ""}, "sql"),
        ({"sql": "  \n"}, "sql"),
        ({"sql": b"SELECT 1"}, "sql"),
        ({"sql": "SELECT ?", "params": "x"}, "params"),
        ({"sql": "SELECT ?", "params": b"x"}, "params"),
        ({"sql": "SELECT ?", "params": 5}, "params"),
        ({"sql": "SELECT ?", "params": {1, 2}}, "params"),
        ({"sql": "SELECT :a", "params": {1: "a"}}, "params"),
        ({"sql": "SELECT 1", "fetch": "many"}, "fetch"),
        ({"sql": "SELECT 1", "fetch": None}, "fetch"),
    ],
)
def test_query_refuses_malformed_fields(kwargs: dict[str, object], field: str) -> None:
    """The Query constructor names the malformed field."""
    with pytest.raises(InvalidRequest) as info:
        Query(**kwargs)  # type: ignore[arg-type]
    assert (info.value.service, info.value.field) == ("Query", field)


def test_query_repr_hides_parameter_values() -> None:
    """A Query's repr shows how many values it holds, never the values (even unprintable ones)."""
    query = Query("SELECT ?, ?", ["secret-value", 10**5000])
    assert repr(query) == "Query(sql='SELECT ?, ?', params=<2 values>, fetch='all')"


def _forged(sql: object, params: object = (), fetch: object = "all") -> Query:
    """A Query whose fields skipped the constructor's checks."""
    query = object.__new__(Query)
    for name, value in (("sql", sql), ("params", params), ("fetch", fetch)):
        object.__setattr__(query, name, value)
    return query


@pytest.mark.parametrize(
    "request_",
    [
        42,
        "SELECT 1",
        _forged(42),
        _forged("SELECT ?", "x"),
        _forged("SELECT 1", (), "many"),
        Query("SELECT ?", ["\ud800"]),
        Query("SELECT ?", [object()]),
        Query("SELECT ?", []),
        Query("SELECT 1\x00"),
        Query("SELECT 1; SELECT 2"),
    ],
    ids=[
        "int",
        "str",
        "forged-sql",
        "forged-params",
        "forged-fetch",
        "surrogate",
        "object",
        "missing-param",
        "nul",
        "two-statements",
    ],
)
async def test_malformed_requests_never_crash_the_actor(tmp_path: Path, request_: object) -> None:
    """Each malformed request is InvalidRequest for its caller; the actor still serves."""
    svc = service(tmp_path / "a.db")
    async with open_actor(svc.actor()) as ref:
        with pytest.raises(InvalidRequest):
            await ref.call(request_, timeout=5)  # type: ignore[arg-type]
        await _still_serves(ref)


async def test_a_query_may_not_leave_a_transaction_open(tmp_path: Path) -> None:
    """A bare BEGIN is rolled back and refused, so the pooled connection stays clean."""
    svc = service(tmp_path / "a.db", pool=attrs.evolve(ServiceConfig().pool, max_size=1))
    async with open_actor(svc.actor()) as ref:
        await ref.call(Query("CREATE TABLE t (x INTEGER)"))
        with pytest.raises(InvalidRequest, match="transaction open"):
            await ref.call(Query("BEGIN"))
        results = await transact(ref, Transaction([Query("INSERT INTO t VALUES (1)")]))
        assert [r.rowcount for r in results] == [1]


async def test_a_transaction_may_not_end_itself(tmp_path: Path) -> None:
    """A COMMIT inside a Transaction is refused, naming the statement."""
    svc = service(tmp_path / "a.db")
    async with open_actor(svc.actor()) as ref:
        with pytest.raises(InvalidRequest) as info:
            await ref.call(Transaction([Query("SELECT 1"), Query("COMMIT")]))
        assert info.value.field == "queries[1].sql"
        await _still_serves(ref)


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"busy_timeout": -1}, "busy_timeout"),
        ({"busy_timeout": float("inf")}, "busy_timeout"),
        ({"busy_timeout": float("nan")}, "busy_timeout"),
        ({"busy_timeout": "5"}, "busy_timeout"),
        ({"busy_timeout": True}, "busy_timeout"),
        ({"path": 42}, "path"),
        ({"path": ""}, "path"),
        ({"name": ""}, "name"),
        ({"name": 7}, "name"),
    ],
)
def test_client_options_are_checked(kwargs: dict[str, object], field: str) -> None:
    """Every SQLiteClient option is type- and range-checked, naming the field."""
    options: dict[str, object] = {"name": "db", "path": "a.db", **kwargs}
    with pytest.raises(ConfigError) as info:
        SQLiteClient(**options)  # type: ignore[arg-type]
    assert info.value.field == field
