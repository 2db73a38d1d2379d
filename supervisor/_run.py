"""Running a tree: `async with supervisor.start(spec) as sup:` or `start_tree` in a task group.

The root supervisor runs in a task of its own, shielded from cancellation from outside:
cancelling the caller (the usual way an application shuts down) asks the tree to stop
in order instead of cancelling every child at once. The orderly stop is itself bounded:
each child by its `shutdown`, the whole tree by the root spec's `shutdown` (infinity by
default, as OTP's supervisors: as long as its children's shutdowns take), after which
the tree is cancelled hard. The cancellation then propagates as usual.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc

from actors import ConfigError
from supervisor._spec import BRUTAL_KILL, SupervisorSpec
from supervisor._supervisor import Supervisor

__all__ = ["start", "start_tree"]


class _Root:
    """The root supervisor, the shielded task it runs in, and how it ended."""

    def __init__(self, spec: object, rng: random.Random | None) -> None:
        if not isinstance(spec, SupervisorSpec):
            raise ConfigError("spec", type(spec).__name__, "must be a SupervisorSpec")
        self.sup = Supervisor(spec, path=spec.id, rng=rng or random.Random())
        self.sup.prepare()
        self.ready = anyio.Event()  # the initial children are up, or the run ended
        self.done = anyio.Event()
        self.failure: Exception | None = None
        self.on_end: Callable[[], None] | None = None
        self._shield: anyio.CancelScope | None = None

    async def run(self) -> None:
        """The host task: runs the tree until it stops or gives up."""
        with anyio.CancelScope(shield=True) as shield:
            self._shield = shield
            try:
                await self.sup.run(self.ready.set)
            except Exception as exc:  # IntensityExceeded (or a bug): the owner re-raises it
                self.failure = exc
                self.sup.close_addresses(exc)
            finally:
                if shield.cancel_called:  # stopped hard: nothing may stay open
                    self.sup.close_addresses(None)
                self.ready.set()
                self.done.set()
                if self.on_end is not None:
                    self.on_end()

    async def stop(self) -> None:
        """Stops the tree in order, shielded; cancels it hard after the root's shutdown."""
        if self.done.is_set():
            return
        shutdown = self.sup.spec.shutdown
        grace = 0.0 if shutdown == BRUTAL_KILL else float(shutdown)
        with anyio.CancelScope(shield=True):
            self.sup.request_stop()
            with anyio.move_on_after(grace):
                await self.done.wait()
            if not self.done.is_set():
                if self._shield is not None:  # (else the host has yet to run: it will stop)
                    self._shield.cancel()
                await self.done.wait()


@asynccontextmanager
async def start(
    spec: SupervisorSpec, *, rng: random.Random | None = None
) -> AsyncIterator[Supervisor]:
    """Runs a supervision tree for the duration of the block.

    Every initial child has started (in order) when the block begins; when it ends the
    children stop in reverse order, each within its shutdown. Before anything starts,
    the whole tree is validated, including every child's factory (called once; that
    actor is the child's first incarnation).

    Cancellation: cancelling the block (a cancel scope around the `async with`) stops
    the tree in order, each child within its shutdown, calls in hand allowed to finish
    within it; the stop is shielded and bounded (see the module docstring), then the
    cancellation propagates. It is never counted as a failure.

    If the tree ends by itself, the block is cancelled: when the root gives up (restart
    intensity exceeded), `IntensityExceeded` is raised from the `async with`; when the
    root shuts itself down through `auto_shutdown`, the `async with` returns normally
    (`sup.running` is then False).

    Args:
        spec: The root supervisor's spec.
        rng: Randomness for backoff jitter (seed it for reproducible tests).

    Yields:
        The root `Supervisor` (refs, introspection, dynamic children).

    Raises:
        ConfigError: The spec is invalid, or a factory raised `ConfigError` or did not
            return an Actor (nothing has started).
        IntensityExceeded: The root supervisor gave up (while starting or later), bare,
            with the last failure as its `__cause__`.
    """
    root = _Root(spec, rng)
    body = anyio.CancelScope()
    root.on_end = body.cancel
    body_error: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(root.run)
        try:
            await root.ready.wait()
            if root.failure is None:
                try:
                    with body:
                        yield root.sup
                except Exception as exc:  # re-raised below, outside the task group
                    body_error = exc
        finally:
            await root.stop()
    if body_error is not None:
        raise body_error
    if root.failure is not None:
        raise root.failure


async def start_tree(
    spec: SupervisorSpec,
    *,
    rng: random.Random | None = None,
    task_status: anyio.abc.TaskStatus[Supervisor] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Runs a supervision tree inside an existing task group until cancelled.

    Use as `sup = await tg.start(start_tree, spec)`; it reports the root `Supervisor`
    once every initial child has started. The whole tree is validated first, as for
    `start`.

    Cancellation: cancelling the task stops the tree in order (children in reverse
    order, each within its shutdown, calls in hand allowed to finish within it), shielded
    and bounded by the root spec's `shutdown`; then the cancellation propagates. When
    the root shuts itself down through `auto_shutdown`, the call returns normally.

    Raises:
        ConfigError: The spec is invalid (raised by `tg.start`, nothing has started).
        IntensityExceeded: The root supervisor gave up; raised bare, chained to the last
            failure (from `tg.start` if it gave up while starting; afterwards your task
            group reports it, inside its `ExceptionGroup` as for any task: catch it with
            `except* IntensityExceeded`, or `await start_tree(spec)` directly).
    """
    root = _Root(spec, rng)
    async with anyio.create_task_group() as tg:
        tg.start_soon(root.run)
        try:
            await root.ready.wait()
            if root.failure is None:
                task_status.started(root.sup)  # (already stopped, if it shut itself down)
            await root.done.wait()
        finally:
            await root.stop()
    if root.failure is not None:
        raise root.failure
