"""Throw-away databases: SQLite files in WAL mode and a real local PostgreSQL server."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.testing import (
    PostgresServer,
    PostgresUnavailable,
    create_sqlite_db,
    find_postgres_bin,
    local_postgres,
    open_local_postgres,
    temporary_sqlite_db,
)

REQUIRED = os.environ.get("REQUIRE_SERVICES") == "1"


def unavailable(reason: str) -> None:
    """Fails when CI requires the real services, skips otherwise."""
    if REQUIRED:
        pytest.fail(f"REQUIRE_SERVICES=1 but PostgreSQL is unavailable: {reason}")
    pytest.skip(f"PostgreSQL unavailable: {reason}")


def psql(server: PostgresServer, sql: str, *, password: str | None = None) -> str:
    """Runs one statement through the psql client over TCP with a password."""
    env = {**os.environ, "PGPASSWORD": server.password if password is None else password}
    dsn = server.dsn_without_password()
    result = subprocess.run(
        [str(find_postgres_bin() / "psql"), dsn, "-XAtc", sql],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    if result.returncode:
        raise RuntimeError(result.stderr)
    return result.stdout.strip()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    try:
        manager = local_postgres(password="s3cret-pw")
        server = manager.__enter__()
    except PostgresUnavailable as exc:
        unavailable(str(exc))
    try:
        yield server
    finally:
        manager.__exit__(None, None, None)


# -- SQLite ------------------------------------------------------------------------------


def test_sqlite_file_is_in_wal_mode_with_schema(tmp_path: Path) -> None:
    """create_sqlite_db makes a WAL-mode file and runs the schema."""
    path = create_sqlite_db(tmp_path / "a.db", schema="CREATE TABLE t (x INTEGER);")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    conn.close()


def test_temporary_sqlite_db_is_removed_after() -> None:
    """temporary_sqlite_db removes its file and folder on exit."""
    with temporary_sqlite_db(schema="CREATE TABLE t (x)") as path:
        assert path.exists()
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("t",)]
        conn.close()
    assert not path.exists()
    assert not path.parent.exists()


def test_bad_schema_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A failing schema raises sqlite3's error and still removes the folder."""
    folder = tmp_path / "made"
    folder.mkdir()
    monkeypatch.setattr("tempfile.mkdtemp", lambda prefix: str(folder))
    with pytest.raises(sqlite3.OperationalError), temporary_sqlite_db(schema="NOT SQL"):
        pass
    assert not folder.exists()


# -- PostgreSQL --------------------------------------------------------------------------


def test_postgres_accepts_password_connections(postgres: PostgresServer) -> None:
    """The server answers queries on loopback for the password-protected user."""
    assert psql(postgres, "SELECT current_user || '@' || current_database()") == (
        "actors@actors_test"
    )
    assert postgres.host == "127.0.0.1"
    assert psql(postgres, "SHOW listen_addresses") == "127.0.0.1"


def test_postgres_rejects_a_wrong_password(postgres: PostgresServer) -> None:
    """A wrong password is refused: authentication is really on."""
    with pytest.raises(RuntimeError, match="password authentication failed"):
        psql(postgres, "SELECT 1", password="wrong")


def test_postgres_password_is_not_in_repr(postgres: PostgresServer) -> None:
    """The password appears in the DSN but never in the repr or the safe DSN."""
    assert "s3cret-pw" in postgres.dsn
    assert "s3cret-pw" not in repr(postgres)
    assert "s3cret-pw" not in postgres.dsn_without_password()


def test_servers_run_side_by_side_with_their_own_passwords(postgres: PostgresServer) -> None:
    """A second server gets its own port and password; each refuses the other's."""
    try:
        with local_postgres(password="other-pw", database="second") as second:
            assert second.port != postgres.port
            assert psql(second, "SELECT current_database()") == "second"
            with pytest.raises(RuntimeError, match="password authentication failed"):
                psql(second, "SELECT 1", password=postgres.password)
    except PostgresUnavailable as exc:
        unavailable(str(exc))
    assert psql(postgres, "SELECT 1") == "1"


def test_missing_binaries_raise_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without PostgreSQL binaries, PostgresUnavailable says what to install."""
    monkeypatch.setenv("PG_BIN", "/nonexistent")
    monkeypatch.setattr("glob.glob", lambda _pattern: [])
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(PostgresUnavailable, match="apt-get install"):
        find_postgres_bin()


@pytest.mark.anyio
async def test_open_local_postgres_from_async_code() -> None:
    """open_local_postgres starts a server from asyncio and trio; leaving stops and removes it."""
    try:
        async with open_local_postgres(database="asyncdb") as server:
            assert psql(server, "SELECT current_database()") == "asyncdb"
            data_dir = server.data_dir
            assert (data_dir / "postmaster.pid").exists()
    except PostgresUnavailable as exc:
        unavailable(str(exc))
    assert not data_dir.exists()
    assert not data_dir.parent.exists()
