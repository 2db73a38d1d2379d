"""Virtual time for tests on both backends.

trio ships `trio.testing.MockClock`; asyncio has no equivalent, so this module adds an
event loop whose clock only moves when every task is blocked: it then jumps straight
to the next timer, exactly like `MockClock(autojump_threshold=0)`. Sleeps, deadlines
and timeouts complete instantly in wall time while `anyio.current_time()` advances by
their exact durations.

Like trio's autojump clock, it is meant for code that waits on timers and on other
tasks. A test that waits on real I/O or a worker thread should use real time: virtual
time jumps past deadlines while the operating system does the work.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any

__all__ = ["VirtualClockEventLoop", "virtual_time_backend"]


class _AutojumpSelector(selectors.BaseSelector):
    """Polls the real selector; when nothing is ready and a timer is due, advances the clock."""

    def __init__(self, loop: VirtualClockEventLoop) -> None:
        self._loop = loop
        self._real = selectors.DefaultSelector()

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            # No timer is pending: only I/O (or another thread) can wake the loop.
            return self._real.select(None)
        self._loop.advance(timeout)
        return []

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class VirtualClockEventLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on virtual time that autojumps to the next timer."""

    def __init__(self) -> None:
        self._virtual_now = 0.0
        super().__init__(selector=_AutojumpSelector(self))

    def time(self) -> float:
        """The virtual current time, in seconds."""
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Moves the virtual clock forward by `seconds` (never backwards)."""
        self._virtual_now += max(0.0, seconds)


def virtual_time_backend(backend: str) -> tuple[str, dict[str, Any]]:
    """Returns an `anyio_backend` value that runs `backend` on an autojumping virtual clock.

    Args:
        backend: "asyncio" or "trio".

    Returns:
        A `(name, options)` pair for anyio's pytest plugin or `anyio.run`.
    """
    if backend == "asyncio":
        return ("asyncio", {"loop_factory": VirtualClockEventLoop})
    if backend == "trio":
        from trio.testing import MockClock

        return ("trio", {"clock": MockClock(autojump_threshold=0)})
    raise ValueError(f"unknown backend {backend!r}")
