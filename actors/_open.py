"""Running one actor without a supervisor: `async with open_actor(actor) as ref:`."""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import anyio.abc
import attrs

from actors._actor import Actor, Incarnation
from actors._errors import ActorDown, ConfigError
from actors._host import create_task_host
from actors._kernel import current_kernel
from actors._options import ActorConfig
from actors._ref import ActorRef, Cell
from actors._validate import check_name

__all__ = ["open_actor"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def make_config(config: ActorConfig | None, **overrides: Any) -> ActorConfig:
    """`config` (or the defaults) with the non-None overrides applied and validated."""
    base = config if config is not None else ActorConfig()
    if config is not None and not isinstance(config, ActorConfig):
        raise ConfigError("config", type(config).__name__, "must be an ActorConfig")
    changes = {key: value for key, value in overrides.items() if value is not None}
    return attrs.evolve(base, **changes) if changes else base


@asynccontextmanager
async def open_actor(
    actor: Actor[Req, Resp],
    *,
    name: str | None = None,
    config: ActorConfig | None = None,
    mailbox_size: int | None = None,
    call_timeout: float | None = None,
) -> AsyncIterator[ActorRef[Req, Resp]]:
    """Runs `actor` for the duration of the block and yields its ref.

    Structured like a task group: the actor is started (its `on_start` done) before the
    block runs and stopped in order when the block exits. If the actor crashes while the
    block runs, callers of its queued and running calls get `ActorDown` at once, the
    block is cancelled, and `ActorDown` (caused by the crash) is raised from the `async
    with`. No restarts: put the actor under a supervisor for that.

    Args:
        actor: A fresh `Actor` instance.
        name: The actor's name in errors and events (default: the class name).
        config: Address settings; `mailbox_size` and `call_timeout` override it.
        mailbox_size: Messages that may wait in the mailbox.
        call_timeout: Default `call` deadline in seconds.

    Yields:
        The actor's ref.

    Raises:
        ConfigError: Invalid arguments (before anything starts).
        ActorDown: The actor failed to start, or crashed while the block ran.
    """
    if not isinstance(actor, Actor):
        raise ConfigError(
            "actor", type(actor).__name__, "must be an instance of an actors.Actor subclass"
        )
    cfg = make_config(config, mailbox_size=mailbox_size, call_timeout=call_timeout)
    actor_name = check_name("name", name if name is not None else type(actor).__name__)
    cell = Cell(actor_name, cfg, current_kernel())
    body = anyio.CancelScope()
    incarnation = Incarnation(cell, actor, _Owner(cell, body))
    body_error: Exception | None = None
    async with anyio.create_task_group() as tg:
        host = create_task_host()
        await tg.start(host.run)
        try:
            start_failure: BaseException | None = None
            context = contextvars.copy_context()
            if not incarnation.launch(host, context, anyio.TASK_STATUS_IGNORED):
                start_failure = await tg.start(incarnation.run)
            if start_failure is None:
                try:
                    with body:
                        yield ActorRef(cell)
                except Exception as exc:  # re-raised below, outside the task group
                    body_error = exc
                finally:
                    with anyio.CancelScope(shield=True):
                        await incarnation.stop()
        finally:
            host.close()
    if body_error is not None:
        raise body_error
    if incarnation.reason is not None:
        raise ActorDown(cell.name, incarnation.reason) from incarnation.reason


class _Owner:
    """open_actor's side of an incarnation: a crash closes the address and cancels the
    block; a normal end closes the address."""

    __slots__ = ("_body", "_cell")

    def __init__(self, cell: Cell, body: anyio.CancelScope) -> None:
        self._cell = cell
        self._body = body

    def exited(self, reason: BaseException | None) -> None:
        self._cell.close(reason)
        if reason is not None:
            self._body.cancel()

    def crashed(self, reason: BaseException) -> None:
        """Nothing to do before the exit: no restart will follow."""
