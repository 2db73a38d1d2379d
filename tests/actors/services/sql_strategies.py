"""Hypothesis strategies for request-shaped input to the SQL clients: well-formed,
malformed, and forged around the constructors' checks."""

from __future__ import annotations

import datetime
import decimal
from typing import Any

from hypothesis import strategies as st

from actors import InvalidRequest
from actors.services.sql import Query, Transaction


def _huge(extra: int) -> int:
    return int(10 ** (5000 + extra))  # int ** int is Any to mypy (a negative power is a float)


# Any code point, surrogates included (they cannot be encoded as UTF-8).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)

# Values a driver may refuse: outside SQLite's 64 bits, too long to print, not UTF-8,
# holding a NUL, of no SQL type.
troublemakers = st.one_of(
    st.sampled_from([2**63, -(2**63) - 1, 2**70, -(2**100), "\ud800", "a\x00b", 1j]),
    st.integers(0, 3).map(_huge),
    st.builds(object),
)
atoms = st.one_of(
    troublemakers,
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
    st.binary(max_size=20),
    st.datetimes(),
    st.decimals(allow_nan=True),
    st.just(datetime.date(2020, 1, 1)),
    st.just(decimal.Decimal("1.5")),
)
values = st.recursive(
    atoms,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=2),
    max_leaves=4,
)
not_a_collection = st.one_of(st.none(), st.integers(), any_text, st.binary(max_size=5))


def requests(statements: list[str]) -> st.SearchStrategy[Any]:
    """Request-shaped input, from most to least plausible: queries of `statements` (with
    placeholders, and troublemakers such as BEGIN) with arbitrary parameters, then
    transactions of them, then arbitrary text, parameter collections and fetch modes,
    queries forged around the constructor's checks, and objects that are not requests.
    Yields the `InvalidRequest` where a constructor refuses the input."""
    statement = st.sampled_from(statements)
    fetch = st.sampled_from(["all", "one", "none"])
    shaped = st.builds(
        _build,
        st.just(Query),
        statement,
        st.lists(values, max_size=3) | st.dictionaries(st.sampled_from(["a", "b"]), values),
        fetch,
    )
    sql = st.one_of(statement, any_text, not_a_collection)
    params = st.one_of(
        st.lists(values, max_size=3),
        st.dictionaries(any_text, values, max_size=3),
        st.dictionaries(st.integers(), values, max_size=2),
        not_a_collection,
    )
    odd_fetch = fetch | any_text | st.none()
    query = st.builds(_build, st.just(Query), sql, params, odd_fetch)
    forged = st.builds(_forge, sql, params, odd_fetch)
    transaction = st.builds(_build, st.just(Transaction), st.lists(shaped, max_size=3))
    odd_transaction = st.builds(
        _build, st.just(Transaction), st.lists(query | forged | values, max_size=3) | any_text
    )
    return st.one_of(shaped, transaction, query, odd_transaction, forged, values)


def _build(kind: type[Any], *args: Any) -> Any:
    try:
        return kind(*args)
    except InvalidRequest as exc:
        return exc


def _forge(sql: object, params: object, fetch: object) -> Query:
    query = object.__new__(Query)
    for name, value in (("sql", sql), ("params", params), ("fetch", fetch)):
        object.__setattr__(query, name, value)
    return query
