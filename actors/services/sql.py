"""SQL services: SQLite (stdlib, the embedded default) and PostgreSQL (psycopg 3, extra
`postgres`), both through worker threads.

Async drivers (psycopg's async mode, asyncpg, aiosqlite) do not run under trio, so each
statement runs in a thread with `anyio.to_thread`, and cancellation reaches the
database: SQLite's `interrupt()` stops the running statement, PostgreSQL's
`cancel_safe()` asks the server to cancel it. A cancelled connection is then closed by
the pool (a connection cancelled mid-statement may be left in a transaction).

Only parameterised statements exist in this API (`Query(sql, params)`); a `Transaction`
runs several atomically. Errors are translated at this boundary: busy/locked, deadlock,
serialization and connection failures are retryable (`QueryError` with its SQLSTATE or
SQLite error name, or `ServiceUnavailable`); syntax and constraint errors are permanent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeAlias, TypeVar

import anyio
import anyio.lowlevel
import attrs

from actors._envelope import current_correlation_id
from actors._errors import ConfigError, QueryError, ServiceUnavailable
from actors.services._base import Secret, ServiceClient

__all__ = ["PostgresClient", "Query", "QueryResult", "SQLiteClient", "Transaction"]

T = TypeVar("T")
Params: TypeAlias = Sequence[Any] | Mapping[str, Any]


def _params(value: Params | None) -> Params:
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | Mapping):
        raise ConfigError("params", type(value).__name__, "must be a sequence or a mapping")
    return tuple(value) if not isinstance(value, Mapping) else dict(value)


@attrs.frozen
class Query:
    """One parameterised statement.

    Attributes:
        sql: The statement, with placeholders (`?`/`:name` for SQLite, `%s`/`%(name)s`
            for PostgreSQL). Values never go into this string.
        params: The values for the placeholders.
        fetch: "all" rows, "one" row, or "none" (just the row count).
    """

    sql: str = attrs.field()
    params: Params = attrs.field(default=(), converter=_params)
    fetch: Literal["all", "one", "none"] = attrs.field(default="all")

    @sql.validator
    def _check_sql(self, attr: attrs.Attribute[str], value: object) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError("sql", None, "must be a non-empty string")

    @fetch.validator
    def _check_fetch(self, attr: attrs.Attribute[str], value: object) -> None:
        if value not in ("all", "one", "none"):
            raise ConfigError("fetch", value, "must be 'all', 'one' or 'none'")


@attrs.frozen
class Transaction:
    """Statements run atomically: all commit, or none do (the error is raised)."""

    queries: tuple[Query, ...] = attrs.field(converter=tuple)


@attrs.frozen
class QueryResult:
    """What a statement returned."""

    rows: list[tuple[Any, ...]]
    rowcount: int
    columns: tuple[str, ...] = ()


Request: TypeAlias = Query | Transaction
Response: TypeAlias = QueryResult | list[QueryResult]


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


def _execute(cursor: Any, query: Query) -> QueryResult:
    cursor.execute(query.sql, query.params)
    columns = tuple(column[0] for column in cursor.description or ())
    if query.fetch == "none" or cursor.description is None:
        rows: list[tuple[Any, ...]] = []
    elif query.fetch == "one":
        row = cursor.fetchone()
        rows = [tuple(row)] if row is not None else []
    else:
        rows = [tuple(row) for row in cursor.fetchall()]
    return QueryResult(rows=rows, rowcount=cursor.rowcount, columns=columns)


class SQLiteClient(ServiceClient[sqlite3.Connection, Request, Response]):
    """An embedded SQLite database file (WAL journal), one connection per pool slot."""

    service_type = "database"

    def __init__(self, name: str, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        """Configures the client.

        Args:
            name: The service name.
            path: The database file (created if missing).
            busy_timeout: Seconds SQLite itself waits on a locked database.
        """
        super().__init__(name)
        if not str(path):
            raise ConfigError("path", path, "must name a database file")
        self.path = str(path)
        self.busy_timeout = busy_timeout

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

    async def request(self, conn: sqlite3.Connection, request: Request) -> Response:
        async def interrupt() -> None:
            conn.interrupt()

        try:
            return await _interruptible(lambda: self._run(conn, request), interrupt)
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    def _run(self, conn: sqlite3.Connection, request: Request) -> Response:
        cursor = conn.cursor()
        try:
            if isinstance(request, Query):
                return _execute(cursor, request)
            cursor.execute("BEGIN IMMEDIATE")
            try:
                results = [_execute(cursor, query) for query in request.queries]
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
            f"{type(exc).__name__}: {exc}"[:300],
            sqlite_errorname=name if isinstance(name, str) else None,
            correlation_id=current_correlation_id(),
        )


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
            connect_timeout: Seconds to establish a connection.

        Raises:
            ConfigError: psycopg is not installed (extra `postgres`), or the DSN holds a
                password.
        """
        super().__init__(name)
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ConfigError("client", "psycopg", "install the 'postgres' extra") from exc
        self._psycopg = psycopg
        if "password=" in dsn or _url_has_password(dsn):
            raise ConfigError("dsn", None, "pass the password as a Secret, not in the DSN")
        self.dsn = dsn
        self._password = password
        self.connect_timeout = connect_timeout

    def _open(self) -> Any:
        kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": int(self.connect_timeout)}
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

    def connection_broken(self, exc: Exception) -> bool:
        return isinstance(exc, ServiceUnavailable | ConnectionError | OSError)

    async def request(self, conn: Any, request: Request) -> Response:
        async def interrupt() -> None:
            await anyio.to_thread.run_sync(conn.cancel_safe)

        try:
            return await _interruptible(lambda: self._run(conn, request), interrupt)
        except self._psycopg.Error as exc:
            raise self._translate(exc) from exc

    def _run(self, conn: Any, request: Request) -> Response:
        if isinstance(request, Query):
            with conn.cursor() as cursor:
                return _execute(cursor, request)
        with conn.transaction(), conn.cursor() as cursor:
            return [_execute(cursor, query) for query in request.queries]

    def _translate(self, exc: Exception) -> QueryError | ServiceUnavailable:
        cid = current_correlation_id()
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate is None and isinstance(exc, self._psycopg.OperationalError):
            return ServiceUnavailable(
                self.name, f"connection lost: {type(exc).__name__}", correlation_id=cid
            )
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        return QueryError(
            self.name,
            f"{type(exc).__name__}: {first_line}"[:300],
            sqlstate=sqlstate,
            correlation_id=cid,
        )


def _url_has_password(dsn: str) -> bool:
    if "://" not in dsn:
        return False
    netloc = dsn.split("://", 1)[1].split("/", 1)[0]
    return "@" in netloc and ":" in netloc.split("@", 1)[0]
