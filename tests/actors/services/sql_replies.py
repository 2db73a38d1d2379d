"""Typed access to a SQL service actor's replies for the tests.

A SQL actor answers `Query | Transaction` with `QueryResult | list[QueryResult]`; these
helpers narrow a reply to what its request gets, so a test reads `.rows` type-checked.
"""

from __future__ import annotations

from actors import ActorRef, Service
from actors.services.sql import Query, QueryResult, Transaction

SQLService = Service[Query | Transaction, QueryResult | list[QueryResult]]
SQLRef = ActorRef[Query | Transaction, QueryResult | list[QueryResult]]


async def fetch(ref: SQLRef, query: Query, *, timeout: float | None = None) -> QueryResult:
    """`ref.call(query)`: a Query's reply is one `QueryResult`."""
    result = await ref.call(query, timeout=timeout)
    assert isinstance(result, QueryResult)
    return result


async def transact(
    ref: SQLRef, transaction: Transaction, *, timeout: float | None = None
) -> list[QueryResult]:
    """`ref.call(transaction)`: a Transaction's reply is a `QueryResult` per statement."""
    results = await ref.call(transaction, timeout=timeout)
    assert isinstance(results, list)
    return results
