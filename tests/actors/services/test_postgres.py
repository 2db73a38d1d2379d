"""The SQL service on a real PostgreSQL server started by the fixture (both backends).

The `postgres` fixture (conftest.py) skips without PostgreSQL installed, except where
REQUIRE_SERVICES=1 (CI): there a missing server fails the run.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import attrs
import pytest

from actors import (
    CallTimeout,
    ConfigError,
    InvalidRequest,
    QueryError,
    Secret,
    Service,
    ServiceConfig,
    ServiceUnavailable,
    open_actor,
)
from actors.resilience import RetryPolicy
from actors.services.sql import PostgresClient, Query, QueryResult, Transaction
from actors.testing import PostgresServer, capture_events
from tests.actors.services.sql_replies import SQLService, fetch, transact

pytestmark = pytest.mark.anyio


def pg_service(server: PostgresServer, password: str | None = None, **changes: Any) -> SQLService:
    config = ServiceConfig.for_database(
        retry=RetryPolicy.for_database(backoff_initial=0.01, backoff_max=0.05, budget_ratio=None)
    )
    secret = Secret(password if password is not None else server.password)
    return Service(
        "pg",
        lambda: PostgresClient("pg", server.dsn_without_password(), password=secret),
        attrs.evolve(config, **changes),
    )


async def test_parameterised_round_trip(postgres: PostgresServer) -> None:
    """Create, insert with parameters (injection-proof) and select."""
    svc = pg_service(postgres)
    async with open_actor(svc.actor()) as ref:
        await ref.call(Query("DROP TABLE IF EXISTS people"))
        await ref.call(Query("CREATE TABLE people (id serial PRIMARY KEY, name text)"))
        await ref.call(Query("INSERT INTO people (name) VALUES (%s)", ["ada"]))
        await ref.call(
            Query("INSERT INTO people (name) VALUES (%(n)s)", {"n": "x'); DROP TABLE people; --"})
        )
        result = await fetch(ref, Query("SELECT name FROM people ORDER BY id"))
    assert result.rows == [("ada",), ("x'); DROP TABLE people; --",)]


async def test_transaction_rolls_back_on_error(postgres: PostgresServer) -> None:
    """A failing statement rolls the whole transaction back; the error is permanent."""
    svc = pg_service(postgres)
    async with open_actor(svc.actor()) as ref:
        await ref.call(Query("DROP TABLE IF EXISTS uniq"))
        await ref.call(Query("CREATE TABLE uniq (v int UNIQUE)"))
        with pytest.raises(QueryError) as info:
            await ref.call(
                Transaction(
                    [Query("INSERT INTO uniq VALUES (1)"), Query("INSERT INTO uniq VALUES (1)")]
                )
            )
        assert info.value.sqlstate == "23505"
        attempts = svc.stats.attempts
        assert (await fetch(ref, Query("SELECT count(*) FROM uniq"))).rows == [(0,)]
    assert attempts == 3  # drop, create, the transaction once: not retried


async def test_deadline_cancels_the_query_on_the_server(postgres: PostgresServer) -> None:
    """A query past the caller's deadline ends with CallTimeout on time, and the server
    stops running it (cancel_safe), so the next query does not wait for it."""
    svc = pg_service(postgres)
    async with open_actor(svc.actor()) as ref:
        start = time.monotonic()
        with pytest.raises(CallTimeout):
            await ref.call(Query("SELECT pg_sleep(30)"), timeout=0.5)
        assert time.monotonic() - start < 3
        query = Query(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE query LIKE 'SELECT pg_sleep(30)%%' AND state = 'active'"
        )
        active = None
        for _ in range(30):  # the server cancels asynchronously: allow it a moment
            active = await fetch(ref, query, timeout=5)
            if active.rows == [(0,)]:
                break
            await anyio.sleep(0.1)
        assert active is not None
        assert active.rows == [(0,)]
        assert time.monotonic() - start < 6  # not the 30 s the query asked for


async def _terminate(server: PostgresServer, pid: int) -> None:
    killer = pg_service(server)
    async with open_actor(killer.actor()) as ref:
        reply = await fetch(ref, Query("SELECT pg_terminate_backend(%s)", [pid]))
    assert reply.rows == [(True,)]


async def test_terminated_backend_is_retried_once_on_a_fresh_connection(
    postgres: PostgresServer,
) -> None:
    """A backend ended by pg_terminate_backend (57P01) costs exactly one retry, which runs
    on a new connection (a new backend pid)."""
    svc = pg_service(postgres, pool=attrs.evolve(ServiceConfig.for_database().pool, max_size=1))
    async with open_actor(svc.actor()) as ref:
        pid = (await fetch(ref, Query("SELECT pg_backend_pid()"))).rows[0][0]
        await _terminate(postgres, pid)
        before = svc.stats.attempts
        again = (await fetch(ref, Query("SELECT pg_backend_pid()"), timeout=10)).rows[0][0]
        assert svc.stats.attempts - before == 2  # the failed attempt and one retry
    assert again != pid


async def test_terminated_backend_is_unavailable_and_discarded(postgres: PostgresServer) -> None:
    """Without retries, the terminated connection fails its call with ServiceUnavailable
    naming SQLSTATE 57P01, and is discarded: the next call runs on a fresh one."""
    svc = pg_service(
        postgres, retry=None, pool=attrs.evolve(ServiceConfig.for_database().pool, max_size=1)
    )
    async with open_actor(svc.actor()) as ref:
        pid = (await fetch(ref, Query("SELECT pg_backend_pid()"))).rows[0][0]
        await _terminate(postgres, pid)
        with pytest.raises(ServiceUnavailable, match="57P01"):
            await ref.call(Query("SELECT 1"), timeout=10)
        again = (await fetch(ref, Query("SELECT pg_backend_pid()"), timeout=10)).rows[0][0]
    assert again != pid


async def test_closed_connection_is_unavailable(postgres: PostgresServer) -> None:
    """A connection closed under the client ("the connection is closed") is ServiceUnavailable."""
    client = PostgresClient(
        "pg", postgres.dsn_without_password(), password=Secret(postgres.password)
    )
    conn = await client.connect()
    await client.close(conn)
    with pytest.raises(ServiceUnavailable) as info:
        await client.request(conn, Query("SELECT 1"))
    assert client.connection_broken(info.value)


async def test_wrong_password_is_unavailable_and_never_shown(postgres: PostgresServer) -> None:
    """A wrong password is ServiceUnavailable; neither password shows anywhere."""
    wrong = "definitely-wrong-password-123"
    svc = pg_service(postgres, password=wrong)
    with capture_events() as events:
        async with open_actor(svc.actor()) as ref:
            with pytest.raises(ServiceUnavailable) as info:
                await ref.call(Query("SELECT 1"), timeout=10)
    for text in (str(info.value), repr(info.value), *map(repr, events)):
        assert wrong not in text
        assert postgres.password not in text


async def test_password_in_the_dsn_is_refused(postgres: PostgresServer) -> None:
    """Passing the password inside the DSN is a ConfigError (use a Secret)."""
    with pytest.raises(ConfigError, match="dsn"):
        PostgresClient("pg", postgres.dsn)


SECRET = "Hunter2-s3cr3t"
DSNS_WITH_A_PASSWORD = [
    f"postgresql://ada:{SECRET}@127.0.0.1/db",
    f"postgresql://ada@127.0.0.1/db?password={SECRET}",
    f"postgresql://ada@127.0.0.1/db?sslmode=disable&password={SECRET}",
    f"postgresql://ada@127.0.0.1/db?pass%77ord={SECRET}",
    f"postgresql://ada:{SECRET.replace('-', '%2D')}@127.0.0.1/db",
    f"postgres://ada:{SECRET}@[::1]:5432/db",
    f"host=127.0.0.1 password={SECRET}",
    f"host=127.0.0.1 password = {SECRET}",
    f"host=127.0.0.1 password='{SECRET}'",
    f"host=127.0.0.1 password='{SECRET} with spaces'",
    f"host=127.0.0.1   password\t=\t{SECRET} dbname=db",
    f"dbname=db sslpassword={SECRET}",
]


def _texts(exc: BaseException) -> list[str]:
    """str and repr of an exception and of everything chained to it."""
    texts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        texts += [str(seen), repr(seen), repr(getattr(seen, "value", None))]
        seen = seen.__cause__ or seen.__context__
    return texts


@pytest.mark.parametrize("dsn", DSNS_WITH_A_PASSWORD)
def test_every_dsn_form_carrying_a_password_is_refused(dsn: str) -> None:
    """URL userinfo, URL parameter (plain or percent-encoded), key=value with spaces, quotes
    or tabs: each is a ConfigError on `dsn` that shows neither the DSN nor the password."""
    dsn = dsn.replace("\\t", "\t")
    with pytest.raises(ConfigError) as info:
        PostgresClient("pg", dsn)
    assert info.value.field == "dsn"
    for text in _texts(info.value):
        assert SECRET not in text
        assert SECRET.replace("-", "%2D") not in text


@pytest.mark.parametrize("dsn", ["postgresql://[::1", "host=a password", "postgresql://h/d?x=1"])
def test_unparsable_dsn_is_refused_without_echoing_it(dsn: str) -> None:
    """A DSN libpq cannot parse is a ConfigError that quotes nothing of it (nor chains
    the driver's message, which would)."""
    with pytest.raises(ConfigError) as info:
        PostgresClient("pg", dsn + SECRET)
    for text in _texts(info.value):
        assert SECRET not in text


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"dsn": 42}, "dsn"),
        ({"password": "plain-text"}, "password"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"connect_timeout": -1}, "connect_timeout"),
        ({"connect_timeout": float("inf")}, "connect_timeout"),
        ({"connect_timeout": "5"}, "connect_timeout"),
        ({"name": ""}, "name"),
    ],
)
def test_client_options_are_checked(kwargs: dict[str, object], field: str) -> None:
    """Every PostgresClient option is type- and range-checked, naming the field."""
    options: dict[str, object] = {"name": "pg", "dsn": "host=127.0.0.1", **kwargs}
    with pytest.raises(ConfigError) as info:
        PostgresClient(**options)  # type: ignore[arg-type]
    assert info.value.field == field
    assert "plain-text" not in str(info.value)


def test_a_client_with_a_secret_shows_no_password(postgres: PostgresServer) -> None:
    """The client's repr and attributes' reprs never show the password."""
    client = PostgresClient("pg", postgres.dsn_without_password(), password=Secret(SECRET))
    assert SECRET not in repr(client)
    assert all(SECRET not in repr(value) for value in vars(client).values())


# -- requests a caller gets wrong: that caller fails, the actor carries on ---------------------


@pytest.mark.parametrize(
    "query",
    [
        Query("SELECT %s", [object()]),
        Query("SELECT %s", [{"a": 1}]),
        Query("SELECT %s", ["a\x00b"]),
        Query("SELECT %s", ["\ud800"]),
        Query("SELECT %s", [[1, "a"]]),
        Query("SELECT %s", []),
        Query("SELECT %s", {"a": 1}),
        Query("SELECT %(a)s", [1]),
        Query("BEGIN"),
    ],
    ids=[
        "object",
        "dict",
        "nul",
        "surrogate",
        "mixed-list",
        "missing",
        "mapping-for-positional",
        "sequence-for-named",
        "begin",
    ],
)
async def test_malformed_requests_never_crash_the_actor(
    postgres: PostgresServer, query: Query
) -> None:
    """Each is InvalidRequest for that one caller, not retried; the actor still serves on a
    clean connection."""
    svc = pg_service(postgres, pool=attrs.evolve(ServiceConfig.for_database().pool, max_size=1))
    async with open_actor(svc.actor()) as ref:
        with pytest.raises(InvalidRequest) as info:
            await ref.call(query, timeout=10)
        assert info.value.service == "pg"
        assert ref.alive
        status = await fetch(ref, Query("SELECT 1"), timeout=10)
        assert status.rows == [(1,)]
        results = await transact(ref, Transaction([Query("SELECT 2")]), timeout=10)
        assert results[0].rows == [(2,)]


async def test_the_driver_refusing_a_parameter_is_translated(postgres: PostgresServer) -> None:
    """Past check_request, psycopg's own refusal (an unadaptable type) is InvalidRequest."""
    client = PostgresClient(
        "pg", postgres.dsn_without_password(), password=Secret(postgres.password)
    )
    conn = await client.connect()
    try:
        with pytest.raises(InvalidRequest) as info:
            await client.request(conn, Query("SELECT %s", [object()]))
        assert info.value.field == "params"
        result = await client.request(conn, Query("SELECT 1"))
        assert isinstance(result, QueryResult)
        assert result.rows == [(1,)]
    finally:
        await client.close(conn)


def test_check_request_refuses_types_psycopg_cannot_send(postgres: PostgresServer) -> None:
    """check_request names the parameter psycopg has no adapter for."""
    client = PostgresClient("pg", postgres.dsn_without_password())
    with pytest.raises(InvalidRequest) as info:
        client.check_request(Transaction([Query("SELECT %(a)s", {"a": {"json": 1}})]))
    assert info.value.field == "queries[0].params.a"
    client.check_request(Query("SELECT %s, %s, %s", [10**5000, None, [1, 2]]))  # accepted
