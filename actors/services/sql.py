"""SQL services: SQLite (stdlib, the embedded default) and PostgreSQL (psycopg 3, extra
`postgres`), both through worker threads.

Async drivers (psycopg's async mode, asyncpg, aiosqlite) do not run under trio, so each
statement runs in a thread with `anyio.to_thread`, and cancellation reaches the
database: SQLite's `interrupt()` stops the running statement, PostgreSQL's
`cancel_safe()` asks the server to cancel it. A cancelled connection is then closed by
the pool (a connection cancelled mid-statement may be left in a transaction).

Only parameterised statements exist in this API (`Query(sql, params)`); a `Transaction`
runs several atomically. Errors are translated at this boundary, so nothing a caller
sends can crash the actor:

- the driver refusing the request before the database sees it (a parameter of a type
  it cannot send, an integer out of range, a wrong number of parameters, text that is
  not UTF-8, a statement leaving a transaction open) is `InvalidRequest`, the caller's
  mistake; `check_request` catches most of it before the request is queued;
- the database rejecting a statement is `QueryError` with its SQLSTATE (PostgreSQL) or
  SQLite error name: busy/locked, deadlock and serialization failures are retryable,
  syntax and constraint errors are the caller's;
- a connection that cannot be opened, or that the server ended (a terminated backend,
  SQLSTATE 57P01, and the "connection is closed" that follows), is
  `ServiceUnavailable`: the pool discards that connection and the retry opens a fresh
  one.
"""

from __future__ import annotations

import functools
import math
import os
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

from actors._envelope import current_correlation_id
from actors._errors import ConfigError, InvalidRequest, QueryError, ServiceUnavailable
from actors._public import publish as _publish
from actors._redact import one_line
from actors._tracing import AttributeValue, Operation
from actors._validate import check_finite_non_negative, check_finite_positive, check_instance
from actors.services._base import Secret, ServiceClient
from actors.services._sql_requests import (
    Params,
    Query,
    QueryResult,
    Request,
    Response,
    Transaction,
    queries_of,
    sql_problem,
)
from actors.services._sql_telemetry import sql_failure, sql_operation, sql_outcome

__all__ = ["PostgresClient", "Query", "QueryResult", "SQLiteClient", "Transaction"]

T = TypeVar("T")
_MESSAGE_LIMIT = 300


async def _interruptible(run: Callable[[], T], interrupt: Callable[[], Awaitable[None]]) -> T:
    """Runs `run` in a worker thread; if cancelled meanwhile, awaits `interrupt()`
    (shielded) so the database stops the statement, then propagates the cancellation."""
    finished = False
    interrupted = False
    outcome: list[Any] = []

    async def watch() -> None:
        nonlocal interrupted
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            if not finished:
                interrupted = True
                with anyio.CancelScope(shield=True):
                    await interrupt()
            raise

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        try:
            outcome.append(await anyio.to_thread.run_sync(run))
        except Exception as exc:  # re-raised below, outside the task group
            outcome.append(exc)
        finally:
            finished = True
            tg.cancel_scope.cancel()
    if interrupted:
        await anyio.lowlevel.checkpoint()  # the pending cancellation, not the interrupt's error
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]  # type: ignore[no-any-return]


def _first_line(exc: BaseException) -> str:
    """The driver's message as we keep it: its first line, redacted, cut."""
    return f"{type(exc).__name__}: {one_line(exc, limit=_MESSAGE_LIMIT)}"


def _unusable_sql(sql: object) -> bool:
    if sql_problem(sql) is not None or "\x00" in str(sql):
        return True
    try:
        str(sql).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _execute(
    cursor: Any,
    query: Query,
    *,
    service: str,
    where: str,
    refused: Callable[[Exception], bool],
) -> QueryResult:
    """Runs one statement; a driver refusing it (`refused`) becomes `InvalidRequest`."""
    try:
        cursor.execute(query.sql, query.params)
    except Exception as exc:
        if not refused(exc):
            raise
        field = where + ("sql" if _unusable_sql(query.sql) else "params")
        raise InvalidRequest(service, field, f"refused by the driver: {_first_line(exc)}") from exc
    columns = tuple(column[0] for column in cursor.description or ())
    if query.fetch == "none" or cursor.description is None:
        rows: list[tuple[Any, ...]] = []
    elif query.fetch == "one":
        row = cursor.fetchone()
        rows = [tuple(row)] if row is not None else []
    else:
        rows = [tuple(row) for row in cursor.fetchall()]
    return QueryResult(rows=rows, rowcount=cursor.rowcount, columns=columns)


def _param_items(where: str, params: Params) -> list[tuple[str, Any]]:
    if isinstance(params, Mapping):
        return [(f"{where}params.{key}", value) for key, value in params.items()]
    return [(f"{where}params[{index}]", value) for index, value in enumerate(params)]


# -- SQLite ------------------------------------------------------------------------------

_SQLITE_INT_MIN = -(2**63)
_SQLITE_INT_MAX = 2**63 - 1
_SQLITE_NATIVE = (float, str, bytes, bytearray, memoryview, type(None))


def _sqlite_param_problem(value: object) -> str | None:
    if isinstance(value, int):  # bool too
        if _SQLITE_INT_MIN <= value <= _SQLITE_INT_MAX:
            return None
        return "is an integer outside SQLite's 64-bit range"
    if isinstance(value, _SQLITE_NATIVE):
        return None
    if (type(value), sqlite3.PrepareProtocol) in sqlite3.adapters or hasattr(value, "__conform__"):
        return None  # an adapter registered with sqlite3.register_adapter
    return f"has a type SQLite cannot store ({type(value).__name__})"


def _sqlite_refused(exc: Exception) -> bool:
    if isinstance(exc, sqlite3.Error):  # a binding error, a NUL, several statements...
        return isinstance(exc, sqlite3.ProgrammingError) and not getattr(
            exc, "sqlite_errorname", None
        )
    return isinstance(exc, OverflowError | TypeError | ValueError)  # ints, types, UTF-8


class SQLiteClient(ServiceClient[sqlite3.Connection, Request, Response]):
    """An embedded SQLite database file (WAL journal), one connection per pool slot."""

    service_type = "database"

    def __init__(
        self, name: str, path: str | os.PathLike[str], *, busy_timeout: float = 5.0
    ) -> None:
        """Configures the client.

        Args:
            name: The service name.
            path: The database file (created if missing).
            busy_timeout: Seconds SQLite itself waits on a locked database (finite, >= 0).

        Raises:
            ConfigError: A field of the wrong type or out of range (named).
        """
        super().__init__(name)
        check_instance("path", path, (str, os.PathLike))
        if not os.fspath(path):
            raise ConfigError("path", path, "must name a database file")
        self.path = str(os.fspath(path))
        self.busy_timeout = check_finite_non_negative("busy_timeout", busy_timeout)

    def check_request(self, request: object) -> None:
        """Refuses what SQLite could never run: a request that is not a `Query` or
        `Transaction` (or one built around their checks), and parameters SQLite cannot
        store (unsupported types, integers outside 64 bits).

        Raises:
            InvalidRequest: Naming the field, e.g. ``queries[1].params[0]``.
        """
        for where, query in queries_of(self.name, request):
            for field, value in _param_items(where, query.params):
                reason = _sqlite_param_problem(value)
                if reason is not None:
                    raise InvalidRequest(self.name, field, reason)

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, check_same_thread=False)
        conn.isolation_level = None  # autocommit; transactions are explicit
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    async def connect(self) -> sqlite3.Connection:
        try:
            return await anyio.to_thread.run_sync(self._open)
        except sqlite3.Error as exc:
            raise ServiceUnavailable(self.name, f"cannot open database: {exc}") from exc

    async def close(self, conn: sqlite3.Connection) -> None:
        await anyio.to_thread.run_sync(conn.close)

    async def validate(self, conn: sqlite3.Connection) -> bool:
        try:
            await anyio.to_thread.run_sync(conn.execute, "SELECT 1")
        except sqlite3.Error:
            return False
        return True

    async def probe(self, conn: sqlite3.Connection) -> None:
        await self.request(conn, Query("SELECT 1"))

    def describe(self, request: Request, *, content: bool) -> Operation:
        """A database client span on ``sqlite`` (query text only with `content`)."""
        return sql_operation(request, system="sqlite", known={}, content=content)

    def describe_result(self, response: Response, *, content: bool) -> Mapping[str, AttributeValue]:
        return sql_outcome(response)

    def describe_error(self, exc: Exception) -> Mapping[str, AttributeValue]:
        return sql_failure(exc)

    async def request(self, conn: sqlite3.Connection, request: Request) -> Response:
        async def interrupt() -> None:
            conn.interrupt()

        try:
            return await _interruptible(lambda: self._run(conn, request), interrupt)
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    def _run(self, conn: sqlite3.Connection, request: Request) -> Response:
        found = queries_of(self.name, request)
        cursor = conn.cursor()
        run = functools.partial(_execute, cursor, service=self.name, refused=_sqlite_refused)
        try:
            if isinstance(request, Query):
                result = run(request, where="")
                if conn.in_transaction:  # a BEGIN: the pooled connection must not keep it
                    conn.rollback()
                    raise InvalidRequest(
                        self.name, "sql", "left a transaction open (use a Transaction)"
                    )
                return result
            cursor.execute("BEGIN IMMEDIATE")
            results = []
            try:
                for where, query in found:
                    results.append(run(query, where=where))
                    if not conn.in_transaction:
                        raise InvalidRequest(
                            self.name,
                            f"{where}sql",
                            "ended the transaction (a Transaction commits by itself)",
                        )
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise
            cursor.execute("COMMIT")
            return results
        finally:
            cursor.close()

    def _translate(self, exc: sqlite3.Error) -> QueryError:
        name = getattr(exc, "sqlite_errorname", None)
        return QueryError(
            self.name,
            _first_line(exc),
            sqlite_errorname=name if isinstance(name, str) else None,
            correlation_id=current_correlation_id(),
        )


# -- PostgreSQL --------------------------------------------------------------------------

_DSN_SECRETS = ("password", "sslpassword")


def _dsn_keys(psycopg: Any, dsn: str) -> set[str] | None:
    """The parameter names libpq reads from `dsn` (URL or key=value), or None if it does
    not parse. libpq's own parser: quoting, spaces around `=`, percent-encoding and URL
    query parameters are read exactly as a connection would read them."""
    try:
        return set(psycopg.conninfo.conninfo_to_dict(dsn))
    except psycopg.Error:
        return None  # its message quotes the DSN


def _dsn_attributes(psycopg: Any, dsn: str) -> dict[str, AttributeValue]:
    """``db.namespace``, ``server.address`` and ``server.port`` a DSN names (never a
    password: the DSN has none)."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    out: dict[str, AttributeValue] = {}
    if isinstance(params.get("dbname"), str) and params["dbname"]:
        out["db.namespace"] = params["dbname"]
    host = params.get("host")
    if isinstance(host, str) and host and "," not in host and not host.startswith("/"):
        out["server.address"] = host
        port = str(params.get("port") or "5432")
        if port.isdigit():
            out["server.port"] = int(port)
    return out


class PostgresClient(ServiceClient[Any, Request, Response]):
    """A PostgreSQL server through psycopg 3 (sync connections in worker threads)."""

    service_type = "database"

    def __init__(
        self,
        name: str,
        dsn: str,
        *,
        password: Secret | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        """Configures the client.

        Args:
            name: The service name.
            dsn: A libpq connection string or URL *without* the password.
            password: The password, kept out of logs and reprs.
            connect_timeout: Seconds to establish a connection (finite, > 0; libpq
                counts whole seconds, at least 2, so it is rounded up to that).

        Raises:
            ConfigError: psycopg is not installed (extra `postgres`); the DSN does not
                parse, or carries a password in any form libpq reads (URL
                `user:password@`, a `password` or `sslpassword` parameter, quoted,
                spaced or percent-encoded) — neither the DSN nor the password is shown;
                or another field of the wrong type or out of range.
        """
        super().__init__(name)
        try:
            import psycopg
            import psycopg.adapt
            import psycopg.conninfo
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ConfigError("client", "psycopg", "install the 'postgres' extra") from exc
        self._psycopg = psycopg
        if not isinstance(dsn, str):
            raise ConfigError("dsn", None, f"must be a string, not {type(dsn).__name__}")
        keys = _dsn_keys(psycopg, dsn)
        if keys is None:  # raised outside the handler: no context quoting the DSN
            raise ConfigError("dsn", None, "is not a libpq connection string or URL")
        if keys & set(_DSN_SECRETS):
            raise ConfigError("dsn", None, "pass the password as a Secret, not in the DSN")
        self.dsn = dsn
        if password is not None and not isinstance(password, Secret):
            raise ConfigError("password", None, f"must be a Secret, not {type(password).__name__}")
        self._password = password
        self.connect_timeout = check_finite_positive("connect_timeout", connect_timeout)
        self._known = _dsn_attributes(psycopg, dsn)

    def check_request(self, request: object) -> None:
        """Refuses a request that is not a `Query` or `Transaction` (or one built around
        their checks), and parameters of a type psycopg cannot send (a dict: wrap it in
        `psycopg.types.json.Jsonb`).

        Raises:
            InvalidRequest: Naming the field, e.g. ``queries[1].params.name``.
        """
        adapters = self._psycopg.adapters
        auto = self._psycopg.adapt.PyFormat.AUTO
        for where, query in queries_of(self.name, request):
            for field, value in _param_items(where, query.params):
                try:
                    adapters.get_dumper(type(value), auto)
                except self._psycopg.ProgrammingError:
                    raise InvalidRequest(
                        self.name, field, f"has a type psycopg cannot send ({type(value).__name__})"
                    ) from None

    def _open(self) -> Any:
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(2, math.ceil(self.connect_timeout)),
        }
        if self._password is not None:
            kwargs["password"] = self._password.reveal()
        return self._psycopg.connect(self.dsn, **kwargs)

    async def connect(self) -> Any:
        try:
            return await anyio.to_thread.run_sync(self._open)
        except self._psycopg.Error as exc:
            raise ServiceUnavailable(
                self.name,
                f"cannot connect: {type(exc).__name__}",
                correlation_id=current_correlation_id(),
            ) from None  # the driver's message may echo connection parameters

    async def close(self, conn: Any) -> None:
        await anyio.to_thread.run_sync(conn.close)

    async def validate(self, conn: Any) -> bool:
        return not conn.closed and not conn.broken

    async def probe(self, conn: Any) -> None:
        await self.request(conn, Query("SELECT 1"))

    def describe(self, request: Request, *, content: bool) -> Operation:
        """A database client span on ``postgresql``, with the DSN's database and server
        (query text only with `content`)."""
        return sql_operation(request, system="postgresql", known=self._known, content=content)

    def describe_result(self, response: Response, *, content: bool) -> Mapping[str, AttributeValue]:
        return sql_outcome(response)

    def describe_error(self, exc: Exception) -> Mapping[str, AttributeValue]:
        return sql_failure(exc)

    def connection_broken(self, exc: Exception) -> bool:
        return isinstance(exc, ServiceUnavailable | ConnectionError | OSError)

    async def request(self, conn: Any, request: Request) -> Response:
        async def interrupt() -> None:
            await anyio.to_thread.run_sync(conn.cancel_safe)

        try:
            return await _interruptible(lambda: self._run(conn, request), interrupt)
        except self._psycopg.Error as exc:
            raise self._translate(exc, conn) from exc

    def _refused(self, exc: Exception) -> bool:
        psycopg = self._psycopg
        if isinstance(exc, psycopg.Error):  # psycopg's own checks carry no SQLSTATE
            return isinstance(exc, psycopg.ProgrammingError | psycopg.DataError) and (
                exc.sqlstate is None
            )
        return isinstance(exc, OverflowError | TypeError | ValueError)  # dumpers, UTF-8

    def _run(self, conn: Any, request: Request) -> Response:
        found = queries_of(self.name, request)
        if isinstance(request, Query):
            with conn.cursor() as cursor:
                result = _execute(
                    cursor, request, service=self.name, where="", refused=self._refused
                )
            idle = self._psycopg.pq.TransactionStatus.IDLE
            if conn.info.transaction_status != idle:  # a BEGIN: do not pool it
                conn.rollback()
                raise InvalidRequest(
                    self.name, "sql", "left a transaction open (use a Transaction)"
                )
            return result
        with conn.transaction(), conn.cursor() as cursor:
            return [
                _execute(cursor, query, service=self.name, where=where, refused=self._refused)
                for where, query in found
            ]

    def _translate(self, exc: Exception, conn: Any) -> QueryError | ServiceUnavailable:
        """A closed connection (the server ended it: 57P01 admin shutdown, a crash, a
        network drop, and "the connection is closed" after that) is ServiceUnavailable,
        so the pool discards it; anything else the server said is a QueryError."""
        cid = current_correlation_id()
        sqlstate = getattr(exc, "sqlstate", None)
        lost = conn.closed or conn.broken
        if lost or (sqlstate is None and isinstance(exc, self._psycopg.OperationalError)):
            state = f" (SQLSTATE {sqlstate})" if sqlstate else ""
            return ServiceUnavailable(
                self.name, f"connection lost: {type(exc).__name__}{state}", correlation_id=cid
            )
        return QueryError(self.name, _first_line(exc), sqlstate=sqlstate, correlation_id=cid)


_publish(globals(), "actors.services.sql")
