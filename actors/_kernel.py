"""The few backend primitives the actor core is built on, with a lean fast path per backend.

anyio's portable primitives (memory object streams, `Event`, `fail_after`) cost several
times a native queue hop; an actor hop is paid on every service call, so the core uses
exactly three primitives, implemented natively for asyncio and for trio:

- a *slot*: a one-shot reply cell with the `asyncio.Future` subset `done()`,
  `set_result()`, `set_exception()` (on asyncio it *is* a Future);
- `wait(slot, deadline)`: suspends until the slot is set or the absolute deadline passes
  (then returns `TIMED_OUT`); the caller's cancellation propagates and marks the slot done;
  `arm(slot, deadline, timeout)` then `park(slot)` do the same for the common case of a
  call with a fixed timeout: such deadlines only grow, so they wait in a FIFO queue per
  timeout value served by one timer, instead of one timer (or cancel scope) per call;
- `now()`: the event loop's clock, the same value as `anyio.current_time()`;

and, for the actor loop, `new_cancel_scope()`: a cancel scope native to the backend
(anyio's on asyncio, which has none of its own; trio's own on trio). A worker holds one
across many messages and replaces it only after a caller gave up, so no message pays for
entering a scope (see `actors._actor`).

There is one kernel per event loop (per trio run), shared by every address in it: the
deadline queues are shared too (deadlines with one timeout value arrive in order whatever
the address), so an address costs no timer of its own, and a queue's timer (an asyncio
`call_at` handle, a trio system task) exists only while the queue holds waiters.
`schedule` puts other timed entries (the actor loop's hibernation checks) on the same
queues.

Both kernels are semantically identical, and the whole test suite runs on both.
"""

from __future__ import annotations

import asyncio
import functools
import math
import sys
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio

from actors._clock import loop_clock

if TYPE_CHECKING:
    import trio

__all__ = ["TIMED_OUT", "CancelScope", "Kernel", "Slot", "current_kernel"]


class _TimedOut:
    __slots__ = ()

    def __repr__(self) -> str:
        return "TIMED_OUT"


TIMED_OUT: Final[Any] = _TimedOut()
"""Returned by `Kernel.wait` when the deadline passed before the slot was set."""


class Slot(Protocol):
    """A one-shot reply cell (the subset of `asyncio.Future` the core uses)."""

    def done(self) -> bool: ...
    def set_result(self, value: Any, /) -> None: ...
    def set_exception(self, exc: BaseException, /) -> None: ...


class Kernel(Protocol):
    """Backend primitives of one event loop (shared by every address in it)."""

    name: str
    slot_awaits: bool  # True: `await slot` is `await park(slot)` (asyncio's Future)

    def now(self) -> float: ...
    def new_slot(self) -> Slot: ...
    async def wait(self, slot: Any, deadline: float) -> Any: ...
    def arm(self, slot: Any, deadline: float, timeout: float) -> bool: ...
    def schedule(self, entry: Any, deadline: float, delay: float) -> None: ...
    def park(self, slot: Any) -> Awaitable[Any]: ...
    def new_cancel_scope(self) -> CancelScope: ...
    async def checkpoint(self) -> None: ...
    def tidy(self) -> None: ...


class CancelScope(Protocol):
    """The subset of anyio's and trio's `CancelScope` the actor loop uses."""

    @property
    def cancel_called(self) -> bool: ...
    def cancel(self) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc_info: Any) -> bool | None: ...


_MAX_QUEUES = 16  # distinct call timeouts served by FIFO deadline queues, per event loop
_COMPACT_AT = 256


class _DeadlineQueue:
    """Waiters whose deadlines arrive in order (same timeout, monotonic clock).

    The head is the earliest deadline; one timer (asyncio `call_at`, or a trio system
    task) sleeps until it, expires every due waiter, and sleeps until the next. Finished
    waiters are pruned from the head as new ones arrive, and the queue is compacted
    when finished ones pile up behind a slow head.
    """

    __slots__ = ("compact_at", "entries", "timer_idle")

    def __init__(self) -> None:
        self.entries: deque[tuple[float, Any]] = deque()
        self.compact_at = _COMPACT_AT
        self.timer_idle = True  # no timer pending: the next waiter must start one

    def compact(self) -> None:
        """Drops finished waiters that piled up behind a slow head."""
        self.entries = deque(entry for entry in self.entries if not entry[1].done())
        self.compact_at = max(_COMPACT_AT, 2 * len(self.entries))

    def expire(self, now: float) -> float | None:
        """Times out every waiter due by `now`; returns the next deadline, if any."""
        entries = self.entries
        while entries:
            deadline, slot = entries[0]
            if slot.done():
                entries.popleft()
            elif deadline <= now:
                entries.popleft()
                slot.set_result(TIMED_OUT)
            else:
                return deadline
        return None

    def add(self, deadline: float, slot: Any) -> None:
        """Queues a waiter (its deadline no earlier than any queued one's)."""
        entries = self.entries
        while entries and entries[0][1].done():
            entries.popleft()
        if self.timer_idle:
            self.start_timer(deadline)
        entries.append((deadline, slot))
        if len(entries) > self.compact_at:
            self.compact()

    def tidy(self) -> None:
        """Drops finished waiters from the head; stops the timer if none is left."""
        entries = self.entries
        while entries and entries[0][1].done():
            entries.popleft()
        if not entries and not self.timer_idle:
            self.stop_timer()

    def start_timer(self, deadline: float) -> None:
        """Starts the timer for a first waiter (`timer_idle` is True); clears the flag."""
        raise NotImplementedError

    def stop_timer(self) -> None:
        """Stops the timer (no waiter is left); sets `timer_idle`."""
        raise NotImplementedError


class _QueuedDeadlines:
    """What both kernels share: FIFO deadline queues, one per timeout value."""

    __slots__ = ()
    _queues: dict[float, _DeadlineQueue]

    def _new_queue(self) -> _DeadlineQueue:
        raise NotImplementedError

    def arm(self, slot: Any, deadline: float, timeout: float) -> bool:
        """Registers `slot` to time out at `deadline` (normally `now() + timeout`).

        Returns:
            True if armed: then `await park(slot)`; False if this kernel already serves
            its maximum of timeout values, or if `deadline` is earlier than the last one
            queued for `timeout` (the queue is FIFO: a caller that waited before arming,
            for mailbox room say, would sit behind later deadlines): then use `wait`.
        """
        queue = self._queues.get(timeout)
        if queue is None:
            if len(self._queues) >= _MAX_QUEUES:
                return False
            queue = self._queues[timeout] = self._new_queue()
        # `queue.add`, inline (it runs on every call).
        entries = queue.entries
        while entries and entries[0][1].done():
            entries.popleft()
        if entries and entries[-1][0] > deadline:
            return False
        if queue.timer_idle:
            queue.start_timer(deadline)
        entries.append((deadline, slot))
        if len(entries) > queue.compact_at:
            queue.compact()
        return True

    def schedule(self, entry: Any, deadline: float, delay: float) -> None:
        """Calls `entry.set_result(TIMED_OUT)` at `deadline` (exactly `now() + delay`)
        unless `entry.done()` is true by then. For a few fixed delays (configuration
        values, such as `ActorConfig.hibernate_after`): each has a queue of its own."""
        queue = self._queues.get(delay)
        if queue is None:
            queue = self._queues[delay] = self._new_queue()
        queue.add(deadline, entry)

    def tidy(self) -> None:
        """Drops finished waiters and stops the timers left without any (an address
        closing calls it: its waiters have all been resolved by then)."""
        for queue in self._queues.values():
            queue.tidy()


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(TIMED_OUT)


class _AsyncioDeadlineQueue(_DeadlineQueue):
    __slots__ = ("_handle", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None

    def start_timer(self, deadline: float) -> None:
        self.timer_idle = False
        self._handle = self._loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        following = self.expire(self._loop.time())
        if following is None:
            self._handle = None
            self.timer_idle = True
        else:
            self._handle = self._loop.call_at(following, self._fire)

    def stop_timer(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.timer_idle = True


class _AsyncioKernel(_QueuedDeadlines):
    """asyncio: a slot is a Future; deadlines are `call_at` timers."""

    __slots__ = ("_loop", "_queues", "name", "new_cancel_scope", "new_slot", "now")
    slot_awaits = True

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.name = "asyncio"
        self._loop = loop
        self._queues: dict[float, _DeadlineQueue] = {}
        # `loop.create_future()`; the stock one is `Future(loop=loop)`, made directly.
        self.new_slot: Callable[[], Slot] = (
            functools.partial(asyncio.Future, loop=loop)
            if type(loop).create_future is asyncio.BaseEventLoop.create_future
            else loop.create_future
        )
        self.now = loop_clock(loop)  # the loop's clock, without a frame on stock loops
        # anyio's asyncio scope class itself: `anyio.CancelScope()` looks the backend up.
        self.new_cancel_scope: Callable[[], CancelScope] = type(anyio.CancelScope())

    def _new_queue(self) -> _DeadlineQueue:
        return _AsyncioDeadlineQueue(self._loop)

    def park(self, slot: Any) -> Awaitable[Any]:
        """Waits for an armed slot: its value, or `TIMED_OUT`. Cancellation propagates."""
        return slot  # type: ignore[no-any-return]

    async def wait(self, slot: Any, deadline: float) -> Any:
        """Waits for `slot` until `deadline`.

        A checkpoint. Cancellation cancels the future (so `done()` is true for the actor
        that would have replied) and propagates.
        """
        if slot.done():
            return slot.result()
        if deadline == math.inf:
            return await slot
        timer = self._loop.call_at(deadline, _expire, slot)
        try:
            return await slot
        finally:
            timer.cancel()

    async def checkpoint(self) -> None:
        await asyncio.sleep(0)


class _TrioSlot:
    """A one-shot reply cell for trio, woken with `trio.lowlevel.reschedule`."""

    __slots__ = ("_done", "_exc", "_task", "_value")

    def __init__(self) -> None:
        self._done = False
        self._task: Any = None
        self._value: Any = None
        self._exc: BaseException | None = None

    def done(self) -> bool:
        return self._done

    def set_result(self, value: Any) -> None:
        self._done = True
        task = self._task
        if task is None:
            self._value = value
        else:
            self._task = None
            _trio.reschedule(task, _trio.Value(value))

    def set_exception(self, exc: BaseException) -> None:
        self._done = True
        task = self._task
        if task is None:
            self._exc = exc
        else:
            self._task = None
            _trio.reschedule(task, _trio.Error(exc))

    def abort(self, _raise_cancel: Any) -> Any:
        """trio's abort callback: the waiting task is cancelled; the slot is done."""
        self._task = None
        self._done = True
        return _trio.succeeded

    def settled(self) -> Any:
        """The value (or raises the exception) of a slot set before anyone waited."""
        if self._exc is not None:
            raise self._exc
        return self._value


class _TrioNames:
    """trio and outcome functions, bound once the first trio kernel is made."""

    reschedule: Any
    Value: Any
    Error: Any
    current_task: Any
    current_time: Any
    current_clock: Any
    wait_task_rescheduled: Any
    CancelScope: type[trio.CancelScope]
    checkpoint: Any
    sleep_until: Any
    spawn_system_task: Any
    succeeded: Any
    kernel: Any  # the run's kernel (a RunVar)


_trio = _TrioNames()


def _bind_trio() -> None:
    if hasattr(_trio, "reschedule"):
        return
    import outcome
    import trio

    _trio.reschedule = trio.lowlevel.reschedule
    _trio.Value = outcome.Value
    _trio.Error = outcome.Error
    _trio.current_task = trio.lowlevel.current_task
    _trio.current_time = trio.current_time
    _trio.current_clock = trio.lowlevel.current_clock
    _trio.wait_task_rescheduled = trio.lowlevel.wait_task_rescheduled
    _trio.CancelScope = trio.CancelScope
    _trio.checkpoint = trio.lowlevel.checkpoint
    _trio.sleep_until = trio.sleep_until
    _trio.spawn_system_task = trio.lowlevel.spawn_system_task
    _trio.succeeded = trio.lowlevel.Abort.SUCCEEDED
    _trio.kernel = trio.lowlevel.RunVar("actors_kernel")


class _TrioDeadlineQueue(_DeadlineQueue):
    """Served by a system task that sleeps until the head's deadline, started by the
    first waiter and ending when no waiter is left."""

    __slots__ = ("_scope",)

    def __init__(self) -> None:
        super().__init__()
        self._scope: Any = None

    def start_timer(self, deadline: float) -> None:
        self.timer_idle = False
        _trio.spawn_system_task(self._serve, name="actors-deadlines")

    def stop_timer(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None
        self.timer_idle = True  # (a task not yet running finds no waiter and ends)

    async def _serve(self) -> None:
        with _trio.CancelScope() as scope:
            self._scope = scope
            entries = self.entries
            while True:
                while entries and entries[0][1].done():
                    entries.popleft()
                if not entries:
                    break
                await _trio.sleep_until(entries[0][0])
                self.expire(_trio.current_time())
                entries = self.entries  # (compaction replaces the deque)
        if self._scope is scope:  # ended by itself, not stopped
            self._scope = None
            self.timer_idle = True


class _TrioKernel(_QueuedDeadlines):
    """trio: a slot parks the task with `wait_task_rescheduled`; deadlines use cancel
    scopes, or a deadline queue's system task."""

    __slots__ = ("_queues", "name", "new_cancel_scope", "now")
    new_slot = _TrioSlot
    slot_awaits = False

    def __init__(self) -> None:
        _bind_trio()
        self.name = "trio"
        # `trio.current_time()` is `current_clock().current_time()`: bind the run's clock.
        self.now = _trio.current_clock().current_time
        self._queues: dict[float, _DeadlineQueue] = {}
        self.new_cancel_scope: Callable[[], CancelScope] = _trio.CancelScope

    async def wait(self, slot: Any, deadline: float) -> Any:
        """Waits for `slot` until `deadline`.

        A checkpoint (unless the slot was already set). Cancellation marks the slot
        done (a late reply is dropped) and propagates.
        """
        if slot._done:
            return slot.settled()
        slot._task = _trio.current_task()
        if deadline == math.inf:
            return await _trio.wait_task_rescheduled(slot.abort)
        with _trio.CancelScope(deadline=deadline):
            return await _trio.wait_task_rescheduled(slot.abort)
        return TIMED_OUT  # the scope caught its own deadline

    def _new_queue(self) -> _DeadlineQueue:
        return _TrioDeadlineQueue()

    def park(self, slot: Any) -> Awaitable[Any]:
        """Waits for an armed slot: its value, or `TIMED_OUT`. Cancellation propagates."""
        if slot._done:
            return _settled(slot)
        slot._task = _trio.current_task()
        return _trio.wait_task_rescheduled(slot.abort)  # type: ignore[no-any-return]

    async def checkpoint(self) -> None:
        await _trio.checkpoint()


async def _settled(slot: _TrioSlot) -> Any:
    return slot.settled()


class _LastKernel(threading.local):
    """The kernel of the asyncio loop that ran last in this thread (loops are per
    thread; holding the last one keeps its identity from being reused)."""

    loop: Any = None
    kernel: Any = None


_last = _LastKernel()


def current_kernel() -> Kernel:
    """Returns the kernel of the running event loop (one per loop or trio run).

    Raises:
        RuntimeError: If no asyncio or trio event loop runs in this thread.
    """
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_task():
        _bind_trio()
        try:
            return _trio.kernel.get()  # type: ignore[no-any-return]
        except LookupError:
            kernel: Kernel = _TrioKernel()
            _trio.kernel.set(kernel)
            return kernel
    loop = asyncio.get_running_loop()
    if _last.loop is not loop:
        _last.kernel = _AsyncioKernel(loop)
        _last.loop = loop
    return _last.kernel  # type: ignore[no-any-return]
