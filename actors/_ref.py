"""Addresses: the cell behind a name (mailbox + state) and the `ActorRef` users hold.

A cell is the stable address of an actor. It owns the mailbox and outlives any one
incarnation: a supervisor restarts the actor behind the same cell, so an `ActorRef`
stays valid across restarts. Incarnations (`actors._actor.Incarnation`) consume the
cell's mailbox while they run.
"""

from __future__ import annotations

import contextvars
import enum
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import anyio

from actors._envelope import (
    CID_PREFIX,
    CID_VAR,
    CUT,
    DEADLINE_VAR,
    QUEUED,
    RUNNING,
    Envelope,
    new_correlation_id,
    next_cid_number,
)
from actors._errors import (
    ActorDown,
    ActorRestarting,
    ActorStopped,
    CallCycle,
    CallError,
    CallTimeout,
    ConfigError,
    MailboxFull,
)
from actors._events import emit
from actors._kernel import TIMED_OUT, Kernel
from actors._mailbox import Mailbox
from actors._options import ActorConfig, FullPolicy
from actors._otel_metrics import track_cell
from actors._tracing import capture, end_span, start_call, tracer

if TYPE_CHECKING:
    from actors._actor import Incarnation

__all__ = ["ActorRef", "ActorState", "Cell"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class ActorState(enum.Enum):
    """Where an address is in its life.

    STARTING: an incarnation runs `on_start`; messages are queued.
    RUNNING: messages are handled.
    RESTARTING: the supervisor is replacing a crashed incarnation (or waiting out its
        restart backoff); calls wait for the new one or fail fast with `ActorRestarting`.
    STOPPING: an orderly stop is under way; new messages are refused with `ActorStopped`.
    STOPPED: stopped in order; messages are refused with `ActorStopped`.
    DOWN: crashed and not coming back; messages are refused with `ActorDown`.
    """

    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPING = "stopping"
    STOPPED = "stopped"
    DOWN = "down"


_STARTING: Final = ActorState.STARTING
_RUNNING: Final = ActorState.RUNNING
_RESTARTING: Final = ActorState.RESTARTING
_STOPPING: Final = ActorState.STOPPING
_STOPPED: Final = ActorState.STOPPED
_DOWN: Final = ActorState.DOWN

CURRENT_CELL: Final[contextvars.ContextVar[Cell | None]] = contextvars.ContextVar(
    "actors_current_cell", default=None
)


class Cell:
    """The stable address of one actor slot: its mailbox and where it is in its life.

    The cell owns its state: it changes only through the transition methods below, each
    of which checks where the address is and refuses (with `RuntimeError`: a bug in
    the owner) a move its life does not allow::

        STARTING ──mark_running──► RUNNING ──mark_stopping──► STOPPING
           │  ▲                       │                          │
           │  └──── mark_running ─────┼── mark_restarting ──► RESTARTING
           │                          │                          │
           └──────────── close(None) / close(exc) ◄──────────────┘
                                      │
                       STOPPED / DOWN ──reopen──► STARTING

    Users hold `ActorRef`s; owners (open_actor, supervisors) drive cells through
    `actors.lowlevel`.
    """

    __slots__ = (
        "__weakref__",
        "_reason",
        "_state",
        "call_full",
        "call_timeout",
        "cast_full",
        "config",
        "incarnation",
        "incarnations",
        "kernel",
        "mailbox",
        "name",
        "restart_wait",
        "screen",
        "sequential",
    )

    def __init__(
        self, name: str, config: ActorConfig, kernel: Kernel, *, restart_wait: bool = True
    ) -> None:
        """A new address, STARTING, with an empty mailbox.

        Args:
            name: The actor's name (its path under a supervisor).
            config: The address's settings (mailbox size, call timeout, ...).
            kernel: The event loop's kernel (`current_kernel()`).
            restart_wait: While RESTARTING, new calls wait for the next incarnation
                (True) or fail at once with `ActorRestarting` (False).
        """
        self.name = name
        self.config = config
        self.kernel = kernel
        self.mailbox = Mailbox(config.mailbox_size)
        self._state = _STARTING
        self._reason: BaseException | None = None
        self.incarnation: Incarnation | None = None
        self.incarnations = 0  # started so far (restarts: all but the first)
        self.sequential = True
        self.restart_wait = restart_wait
        # The latest incarnation's `Actor.screen`, when its class overrides it.
        self.screen: Callable[[Any], None] | None = None
        # Copied out of the config: read on every call.
        self.call_timeout = config.call_timeout
        self.call_full = config.call_full
        self.cast_full = config.cast_full
        track_cell(self)  # its mailbox depth and restarts, while metrics are collected

    @property
    def state(self) -> ActorState:
        """Where the address is (see the class docstring)."""
        return self._state

    @property
    def reason(self) -> BaseException | None:
        """Why a DOWN address crashed (None in every other state)."""
        return self._reason

    @property
    def closed(self) -> bool:
        """True once STOPPED or DOWN (until `reopen`)."""
        state = self._state
        return state is _STOPPED or state is _DOWN

    # -- transitions ---------------------------------------------------------------

    def attach(self, incarnation: Incarnation, *, sequential: bool) -> None:
        """An incarnation takes over the mailbox (it starts). Not a state change."""
        self.incarnation = incarnation
        self.incarnations += 1
        self.sequential = sequential

    def mark_running(self) -> bool:
        """An incarnation is ready: STARTING or RESTARTING becomes RUNNING.

        Returns:
            True if the address now runs; False if a stop asked for while it started
            (STOPPING) or a close stands, which this leaves as it is.

        Raises:
            RuntimeError: The address is RUNNING already (two incarnations at once).
        """
        state = self._state
        if state is _STARTING or state is _RESTARTING:
            self._state = _RUNNING
            return True
        if state is _RUNNING:
            raise self._illegal("mark running")
        return False

    def mark_stopping(self) -> None:
        """An orderly stop began: STARTING or RUNNING becomes STOPPING, so new messages
        are refused with `ActorStopped`. A restarting, stopping or closed address stays
        as it is (the restart or the close decides what callers get)."""
        state = self._state
        if state is _RUNNING or state is _STARTING:
            self._state = _STOPPING

    def mark_restarting(self) -> None:
        """The owner will start another incarnation behind this address: calls wait for
        it (or fail fast, per `restart_wait`). Idempotent while RESTARTING.

        Raises:
            RuntimeError: The address is closed (`reopen` it instead).
        """
        if self.closed:
            raise self._illegal("mark restarting")
        self._state = _RESTARTING

    def reopen(self) -> None:
        """A closed address gets a new life: STOPPED or DOWN becomes STARTING (the crash
        reason is forgotten); messages are accepted again.

        Raises:
            RuntimeError: The address is not closed.
        """
        if not self.closed:
            raise self._illegal("reopen")
        self._state = _STARTING
        self._reason = None

    def close(self, reason: BaseException | None) -> bool:
        """Closes the address: STOPPED (reason None) or DOWN (a crash).

        Queued calls get `ActorStopped` or `ActorDown(reason)`; queued casts become dead
        letters; callers waiting for room are released with the same error. Closing a
        closed address changes nothing (the first close stands).

        Returns:
            False if the address was closed already.
        """
        if self.closed:
            return False
        self._reason = reason
        if reason is None:
            self._state = _STOPPED
            self.fail_queued(lambda: ActorStopped(self.name), "stopped")
        else:
            self._state = _DOWN
            self.fail_queued(lambda: ActorDown(self.name, reason), "down")
        self.kernel.tidy()
        return True

    def _illegal(self, what: str) -> RuntimeError:
        return RuntimeError(f"address {self.name!r}: cannot {what} while {self._state.value}")

    # -- messages ------------------------------------------------------------------

    def refusal(self) -> CallError | None:
        """The error a new message gets in the current state, or None if accepted."""
        state = self._state
        if state is _RUNNING or state is _STARTING:
            return None
        if state is _RESTARTING:
            return None if self.restart_wait else ActorRestarting(self.name)
        if state is _STOPPING or state is _STOPPED:
            return ActorStopped(self.name)
        return ActorDown(self.name, self._reason)

    def fail_queued(self, make_error: Callable[[], CallError], why: str) -> None:
        """Resolves every queued message: calls get `make_error()`, casts are dead letters.

        Args:
            make_error: Builds a fresh exception per caller.
            why: The dead-letter reason for casts ("stopped", "down", "restarting").
        """
        mailbox = self.mailbox
        for env in mailbox.drain():
            reply = env.reply
            if reply is None:
                emit(
                    "actor.dead_letter",
                    level="warning",
                    actor=self.name,
                    reason=why,
                    message_type=type(env.msg).__name__,
                    correlation_id=env.cid,
                )
            elif not reply.done():
                reply.set_exception(make_error())
        mailbox.release_waiters()

    def __repr__(self) -> str:
        return f"<Cell {self.name!r} {self._state.value}>"


class ActorRef(Generic[Req, Resp]):
    """The address of an actor: send it messages with `call` and `cast`.

    A ref stays valid across restarts of the actor by its supervisor. Refs are made by
    `open_actor` and supervisors, never by users; two refs to one address are equal and
    hash alike.
    """

    __slots__ = ("_cell",)

    def __init__(self, cell: Cell) -> None:
        self._cell = cell

    @property
    def name(self) -> str:
        """The actor's name (its child id under a supervisor)."""
        return self._cell.name

    @property
    def state(self) -> ActorState:
        """The address's current `ActorState`."""
        return self._cell.state

    @property
    def alive(self) -> bool:
        """True while the address accepts messages (starting, running or restarting)."""
        return self._cell._state in (_STARTING, _RUNNING, _RESTARTING)

    @property
    def hibernating(self) -> bool:
        """True while the actor hibernates: it holds no task, and the next message
        starts one (see `ActorConfig.hibernate_after`)."""
        incarnation = self._cell.incarnation
        return incarnation is not None and incarnation.asleep

    @property
    def queued(self) -> int:
        """Messages waiting in the mailbox (not counting those being handled)."""
        return self._cell.mailbox.live

    async def call(self, msg: Req, *, timeout: float | None = None) -> Resp:
        """Sends `msg` and waits for the handler's reply.

        One deadline covers waiting for room, queueing, handling and the reply: the
        sooner of `timeout` from now and the deadline of the message being handled when
        called from inside an actor. The deadline travels with the message; the actor
        skips it if the caller has given up by the time it is dequeued.

        The actor's `screen` (if it has one) checks `msg` first, in this task: a request
        it refuses never takes a mailbox place.

        With tracing on, the call is a ``call {actor}`` span whose context travels with
        the message: the handler's spans are its children (see `actors.instrument`).

        A checkpoint. When the caller gives up (its deadline passes or it is cancelled)
        the message is withdrawn if still queued (its place is freed), or its handler is
        cancelled (unless the actor sets `cancel_abandoned = False`: then the handler
        runs on and its reply is dropped). The actor is not affected either way.

        Args:
            msg: The request.
            timeout: Seconds; defaults to the actor's `call_timeout` (5 s unless
                configured). Must be > 0.

        Returns:
            The handler's return value.

        Raises:
            CallTimeout: The deadline passed first.
            MailboxFull: No room before the deadline (or at once, per `call_full`).
            ActorDown: The actor crashed while the call was queued or running (or is
                down for good).
            ActorRestarting: The actor is restarting and its supervisor fails calls fast.
            ActorStopped: The actor is stopped or stopping.
            CallCycle: A sequential actor called itself.
            ConfigError: `timeout` is not > 0.
            InvalidRequest: The actor's `screen` refused `msg` (or whatever else it
                raised).
            Exception: Whatever the handler raised for this message, re-raised as is.
        """
        cell = self._cell
        kernel = cell.kernel
        timeout = cell.call_timeout if timeout is None else _budget(cell, timeout)
        now = kernel.now()
        deadline = now + timeout
        inherited = DEADLINE_VAR.get()
        # A call with its own fixed timeout shares its address's FIFO deadline queue; one
        # bound by an inherited (earlier) deadline gets a timer of its own.
        own_deadline = inherited >= deadline
        if not own_deadline:
            deadline = inherited
            timeout = max(0.0, deadline - now)
        cid = CID_VAR.get()  # the caller's, or a new one (`new_correlation_id`, inline)
        if cid is Ellipsis or cid is None:
            cid = CID_PREFIX + str(next_cid_number())
        span = trace = None
        found = tracer()
        if found is not None:  # tracing on: the caller's span, its context in the envelope
            span, trace = start_call(found, cell.name, msg, cid)
        try:
            if cell._state is not _RUNNING:
                error = cell.refusal()
                if error is not None:
                    raise error
            if cell.sequential and CURRENT_CELL.get() is cell:
                raise CallCycle(cell.name)
            screen = cell.screen
            if screen is not None:
                screen(msg)
            slot: Any = kernel.new_slot()  # (awaitable itself when `slot_awaits`)
            env = Envelope(msg, deadline, cid, slot, trace)
            mailbox = cell.mailbox
            if not mailbox.push(env, False):  # no room
                await self._wait_for_room(cell, cell.call_full, deadline)
                mailbox.push(env)
            try:
                if own_deadline and kernel.arm(slot, deadline, timeout):
                    # (an asyncio slot is its own park: a Future, awaited directly)
                    result = await (slot if kernel.slot_awaits else kernel.park(slot))
                else:
                    result = await kernel.wait(slot, deadline)
            except BaseException:
                _withdraw(mailbox, env)
                raise
            if result is TIMED_OUT:
                _withdraw(mailbox, env)
                raise CallTimeout(cell.name, timeout)
        except BaseException as exc:
            if span is not None:
                end_span(span, exc)
            raise
        if span is not None:
            span.end()
        return result  # type: ignore[no-any-return]

    async def cast(self, msg: Req, *, timeout: float | None = None) -> None:
        """Sends `msg` without waiting for it to be handled.

        Returns once the message is in the mailbox (after the actor's `screen`, if it
        has one, accepted it in this task). When the mailbox is full, the
        actor's `cast_full` policy applies: WAIT for room (FIFO) up to `timeout`, FAIL
        at once, or DROP the message (an `actor.dead_letter` event). An exception raised
        while handling a cast has no caller to go to: it crashes the actor (or, for an
        actor with `crash_on_error = False`, is logged as `actor.cast_failed`).

        A checkpoint only when it waits for room.

        Args:
            msg: The message.
            timeout: Seconds to wait for room; defaults to the actor's `call_timeout`.

        Raises:
            MailboxFull: No room (per `cast_full`).
            ActorDown, ActorRestarting, ActorStopped: As for `call`.
            ConfigError: `timeout` is not > 0.
            InvalidRequest: The actor's `screen` refused `msg` (or whatever else it
                raised).
        """
        cell = self._cell
        timeout = _budget(cell, timeout)
        if cell._state is not _RUNNING:
            error = cell.refusal()
            if error is not None:
                raise error
        screen = cell.screen
        if screen is not None:
            screen(msg)
        cid = _correlation_id()
        env = Envelope(msg, math.inf, cid, None, capture())
        mailbox = cell.mailbox
        if not mailbox.has_room():
            if cell.cast_full is FullPolicy.DROP:
                emit(
                    "actor.dead_letter",
                    level="warning",
                    actor=cell.name,
                    reason="mailbox_full",
                    message_type=type(msg).__name__,
                    correlation_id=cid,
                )
                return
            deadline = min(cell.kernel.now() + timeout, DEADLINE_VAR.get())
            await self._wait_for_room(cell, cell.cast_full, deadline)
        mailbox.push(env)

    async def probe(self, *, timeout: float | None = None) -> None:
        """Runs the actor's `probe()` on the control lane, beside the mailbox.

        A full mailbox or a busy sequential handler does not delay it. A checkpoint.

        Args:
            timeout: Seconds (default: the actor's `call_timeout`).

        Raises:
            CallTimeout: The probe did not finish in time.
            ActorRestarting, ActorStopped, ActorDown: No incarnation is running.
            Exception: Whatever the probe raised (the actor is unhealthy).
        """
        cell = self._cell
        timeout = _budget(cell, timeout)
        incarnation = cell.incarnation
        if cell._state is not _RUNNING or incarnation is None:
            raise cell.refusal() or ActorRestarting(cell.name)
        with anyio.move_on_after(timeout) as scope:
            await incarnation.actor.probe()
        if scope.cancelled_caught:
            raise CallTimeout(cell.name, timeout)

    @staticmethod
    async def _wait_for_room(cell: Cell, policy: FullPolicy, deadline: float) -> None:
        if policy is FullPolicy.WAIT and await cell.mailbox.wait_for_room(cell.kernel, deadline):
            return
        error = cell.refusal()
        raise error if error is not None else MailboxFull(cell.name, cell.mailbox.capacity)

    def __eq__(self, other: object) -> bool:
        """Refs are equal when they name the same address (whatever their type
        parameters): `sup.ref("a") == sup.ref("a")`."""
        if isinstance(other, ActorRef):
            return other._cell is self._cell
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._cell)

    def __repr__(self) -> str:
        return f"<ActorRef {self._cell.name!r} {self._cell._state.value}>"


def _budget(cell: Cell, timeout: float | None) -> float:
    """The seconds a call, cast or probe may take: `timeout`, or the address's default."""
    if timeout is None:
        return cell.call_timeout
    if not timeout > 0:
        raise ConfigError("timeout", timeout, "must be > 0")
    return timeout


def _correlation_id() -> Any:
    """The caller's bound correlation id (as bound), or a new one."""
    cid = CID_VAR.get()
    if cid is Ellipsis or cid is None:
        return new_correlation_id()
    return cid


def _withdraw(mailbox: Mailbox, env: Envelope) -> None:
    """The caller gave up: free the queued message's place, or cancel its handler
    (through the scope of the worker handling it; see `actors._actor.Incarnation`)."""
    state = env.state
    if state == QUEUED:
        mailbox.abandon(env)
    elif state == RUNNING:
        env.state = CUT  # (the worker then enters a fresh scope)
        env.scope.cancel()
