"""Task hosts: where an owner (a supervisor, `open_actor`) starts its actors' wake-up tasks.

A hibernated actor starts a task on its first message, so that start is on the path of
a call. anyio's `TaskGroup.start_soon` costs several actor hops (each task gets a
handle with a cancel scope and an event of its own), so an owner runs one *host* task
in its task group and starts the actors' tasks natively under it:

- trio: a nursery opened in the host task (`nursery.start_soon`);
- asyncio: `loop.create_task`, the host keeping its tasks. When the host is cancelled
  (its owner's task group is), it cancels each task through the object that started
  it (`Cancellable.cancel`: an incarnation cancels its current scope, so anyio's rules
  for shields inside the task hold) and waits for them; an exception escaping a task
  cancels the others and is raised by the host.

Either way the tasks belong to the owner's task group as anyio's own would: cancelling
the group cancels them, the group waits for them, and an exception escaping one fails
the group. The host outlives a cancellation until its owner `close`s it (in a
`finally`), so that an actor stopped during a hard stop can still start the task that
runs its `on_stop` (in the cancelled group, as any other task there).

Both hosts are semantically identical, and the whole test suite runs on both.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import anyio
import anyio.abc

__all__ = ["Cancellable", "TaskHost", "create_task_host"]

TaskFunction = Callable[[], Coroutine[Any, Any, object]]


class Cancellable(Protocol):
    """What started a host's task; cancelled with the host (asyncio)."""

    def cancel(self) -> None: ...


class TaskHost(Protocol):
    """Starts tasks inside its owner's task group (see the module docstring)."""

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """The host task: `await tg.start(host.run)`; returns once closed and empty."""
        ...

    def spawn(self, starter: Cancellable, context: contextvars.Context, fn: TaskFunction) -> None:
        """Starts `fn()` in a new task, in a copy of `context`. Not a checkpoint."""
        ...

    def close(self) -> None:
        """No more tasks will be started: `run` returns once the running ones end."""
        ...


class _TrioHost:
    __slots__ = ("_closed", "_nursery")

    def __init__(self) -> None:
        import trio

        self._closed = trio.Event()
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        import trio

        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await self._closed.wait()
            except trio.Cancelled:
                if not nursery.cancel_scope.cancel_called:  # the owner's group, not a task
                    with trio.CancelScope(shield=True):  # open until closed (see above)
                        await self._closed.wait()
                raise
            finally:
                self._nursery = None

    def spawn(self, starter: Cancellable, context: contextvars.Context, fn: TaskFunction) -> None:
        nursery = self._nursery
        assert nursery is not None
        context.run(functools.partial(nursery.start_soon, fn, name="actor"))  # (copied)

    def close(self) -> None:
        self._closed.set()


class _AsyncioHost:
    __slots__ = ("_cancelled", "_closed", "_error", "_loop", "_tasks", "_waiter")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks: dict[asyncio.Task[object], Cancellable] = {}
        self._closed = False
        self._cancelled = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None  # the host task, parked

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await self._wait()
        except BaseException:  # the owner's group is cancelled
            self._cancel_all()
            with anyio.CancelScope(shield=True):  # open until closed (see above)
                await self._wait()
            raise
        if self._error is not None:
            raise self._error

    async def _wait(self) -> None:
        """Parks until closed (or a task failed) and no task is left."""
        while not ((self._closed or self._error is not None) and not self._tasks):
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def spawn(self, starter: Cancellable, context: contextvars.Context, fn: TaskFunction) -> None:
        task = self._loop.create_task(fn(), name="actor", context=context.copy())
        self._tasks[task] = starter
        task.add_done_callback(self._done)
        if self._cancelled:
            starter.cancel()

    def _done(self, task: asyncio.Task[object]) -> None:
        del self._tasks[task]
        if not task.cancelled():
            exc = task.exception()
            if exc is not None and self._error is None:
                self._error = exc
                self._cancel_all()
        self._wake()

    def _cancel_all(self) -> None:
        self._cancelled = True
        for starter in list(self._tasks.values()):
            starter.cancel()

    def _wake(self) -> None:
        """Wakes the host to look again, if what it waits for may have come."""
        waiter = self._waiter
        if waiter is not None and not waiter.done() and (self._closed or self._cancelled):
            waiter.set_result(None)

    def close(self) -> None:
        self._closed = True
        self._wake()


def create_task_host() -> TaskHost:
    """A host for the running event loop's backend."""
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_task():
        return _TrioHost()
    return _AsyncioHost()
