"""The SQL service on a real PostgreSQL server started by the fixture (both backends).

Without PostgreSQL installed the tests skip, except where REQUIRE_SERVICES=1 (CI): there
a missing server fails the run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import anyio
import attrs
import pytest

from actors import CallTimeout, QueryError, RetryPolicy, ServiceUnavailable, open_actor
from actors.services import Secret, Service, ServiceConfig
from actors.services.sql import PostgresClient, Query, Transaction
from actors.testing import capture_events
from actors.testing._databases import PostgresServer, PostgresUnavailable, local_postgres

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    try:
        with local_postgres() as server:
            yield server
    except PostgresUnavailable as exc:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"REQUIRE_SERVICES=1 but PostgreSQL is unavailable: {exc}")
        pytest.skip(f"PostgreSQL is unavailable: {exc}")


def pg_service(server: PostgresServer, password: str | None = None) -> Service[object, object]:
    config = ServiceConfig.for_database(
        retry=RetryPolicy.for_database(backoff_initial=0.01, backoff_max=0.05, budget_ratio=None)
    )
    secret = Secret(password if password is not None else server.password)
    return Service(
        "pg",
        lambda: PostgresClient("pg", server.dsn_without_password(), password=secret),
        attrs.evolve(config),
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
        result = await ref.call(Query("SELECT name FROM people ORDER BY id"))
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
        assert (await ref.call(Query("SELECT count(*) FROM uniq"))).rows == [(0,)]
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
            active = await ref.call(query, timeout=5)
            if active.rows == [(0,)]:
                break
            await anyio.sleep(0.1)
        assert active is not None
        assert active.rows == [(0,)]
        assert time.monotonic() - start < 6  # not the 30 s the query asked for


async def test_lost_connection_is_retried_on_a_new_one(postgres: PostgresServer) -> None:
    """A connection killed by the server is ServiceUnavailable: retried on a fresh one."""
    svc = pg_service(postgres)
    async with open_actor(svc.actor()) as ref:
        pid = (await ref.call(Query("SELECT pg_backend_pid()"))).rows[0][0]
        other = pg_service(postgres)
        async with open_actor(other.actor()) as killer:
            await killer.call(Query("SELECT pg_terminate_backend(%s)", [pid]))
        result = await ref.call(Query("SELECT 42"), timeout=10)
        assert result.rows == [(42,)]
    assert svc.stats.attempts >= 3  # pid, the failed attempt, the retry


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
    from actors import ConfigError

    with pytest.raises(ConfigError, match="dsn"):
        PostgresClient("pg", postgres.dsn)
