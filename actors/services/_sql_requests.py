"""The SQL requests (`Query`, `Transaction`) and their reply (`QueryResult`), checked.

A request is checked twice with the same rules: when it is built (the constructor
raises `InvalidRequest` naming the request type, e.g. ``Query: invalid request: sql
must be a non-empty string``) and by the client's `check_request` before it is queued
(naming the service, and also catching requests built around the constructor). What
depends on the driver (which parameter types it can send, integer ranges) is checked
only by the client.

A request's repr never shows its parameter values: they may hold personal data, and
some (an integer of 5,000 digits) cannot even be printed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias

import attrs

from actors._errors import InvalidRequest

__all__ = ["Params", "Query", "QueryResult", "Request", "Response", "Transaction", "queries_of"]

Params: TypeAlias = Sequence[Any] | Mapping[str, Any]
_FETCH = ("all", "one", "none")


def sql_problem(value: object) -> str | None:
    """Why `value` is not a usable statement text, or None."""
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if not value.strip():
        return "must be a non-empty string"
    return None


def params_problem(value: object) -> tuple[str, str] | None:
    """Why `value` is not a usable parameter collection, as (field, reason), or None."""
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                return "params", f"keys must be strings, not {type(key).__name__}"
        return None
    if isinstance(value, str | bytes | bytearray | memoryview) or not isinstance(value, Sequence):
        return "params", f"must be a sequence or a mapping, not {type(value).__name__}"
    return None


def fetch_problem(value: object) -> str | None:
    """Why `value` is not a fetch mode, or None."""
    return None if isinstance(value, str) and value in _FETCH else "must be 'all', 'one' or 'none'"


def query_problem(query: object) -> tuple[str, str] | None:
    """The first problem of a (possibly hand-built) `Query`, as (field, reason), or None."""
    if not isinstance(query, Query):
        return "", f"must be a Query, not {type(query).__name__}"
    reason = sql_problem(query.sql)
    if reason is not None:
        return "sql", reason
    problem = params_problem(query.params)
    if problem is not None:
        return problem
    reason = fetch_problem(query.fetch)
    return None if reason is None else ("fetch", reason)


def _params(value: object) -> Params:
    if value is None:
        return ()
    problem = params_problem(value)
    if problem is not None:
        raise InvalidRequest("Query", *problem)
    assert isinstance(value, Sequence | Mapping)
    return dict(value) if isinstance(value, Mapping) else tuple(value)


def _params_repr(value: Params) -> str:
    if isinstance(value, Mapping):
        return f"<{len(value)} named values>"
    return f"<{len(value)} values>"


def _check_sql(_inst: object, _attr: attrs.Attribute[Any], value: object) -> None:
    reason = sql_problem(value)
    if reason is not None:
        raise InvalidRequest("Query", "sql", reason)


def _check_fetch(_inst: object, _attr: attrs.Attribute[Any], value: object) -> None:
    reason = fetch_problem(value)
    if reason is not None:
        raise InvalidRequest("Query", "fetch", reason)


@attrs.frozen
class Query:
    """One parameterised statement.

    Attributes:
        sql: The statement, with placeholders (`?`/`:name` for SQLite, `%s`/`%(name)s`
            for PostgreSQL). Values never go into this string.
        params: The values for the placeholders: a sequence, or a mapping with string
            keys (shown in no repr).
        fetch: "all" rows, "one" row, or "none" (just the row count).

    Raises:
        InvalidRequest: `sql` is not a non-empty string, `params` is not a sequence
            (a string is not) or a mapping with string keys, or `fetch` is unknown.
    """

    sql: str = attrs.field(validator=_check_sql)
    params: Params = attrs.field(default=(), converter=_params, repr=_params_repr)
    fetch: Literal["all", "one", "none"] = attrs.field(default="all", validator=_check_fetch)


def _queries(value: object) -> tuple[Query, ...]:
    if isinstance(value, str | bytes | bytearray | memoryview) or not isinstance(value, Sequence):
        raise InvalidRequest(
            "Transaction",
            "queries",
            f"must be a list of Query, not {type(value).__name__}",
        )
    for index, query in enumerate(value):
        if not isinstance(query, Query):
            raise InvalidRequest(
                "Transaction", f"queries[{index}]", f"must be a Query, not {type(query).__name__}"
            )
    return tuple(value)


@attrs.frozen
class Transaction:
    """Statements run atomically: all commit, or none do (the error is raised).

    The statements must not end the transaction themselves (no COMMIT or ROLLBACK).

    Raises:
        InvalidRequest: `queries` is not a list (a string is not) of `Query`.
    """

    queries: tuple[Query, ...] = attrs.field(converter=_queries)


@attrs.frozen
class QueryResult:
    """What a statement returned."""

    rows: list[tuple[Any, ...]]
    rowcount: int
    columns: tuple[str, ...] = ()


Request: TypeAlias = Query | Transaction
Response: TypeAlias = QueryResult | list[QueryResult]


def queries_of(service: str, request: object) -> list[tuple[str, Query]]:
    """The statements of a request, each with its field path, checked.

    Raises:
        InvalidRequest: Not a `Query` or `Transaction`, or a statement in it fails the
            constructor's checks (naming `service` and the field, e.g.
            ``queries[2].params``).
    """
    if isinstance(request, Query):
        found = [("", request)]
    elif isinstance(request, Transaction):
        queries = request.queries
        if not isinstance(queries, tuple):
            raise InvalidRequest(service, "queries", "must be a tuple of Query")
        found = [(f"queries[{index}].", query) for index, query in enumerate(queries)]
    else:
        raise InvalidRequest(
            service, "request", f"must be a Query or a Transaction, not {type(request).__name__}"
        )
    for prefix, query in found:
        problem = query_problem(query)
        if problem is not None:
            field, reason = problem
            raise InvalidRequest(service, (prefix + field).rstrip(".") or "request", reason)
    return found
