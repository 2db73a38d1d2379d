"""The `Actor` behaviour and the incarnation that runs one instance of it.

An incarnation is one life of an actor behind a cell (its address): it runs `on_start`,
then handles the cell's mailbox with up to `max_concurrency` worker tasks, then
`on_stop`. Workers are started lazily (one at first; another only when messages are
waiting and every worker is busy) and then kept, so a steady stream of messages costs
no task creation. Exit is either *normal* (a stop was requested) or a *crash* (an
exception escaped a handler of a crash-on-error actor, or `on_start` failed): the
reason is what the owner (open_actor or a supervisor) acts on.

An idle incarnation *hibernates* (`ActorConfig.hibernate_after`): its tasks end and it
waits as the mailbox's `sleeper`; the next push wakes it, starting a task in the
owner's task group, in the context the owner launched it in, that runs the same loop.
Nothing else changes while it sleeps: the address accepts and screens messages, probes
run (in the prober's task), and a stop ends it without waking it unless it has an
`on_stop` to run.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any, Final, Generic, Protocol, TypeVar

import anyio
import anyio.abc

from actors._envelope import CID_VAR, CUT, DEADLINE_VAR, DONE, RUNNING, Envelope
from actors._errors import ActorDown, ActorRestarting, ActorStopped
from actors._events import emit, emit_failure
from actors._host import TaskHost
from actors._kernel import CancelScope
from actors._ref import CURRENT_CELL, ActorRef, Cell
from actors._tracing import attach, detach
from actors._validate import check_instance, check_positive_int

__all__ = ["Actor", "Incarnation", "Owner"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")

_BURST = 64  # messages a busy worker handles before yielding to other tasks


class _Sleep:
    __slots__ = ()

    def __repr__(self) -> str:
        return "SLEEP"


_SLEEP: Final = _Sleep()
"""What a parked worker (or dispatcher) is woken with when its incarnation hibernates."""


class Owner(Protocol):
    """What runs an incarnation (open_actor, a supervisor's child slot) hears from it."""

    def exited(self, reason: BaseException | None) -> None:
        """Called once when handling has ended (reason None for normal), after running
        messages are settled and before `on_stop`: the owner sets the cell's state and
        disposes of queued messages here."""

    def crashed(self, reason: BaseException) -> None:
        """Called once, synchronously, the moment a started incarnation crashes (before
        its handlers unwind): the owner marks the address restarting here, so no call
        sent in between reaches the dying incarnation."""


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
        """Runs once after the last message (shielded; within the stop's budget, or
        `shutdown_timeout` after a crash).

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

    The owner starts it with `launch`. The incarnation's task is then either the one
    that ran `on_start` (`run`) or one started by a wake-up (`_resume`); both serve the
    same loop, and whichever is running when the incarnation ends runs its exit
    (`_finish`). Hibernation is decided by an idle check on the kernel's timer queue
    (one per awake period, re-armed every `hibernate_after`): it puts the incarnation
    to sleep when every worker has stayed parked on the same slot since the previous
    check, so a busy actor pays nothing per message for it.
    """

    __slots__ = (
        "_cancels",
        "_check",
        "_context",
        "_done",
        "_finished",
        "_host",
        "_owner",
        "_scope",
        "_stop_by",
        "_tg",
        "_unstarted",
        "_workers",
        "actor",
        "asleep",
        "cell",
        "concurrent",
        "hibernates",
        "max_concurrency",
        "reason",
        "restarting",
        "started",
        "stopping",
    )

    def __init__(self, cell: Cell, actor: Actor[Any, Any], owner: Owner) -> None:
        """Prepares an incarnation (call from async code; nothing runs until `launch`).

        Also gives the cell this actor's `screen` (if overridden), so that callers are
        screened by the latest incarnation's actor from now on, even before it starts.

        Args:
            cell: The address whose mailbox it serves.
            actor: A fresh actor instance.
            owner: Told when the incarnation crashes and when it has ended.

        Raises:
            ConfigError: `actor.max_concurrency` is not a positive integer, or
                `actor.cancel_abandoned` is not a bool.
        """
        kind = type(actor)
        name = kind.__name__
        self.max_concurrency = check_positive_int(f"{name}.max_concurrency", actor.max_concurrency)
        cancel = check_instance(f"{name}.cancel_abandoned", actor.cancel_abandoned, bool)
        self.cell = cell
        self.actor = actor
        self.concurrent = self.max_concurrency > 1
        self.hibernates = cell.config.hibernate_after is not None and (
            kind.lifespan is Actor.lifespan
        )
        self.reason: BaseException | None = None
        self.stopping = False
        self.started = False
        self.restarting = False
        self.asleep = False
        self._owner = owner
        self._cancels = cancel
        self._scope: CancelScope | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._host: TaskHost | None = None
        self._context: contextvars.Context | None = None
        self._check: _IdleCheck | None = None
        self._workers = 0
        self._unstarted = 0
        self._finished = False
        self._done: anyio.Event | None = None  # made only if someone waits for the end
        self._stop_by: float | None = None  # when a stop's whole budget runs out
        cell.screen = None if kind.screen is Actor.screen else actor.screen

    def launch(
        self,
        host: TaskHost,
        context: contextvars.Context,
        task_status: anyio.abc.TaskStatus[BaseException | None],
    ) -> bool:
        """Starts the incarnation in its owner's task group, if it needs no task to.

        An actor that hibernates and does not override `on_start` starts here, at once
        and asleep (woken straight away if messages are waiting): `task_status` has been
        told, and True is returned. Otherwise False: the owner runs `run` in a task of
        its group, in `context`. Not a checkpoint.

        Args:
            host: The owner's task host: wake-ups start their tasks there.
            context: The context every task of the incarnation starts in (a copy).
            task_status: Told as by `run`.
        """
        self._host = host
        self._context = context
        if not self.hibernates or type(self.actor).on_start is not Actor.on_start:
            return False
        self._enter()
        self._mark_started(task_status)
        self._sleep()
        return True

    def _enter(self) -> None:
        cell = self.cell
        self.actor._actor_cell = cell
        cell.attach(self, sequential=not self.concurrent)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[BaseException | None] = anyio.TASK_STATUS_IGNORED
    ) -> BaseException | None:
        """Runs the incarnation's first task: `on_start`, then messages until it stops or
        hibernates (then wake-ups start tasks of their own).

        Reports readiness through `task_status`: `started(None)` once `on_start` has
        succeeded, or `started(exc)` after a failed start (the call then returns).

        Returns:
            The crash reason (None after a normal stop, or while it hibernates).
        """
        cell = self.cell
        actor = self.actor
        CURRENT_CELL.set(cell)
        self._enter()
        slept = False
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                try:
                    if type(actor).on_start is not Actor.on_start:
                        with anyio.fail_after(cell.config.start_timeout):
                            await actor.on_start()
                except Exception as exc:
                    self._start_failed(exc)
                else:
                    if type(actor).lifespan is Actor.lifespan:
                        slept = await self._serve(task_status)
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
            if not slept:
                await self._finish()
        if not self.started:
            task_status.started(self.reason)
        return self.reason

    async def _resume(self) -> None:
        """A task started by a wake-up: serves until the incarnation ends or sleeps again
        (or, woken by a stop, only runs its exit)."""
        CURRENT_CELL.set(self.cell)
        slept = False
        try:
            if self.stopping:
                pass
            elif self.concurrent or not self._cancels:
                self._arm_check()
                with self.cell.kernel.new_cancel_scope() as scope:
                    self._scope = scope
                    slept = await (self._serve_concurrent() if self.concurrent else self._work())
            else:
                self._arm_check()
                slept = await self._work(root=True)  # its worker's scope is the task's
        finally:
            if not slept:
                await self._finish()

    async def _finish(self) -> None:
        """The exit: tells the owner, then runs `on_stop` (shielded, bounded)."""
        self._exited()
        if self.started and type(self.actor).on_stop is not Actor.on_stop:
            await self._call_on_stop()
        self._ended()

    def _exited(self) -> None:
        cell = self.cell
        self._check = None
        if self.reason is not None and self.started:
            emit_failure("actor.crashed", self.reason, actor=cell.name)
        self._owner.exited(self.reason)

    def _ended(self) -> None:
        if self.started and self.reason is None:
            emit("actor.stopped", actor=self.cell.name)
        self._finished = True
        self._scope = None
        if self._done is not None:
            self._done.set()

    def _start_failed(self, exc: Exception) -> None:
        self.reason = exc
        emit_failure("actor.start_failed", exc, actor=self.cell.name)

    def _mark_started(self, task_status: anyio.abc.TaskStatus[BaseException | None]) -> None:
        cell = self.cell
        self.started = True
        cell.mark_running()
        emit("actor.started", actor=cell.name, max_concurrency=self.max_concurrency)
        task_status.started(None)

    def _serve(self, task_status: anyio.abc.TaskStatus[BaseException | None]) -> Awaitable[bool]:
        """Marks the incarnation started; await the result to handle messages until it
        stops (False) or hibernates (True). (Returned, not awaited here: one coroutine
        frame less per busy actor.)"""
        self._mark_started(task_status)
        self._arm_check()
        return self._serve_concurrent() if self.concurrent else self._work()

    async def _serve_concurrent(self) -> bool:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            slept = await self._dispatch()
        return slept  # noqa: RET504 (the task group's exit comes between)

    # -- hibernation ---------------------------------------------------------------

    def _arm_check(self) -> None:
        """Schedules the first idle check of an awake period."""
        if self.hibernates:
            self._schedule_check(None)

    def _schedule_check(self, seen: object) -> None:
        after = self.cell.config.hibernate_after
        assert after is not None
        kernel = self.cell.kernel
        check = self._check = _IdleCheck(self, seen)
        kernel.schedule(check, kernel.now() + after, after)

    def idle_check(self, check: _IdleCheck) -> None:
        """An idle check is due: sleep if every worker stayed parked since the last one."""
        if check is not self._check or self.asleep or self.stopping:
            return
        mailbox = self.cell.mailbox
        idle = mailbox.idle or []
        if self.concurrent:  # every worker parked, and the dispatcher
            parked = len(idle) == self._workers and mailbox.dispatcher is not None
        else:
            parked = len(idle) == 1
        parked = parked and not mailbox.live and not self._unstarted
        seen = tuple(idle) if parked else None
        if parked and seen == check.seen:
            self._hibernate()
        else:
            self._schedule_check(seen)

    def _hibernate(self) -> None:
        """Ends the incarnation's tasks (they are parked); the next push wakes it."""
        mailbox = self.cell.mailbox
        parked = mailbox.idle or []
        mailbox.idle = None
        dispatcher, mailbox.dispatcher = mailbox.dispatcher, None
        self._workers = 0
        self._tg = None
        self._sleep()
        if dispatcher is not None:
            parked.append(dispatcher)
        for slot in parked:
            if not slot.done():
                slot.set_result(_SLEEP)

    def _sleep(self) -> None:
        self._check = None
        self._scope = None
        if self.cell.mailbox.live:  # (messages queued before a start without a task)
            self._start_task()
        else:
            self.asleep = True
            self.cell.mailbox.sleeper = self

    def wake(self) -> None:
        """A message arrived for the hibernated incarnation (`Mailbox.push`): starts a
        task to handle it. Not a checkpoint."""
        self.asleep = False
        self.cell.mailbox.sleeper = None
        self._start_task()

    def _start_task(self) -> None:
        host, context = self._host, self._context
        assert host is not None
        assert context is not None
        host.spawn(self, context, self._resume)

    def cancel(self) -> None:
        """Its host is cancelled with the owner's task group (asyncio; trio's nursery
        cancels natively): a hard stop, as a cancellation of its task would be."""
        self.stopping = True
        if self._scope is not None:
            self._scope.cancel()

    # -- stopping ------------------------------------------------------------------

    def request_stop(self) -> None:
        """Asks for an orderly stop: workers finish their current message and exit.

        A hibernated incarnation ends at once (its exit runs here) unless it has an
        `on_stop` to run: then it is woken to run it."""
        if not self.stopping:
            self.stopping = True
            cell = self.cell
            cell.mark_stopping()
            cell.mailbox.wake_all_idle()
            if self.asleep:
                self.asleep = False
                cell.mailbox.sleeper = None
                if type(self.actor).on_stop is Actor.on_stop:
                    self._exited()
                    self._ended()
                else:
                    self._start_task()

    async def stop(self, timeout: float | None = None, *, restarting: bool = False) -> None:
        """Stops the incarnation and waits until it has ended.

        `timeout` (default: the config's `shutdown_timeout`) is the whole stop's budget:
        workers finish their current messages and `on_stop` runs within it; then they
        are cancelled hard and `on_stop` is cut short. A checkpoint unless the
        incarnation hibernates and has no `on_stop` (then it ends here, at once); call
        it shielded when cleaning up.

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
        self._stop_by = anyio.current_time() + grace
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
            if self.started:
                self._owner.crashed(exc)
        self.stopping = True
        if self._scope is not None:
            self._scope.cancel()

    async def _work(self, *, root: bool = False) -> bool:
        """The actor loop: takes messages one at a time and handles each under the scope
        its caller cancels on giving up (see the class docstring).

        A sequential actor runs it in its own task (the gen_server loop, no extra task);
        each worker of a concurrent actor runs it in the worker's task. An envelope
        whose deadline has passed is skipped (a dead letter: its caller has its
        `CallTimeout`). An idle worker parks on a slot in `mailbox.idle`, which a push
        sets (or an idle check, with `_SLEEP`: then it returns True). With `root` (a
        woken sequential actor's task, which has no scope of its own) each worker scope
        is also the incarnation's, which a crash or a hard stop cancels: a cancelled
        worker scope ends in the loop, which then sees `stopping`. (The hot path of
        every call: the helpers are bound to locals.)
        """
        if self.concurrent:
            self._unstarted -= 1
        cell = self.cell
        kernel = cell.kernel
        now, new_slot, park = kernel.now, kernel.new_slot, kernel.park
        awaits = kernel.slot_awaits  # (an asyncio slot is awaited directly)
        set_cid, set_deadline = CID_VAR.set, DEADLINE_VAR.set
        mailbox = cell.mailbox
        pop, idle = mailbox.pop, mailbox.idle
        if idle is None:
            idle = mailbox.idle = []
        handle = self.actor.handle
        new_scope: Callable[[], CancelScope] = (
            kernel.new_cancel_scope if self._cancels else _RunToCompletion
        )
        burst = 0
        while not self.stopping:
            with new_scope() as scope:
                if root:
                    self._scope = scope
                while not self.stopping:
                    env = pop()
                    if env is None:
                        burst = 0
                        slot: Any = new_slot()
                        idle.append(slot)
                        if await (slot if awaits else park(slot)) is _SLEEP:
                            return True
                        continue
                    deadline = env.deadline
                    if deadline <= now():
                        self._expired(env)
                        continue
                    env.scope = scope
                    set_cid(env.cid)
                    set_deadline(deadline)
                    trace = env.trace  # the sender's trace context, while tracing is on
                    token = None if trace is None else attach(trace)
                    try:
                        result = await handle(env.msg)
                    except Exception as exc:
                        cut = env.state == CUT
                        if self._failed(env, exc, abandoned=cut and self._cancels):
                            return False
                    except BaseException:
                        self._cut(env)  # a stop, a crash elsewhere, or its caller gave up
                        raise
                    else:
                        cut = env.state != RUNNING  # CUT: its caller gave up
                        env.state = DONE
                        reply = env.reply
                        if not cut and reply is not None and not reply.done():  # (timed out)
                            reply.set_result(result)
                    finally:
                        if token is not None:
                            detach(token)
                    if cut:
                        break  # its caller cancelled the scope: a fresh one for the next
                    burst += 1
                    if burst >= _BURST:
                        burst = 0
                        await kernel.checkpoint()
        return False

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

    async def _dispatch(self) -> bool:
        """Starts workers of a concurrent actor while messages wait and all are busy.

        Workers are kept once started (parked when idle), so a steady stream of
        messages creates no tasks; a push wakes an idle worker directly. Returns True
        when the incarnation hibernates (its workers have been told too).
        """
        mailbox = self.cell.mailbox
        kernel = self.cell.kernel
        tg = self._tg
        assert tg is not None
        while not self.stopping:
            wanted = min(
                self.max_concurrency - self._workers,
                mailbox.live - self._unstarted - len(mailbox.idle or ()),
            )
            for _ in range(max(0, wanted)):
                self._workers += 1
                self._unstarted += 1
                tg.start_soon(self._work)
            slot = kernel.new_slot()
            mailbox.dispatcher = slot
            if await kernel.park(slot) is _SLEEP:  # else: a push that found no idle worker
                return True
        return False

    async def _call_on_stop(self) -> None:
        cell = self.cell
        with anyio.CancelScope(shield=True) as scope:
            stop_by = self._stop_by  # the stop's budget bounds on_stop too (one budget)
            scope.deadline = (
                anyio.current_time() + cell.config.shutdown_timeout if stop_by is None else stop_by
            )
            try:
                await self.actor.on_stop(self.reason)
            except Exception as exc:
                emit_failure("actor.on_stop_failed", exc, actor=cell.name)
        if scope.cancelled_caught:
            emit("actor.on_stop_timeout", level="warning", actor=cell.name)


class _IdleCheck:
    """An entry of the kernel's timer queue: one idle check of an incarnation, with the
    slots its workers were parked on at the previous check (None: not all parked)."""

    __slots__ = ("incarnation", "seen")

    def __init__(self, incarnation: Incarnation, seen: object) -> None:
        self.incarnation = incarnation
        self.seen = seen

    def done(self) -> bool:
        return self.incarnation._check is not self

    def set_result(self, _value: object) -> None:
        self.incarnation.idle_check(self)
