"""SQL requests as database client spans and metrics (OpenTelemetry semantic conventions
for database client calls: ``db.*`` attributes, ``db.client.operation.duration``).

An attempt is named after its operation (the statement's first keyword, ``SELECT``;
``BATCH INSERT`` or ``BATCH`` for a `Transaction`, with ``db.operation.batch.size``),
else after the database system. Query text (placeholders only: values never travel in
it) is recorded only when the service captures content; parameter values never are.
A failure carries the database's own code (SQLSTATE, or SQLite's error name) as
``db.response.status_code`` and ``error.type``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from actors._errors import QueryError
from actors._otel_metrics import DB_DURATION
from actors._tracing import AttributeValue, Operation, error_type
from actors.services._sql_requests import Query, QueryResult, Transaction

__all__ = ["sql_failure", "sql_operation", "sql_outcome"]

_MAX_KEYWORD: Final = 16


def _keyword(sql: object) -> str | None:
    """The statement's first keyword, upper-cased (None if it does not start with one)."""
    if not isinstance(sql, str):
        return None
    head = sql.lstrip()[: _MAX_KEYWORD + 1].split(None, 1)
    word = head[0] if head else ""
    return word.upper() if word.isascii() and word.isalpha() and len(word) <= _MAX_KEYWORD else None


def sql_operation(
    request: object, *, system: str, known: Mapping[str, AttributeValue], content: bool
) -> Operation:
    """One attempt of a `Query` or `Transaction` on `system` ("sqlite", "postgresql");
    `known` adds the connection's attributes (namespace, server)."""
    attributes: dict[str, AttributeValue] = {"db.system.name": system, **known}
    queries: tuple[Query, ...] = ()
    if isinstance(request, Query):
        queries = (request,)
        operation = _keyword(request.sql)
    elif isinstance(request, Transaction) and isinstance(request.queries, tuple):
        queries = request.queries
        kinds = {_keyword(query.sql) for query in queries}
        single = kinds.pop() if len(kinds) == 1 else None
        operation = f"BATCH {single}" if single else "BATCH"
        if len(queries) > 1:
            attributes["db.operation.batch.size"] = len(queries)
    else:
        operation = None
    if operation is not None:
        attributes["db.operation.name"] = operation
    if content and queries:
        attributes["db.query.text"] = "; ".join(str(query.sql) for query in queries)
    return Operation(name=operation or system, attributes=attributes, metric=DB_DURATION)


def sql_outcome(response: object) -> dict[str, AttributeValue]:
    """``db.response.returned_rows`` of a single statement's result."""
    if isinstance(response, QueryResult):
        return {"db.response.returned_rows": len(response.rows)}
    return {}


def sql_failure(exc: Exception) -> dict[str, AttributeValue]:
    """The database's code of a failed statement, else the failure's type."""
    if isinstance(exc, QueryError):
        code = exc.sqlstate or exc.sqlite_errorname
        if code:
            return {"db.response.status_code": code, "error.type": code}
    return {"error.type": error_type(exc)}
