"""The supervisor runtime: starts children in order, restarts them by strategy, gives up.

One supervisor is one task plus a task group holding its children. Children report
their exits to it; it handles them one at a time (as an OTP supervisor handles EXIT
messages): it counts the restart against its intensity, stops the siblings its
strategy names (in reverse order), waits out the backoff while staying responsive, and
starts the group again in order, each child ready before the next.

Each worker child has a stable address (a cell) that outlives its incarnations: while
it restarts, calls wait for the new incarnation or fail fast, per child spec. A nested
supervisor object outlives its own restarts too, so refs into a subtree stay valid.
"""

from __future__ import annotations

import enum
import functools
import math
import random
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import attrs

from actors import (
    Actor,
    ActorDown,
    ActorRef,
    ActorRestarting,
    ActorState,
    ActorStopped,
    ConfigError,
)
from actors._actor import Incarnation
from actors._events import emit, emit_failure
from actors._kernel import current_kernel
from actors._ref import Cell
from supervisor._errors import IntensityExceeded, UnknownChild
from supervisor._spec import (
    BRUTAL_KILL,
    AutoShutdown,
    ChildSpec,
    OnCrash,
    RestartType,
    Strategy,
    SupervisorSpec,
    WhileRestarting,
)
from supervisor._tree import TreeNode, render_mermaid, render_text, snapshot

__all__ = ["ChildCounts", "ChildInfo", "ChildState", "Supervisor"]


class ChildState(enum.Enum):
    """Where a child slot is."""

    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    """Stopped by a failure (its own or a sibling's) and waiting to start again."""
    STOPPED = "stopped"
    """Not running and not coming back by itself (terminated, or exited for good)."""


@attrs.frozen
class ChildInfo:
    """One row of `which_children()`."""

    id: str
    kind: str  # "worker" or "supervisor"
    state: ChildState
    restarts: int
    ref: ActorRef[Any, Any] | None


@attrs.frozen
class ChildCounts:
    """`count_children()`: specs, running children, and how many are supervisors/workers."""

    specs: int
    active: int
    supervisors: int
    workers: int


class _Group:
    """Slots restarted together: they start in slot order, each after the previous one."""

    __slots__ = ()


class _Slot:
    __slots__ = (
        "attempt",
        "cell",
        "delay",
        "done",
        "due",
        "dynamic",
        "expected",
        "final",
        "group",
        "incarnation",
        "restarts",
        "running",
        "running_since",
        "scope",
        "spec",
        "state",
        "sub",
        "token",
    )

    def __init__(self, spec: ChildSpec | SupervisorSpec, dynamic: bool) -> None:
        self.spec = spec
        self.dynamic = dynamic
        self.cell: Cell | None = None
        self.sub: Supervisor | None = None
        self.incarnation: Incarnation | None = None
        self.scope: anyio.CancelScope | None = None
        self.done: anyio.Event | None = None
        self.state = ChildState.STARTING
        self.running = False
        self.expected = False  # the supervisor itself is stopping this run
        self.final = True  # ... for good (else for a restart)
        self.restarts = 0
        self.attempt = 0  # consecutive restarts, for backoff
        self.delay = 0.0  # the backoff before the pending restart
        self.running_since: float | None = None
        self.due: float | None = None  # pending (re)start time
        self.group: _Group | None = None
        self.token = 0

    @property
    def id(self) -> str:
        return self.spec.id


class _Ready:
    """Forwards a child's readiness, doing the supervisor's bookkeeping first."""

    __slots__ = ("_slot", "_status", "_supervisor")

    def __init__(
        self,
        status: anyio.abc.TaskStatus[BaseException | None],
        supervisor: Supervisor,
        slot: _Slot,
    ) -> None:
        self._status = status
        self._supervisor = supervisor
        self._slot = slot

    def started(self, value: BaseException | None = None) -> None:
        if value is None:
            self._supervisor._mark_started(self._slot)
        self._status.started(value)


class _StartAborted(Exception):
    """A nested supervisor ended before it was ready."""


class Supervisor:
    """A running supervision tree node. Made by `supervisor.start` / `start_tree`.

    Introspection (`which_children`, `count_children`, `tree`) is synchronous; control
    (`start_child`, `start_instance`, `terminate_child`, `restart_child`,
    `delete_child`) is serialised with the supervisor's own restart handling.
    """

    def __init__(self, spec: SupervisorSpec, *, path: str, rng: random.Random) -> None:
        self.spec = spec
        self.path = path
        self._rng = rng
        self._slots: list[_Slot] = [self._make_slot(child, False) for child in spec.children]
        self._restart_times: deque[float] = deque()
        self._exits: deque[tuple[_Slot, int, BaseException | None]] = deque()
        self._wake: anyio.Event | None = None
        self._lock: anyio.Lock | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._stop_requested = False
        self._stop_final = True
        self._stopping = False
        self._final_now = True
        self._auto_shutdown = False
        self._instances = 0
        self.running = False

    # -- public control and introspection ---------------------------------------------

    @property
    def name(self) -> str:
        """The supervisor's path in its tree ("root/db")."""
        return self.path

    def ref(self, path: str) -> ActorRef[Any, Any]:
        """The stable ref of a worker child, by id or by path into nested supervisors.

        Args:
            path: "child" or "sub/child" (ids joined with '/').

        Raises:
            UnknownChild: No such child, or the path names a supervisor.
        """
        node: Supervisor = self
        parts = path.split("/")
        for index, part in enumerate(parts):
            slot = node._find(part)
            if slot is None:
                raise UnknownChild(self.path, path)
            if index == len(parts) - 1:
                if slot.sub is not None:
                    raise UnknownChild(self.path, path, "is a supervisor, not an actor")
                if slot.cell is None:
                    raise UnknownChild(self.path, path, "has not been started yet")
                return ActorRef(slot.cell)
            if slot.sub is None:
                raise UnknownChild(self.path, path, f"{part!r} is not a supervisor")
            node = slot.sub
        raise UnknownChild(self.path, path)  # pragma: no cover - empty path

    def supervisor(self, path: str) -> Supervisor:
        """A nested supervisor, by id or path."""
        node: Supervisor = self
        for part in path.split("/"):
            slot = node._find(part)
            if slot is None or slot.sub is None:
                raise UnknownChild(self.path, path, "no such supervisor")
            node = slot.sub
        return node

    def which_children(self) -> list[ChildInfo]:
        """Every child in start order, with its state and restart count."""
        return [
            ChildInfo(
                id=slot.id,
                kind="supervisor" if slot.sub is not None else "worker",
                state=slot.state,
                restarts=slot.restarts,
                ref=ActorRef(slot.cell) if slot.cell is not None else None,
            )
            for slot in self._slots
        ]

    def count_children(self) -> ChildCounts:
        """How many child specs, running children, supervisors and workers there are."""
        return ChildCounts(
            specs=len(self._slots),
            active=sum(1 for slot in self._slots if slot.running),
            supervisors=sum(1 for slot in self._slots if slot.sub is not None),
            workers=sum(1 for slot in self._slots if slot.sub is None),
        )

    def tree(self) -> TreeNode:
        """A snapshot of the whole tree under this supervisor."""
        return snapshot(self)

    def dump(self) -> str:
        """The tree as indented text: each node's kind, state and restart count."""
        return render_text(self.tree())

    def mermaid(self) -> str:
        """The tree as a Mermaid `graph TD` diagram."""
        return render_mermaid(self.tree())

    async def start_child(self, spec: ChildSpec | SupervisorSpec) -> ActorRef[Any, Any] | None:
        """Adds a child at the end and starts it (dynamic children).

        Returns:
            The worker's ref (None for a nested supervisor).

        Raises:
            ConfigError: The id is taken, or the spec is invalid.
            ActorDown: The child failed to start (it is not added).
            ActorStopped: The supervisor is not running.
        """
        if not isinstance(spec, ChildSpec | SupervisorSpec):
            raise ConfigError("spec", type(spec).__name__, "must be ChildSpec or SupervisorSpec")
        async with self._control():
            if self._find(spec.id) is not None:
                raise ConfigError(f"{self.path}.children", spec.id, "duplicate child id")
            slot = self._make_slot(spec, True)
            self._slots.append(slot)
            failure = await self._start(slot)
            if failure is not None:
                self._slots.remove(slot)
                if slot.cell is not None:
                    slot.cell.close(failure)
                raise ActorDown(f"{self.path}/{spec.id}", failure) from failure
            return ActorRef(slot.cell) if slot.cell is not None else None

    async def start_instance(self, template: ChildSpec) -> ActorRef[Any, Any]:
        """Starts one more instance of `template` (simple_one_for_one style).

        The instance's id is `"{template.id}-{n}"` with n counting from 1.
        """
        self._instances += 1
        spec = attrs.evolve(template, id=f"{template.id}-{self._instances}")
        ref = await self.start_child(spec)
        assert ref is not None
        return ref

    async def terminate_child(self, child_id: str) -> None:
        """Stops a child in order (within its shutdown); it stays stopped.

        A static child keeps its spec (`restart_child` starts it again); a dynamic child
        is removed.
        """
        async with self._control():
            slot = self._get(child_id)
            slot.due = None
            slot.group = None
            if slot.running:
                await self._terminate(slot, final=True)
            elif slot.cell is not None and slot.cell.state is ActorState.RESTARTING:
                slot.cell.close(None)
            slot.state = ChildState.STOPPED
            if slot.dynamic:
                self._slots.remove(slot)

    async def restart_child(self, child_id: str) -> None:
        """Restarts a child now (stopping it first if it runs); not counted as a failure.

        Raises:
            ActorDown: The new incarnation failed to start (then it restarts as after a
                crash, under intensity).
        """
        async with self._control():
            slot = self._get(child_id)
            slot.due = None
            slot.group = None
            if slot.running:
                await self._terminate(slot, final=False)
            slot.state = ChildState.RESTARTING
            slot.delay = 0.0
            failure = await self._start(slot)
            if failure is not None:
                await self._handle_exit(slot, failure)
                raise ActorDown(f"{self.path}/{child_id}", failure) from failure

    async def delete_child(self, child_id: str) -> None:
        """Removes a stopped child's spec.

        Raises:
            ConfigError: The child is running (terminate it first).
        """
        async with self._control():
            slot = self._get(child_id)
            if slot.running or slot.due is not None:
                raise ConfigError("child_id", child_id, "is running; terminate it first")
            self._slots.remove(slot)

    # -- running ---------------------------------------------------------------------

    async def run(self, ready: Callable[[], None]) -> None:
        """Runs until asked to stop (returns) or until it gives up.

        Args:
            ready: Called once every initial child has started.

        Raises:
            IntensityExceeded: Too many restarts; the children have been stopped and
                their addresses left restarting for the owner to decide.
            ConfigError: A child spec turned out invalid at start (e.g. the factory did
                not return an Actor).
        """
        self._lock = anyio.Lock()
        self._restart_times.clear()
        self._exits.clear()
        self._stop_requested = False
        self._stop_final = True
        self._stopping = False
        self._final_now = True
        self._auto_shutdown = False
        self._slots = [slot for slot in self._slots if not slot.dynamic]
        now = anyio.current_time()
        group = _Group()
        for slot in self._slots:
            slot.due, slot.group = now, group
            slot.state = ChildState.STARTING
        error: Exception | None = None
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                try:
                    await self._loop(ready)
                except Exception as exc:  # re-raised below, outside the task group
                    error = exc
                finally:
                    await self._terminate_all(final=error is None and self._stop_final)
        finally:
            self.running = False
            self._tg = None
        if error is not None:
            raise error

    def request_stop(self, *, final: bool = True) -> None:
        """Asks the supervisor to stop its children (reverse order) and return.

        Args:
            final: False when it will be restarted: its children's addresses then stay
                RESTARTING and keep their queued messages.
        """
        self._stop_requested = True
        self._stop_final = final
        self._wake_up()

    def close_addresses(self, reason: BaseException | None) -> None:
        """Closes every address in this subtree for good (after its owner gave up)."""
        for slot in self._slots:
            if slot.sub is not None:
                slot.sub.close_addresses(reason)
            elif slot.cell is not None and slot.cell.state in (
                ActorState.RESTARTING,
                ActorState.STARTING,
            ):
                slot.cell.close(reason)
            slot.state = ChildState.STOPPED

    # -- the loop --------------------------------------------------------------------

    async def _loop(self, ready: Callable[[], None]) -> None:
        announced = False
        while True:
            assert self._lock is not None
            async with self._lock:
                while self._exits:
                    slot, token, reason = self._exits.popleft()
                    if token == slot.token and not slot.expected:
                        await self._handle_exit(slot, reason)
                await self._start_due()
            if self._stop_requested or self._auto_shutdown:
                return
            pending = [slot.due for slot in self._slots if slot.due is not None]
            if not announced and not pending:
                announced = True
                self.running = True
                emit("supervisor.started", supervisor=self.path, children=len(self._slots))
                ready()
            wake = self._wake = anyio.Event()
            if self._exits:
                continue
            with anyio.move_on_at(min(pending, default=math.inf)):
                await wake.wait()

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _start_due(self) -> None:
        """Starts pending children that are due, in order within each restart group."""
        blocked: set[int] = set()
        for slot in list(self._slots):
            if slot.due is None or slot not in self._slots:
                continue
            group_key = id(slot.group)
            if group_key in blocked or slot.due > anyio.current_time():
                blocked.add(group_key)
                continue
            failure = await self._start(slot)
            if failure is not None:
                blocked.add(group_key)
                await self._handle_exit(slot, failure)

    async def _handle_exit(self, slot: _Slot, reason: BaseException | None) -> None:
        """Applies restart type, intensity, strategy and backoff to one child's exit."""
        slot.running = False
        spec = slot.spec
        if reason is None:
            emit("supervisor.child_exited", supervisor=self.path, child=slot.id)
        else:
            emit_failure("supervisor.child_crashed", reason, supervisor=self.path, child=slot.id)
        restart = spec.restart
        if restart is RestartType.TEMPORARY or (
            restart is RestartType.TRANSIENT and reason is None
        ):
            slot.state = ChildState.STOPPED
            slot.due = None
            slot.group = None
            if slot.sub is not None:
                slot.sub.close_addresses(reason)
            elif slot.cell is not None and slot.cell.state is not ActorState.DOWN:
                slot.cell.close(reason)
            if slot.dynamic and slot in self._slots:
                self._slots.remove(slot)
            self._check_auto_shutdown(slot)
            return
        self._count_restart(reason)
        group = self._strategy_group(slot)
        for other in reversed(group):
            if other is not slot and other.running:
                await self._terminate(other, final=other.spec.restart is RestartType.TEMPORARY)
        now = anyio.current_time()
        if (
            slot.running_since is not None
            and now - slot.running_since >= self.spec.backoff.reset_after
        ):
            slot.attempt = 0
        delay = self.spec.backoff.delay(slot.attempt, self._rng)
        slot.attempt += 1
        slot.running_since = None
        slot.delay = delay
        new_group = _Group()
        old_group = slot.group
        for member in list(self._slots):
            in_group = member in group or (old_group is not None and member.group is old_group)
            if not in_group:
                continue
            if member.spec.restart is RestartType.TEMPORARY and member is not slot:
                member.state = ChildState.STOPPED
                member.due = None
                if member.dynamic:
                    self._slots.remove(member)
                continue
            member.state = ChildState.RESTARTING
            member.due = now + delay
            member.group = new_group

    def _strategy_group(self, slot: _Slot) -> list[_Slot]:
        strategy = self.spec.strategy
        if strategy is Strategy.ONE_FOR_ONE:
            return [slot]
        if strategy is Strategy.ONE_FOR_ALL:
            return list(self._slots)
        index = self._slots.index(slot)
        return self._slots[index:]

    def _count_restart(self, reason: BaseException | None) -> None:
        now = anyio.current_time()
        times = self._restart_times
        while times and times[0] <= now - self.spec.period:
            times.popleft()
        times.append(now)
        if len(times) > self.spec.max_restarts:
            emit(
                "supervisor.intensity_exceeded",
                level="error",
                supervisor=self.path,
                max_restarts=self.spec.max_restarts,
                period=self.spec.period,
            )
            raise IntensityExceeded(self.path, self.spec.max_restarts, self.spec.period, reason)

    def _check_auto_shutdown(self, slot: _Slot) -> None:
        if not slot.spec.significant:
            return
        mode = self.spec.auto_shutdown
        if mode is AutoShutdown.ANY_SIGNIFICANT or (
            mode is AutoShutdown.ALL_SIGNIFICANT
            and not any(
                other.spec.significant and (other.running or other.due is not None)
                for other in self._slots
            )
        ):
            emit("supervisor.auto_shutdown", supervisor=self.path, child=slot.id)
            self._auto_shutdown = True

    # -- starting and stopping children ---------------------------------------------

    async def _start(self, slot: _Slot) -> BaseException | None:
        """Starts one child; returns the start failure (None on success)."""
        assert self._tg is not None
        slot.token += 1
        slot.expected = False
        slot.final = True
        slot.done = anyio.Event() if slot.sub is not None else None
        if slot.sub is not None:
            failure: BaseException | None = await self._tg.start(self._run_sub, slot)
        else:
            failure = await self._start_worker(slot)
        if failure is not None:
            emit_failure(
                "supervisor.child_start_failed", failure, supervisor=self.path, child=slot.id
            )
        return failure

    async def _start_worker(self, slot: _Slot) -> BaseException | None:
        assert self._tg is not None
        spec = slot.spec
        assert isinstance(spec, ChildSpec)
        cell = slot.cell
        if cell is None:
            cell = slot.cell = Cell(f"{self.path}/{spec.id}", spec.config, current_kernel())
        cell.restart_wait = spec.while_restarting is WhileRestarting.WAIT
        if cell.state in (ActorState.STOPPED, ActorState.DOWN):
            cell.state = ActorState.STARTING
            cell.reason = None
        try:
            actor = spec.factory()
        except Exception as exc:
            return exc
        if not isinstance(actor, Actor):
            raise ConfigError(
                f"{spec.id}.factory", type(actor).__name__, "must return an actors.Actor"
            )
        incarnation = Incarnation(cell, actor, functools.partial(self._child_exited, slot))
        slot.incarnation = incarnation
        failure: BaseException | None = await self._tg.start(self._run_worker, slot, incarnation)
        return failure

    def _mark_started(self, slot: _Slot) -> None:
        """Bookkeeping the moment a child is ready (before its first message runs)."""
        restarting = slot.state is ChildState.RESTARTING
        slot.running = True
        slot.state = ChildState.RUNNING
        slot.running_since = anyio.current_time()
        slot.due = None
        slot.group = None
        emit("supervisor.child_started", supervisor=self.path, child=slot.id)
        if restarting:
            slot.restarts += 1
            emit(
                "supervisor.child_restarted",
                supervisor=self.path,
                child=slot.id,
                restarts=slot.restarts,
                backoff=slot.delay,
            )

    async def _run_worker(
        self,
        slot: _Slot,
        incarnation: Incarnation,
        *,
        task_status: anyio.abc.TaskStatus[BaseException | None],
    ) -> None:
        await incarnation.run(task_status=_Ready(task_status, self, slot))

    def _child_exited(self, slot: _Slot, reason: BaseException | None) -> None:
        """An incarnation ended (called synchronously, before its on_stop)."""
        cell = slot.cell
        incarnation = slot.incarnation
        assert cell is not None
        if incarnation is not None and not incarnation.started:
            if cell.state is not ActorState.DOWN:
                cell.state = ActorState.RESTARTING  # a start failure: the starter decides
            return
        if slot.expected or self._stopping:
            if (slot.expected and not slot.final) or (self._stopping and not self._final_now):
                cell.state = ActorState.RESTARTING
            else:
                cell.close(reason)
            return
        spec = slot.spec
        assert isinstance(spec, ChildSpec)
        restart = spec.restart
        if restart is RestartType.PERMANENT or (restart is RestartType.TRANSIENT and reason):
            cell.state = ActorState.RESTARTING
            if reason is not None and spec.on_crash is OnCrash.FAIL:
                cell.fail_queued(lambda: ActorRestarting(cell.name), "restarting")
        else:
            cell.close(reason)
        self._exits.append((slot, slot.token, reason))
        self._wake_up()

    async def _run_sub(
        self, slot: _Slot, *, task_status: anyio.abc.TaskStatus[BaseException | None]
    ) -> None:
        sub = slot.sub
        assert sub is not None
        started = False

        def ready() -> None:
            nonlocal started
            started = True
            self._mark_started(slot)
            task_status.started(None)

        reason: BaseException | None = None
        try:
            with anyio.CancelScope() as scope:
                slot.scope = scope
                try:
                    await sub.run(ready)
                except IntensityExceeded as exc:
                    reason = exc
        finally:
            if slot.done is not None:
                slot.done.set()
        if not started:
            task_status.started(reason or _StartAborted(f"{sub.path} stopped while starting"))
            return
        if not slot.expected:
            self._exits.append((slot, slot.token, reason))
            self._wake_up()

    async def _terminate(self, slot: _Slot, *, final: bool) -> None:
        """Stops a running child within its shutdown (then cancels it hard)."""
        slot.expected = True
        slot.final = final
        shutdown = slot.spec.shutdown
        grace = 0.0 if shutdown == BRUTAL_KILL else float(shutdown)
        if slot.sub is not None:
            slot.sub.request_stop(final=final)
            if slot.done is not None:
                with anyio.move_on_after(grace):
                    await slot.done.wait()
                if not slot.done.is_set():
                    if slot.scope is not None:
                        slot.scope.cancel()
                    await slot.done.wait()
            if not final:
                slot.sub._mark_restarting()
        elif slot.incarnation is not None:
            await slot.incarnation.stop(grace, restarting=not final)
        slot.running = False
        slot.running_since = None
        slot.state = ChildState.STOPPED if final else ChildState.RESTARTING
        emit("supervisor.child_terminated", supervisor=self.path, child=slot.id, final=final)

    def _mark_restarting(self) -> None:
        for slot in self._slots:
            slot.state = ChildState.RESTARTING

    async def _terminate_all(self, *, final: bool) -> None:
        """Stops every running child in reverse start order."""
        self._stopping = True
        self._final_now = final
        for slot in self._slots:
            slot.due = None
            slot.group = None
        for slot in reversed(self._slots):
            if slot.running:
                await self._terminate(slot, final=final)
            elif final and slot.cell is not None and slot.cell.state is ActorState.RESTARTING:
                slot.cell.close(None)
                slot.state = ChildState.STOPPED
        emit("supervisor.shutdown", supervisor=self.path, final=final)

    # -- helpers ---------------------------------------------------------------------

    def _make_slot(self, spec: ChildSpec | SupervisorSpec, dynamic: bool) -> _Slot:
        slot = _Slot(spec, dynamic)
        if isinstance(spec, SupervisorSpec):
            slot.sub = Supervisor(spec, path=f"{self.path}/{spec.id}", rng=self._rng)
        return slot

    def _find(self, child_id: str) -> _Slot | None:
        for slot in self._slots:
            if slot.id == child_id:
                return slot
        return None

    def _get(self, child_id: str) -> _Slot:
        slot = self._find(child_id)
        if slot is None:
            raise UnknownChild(self.path, child_id)
        return slot

    def _control(self) -> anyio.Lock:
        if self._lock is None or self._tg is None or self._stopping:
            raise ActorStopped(self.path)
        return self._lock

    def __repr__(self) -> str:
        return f"<Supervisor {self.path!r} children={len(self._slots)}>"
