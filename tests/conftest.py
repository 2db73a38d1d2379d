"""Shared fixtures: every async test runs on asyncio and on trio; one throw-away
PostgreSQL server per session (`postgres`).

Tests marked `virtual_time` run on an autojumping virtual clock on both backends
(trio's MockClock, and actors.testing's VirtualClockEventLoop for asyncio), so
durations can be asserted exactly without sleeping real seconds.

Without PostgreSQL installed the tests that use it skip, except where
REQUIRE_SERVICES=1 (CI): there a missing server fails the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from actors.testing import (
    PostgresServer,
    PostgresUnavailable,
    local_postgres,
    virtual_time_backend,
)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str | tuple[str, dict[str, Any]]:
    backend: str = request.param
    if request.node.get_closest_marker("virtual_time") is not None:
        return virtual_time_backend(backend)
    return backend


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        with local_postgres() as server:
            yield server
    except PostgresUnavailable as exc:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"REQUIRE_SERVICES=1 but PostgreSQL is unavailable: {exc}")
        pytest.skip(f"PostgreSQL is unavailable: {exc}")
