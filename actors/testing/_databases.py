"""Throw-away databases for tests: SQLite files in WAL mode and a local PostgreSQL server.

SQLite::

    with temporary_sqlite_db(schema="CREATE TABLE t (x INTEGER)") as path:
        ...  # a file in a fresh temporary folder, removed on exit

PostgreSQL (Debian's `postgresql` package; binaries under /usr/lib/postgresql/*/bin)::

    with local_postgres() as pg:            # or: async with open_local_postgres() as pg:
        psycopg.connect(pg.dsn)

`local_postgres` copies a cluster made once per process by `initdb` into a temporary
folder and starts it with `pg_ctl`, listening on a free loopback port (and a unix
socket in that folder), with a password-protected user and one database; it stops the
server ("fast" shutdown) and deletes the folder on exit.
PostgreSQL refuses to run as root, so as root everything runs as the `postgres` user
through `runuser -u postgres --`. When something needed is missing it raises
`PostgresUnavailable`; tests decide whether that fails them (CI sets
`REQUIRE_SERVICES=1`) or skips them.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import anyio
import anyio.to_thread
import attrs

__all__ = [
    "PostgresServer",
    "PostgresUnavailable",
    "create_sqlite_db",
    "find_postgres_bin",
    "local_postgres",
    "open_local_postgres",
    "temporary_sqlite_db",
]


class PostgresUnavailable(RuntimeError):
    """A local PostgreSQL cannot be started here (binaries, user or startup failed)."""


# -- SQLite ----------------------------------------------------------------------------


def create_sqlite_db(path: str | os.PathLike[str], *, schema: str | None = None) -> Path:
    """Creates (or opens) a SQLite database file in WAL mode and applies `schema`.

    Args:
        path: The database file; its folder must exist.
        schema: SQL statements run once with `executescript` (e.g. CREATE TABLE ...).

    Returns:
        The path, as a `Path`.

    Raises:
        sqlite3.Error: The file cannot be created or the schema fails.
    """
    db = Path(path)
    conn = sqlite3.connect(db)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # pragma: no cover - only on exotic filesystems
            raise sqlite3.OperationalError(f"could not enable WAL mode (got {mode!r})")
        if schema:
            conn.executescript(schema)
        conn.commit()
    finally:
        conn.close()
    return db


@contextmanager
def temporary_sqlite_db(*, schema: str | None = None, name: str = "test.db") -> Iterator[Path]:
    """A WAL-mode SQLite file in a fresh temporary folder, removed with its folder on exit.

    Args:
        schema: SQL run once when the file is created.
        name: The file name inside the temporary folder.

    Yields:
        The database file's path.
    """
    folder = tempfile.mkdtemp(prefix="actors-sqlite-")
    try:
        yield create_sqlite_db(Path(folder) / name, schema=schema)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- PostgreSQL ------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class PostgresServer:
    """A running throw-away PostgreSQL server (its password never appears in a repr).

    Attributes:
        host: Always 127.0.0.1.
        port: The TCP port it listens on.
        user: The password-protected role the tests use (a superuser).
        password: That role's password.
        database: The database created for the tests.
        socket_dir: Folder of its unix socket.
        data_dir: Its data folder.
    """

    host: str
    port: int
    user: str
    password: str = attrs.field(repr=False)
    database: str
    socket_dir: Path
    data_dir: Path

    @property
    def dsn(self) -> str:
        """A libpq URL with the password: `postgresql://user:password@127.0.0.1:port/db`."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def dsn_without_password(self) -> str:
        """The URL with the password left out (safe to log)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"


def find_postgres_bin() -> Path:
    """The folder holding `initdb`, `pg_ctl` and `postgres` (newest version wins).

    `PG_BIN` in the environment overrides the search.

    Raises:
        PostgresUnavailable: No PostgreSQL server binaries are installed.
    """
    override = os.environ.get("PG_BIN")
    candidates = [override] if override else []
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parent.name.split(".")],
        reverse=True,
    )
    for candidate in candidates:
        folder = Path(candidate)
        if all((folder / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise PostgresUnavailable(
        "PostgreSQL server binaries not found (looked in $PG_BIN, /usr/lib/postgresql/*/bin "
        "and PATH); install them with `apt-get install -y postgresql`"
    )


def _free_port() -> int:
    """A loopback TCP port free right now (another process may take it before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_postgres(command: Sequence[str]) -> list[str]:
    """Prefixes `runuser -u postgres --` when running as root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return list(command)
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable("running as root but `runuser` is missing (util-linux)")
    return [runuser, "-u", "postgres", "--", *command]


def _run(
    command: Sequence[str],
    what: str,
    timeout: float,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> None:
    try:
        result = subprocess.run(
            _as_postgres(command),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
            input=stdin,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostgresUnavailable(f"{what} failed: {exc}") from exc
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()[-2000:]
        raise PostgresUnavailable(f"{what} failed (exit {result.returncode}): {output}")


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


_TEMPLATES: dict[tuple[Path, str], tuple[Path, str]] = {}
_TEMPLATE_LOCK = threading.Lock()


def _template(
    bin_dir: Path, user: str, owner: pwd.struct_passwd | None, timeout: float
) -> tuple[Path, str]:
    """A cluster initialised once per process (per binaries and user), to copy from.

    Returns the data folder and the user's password in it (replaced in every copy).
    """
    with _TEMPLATE_LOCK:
        cached = _TEMPLATES.get((bin_dir, user))
        if cached is not None and cached[0].exists():
            return cached
        password = secrets.token_urlsafe(18)
        root = Path(tempfile.mkdtemp(prefix="actors-pg-template-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        data_dir = root / "data"
        pwfile = root / "pwfile"
        pwfile.write_text(password + "\n")
        if owner is not None:
            for path in (root, pwfile):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        root.chmod(0o700)
        pwfile.chmod(0o600)
        try:
            _run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data_dir),
                    "-U",
                    user,
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                "initdb",
                timeout,
            )
        except PostgresUnavailable:
            shutil.rmtree(root, ignore_errors=True)
            raise
        finally:
            pwfile.unlink(missing_ok=True)
        _TEMPLATES[(bin_dir, user)] = (data_dir, password)
        return data_dir, password


@contextmanager
def local_postgres(
    *,
    user: str = "actors",
    password: str | None = None,
    database: str = "actors_test",
    timeout: float = 60.0,
) -> Iterator[PostgresServer]:
    """Starts a throw-away PostgreSQL server for the block; stops and deletes it after.

    Blocking (runs `initdb` once per process, then `pg_ctl` and `psql`); use
    `open_local_postgres` from async code. The server listens on 127.0.0.1 only, on a
    free port, with durability turned off (fsync, synchronous_commit) for speed.

    Args:
        user: Role created by initdb (a superuser), password-protected (TCP and socket).
        password: Its password; a random one when omitted.
        database: Database created for the tests.
        timeout: Longest wait for each step (initdb, start, stop).

    Yields:
        The running server.

    Raises:
        PostgresUnavailable: Binaries, the `postgres` user or `runuser` are missing, or
            the server failed to initialise or start (the message quotes its log).
    """
    bin_dir = find_postgres_bin()
    password = password or secrets.token_urlsafe(18)
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise PostgresUnavailable("running as root but there is no `postgres` user") from exc
    template, template_password = _template(bin_dir, user, owner, timeout)
    root = Path(tempfile.mkdtemp(prefix="actors-pg-"))
    data_dir = root / "data"
    socket_dir = root / "run"
    log_file = root / "server.log"
    started = False
    try:
        socket_dir.mkdir()
        if owner is not None:
            for path in (root, socket_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        root.chmod(0o700)
        # A copy of a cluster initialised once per process: initdb is the slow step.
        copy = subprocess.run(
            ["cp", "-a", str(template), str(data_dir)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if copy.returncode:
            raise PostgresUnavailable(f"copying the template cluster failed: {copy.stderr}")
        command = [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(log_file)]
        for attempt in range(3):  # the free port may be taken before the server binds it
            port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port} -k {socket_dir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=60 -c shared_buffers=16MB"
            )
            start = [*command, "-o", options, "-w", "-t", str(int(timeout)), "start"]
            try:
                _run(start, "start", timeout)
                break
            except PostgresUnavailable as exc:
                log = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
                if "already in use" in log and attempt < 2:
                    continue
                raise PostgresUnavailable(f"{exc}\nserver log:\n{log}") from exc
        started = True
        psql = bin_dir / "psql"
        if not psql.exists():  # pragma: no cover - Debian ships it with the server
            psql = Path(shutil.which("psql") or "psql")
        target = ["-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", "postgres", "-f", "-"]
        script = (
            f"ALTER ROLE {_identifier(user)} PASSWORD {_literal(password)};\n"
            f"CREATE DATABASE {_identifier(database)};\n"
        )
        try:
            _run(  # the password travels on stdin, never on a command line
                [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", *target],
                "setting up the user and database",
                timeout,
                env={**os.environ, "PGPASSWORD": template_password},
                stdin=script,
            )
        except PostgresUnavailable as exc:  # psql may quote the statement: hide the password
            raise PostgresUnavailable(str(exc).replace(password, "***")) from None
        yield PostgresServer(
            host="127.0.0.1",
            port=port,
            user=user,
            password=password,
            database=database,
            socket_dir=socket_dir,
            data_dir=data_dir,
        )
    finally:
        if started:
            with contextlib.suppress(PostgresUnavailable):
                _run(
                    [
                        str(bin_dir / "pg_ctl"),
                        "-D",
                        str(data_dir),
                        "-m",
                        "fast",
                        "-w",
                        "-t",
                        str(int(timeout)),
                        "stop",
                    ],
                    "stop",
                    timeout,
                )
        shutil.rmtree(root, ignore_errors=True)


@asynccontextmanager
async def open_local_postgres(
    *,
    user: str = "actors",
    password: str | None = None,
    database: str = "actors_test",
    timeout: float = 60.0,
) -> AsyncIterator[PostgresServer]:
    """`local_postgres` for async code: start and stop run in a worker thread.

    Works on asyncio and trio. Leaving the block (also when cancelled) stops the server
    and deletes its folder; that cleanup is shielded from cancellation.

    Raises:
        PostgresUnavailable: As `local_postgres`.
    """
    manager = local_postgres(user=user, password=password, database=database, timeout=timeout)
    server = await anyio.to_thread.run_sync(manager.__enter__)
    try:
        yield server
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(manager.__exit__, None, None, None)
