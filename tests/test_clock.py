"""The virtual clock used by time-based tests jumps exactly, on both backends."""

from __future__ import annotations

import anyio
import pytest

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


async def test_sleep_advances_exactly() -> None:
    """A sleep advances virtual time by exactly its duration."""
    start = anyio.current_time()
    await anyio.sleep(12.5)
    assert anyio.current_time() - start == pytest.approx(12.5, abs=1e-9)


async def test_timeout_fires_at_deadline() -> None:
    """A timeout around a long sleep fires at its deadline, not at the sleep's end."""
    start = anyio.current_time()
    with anyio.move_on_after(3):
        await anyio.sleep(3600)
    assert anyio.current_time() - start == pytest.approx(3, abs=1e-9)


async def test_concurrent_sleepers_wake_in_order() -> None:
    """Tasks sleeping different durations wake in order of their deadlines."""
    woke: list[int] = []

    async def sleeper(n: int) -> None:
        await anyio.sleep(n)
        woke.append(n)

    async with anyio.create_task_group() as tg:
        for n in (3, 1, 2):
            tg.start_soon(sleeper, n)
    assert woke == [1, 2, 3]
