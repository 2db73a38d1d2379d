"""Property: arbitrary request-shaped input to the SQLite and PostgreSQL service actors
yields a reply or a documented error (`InvalidRequest`, `QueryError`), never anything
else, and the actor keeps serving on a clean connection afterwards (both backends)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings

from actors import (
    InvalidRequest,
    QueryError,
    Secret,
    Service,
    ServiceClient,
    ServiceConfig,
    open_actor,
)
from actors.services.sql import PostgresClient, Query, QueryResult, SQLiteClient
from actors.testing import PostgresServer

from .sql_strategies import requests

SQLITE_STATEMENTS = [
    "SELECT ?",
    "SELECT ?, ?",
    "SELECT :a, :b",
    "INSERT INTO t VALUES (?)",
    "SELECT x FROM t LIMIT 3",
    "BEGIN",
    "COMMIT",
    "SELECT 1; SELECT 2",
    "SELEC oops",
]
POSTGRES_STATEMENTS = [
    "SELECT %s",
    "SELECT %s, %s",
    "SELECT %(a)s, %(b)s",
    "INSERT INTO props VALUES (%s)",
    "SELECT x FROM props LIMIT 3",
    "BEGIN",
    "COMMIT",
    "SELECT 1; SELECT 2",
    "SELECT %s::int",
    "SELEC oops",
]
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class Harness:
    """A service actor run by a blocking portal, called from the (sync) property test, and
    a client with a connection of its own, to send requests past `check_request`."""

    def __init__(
        self, portal: BlockingPortal, ref: Any, client: ServiceClient[Any, Any, Any], conn: Any
    ) -> None:
        self.portal, self.ref, self.client, self.conn = portal, ref, client, conn

    def call(self, request: object) -> object:
        return self.portal.call(lambda: self.ref.call(request, timeout=20))

    def send(self, request: object) -> object:
        return self.portal.call(self.client.request, self.conn, request)


def _harness(backend: str, client: Callable[[], ServiceClient[Any, Any, Any]]) -> Iterator[Harness]:
    svc = Service("db", client, ServiceConfig.for_database(retry=None, breaker=None))
    direct = client()
    with start_blocking_portal(backend) as portal:
        with portal.wrap_async_context_manager(open_actor(svc.actor())) as ref:
            conn = portal.call(direct.connect)
            try:
                yield Harness(portal, ref, direct, conn)
            finally:
                portal.call(direct.close, conn)


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def sqlite_actor(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[Harness]:
    path: Path = tmp_path_factory.mktemp("props") / "props.db"
    yield from _harness(request.param, lambda: SQLiteClient("db", path, busy_timeout=1))


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def postgres_actor(request: pytest.FixtureRequest, postgres: PostgresServer) -> Iterator[Harness]:
    secret = Secret(postgres.password)
    yield from _harness(
        request.param,
        lambda: PostgresClient("db", postgres.dsn_without_password(), password=secret),
    )


def _replied(reply: object) -> bool:
    replies = reply if isinstance(reply, list) else [reply]
    return all(isinstance(item, QueryResult) for item in replies)


def _check(harness: Harness, request: object, table: str) -> None:
    harness.call(Query(f"CREATE TABLE IF NOT EXISTS {table} (x INTEGER)"))
    with contextlib.suppress(InvalidRequest):
        harness.client.check_request(request)
    for send in (harness.call, harness.send):  # through the actor, and past check_request
        try:
            reply = send(request)
        except (InvalidRequest, QueryError):
            pass
        else:
            assert _replied(reply)
        assert harness.ref.alive
        after = send(Query("SELECT 1", fetch="one"))
        assert isinstance(after, QueryResult)
        assert after.rows == [(1,)]


@SETTINGS
@given(request=requests(SQLITE_STATEMENTS))
def test_sqlite_answers_any_request_or_refuses_it(sqlite_actor: Harness, request: object) -> None:
    """SQLite: a reply or a documented error, and the actor serves the next caller."""
    if isinstance(request, InvalidRequest):
        return  # the constructor refused it: nothing reaches the actor
    _check(sqlite_actor, request, "t")


@SETTINGS
@given(request=requests(POSTGRES_STATEMENTS))
def test_postgres_answers_any_request_or_refuses_it(
    postgres_actor: Harness, request: object
) -> None:
    """PostgreSQL: a reply or a documented error, and the actor serves the next caller."""
    if isinstance(request, InvalidRequest):
        return
    _check(postgres_actor, request, "props")
