"""The `Actor` behaviour and the incarnation that runs one instance of it.

An incarnation is one life of an actor behind a cell (its address): it runs `on_start`,
then handles the cell's mailbox with up to `max_concurrency` worker tasks, then
`on_stop`. Workers are started lazily (one at first; another only when messages are
waiting and every worker is busy) and then kept, so a steady stream of messages costs
no task creation. Exit is either *normal* (a stop was requested) or a *crash* (an
exception escaped a handler of a crash-on-error actor, or `on_start` failed): the
reason is what the owner (open_actor or a supervisor) acts on.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio
import anyio.abc

from actors._envelope import CID_VAR, DEADLINE_VAR, DONE, Envelope
from actors._errors import ActorDown, ActorRestarting, ActorStopped, ConfigError
from actors._events import emit, emit_failure
from actors._ref import CURRENT_CELL, ActorRef, ActorState, Cell

__all__ = ["Actor", "Incarnation"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")

_BURST = 64  # messages a busy worker handles before yielding to other tasks


class Actor(abc.ABC, Generic[Req, Resp]):
    """Subclass and implement `handle`; run it with `open_actor` or under a supervisor.

    Class attributes (override in the subclass, or per instance before starting):
        max_concurrency: Messages handled at once. 1 (the default) handles one message
            at a time, like an OTP gen_server, so the actor's state needs no locking.
            Above 1, handlers run concurrently in the actor's task group, and a handler
            whose caller gives up is cancelled.
        crash_on_error: When a handler raises, the exception always goes to that
            message's caller; with True (the default, as gen_server) the actor then
            crashes too, and every other queued or running call gets `ActorDown`.
            With False the actor keeps running.
    """

    max_concurrency: int = 1
    crash_on_error: bool = True
    _actor_cell: Cell | None = None

    async def on_start(self) -> None:
        """Runs before the first message (bounded by the config's `start_timeout`).

        Raising here is a start failure: the actor never runs, `on_stop` is not called.
        """

    @abc.abstractmethod
    async def handle(self, msg: Req) -> Resp:
        """Handles one message; the return value is the caller's reply.

        The message's correlation id is bound in structlog's contextvars, and calls made
        from here inherit the message's deadline (`actors.current_deadline()`).
        """

    def crashes_on(self, exc: Exception) -> bool:
        """Whether an exception escaping `handle` crashes the actor (after its caller has
        received it). The default follows `crash_on_error`; override to crash only on
        unexpected errors (e.g. not on a remote service's documented failures)."""
        return self.crash_on_error

    def lifespan(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Resources held for the whole incarnation (e.g. a connection pool and its task).

        Override with an `@contextlib.asynccontextmanager` method: it is entered after
        `on_start` (a failure there is a start failure) and exited after the last
        message, before `on_stop`. Background tasks started inside it live as long as
        the incarnation. The default holds nothing.
        """
        return contextlib.nullcontext()

    async def probe(self) -> None:
        """Checks health; raise to report unhealthy. The default reports healthy.

        Probes travel on the control lane (`ActorRef.probe`): they run beside the
        mailbox, so a full mailbox or a busy handler never starves them. Keep a probe
        cheap and safe to run concurrently with handlers.
        """

    async def on_stop(self, reason: BaseException | None) -> None:
        """Runs once after the last message (shielded, bounded by `shutdown_timeout`).

        Args:
            reason: None for an orderly stop, else the exception that crashed the actor.
        """

    @property
    def ref(self) -> ActorRef[Req, Resp]:
        """This actor's own address (valid once it has been started).

        Raises:
            ActorStopped: The actor has never been started.
        """
        cell = self._actor_cell
        if cell is None:
            raise ActorStopped(type(self).__name__)
        return ActorRef(cell)

    def stop(self) -> None:
        """Asks this actor to stop normally after the message(s) it is handling.

        Messages still queued then get `ActorStopped`. Not a checkpoint.
        """
        cell = self._actor_cell
        if cell is not None and cell.incarnation is not None:
            cell.incarnation.request_stop()


def _max_concurrency(actor: Actor[Any, Any]) -> int:
    value = actor.max_concurrency
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{type(actor).__name__}.max_concurrency", value, "must be an integer >= 1"
        )
    return value


def _reply(env: Envelope, result: Any) -> None:
    """Delivers a handler's result; a caller that gave up is gone and it is dropped."""
    env.state = DONE
    reply = env.reply
    if reply is not None and not reply.done():
        reply.set_result(result)


class Incarnation:
    """One life of an actor behind a cell. Internal to the runtime and supervisors."""

    __slots__ = (
        "_current",
        "_done",
        "_finished",
        "_on_exit",
        "_running",
        "_scope",
        "_tg",
        "_unstarted",
        "_workers",
        "actor",
        "cell",
        "concurrent",
        "max_concurrency",
        "reason",
        "restarting",
        "started",
        "stopping",
    )

    def __init__(
        self,
        cell: Cell,
        actor: Actor[Any, Any],
        on_exit: Callable[[BaseException | None], None],
    ) -> None:
        """Prepares an incarnation (call from async code; nothing runs until `run`).

        Args:
            cell: The address whose mailbox it serves.
            actor: A fresh actor instance.
            on_exit: Called once when handling has ended (reason None for normal), after
                running messages are settled and before `on_stop`: the owner sets the
                cell's state and disposes of queued messages there.

        Raises:
            ConfigError: `actor.max_concurrency` is not a positive integer.
        """
        self.cell = cell
        self.actor = actor
        self.max_concurrency = _max_concurrency(actor)
        self.concurrent = self.max_concurrency > 1
        self.reason: BaseException | None = None
        self.stopping = False
        self.started = False
        self.restarting = False
        self._on_exit = on_exit
        # Messages in hand: a set for concurrent actors, one slot for sequential ones.
        self._running: set[Envelope] | None = set() if self.concurrent else None
        self._current: Envelope | None = None  # a sequential actor's message in hand
        self._scope: anyio.CancelScope | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._workers = 0
        self._unstarted = 0
        self._finished = False
        self._done: anyio.Event | None = None  # made only if someone waits for the end

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[BaseException | None] = anyio.TASK_STATUS_IGNORED
    ) -> BaseException | None:
        """Runs the incarnation to its end.

        Reports readiness through `task_status`: `started(None)` once `on_start` has
        succeeded, or `started(exc)` after a failed start (the call then returns).

        Returns:
            None after a normal stop, else the crash reason.
        """
        cell = self.cell
        actor = self.actor
        CURRENT_CELL.set(cell)
        actor._actor_cell = cell
        cell.incarnation = self
        cell.sequential = not self.concurrent
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                try:
                    with anyio.fail_after(cell.config.start_timeout):
                        await actor.on_start()
                except Exception as exc:
                    self._start_failed(exc)
                else:
                    if type(actor).lifespan is Actor.lifespan:
                        await self._serve(task_status)
                    else:
                        entered = False
                        try:
                            async with actor.lifespan():
                                entered = True
                                await self._serve(task_status)
                        except Exception as exc:
                            if entered:
                                raise
                            self._start_failed(exc)
        finally:
            self._settle_running()
            if self.reason is not None and self.started:
                emit_failure("actor.crashed", self.reason, actor=cell.name)
            self._on_exit(self.reason)
            if self.started:
                await self._call_on_stop()
                if self.reason is None:
                    emit("actor.stopped", actor=cell.name)
            self._finished = True
            if self._done is not None:
                self._done.set()
        if not self.started:
            task_status.started(self.reason)
        return self.reason

    def _start_failed(self, exc: Exception) -> None:
        self.reason = exc
        emit_failure("actor.start_failed", exc, actor=self.cell.name)

    def _mark_started(self, task_status: anyio.abc.TaskStatus[BaseException | None]) -> None:
        cell = self.cell
        self.started = True
        if cell.state in (ActorState.STARTING, ActorState.RESTARTING):
            cell.state = ActorState.RUNNING
        emit("actor.started", actor=cell.name, max_concurrency=self.max_concurrency)
        task_status.started(None)

    def _serve(self, task_status: anyio.abc.TaskStatus[BaseException | None]) -> Awaitable[None]:
        """Marks the incarnation started; await the result to handle messages until it
        stops. (Returned, not awaited here: one coroutine frame less per idle actor.)"""
        self._mark_started(task_status)
        return self._serve_concurrent() if self.concurrent else self._serve_sequential()

    async def _serve_concurrent(self) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await self._dispatch()

    def request_stop(self) -> None:
        """Asks for an orderly stop: workers finish their current message and exit."""
        if not self.stopping:
            self.stopping = True
            cell = self.cell
            if cell.state is ActorState.RUNNING or cell.state is ActorState.STARTING:
                cell.state = ActorState.STOPPING
            cell.mailbox.wake_all_idle()

    async def stop(self, timeout: float | None = None, *, restarting: bool = False) -> None:
        """Stops the incarnation and waits until it has ended.

        Workers get `timeout` (default: the config's `shutdown_timeout`) to finish their
        current messages; then they are cancelled hard. A checkpoint; call it shielded
        when cleaning up.

        Args:
            timeout: Grace period in seconds (`0` cancels at once, `inf` waits).
            restarting: The address will get a new incarnation: callers of messages cut
                short get `ActorRestarting` instead of `ActorStopped`.
        """
        self.restarting = restarting
        self.request_stop()
        if self._finished:
            return
        done = self._done
        if done is None:
            done = self._done = anyio.Event()
        grace = self.cell.config.shutdown_timeout if timeout is None else timeout
        with anyio.move_on_after(grace):
            await done.wait()
        if not self._finished:
            emit("actor.shutdown_timeout", level="warning", actor=self.cell.name)
            if self._scope is not None:
                self._scope.cancel()
            await done.wait()

    def crash(self, exc: BaseException) -> None:
        """Ends the incarnation abnormally with `exc` as the reason (first reason wins)."""
        if self.reason is None:
            self.reason = exc
        self.stopping = True
        if self._scope is not None:
            self._scope.cancel()

    async def _serve_sequential(self) -> None:
        """The gen_server loop: one message at a time, handled inline (no extra task)."""
        kernel = self.cell.kernel
        handle = self.actor.handle
        burst = 0
        while not self.stopping:
            env = self._take()
            if env is None:
                burst = 0
                await self._idle()
                continue
            self._current = env
            CID_VAR.set(env.cid)
            DEADLINE_VAR.set(env.deadline)
            try:
                result = await handle(env.msg)
            except Exception as exc:
                self._current = None
                if self._failed(env, exc):
                    return
                continue
            self._current = None
            _reply(env, result)
            burst += 1
            if burst >= _BURST:
                burst = 0
                await kernel.checkpoint()

    def _take(self) -> Envelope | None:
        """The next envelope whose caller still waits, or None when there is none.

        Expired envelopes are dead letters: their callers have their `CallTimeout`.
        """
        mailbox = self.cell.mailbox
        now = self.cell.kernel.now
        while (env := mailbox.pop()) is not None:
            if env.deadline > now():
                return env
            self._expired(env)
        return None

    def _idle(self) -> Awaitable[Any]:
        """Parks a worker until a message arrives (or a stop wakes it); await the result."""
        kernel = self.cell.kernel
        slot = kernel.new_slot()
        self.cell.mailbox.idle.append(slot)
        return kernel.park(slot)

    def _expired(self, env: Envelope) -> None:
        env.state = DONE
        emit(
            "actor.dead_letter",
            level="debug",
            actor=self.cell.name,
            reason="expired",
            correlation_id=env.cid,
        )

    def _failed(self, env: Envelope, exc: Exception) -> bool:
        """A handler raised: the caller gets the exception. Returns True if it crashed."""
        env.state = DONE
        crashes = self.actor.crashes_on(exc)
        reply = env.reply
        if reply is not None:
            if not reply.done():
                reply.set_exception(exc)
        elif not crashes:
            emit_failure("actor.cast_failed", exc, level="warning", actor=self.cell.name)
        if crashes:
            self.crash(exc)
        return crashes

    async def _dispatch(self) -> None:
        """Starts workers of a concurrent actor while messages wait and all are busy.

        Workers are kept once started (parked when idle), so a steady stream of
        messages creates no tasks; a push wakes an idle worker directly.
        """
        mailbox = self.cell.mailbox
        kernel = self.cell.kernel
        tg = self._tg
        assert tg is not None
        while not self.stopping:
            wanted = min(
                self.max_concurrency - self._workers,
                mailbox.live - self._unstarted - len(mailbox.idle),
            )
            for _ in range(max(0, wanted)):
                self._workers += 1
                self._unstarted += 1
                tg.start_soon(self._worker)
            slot = kernel.new_slot()
            mailbox.dispatcher = slot
            await kernel.park(slot)  # woken by a push that found no idle worker

    async def _worker(self) -> None:
        """One of up to `max_concurrency` workers of a concurrent actor."""
        self._unstarted -= 1
        kernel = self.cell.kernel
        burst = 0
        while not self.stopping:
            env = self._take()
            if env is None:
                burst = 0
                await self._idle()
                continue
            await self._handle(env)
            burst += 1
            if burst >= _BURST:
                burst = 0
                await kernel.checkpoint()

    async def _handle(self, env: Envelope) -> None:
        actor = self.actor
        running = self._running
        assert running is not None
        running.add(env)
        CID_VAR.set(env.cid)
        DEADLINE_VAR.set(env.deadline)
        try:
            with anyio.CancelScope() as scope:
                env.scope = scope
                result = await actor.handle(env.msg)
            if scope.cancelled_caught:  # the caller gave up; nobody wants the reply
                running.discard(env)
                env.state = DONE
                return
        except Exception as exc:
            running.discard(env)
            self._failed(env, exc)
            return
        running.discard(env)
        _reply(env, result)

    def _settle_running(self) -> None:
        """Resolves the callers of messages still being handled when the workers ended."""
        name = self.cell.name
        reason = self.reason
        in_hand = list(self._running or ())
        if self._current is not None:
            in_hand.append(self._current)
            self._current = None
        for env in in_hand:
            env.state = DONE
            reply = env.reply
            if reply is None:
                emit("actor.dead_letter", level="warning", actor=name, reason="interrupted")
            elif not reply.done():
                if reason is not None:
                    reply.set_exception(ActorDown(name, reason))
                elif self.restarting:
                    reply.set_exception(ActorRestarting(name))
                else:
                    reply.set_exception(ActorStopped(name))
        if self._running is not None:
            self._running.clear()

    async def _call_on_stop(self) -> None:
        cell = self.cell
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + cell.config.shutdown_timeout
            try:
                await self.actor.on_stop(self.reason)
            except Exception as exc:
                emit_failure("actor.on_stop_failed", exc, actor=cell.name)
        if scope.cancelled_caught:
            emit("actor.on_stop_timeout", level="warning", actor=cell.name)
