"""The one clock: the running event loop's time, as `anyio.current_time()` returns it.

Everything time-based in the library reads `now()` (or a kernel's `now`, which is the
same function bound to its loop). It is the loop's monotonic clock, so virtual clocks
in tests (trio's `MockClock`, `actors.testing.VirtualClockEventLoop`) drive it; wall
time (`time.time()`) is never used in logic.

`now()` returns what `anyio.current_time()` returns without anyio's per-call backend
lookup: the hot paths (breaker timing, limiter admission) read it twice per call.
`asyncio._get_running_loop` is part of `asyncio.events.__all__`: the documented
low-level accessor that returns None instead of raising.
"""

from __future__ import annotations

import sys
import time
from asyncio import BaseEventLoop, _get_running_loop
from collections.abc import Callable
from typing import Any

import anyio

__all__ = ["Clock", "current_clock", "deadline_scope", "loop_clock", "now", "now_or_none"]

Clock = Callable[[], float]
"""A clock: a function returning the current loop time in seconds."""


_STOCK_TIME = BaseEventLoop.time


def loop_clock(loop: Any) -> Clock:
    """The cheapest clock of an asyncio loop: `time.monotonic` itself for the stock
    loops (their `time()` is exactly that), else the loop's own `time` (virtual
    clocks in tests)."""
    return time.monotonic if type(loop).time is _STOCK_TIME else loop.time


def current_clock() -> Clock:
    """The running loop's cheapest clock, to read several times on a hot path.

    Raises:
        RuntimeError: No event loop runs in this thread (anyio's error).
    """
    loop = _get_running_loop()
    if loop is not None:
        return loop_clock(loop)
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_task():
        # The run's clock's own method: trio.current_time's value in one frame, not three.
        return trio.lowlevel.current_clock().current_time  # type: ignore[no-any-return]
    return anyio.current_time


def now() -> float:
    """The running event loop's time (asyncio's `loop.time()`, `trio.current_time()`).

    Raises:
        RuntimeError: No event loop runs in this thread (anyio's error).
    """
    loop = _get_running_loop()
    if loop is not None:
        return time.monotonic() if type(loop).time is _STOCK_TIME else loop.time()
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            return float(trio.current_time())
        except RuntimeError:  # trio is imported but not running here
            pass
    return anyio.current_time()


def now_or_none() -> float | None:
    """`now()`, or None outside an event loop (objects may be built before one runs)."""
    try:
        return now()
    except Exception:  # no loop: anyio raises its own error types here
        return None


def deadline_scope(deadline: float) -> Any:
    """The cheapest cancel scope with `deadline` for the running backend.

    trio's own `CancelScope` under trio (anyio's wraps it), anyio's under asyncio;
    both report `cancelled_caught` and honour shields and nesting the same way.
    """
    if _get_running_loop() is None:
        trio = sys.modules.get("trio")
        if trio is not None:
            return trio.CancelScope(deadline=deadline)
    return anyio.CancelScope(deadline=deadline)
