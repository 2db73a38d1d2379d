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
from actors._errors import ActorDown, ActorRestarting, ActorStopped
from actors._events import emit, emit_failure
from actors._kernel import CancelScope
from actors._ref import CURRENT_CELL, ActorRef, ActorState, Cell
from actors._tracing import attach, detach
from actors._validate import check_instance, check_positive_int

__all__ = ["Actor", "Incarnation"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")

_BURST = 64  # messages a busy worker handles before yielding to other tasks


class Actor(abc.ABC, Generic[Req, Resp]):
    """Subclass and implement `handle`; run it with `open_actor` or under a supervisor.

    Class attributes (override in the subclass, or per instance before starting):
        max_concurrency: Messages handled at once. 1 (the default) handles one message
            at a time, like an OTP gen_server, so the actor's state needs no locking.
            Above 1, handlers run concurrently in worker tasks of the actor.
        crash_on_error: When a handler raises, the exception always goes to that
            message's caller; with True (the default, as gen_server) the actor then
            crashes too, and every other queued or running call gets `ActorDown`.
            With False the actor keeps running.
        cancel_abandoned: What happens to a handler whose caller gives up (its deadline
            passes, or the caller is cancelled), whatever `max_concurrency` is. True
            (the default): the handler is cancelled at once, its own `finally` blocks
            and shielded cleanup run, and the actor carries on with its next message
            (not a crash; nothing reaches the caller, who has its `CallTimeout` or its
            cancellation; an exception the handler raises while being cancelled is
            dropped). The reason for the default: a caller's deadline is the budget of
            the whole request, and work nobody waits for would keep holding a
            connection and delay every message queued behind it (a hung query on a
            one-connection pool would block the actor until it ends). False: OTP
            gen_server's behaviour, the handler runs to completion and its late reply is
            dropped; choose it for handlers that must not be interrupted half way
            (state changes that span several awaits). Casts have no caller and are
            never cancelled this way.
    """

    max_concurrency: int = 1
    crash_on_error: bool = True
    cancel_abandoned: bool = True
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

    def screen(self, msg: Req) -> None:
        """Checks a request in the *caller's* task before it is queued (override to use).

        Runs in `ActorRef.call` and `ActorRef.cast` before the message takes a mailbox
        place: raise `InvalidRequest` (or another `ActorError`) to refuse the request to
        that one caller, and the actor never sees it. Any other exception also goes to
        the caller as it is (it is a bug in the screen); the actor is never affected.

        It must be pure: a function of `msg` and of configuration fixed at construction,
        never of per-incarnation state (connections, counters): the address keeps the
        screen of its latest incarnation, so it also runs while the actor restarts or
        before the new incarnation has started. Not overriding it costs nothing.
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


class _RunToCompletion:
    """The worker's cancel scope for an actor with `cancel_abandoned = False`: none."""

    __slots__ = ()
    cancel_called = False

    def __enter__(self) -> _RunToCompletion:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def cancel(self) -> None:
        """A caller gave up: the handler runs on and its reply is dropped."""


class Incarnation:
    """One life of an actor behind a cell. Internal to the runtime and supervisors.

    Every message, whatever `max_concurrency` is, goes through one loop (`_work`): a
    sequential actor runs it inline in the incarnation's task, a concurrent one in up to
    `max_concurrency` worker tasks. A worker holds one cancel scope across the messages
    it handles and records it in each envelope it takes; a caller that gives up while
    its message is being handled cancels that scope (`actors._ref._withdraw`), the
    handler unwinds, and the worker enters a fresh scope before its next message. So no
    message pays for a scope of its own (entering one per message costs about a sixth
    of a service call on asyncio), and only an abandoned message pays for one. The
    scope sits inside the incarnation's own, so a stop or a crash still cancels every
    handler, and anyio's (or trio's) rules for shields and nested scopes hold inside
    handlers as usual.
    """

    __slots__ = (
        "_done",
        "_finished",
        "_new_scope",
        "_on_crash",
        "_on_exit",
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
        on_crash: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Prepares an incarnation (call from async code; nothing runs until `run`).

        Also gives the cell this actor's `screen` (if overridden), so that callers are
        screened by the latest incarnation's actor from now on, even before it starts.

        Args:
            cell: The address whose mailbox it serves.
            actor: A fresh actor instance.
            on_exit: Called once when handling has ended (reason None for normal), after
                running messages are settled and before `on_stop`: the owner sets the
                cell's state and disposes of queued messages there.
            on_crash: Called once, synchronously, the moment the incarnation crashes
                (before its handlers unwind): the owner marks the address restarting
                there, so no call sent in between reaches the dying incarnation.

        Raises:
            ConfigError: `actor.max_concurrency` is not a positive integer, or
                `actor.cancel_abandoned` is not a bool.
        """
        kind = type(actor).__name__
        self.max_concurrency = check_positive_int(f"{kind}.max_concurrency", actor.max_concurrency)
        cancel = check_instance(f"{kind}.cancel_abandoned", actor.cancel_abandoned, bool)
        self.cell = cell
        self.actor = actor
        self.concurrent = self.max_concurrency > 1
        self.reason: BaseException | None = None
        self.stopping = False
        self.started = False
        self.restarting = False
        self._on_exit = on_exit
        self._on_crash = on_crash
        self._new_scope: Callable[[], CancelScope] = (
            cell.kernel.new_cancel_scope if cancel else _RunToCompletion
        )
        self._scope: anyio.CancelScope | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._workers = 0
        self._unstarted = 0
        self._finished = False
        self._done: anyio.Event | None = None  # made only if someone waits for the end
        cell.screen = None if type(actor).screen is Actor.screen else actor.screen

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
        cell.incarnations += 1
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
        return self._serve_concurrent() if self.concurrent else self._work()

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
            if self._on_crash is not None and self.started:
                self._on_crash(exc)
        self.stopping = True
        if self._scope is not None:
            self._scope.cancel()

    async def _work(self) -> None:
        """The actor loop: takes messages one at a time and handles each under the scope
        its caller cancels on giving up (see the class docstring).

        A sequential actor runs it in its own task (the gen_server loop, no extra task);
        each worker of a concurrent actor runs it in the worker's task. An envelope
        whose deadline has passed is skipped (a dead letter: its caller has its
        `CallTimeout`). An idle worker parks on a slot in `mailbox.idle`, which a push
        sets. (The hot path of every call: the helpers are bound to locals.)
        """
        if self.concurrent:
            self._unstarted -= 1
        cell = self.cell
        kernel = cell.kernel
        now, new_slot, park = kernel.now, kernel.new_slot, kernel.park
        pop, idle = cell.mailbox.pop, cell.mailbox.idle
        handle = self.actor.handle
        new_scope = self._new_scope
        burst = 0
        while not self.stopping:
            with new_scope() as scope:
                while not self.stopping:
                    env = pop()
                    if env is None:
                        burst = 0
                        slot = new_slot()
                        idle.append(slot)
                        await park(slot)
                        continue
                    if env.deadline <= now():
                        self._expired(env)
                        continue
                    env.scope = scope
                    CID_VAR.set(env.cid)
                    DEADLINE_VAR.set(env.deadline)
                    trace = env.trace  # the sender's trace context, while tracing is on
                    token = None if trace is None else attach(trace)
                    try:
                        result = await handle(env.msg)
                    except Exception as exc:
                        if self._failed(env, exc, abandoned=scope.cancel_called):
                            return
                    except BaseException:
                        self._cut(env)  # a stop, a crash elsewhere, or its caller gave up
                        raise
                    else:
                        env.state = DONE
                        reply = env.reply
                        if reply is not None and not reply.done():  # else: it gave up
                            reply.set_result(result)
                    finally:
                        if token is not None:
                            detach(token)
                    if scope.cancel_called:
                        break  # its caller gave up: a fresh scope for the next message
                    burst += 1
                    if burst >= _BURST:
                        burst = 0
                        await kernel.checkpoint()

    def _expired(self, env: Envelope) -> None:
        env.state = DONE
        emit(
            "actor.dead_letter",
            level="debug",
            actor=self.cell.name,
            reason="expired",
            correlation_id=env.cid,
        )

    def _failed(self, env: Envelope, exc: Exception, *, abandoned: bool) -> bool:
        """A handler raised: the caller gets the exception. Returns True if it crashed.

        A handler cancelled because its caller gave up (`abandoned`) has nobody to give
        the exception to, and it never crashes the actor: it is what the cancellation
        made of the request (a driver's "query cancelled", say).
        """
        env.state = DONE
        if abandoned:
            emit(
                "actor.dead_letter",
                level="debug",
                actor=self.cell.name,
                reason="abandoned",
                error_type=type(exc).__name__,
                correlation_id=env.cid,
            )
            return False
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

    def _cut(self, env: Envelope) -> None:
        """A handler was cancelled: its caller (if it still waits) learns why."""
        env.state = DONE
        reply = env.reply
        if reply is None:
            emit("actor.dead_letter", level="warning", actor=self.cell.name, reason="interrupted")
        elif not reply.done():
            if self.reason is not None:
                reply.set_exception(ActorDown(self.cell.name, self.reason))
            elif self.restarting:
                reply.set_exception(ActorRestarting(self.cell.name))
            else:
                reply.set_exception(ActorStopped(self.cell.name))

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
                tg.start_soon(self._work)
            slot = kernel.new_slot()
            mailbox.dispatcher = slot
            await kernel.park(slot)  # woken by a push that found no idle worker

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
