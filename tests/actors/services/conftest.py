"""Fixtures shared by the service tests: one throw-away PostgreSQL server per session.

Without PostgreSQL installed the tests that use it skip, except where
REQUIRE_SERVICES=1 (CI): there a missing server fails the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from actors.testing import PostgresServer, PostgresUnavailable, local_postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        with local_postgres() as server:
            yield server
    except PostgresUnavailable as exc:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"REQUIRE_SERVICES=1 but PostgreSQL is unavailable: {exc}")
        pytest.skip(f"PostgreSQL is unavailable: {exc}")
