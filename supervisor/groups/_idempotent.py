"""Which requests may be sent twice (hedged): the ones that declare themselves idempotent.

A request declares it with an ``idempotent`` attribute (True or False). Without one:
a chat completion is idempotent (asking twice costs tokens, changes nothing), an MCP
tool listing is, a SQL `Query` is when its statement only reads, and nothing else is
(an MCP tool call may act on the world; a `Transaction` writes). A SQL write is never
idempotent, whatever it declares or a policy says: a statement counts as a read only
when it starts with SELECT, WITH, VALUES, SHOW or EXPLAIN, fetches rows, and names
none of the words that write, lock or call code anywhere in its text (even inside a
string literal: a false "write" only means no hedge).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from actors.services import ChatRequest
from actors.services.mcp import ListTools
from actors.services.sql import Query, Transaction

__all__ = ["hedgeable", "is_idempotent", "is_sql_write"]

_READS: Final = frozenset({"select", "with", "values", "show", "explain"})
_WRITES: Final = re.compile(
    r"\b(insert|update|delete|merge|upsert|replace|create|drop|alter|truncate|grant|revoke"
    r"|copy|call|do|lock|vacuum|analyze|reindex|cluster|refresh|attach|detach|pragma|set"
    r"|reset|notify|listen|comment|security|into|nextval|setval|lastval|pg_advisory_lock"
    r"|for\s+update|for\s+share|for\s+no\s+key|returning|execute|prepare)\b",
    re.IGNORECASE,
)
_COMMENTS: Final = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


def _reads_only(sql: str) -> bool:
    text = _COMMENTS.sub(" ", sql).strip().lstrip("(").strip()
    first = text.split(None, 1)[0].lower() if text else ""
    return first in _READS and _WRITES.search(text) is None


def is_sql_write(request: object) -> bool:
    """Whether `request` is a SQL request that is not a plain read (a `Transaction`,
    or a `Query` that may write, lock or call code)."""
    if isinstance(request, Transaction):
        return True
    if isinstance(request, Query):
        return request.fetch == "none" or not _reads_only(request.sql)
    return False


def is_idempotent(request: object) -> bool:
    """Whether `request` may be sent twice (see the module docstring)."""
    if is_sql_write(request):
        return False
    declared = getattr(request, "idempotent", None)
    if isinstance(declared, bool):
        return declared
    return isinstance(request, ChatRequest | ListTools | Query)


def hedgeable(policy: Callable[[Any], bool] | None) -> Callable[[Any], bool]:
    """The predicate hedging uses: `policy` (default `is_idempotent`), with the SQL
    veto on top."""
    if policy is None:
        return is_idempotent

    def allowed(request: Any) -> bool:
        return not is_sql_write(request) and bool(policy(request))

    return allowed
