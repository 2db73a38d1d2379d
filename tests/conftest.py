"""Shared fixtures: every async test runs on asyncio and on trio.

Tests marked `virtual_time` run on an autojumping virtual clock on both backends
(trio's MockClock, and actors.testing's VirtualClockEventLoop for asyncio), so
durations can be asserted exactly without sleeping real seconds.
"""

from __future__ import annotations

from typing import Any

import pytest

from actors.testing import virtual_time_backend


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str | tuple[str, dict[str, Any]]:
    backend: str = request.param
    if request.node.get_closest_marker("virtual_time") is not None:
        return virtual_time_backend(backend)
    return backend
