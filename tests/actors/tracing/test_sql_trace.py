"""Database client spans and metrics of the SQL service actors: a real SQLite file, and a
throw-away PostgreSQL server (both backends)."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from actors import QueryError, Secret, Service, ServiceConfig, open_actor
from actors.resilience import RetryPolicy
from actors.services.sql import PostgresClient, Query, SQLiteClient, Transaction
from actors.testing import PostgresServer
from tests.actors.services.sql_replies import SQLService
from tests.actors.tracing.conftest import Telemetry, attributes, texts

pytestmark = pytest.mark.anyio


def sqlite_service(path: Path, **changes: object) -> SQLService:
    config = ServiceConfig.for_database(retry=None, **changes)
    return Service("db", lambda: SQLiteClient("db", path / "trace.db"), config)


async def run(svc: SQLService, *requests: Query | Transaction) -> None:
    async with open_actor(svc.actor(), name="db") as ref:
        for request in requests:
            await ref.call(request, timeout=10)


async def test_a_query_is_a_database_client_span(tmp_path: Path, telemetry: Telemetry) -> None:
    """A statement is a CLIENT span named after its operation, under the caller's call."""
    await run(sqlite_service(tmp_path), Query("SELECT ? + 1", (41,)))
    (span,) = telemetry.named("SELECT")
    (call,) = telemetry.named("call db")
    assert span.kind is SpanKind.CLIENT
    assert span.parent is not None
    assert span.parent.span_id == call.context.span_id
    assert attributes(span)["db.system.name"] == "sqlite"
    assert attributes(span)["db.operation.name"] == "SELECT"
    assert attributes(span)["db.response.returned_rows"] == 1
    assert "db.query.text" not in attributes(span)


async def test_query_text_only_when_captured(tmp_path: Path, telemetry: Telemetry) -> None:
    """With capture_content the statement's text (placeholders) is recorded; its
    parameter values never are."""
    await run(sqlite_service(tmp_path, capture_content=True), Query("SELECT ?", ("s3cr3t-value",)))
    (span,) = telemetry.named("SELECT")
    assert attributes(span)["db.query.text"] == "SELECT ?"
    assert not any("s3cr3t-value" in text for text in texts(telemetry.spans()))


async def test_a_transaction_is_a_batch(tmp_path: Path, telemetry: Telemetry) -> None:
    """A transaction of inserts is one ``BATCH INSERT`` span with its batch size."""
    await run(
        sqlite_service(tmp_path),
        Query("CREATE TABLE t (x INTEGER)"),
        Transaction([Query("INSERT INTO t VALUES (?)", (1,)), Query("INSERT INTO t VALUES (2)")]),
    )
    (span,) = telemetry.named("BATCH INSERT")
    assert attributes(span)["db.operation.name"] == "BATCH INSERT"
    assert attributes(span)["db.operation.batch.size"] == 2


async def test_a_failed_statement_carries_the_database_code(
    tmp_path: Path, telemetry: Telemetry
) -> None:
    """A statement the database rejects has its code as status code and error.type."""
    with pytest.raises(QueryError):
        await run(sqlite_service(tmp_path), Query("SELECT * FROM missing"))
    (span,) = telemetry.named("SELECT")
    assert attributes(span)["db.response.status_code"] == "SQLITE_ERROR"
    assert attributes(span)["error.type"] == "SQLITE_ERROR"
    assert span.status.status_code is StatusCode.ERROR


async def test_db_client_operation_duration(tmp_path: Path, telemetry: Telemetry) -> None:
    """Each statement is a db.client.operation.duration point with the convention's
    attributes, failures with their error.type."""
    with pytest.raises(QueryError):
        await run(sqlite_service(tmp_path), Query("SELECT 1"), Query("DELETE FROM missing"))
    metric = telemetry.metrics()["db.client.operation.duration"]
    assert metric.unit == "s"
    points = {
        tuple(sorted(point.attributes.items())): point.count for point in metric.data.data_points
    }
    assert points == {
        (("db.operation.name", "SELECT"), ("db.system.name", "sqlite")): 1,
        (
            ("db.operation.name", "DELETE"),
            ("db.response.status_code", "SQLITE_ERROR"),
            ("db.system.name", "sqlite"),
            ("error.type", "SQLITE_ERROR"),
        ): 1,
    }


async def test_postgres_spans_name_the_database_and_server(
    postgres: PostgresServer, telemetry: Telemetry
) -> None:
    """A PostgreSQL statement's span carries the DSN's database and server, never the
    password."""
    svc = Service(
        "pg",
        lambda: PostgresClient(
            "pg", postgres.dsn_without_password(), password=Secret(postgres.password)
        ),
        ServiceConfig.for_database(retry=RetryPolicy.for_database(budget_ratio=None)),
    )
    async with open_actor(svc.actor(), name="pg") as ref:
        await ref.call(Query("SELECT 1"), timeout=20)
    (span,) = telemetry.named("SELECT")
    assert attributes(span)["db.system.name"] == "postgresql"
    assert attributes(span)["db.namespace"] == postgres.database
    assert attributes(span)["server.address"] == "127.0.0.1"
    assert attributes(span)["server.port"] == postgres.port
    assert not any(postgres.password in text for text in texts(telemetry.spans()))
