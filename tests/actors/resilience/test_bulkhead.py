"""Bulkhead: a concurrency limit with a bounded FIFO queue."""

from __future__ import annotations

import anyio
import pytest

from actors import BulkheadFull, ConfigError
from actors.resilience import Bulkhead, BulkheadConfig, create_bulkhead
from actors.testing import capture_events

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


def bulkhead(max_concurrent: int = 2, max_queued: int = 2) -> Bulkhead:
    return create_bulkhead(
        BulkheadConfig(max_concurrent=max_concurrent, max_queued=max_queued), name="db"
    )


async def until(predicate: object) -> None:
    """Yields (without time passing) until `predicate()` is true."""
    while not predicate():  # type: ignore[operator]
        await anyio.lowlevel.checkpoint()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"max_concurrent": 2.5}, "max_concurrent"),
        ({"max_concurrent": True}, "max_concurrent"),
        ({"max_queued": -1}, "max_queued"),
        ({"max_queued": 1.0}, "max_queued"),
    ],
)
def test_bad_config_names_field(kwargs: dict[str, object], field: str) -> None:
    """Zero slots or a negative or fractional queue raise ConfigError naming the field."""
    with pytest.raises(ConfigError) as info:
        BulkheadConfig(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert info.value.value == next(iter(kwargs.values()))


def test_defaults() -> None:
    """By default a bulkhead has 10 slots and no queue."""
    assert BulkheadConfig() == BulkheadConfig(max_concurrent=10, max_queued=0)
    with pytest.raises(ConfigError):
        create_bulkhead(name="")


async def test_slots_up_to_max_concurrent_are_immediate() -> None:
    """max_concurrent callers get a slot at once."""
    bh = bulkhead(max_concurrent=3)
    start = anyio.current_time()
    for _ in range(3):
        await bh.acquire()
    assert anyio.current_time() == start
    assert bh.metrics().active == 3


async def test_full_bulkhead_and_queue_rejects_at_once() -> None:
    """Beyond max_concurrent + max_queued, a caller gets BulkheadFull immediately."""
    bh = bulkhead(max_concurrent=1, max_queued=1)
    await bh.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(bh.acquire)
        await until(lambda: bh.metrics().queued == 1)
        start = anyio.current_time()
        with pytest.raises(BulkheadFull) as info:
            await bh.acquire()
        assert anyio.current_time() == start
        assert info.value.name == "db"
        bh.release()
    assert bh.metrics().rejected == 1


async def test_no_queue_rejects_when_slots_are_taken() -> None:
    """With max_queued=0, a caller finding every slot taken is refused at once."""
    bh = bulkhead(max_concurrent=1, max_queued=0)
    await bh.acquire()
    with pytest.raises(BulkheadFull):
        await bh.acquire()


async def test_waiters_get_slots_in_fifo_order() -> None:
    """Released slots go to waiters in the order they queued."""
    bh = bulkhead(max_concurrent=1, max_queued=3)
    await bh.acquire()
    order: list[int] = []

    async def waiter(index: int) -> None:
        async with bh.slot():
            order.append(index)
            await anyio.sleep(1)

    async with anyio.create_task_group() as tg:
        for index in range(3):
            tg.start_soon(waiter, index)
            await until(lambda n=index: bh.metrics().queued == n + 1)
        bh.release()
    assert order == [0, 1, 2]
    assert bh.metrics().active == 0


async def test_waiter_gets_slot_when_released() -> None:
    """A waiter is granted the slot at the moment it is released."""
    bh = bulkhead(max_concurrent=1, max_queued=1)
    start = anyio.current_time()
    granted_at: list[float] = []

    async def holder() -> None:
        async with bh.slot():
            await anyio.sleep(2)

    async def waiter() -> None:
        async with bh.slot(deadline=start + 5):
            granted_at.append(anyio.current_time() - start)

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await until(lambda: bh.metrics().active == 1)
        tg.start_soon(waiter)
    assert granted_at == [pytest.approx(2, abs=1e-9)]


async def test_deadline_while_queued_raises_bulkhead_full_at_deadline() -> None:
    """A waiter whose deadline passes leaves the queue with BulkheadFull, exactly then."""
    bh = bulkhead(max_concurrent=1, max_queued=1)
    await bh.acquire()
    start = anyio.current_time()
    with capture_events() as events, pytest.raises(BulkheadFull):
        await bh.acquire(deadline=start + 1.5)
    assert anyio.current_time() - start == pytest.approx(1.5, abs=1e-9)
    assert bh.metrics().queued == 0
    assert [(e["event"], e["reason"]) for e in events] == [("bulkhead.rejected", "deadline")]


async def test_past_deadline_is_refused_without_queueing() -> None:
    """A deadline already passed is refused at once when no slot is free."""
    bh = bulkhead(max_concurrent=1, max_queued=5)
    await bh.acquire()
    with pytest.raises(BulkheadFull):
        await bh.acquire(deadline=anyio.current_time())
    assert bh.metrics().max_queued == 0


async def test_cancelled_waiter_leaves_no_trace() -> None:
    """Cancelling a queued caller removes it; the next waiter still gets the slot."""
    bh = bulkhead(max_concurrent=1, max_queued=2)
    await bh.acquire()
    got: list[str] = []
    scope = anyio.CancelScope()

    async def cancelled() -> None:
        with scope:
            await bh.acquire()
            got.append("cancelled")

    async def patient() -> None:
        async with bh.slot():
            got.append("patient")

    async with anyio.create_task_group() as tg:
        tg.start_soon(cancelled)
        await until(lambda: bh.metrics().queued == 1)
        tg.start_soon(patient)
        await until(lambda: bh.metrics().queued == 2)
        scope.cancel()
        await until(lambda: bh.metrics().queued == 1)
        bh.release()
    assert got == ["patient"]
    metrics = bh.metrics()
    assert (metrics.active, metrics.queued) == (0, 0)


async def test_cancellation_at_handoff_passes_the_slot_on() -> None:
    """A waiter cancelled just as it is handed the slot leaks nothing."""
    bh = bulkhead(max_concurrent=1, max_queued=2)
    await bh.acquire()
    scope = anyio.CancelScope()
    got: list[str] = []

    async def first() -> None:
        with scope:
            async with bh.slot():
                got.append("first")
                await anyio.sleep(1)

    async def second() -> None:
        async with bh.slot():
            got.append("second")

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await until(lambda: bh.metrics().queued == 1)
        tg.start_soon(second)
        await until(lambda: bh.metrics().queued == 2)
        scope.cancel()  # delivered when `first` next runs, after the handoff below
        bh.release()
    assert got == ["second"]
    metrics = bh.metrics()
    assert (metrics.active, metrics.queued) == (0, 0)


async def test_slot_is_released_when_the_body_raises() -> None:
    """Leaving `slot()` with an exception still returns the slot."""
    bh = bulkhead(max_concurrent=1)
    with pytest.raises(KeyError):
        async with bh.slot():
            raise KeyError("boom")
    assert bh.metrics().active == 0
    async with bh:
        assert bh.metrics().active == 1
    assert bh.metrics().active == 0


async def test_try_acquire_and_release_without_acquire() -> None:
    """try_acquire never waits; releasing an unheld slot is a RuntimeError."""
    bh = bulkhead(max_concurrent=1)
    assert bh.try_acquire() is True
    assert bh.try_acquire() is False
    bh.release()
    with pytest.raises(RuntimeError, match="release without acquire"):
        bh.release()


async def test_metrics_track_peaks() -> None:
    """Metrics report active and queued peaks, admissions and rejections."""
    bh = bulkhead(max_concurrent=2, max_queued=1)

    async def hold() -> None:
        async with bh.slot():
            await anyio.sleep(1)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(hold)
        await until(lambda: bh.metrics().queued == 1)
        with pytest.raises(BulkheadFull):
            await bh.acquire()
    metrics = bh.metrics()
    assert (metrics.admitted, metrics.rejected) == (3, 1)
    assert (metrics.max_active, metrics.max_queued) == (2, 1)
    assert (metrics.active, metrics.queued) == (0, 0)
