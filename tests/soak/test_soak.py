"""The soak suite's short mode: a few thousand requests with 20 % injected faults and
periodic crashes, on each backend; every invariant must hold.

It runs on the virtual clock, so "resolved after its deadline" is judged exactly, not
at the mercy of a loaded CI machine's scheduling (the long mode runs in real time).
"""

from __future__ import annotations

import os

import pytest

from tests.soak.soak import soak

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

REQUESTS = int(os.environ.get("SOAK_REQUESTS", "3000"))


async def test_soak_invariants_hold() -> None:
    """No late calls, every request accounted for, no leaked tasks or connections."""
    result = await soak(REQUESTS)
    print(result.summary())
    assert result.violations(check_rss=False) == []
    assert result.report.sent == REQUESTS
    assert result.injected_errors > 0
    assert result.injected_crashes > 0
    assert result.restarts == result.injected_crashes
    assert result.report.outcomes["ok"] > REQUESTS * 0.8
