"""`Unsettled`: results whose attempt settles when their reader closes them (both
backends)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest

from actors.resilience._unsettled import Unsettled
from actors.testing import capture_events

pytestmark = pytest.mark.anyio


def recorder(log: list[str], name: str) -> Callable[[], Awaitable[None]]:
    async def finish() -> None:
        await anyio.lowlevel.checkpoint()
        log.append(name)

    return finish


async def test_settlements_wait_for_settle_and_run_last_first() -> None:
    """Deferred settlements run at settle, in reverse order, once."""
    log: list[str] = []
    result = Unsettled()
    await result.settle_later(recorder(log, "connection"))
    await result.settle_later(recorder(log, "reservation"))
    assert log == []
    await result.settle()
    await result.settle()
    assert log == ["reservation", "connection"]
    assert result.settled


async def test_a_settled_result_runs_a_settlement_at_once() -> None:
    """A result made settled (its body read in the attempt) settles what it is given now."""
    log: list[str] = []
    result = Unsettled(settled=True)
    await result.settle_later(recorder(log, "now"))
    assert log == ["now"]
    assert result.finished


async def test_settling_survives_the_readers_cancellation() -> None:
    """A reader cancelled as it closes still settles everything (shielded)."""
    log: list[str] = []
    result = Unsettled()
    await result.settle_later(recorder(log, "connection"))
    with anyio.CancelScope() as scope:
        scope.cancel()
        await result.settle()
    assert log == ["connection"]


async def test_a_failing_settlement_is_reported_and_the_others_run() -> None:
    """A settlement that raises is an event; the next one still runs."""
    log: list[str] = []

    async def broken() -> None:
        raise RuntimeError("boom")

    result = Unsettled()
    await result.settle_later(recorder(log, "connection"))
    await result.settle_later(broken)
    with capture_events() as events:
        await result.settle()
    assert log == ["connection"]
    assert [e["event"] for e in events if e["event"] == "pipeline.settle_failed"] == [
        "pipeline.settle_failed"
    ]
