"""The supervisor runtime: starts children in order, restarts them by strategy, gives up.

One supervisor is one task plus a task group holding its children. Children report
their exits to it; it handles them one at a time (as an OTP supervisor handles EXIT
messages): it counts the restart against its intensity, stops the siblings its
strategy names (in reverse order), and queues the group to start again after the
backoff, in order, each child ready before the next (a child whose start fails holds
back the ones queued behind it). Meanwhile it stays responsive to other exits.

Each worker child has a stable address (a cell) that outlives its incarnations: while
it restarts, calls wait for the new incarnation or fail fast, per child spec. A nested
supervisor object outlives its own restarts too, so refs into a subtree stay valid.

The bookkeeping (`supervisor._slots`) is indexed by id and by state, so starting N
children is O(N), adding one is O(1), and one restart costs the same among 10 or
100,000 siblings.
"""

from __future__ import annotations

import contextvars
import random
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar, overload

import anyio
import anyio.abc
import attrs

from actors import (
    Actor,
    ActorDown,
    ActorRef,
    ActorState,
    ActorStopped,
    ConfigError,
)
from actors.lowlevel import (
    Cell,
    Incarnation,
    Kernel,
    TaskHost,
    create_task_host,
    current_kernel,
    emit,
    emit_failure,
)
from supervisor._errors import IntensityExceeded, UnknownChild
from supervisor._slots import Children, ChildState, Slot
from supervisor._spec import (
    BRUTAL_KILL,
    AutoShutdown,
    Child,
    ChildSpec,
    OnCrash,
    RestartType,
    Strategy,
    SupervisorSpec,
    WhileRestarting,
    check_significant_allowed,
)
from supervisor._tree import TreeNode, render_mermaid, render_text, snapshot

__all__ = ["ChildCounts", "ChildInfo", "ChildState", "Supervisor"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")

_BURST = 256  # children started in a row before the supervisor lets other tasks run


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


class _Ready:
    """A child's readiness (the `task_status` its task reports to), delivered to the
    starter waiting on a kernel slot: lighter than anyio's `TaskGroup.start`, with the
    same order (the starter resumes only once the child is up or has failed).

    If the starter stopped waiting (it was cancelled), a start failure goes to the
    supervisor's loop as the child's exit instead, and a success stands.
    """

    __slots__ = ("_reply", "_slot", "_supervisor", "reported")

    def __init__(self, supervisor: Supervisor, slot: Slot, reply: Any) -> None:
        self._supervisor: Supervisor | None = supervisor
        self._slot: Slot | None = slot
        self._reply: Any = reply
        self.reported = False

    def started(self, value: BaseException | None = None) -> None:
        supervisor, slot, reply = self._supervisor, self._slot, self._reply
        assert supervisor is not None
        assert slot is not None
        # The child's task keeps this object for its whole life: keep nothing in it.
        self.reported = True
        self._supervisor = self._slot = self._reply = None
        if value is None:
            supervisor._mark_started(slot)
        if not reply.done():
            reply.set_result(value)
        elif value is not None:
            supervisor._exits.append((slot, slot.token, value))
            supervisor._wake_up()

    def abandon(self) -> None:
        """The child's task ended without reporting (cancelled while starting)."""
        if not self.reported:
            self.started(_StartAborted("the child was cancelled while starting"))


class _StartAborted(Exception):
    """A child ended before it was ready (a nested supervisor that stopped while
    starting, or a child cancelled while starting)."""


def _in_child(path: str, exc: ConfigError) -> ConfigError:
    """`exc`, renamed to say which child of the tree it belongs to."""
    error = ConfigError(f"{path}.{exc.field}", exc.value, exc.reason)
    error.__cause__ = exc
    return error


class Supervisor:
    """A running supervision tree node. Made by `supervisor.start` / `start_tree`.

    Introspection (`which_children`, `count_children`, `restarts_of`, `tree`) is
    synchronous; control (`start_child`, `start_instance`, `terminate_child`,
    `restart_child`, `delete_child`) is serialised with the supervisor's own restart
    handling.
    """

    def __init__(self, spec: SupervisorSpec, *, path: str, rng: random.Random) -> None:
        self.spec = spec
        self.path = path
        self._rng = rng
        self._children = Children()
        for child in spec.children:
            self._children.append(self._make_slot(child, False))
        self._restart_times: deque[float] = deque()
        self._exits: deque[tuple[Slot, int, BaseException | None]] = deque()
        self._failed_early: set[Incarnation | None] = set()  # queues failed at the crash
        self._wake: anyio.Event | None = None
        self._lock: anyio.Lock | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._kernel: Kernel | None = None
        self._host: TaskHost | None = None  # where hibernated children wake up
        self._context: contextvars.Context | None = None  # the children's tasks start in it
        self._stop_requested = False
        self._stop_final = True
        self._stopping = False
        self._final_now = True
        self._auto_shutdown = False
        self._failure: IntensityExceeded | None = None
        self._instances = 0
        self.running = False

    # -- public control and introspection ---------------------------------------------

    @property
    def name(self) -> str:
        """The supervisor's path in its tree ("root/db")."""
        return self.path

    @overload
    def ref(self, key: ChildSpec[Req, Resp]) -> ActorRef[Req, Resp]: ...
    @overload
    def ref(self, key: str) -> ActorRef[Any, Any]: ...
    def ref(self, key: ChildSpec[Any, Any] | str) -> ActorRef[Any, Any]:
        """The stable ref of a worker child: typed by its spec, or by id or path.

        A `ChildSpec` is a typed key for a child of this supervisor: the ref is an
        `ActorRef[Req, Resp]` of the spec's actor (for a deeper child, ask its
        supervisor: `sup.supervisor(backends).ref(llm)`). A path reaches into nested
        supervisors by ids and gives an `ActorRef[Any, Any]` (for dynamic use).

        Args:
            key: The child's spec (as given in `children` or to `start_child`), or
                "child" or "sub/child" (ids joined with '/').

        Raises:
            UnknownChild: No such child, the path names a supervisor, or the child with
                the spec's id runs another spec.
        """
        if isinstance(key, ChildSpec):
            slot = self._children.get(key.id)
            if slot is None or slot.spec != key:
                why = "no such child" if slot is None else "runs another spec under this id"
                raise UnknownChild(self.path, key.id, why)
            return self._worker_ref(slot, key.id)
        path = key
        node: Supervisor = self
        parts = path.split("/")
        for index, part in enumerate(parts):
            slot = node._children.get(part)
            if slot is None:
                raise UnknownChild(self.path, path)
            if index == len(parts) - 1:
                return self._worker_ref(slot, path)
            if slot.sub is None:
                raise UnknownChild(self.path, path, f"{part!r} is not a supervisor")
            node = slot.sub
        raise UnknownChild(self.path, path)  # pragma: no cover - empty path

    def _worker_ref(self, slot: Slot, path: str) -> ActorRef[Any, Any]:
        if slot.sub is not None:
            raise UnknownChild(self.path, path, "is a supervisor, not an actor")
        if slot.cell is None:
            raise UnknownChild(self.path, path, "has not been started yet")
        return ActorRef(slot.cell)

    def supervisor(self, key: SupervisorSpec | str) -> Supervisor:
        """A nested supervisor, by its spec (a child of this one) or by id or path.

        Raises:
            UnknownChild: No such supervisor (or the child with the spec's id runs
                another spec).
        """
        if isinstance(key, SupervisorSpec):
            slot = self._children.get(key.id)
            if slot is None or slot.sub is None or slot.spec != key:
                raise UnknownChild(self.path, key.id, "no such supervisor")
            return slot.sub
        path = key
        node: Supervisor = self
        for part in path.split("/"):
            slot = node._children.get(part)
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
            for slot in self._children
        ]

    def count_children(self) -> ChildCounts:
        """How many child specs, running children, supervisors and workers there are."""
        children = self._children
        return ChildCounts(
            specs=len(children),
            active=children.active,
            supervisors=children.supervisors,
            workers=len(children) - children.supervisors,
        )

    def restarts_of(self, path: str) -> int | None:
        """A child's restart count, by its full path ("agent/tools/mcp", as `ref.name`)
        or its path relative to this supervisor ("tools/mcp"); None if there is no such
        child. Costs one lookup per path segment, whatever the size of the tree."""
        prefix = f"{self.path}/"
        if path.startswith(prefix):
            found = self._restarts_at(path[len(prefix) :])
            if found is not None:
                return found
        return self._restarts_at(path)

    def _restarts_at(self, path: str) -> int | None:
        node: Supervisor | None = self
        slot: Slot | None = None
        for part in path.split("/"):
            if node is None:
                return None
            slot = node._children.get(part)
            if slot is None:
                return None
            node = slot.sub
        return slot.restarts if slot is not None else None

    def tree(self) -> TreeNode:
        """A snapshot of the whole tree under this supervisor."""
        return snapshot(self)

    def dump(self) -> str:
        """The tree as indented text: each node's kind, state and restart count."""
        return render_text(self.tree())

    def mermaid(self) -> str:
        """The tree as a Mermaid `graph TD` diagram."""
        return render_mermaid(self.tree())

    @overload
    async def start_child(self, spec: ChildSpec[Req, Resp]) -> ActorRef[Req, Resp]: ...
    @overload
    async def start_child(self, spec: SupervisorSpec) -> Supervisor: ...
    async def start_child(
        self, spec: ChildSpec[Any, Any] | SupervisorSpec
    ) -> ActorRef[Any, Any] | Supervisor:
        """Adds a child at the end and starts it (dynamic children).

        The child's factory (every factory, for a nested supervisor) is called before
        anything starts, so an invalid configuration is a `ConfigError` and adds nothing.
        A checkpoint. If the caller is cancelled while the child starts, the child is
        added all the same: it goes on starting and is then a child like any other (a
        failed start is handled as after a crash, under intensity).

        Returns:
            A handle for what it started: the worker's ref (typed by the spec), or the
            nested `Supervisor`.

        Raises:
            ConfigError: The id is taken, the spec is invalid (a significant child under
                `auto_shutdown="never"`, a factory that raises `ConfigError` or does not
                return an Actor).
            ActorDown: The child failed to start (it is not added).
            ActorStopped: The supervisor is not running.
        """
        if not isinstance(spec, ChildSpec | SupervisorSpec):
            raise ConfigError("spec", type(spec).__name__, "must be ChildSpec or SupervisorSpec")
        check_significant_allowed(self.spec, spec, f"{self.path}.{spec.id}.significant")
        async with self._control():
            children = self._children
            if spec.id in children:
                raise ConfigError(f"{self.path}.children", spec.id, "duplicate child id")
            slot = self._make_slot(spec, True)
            self._prepare(slot)
            children.append(slot)
            failure = await self._start(slot)
            if failure is not None:
                children.remove(slot)
                if slot.cell is not None:
                    slot.cell.close(failure)
                raise ActorDown(f"{self.path}/{spec.id}", failure) from failure
            if slot.sub is not None:
                return slot.sub
            assert slot.cell is not None
            return ActorRef(slot.cell)

    async def start_instance(self, template: ChildSpec[Req, Resp]) -> ActorRef[Req, Resp]:
        """Starts one more instance of `template` (simple_one_for_one style).

        The instance's id is `"{template.id}-{n}"` with n counting from 1.
        """
        self._instances += 1
        return await self.start_child(attrs.evolve(template, id=f"{template.id}-{self._instances}"))

    async def terminate_child(self, child_id: str) -> None:
        """Stops a child in order (within its shutdown); it stays stopped.

        A static child keeps its spec (`restart_child` starts it again); a dynamic child
        is removed. Terminating a significant child never triggers auto_shutdown (as
        OTP: only a child exiting by itself does).
        """
        async with self._control():
            slot = self._get(child_id)
            self._children.leave(slot)
            if slot.running:
                await self._terminate(slot, final=True)
            else:
                self._close(slot, None)
            slot.state = ChildState.STOPPED
            if slot.dynamic:
                self._children.remove(slot)

    async def restart_child(self, child_id: str) -> None:
        """Restarts a child now (stopping it first if it runs); not counted as a failure.

        Raises:
            ActorDown: The new incarnation failed to start (then it restarts as after a
                crash, under intensity).
        """
        async with self._control():
            slot = self._get(child_id)
            self._children.leave(slot)
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
            if slot.running or slot.group is not None:
                raise ConfigError("child_id", child_id, "is running; terminate it first")
            self._children.remove(slot)

    # -- running ---------------------------------------------------------------------

    def prepare(self) -> None:
        """Validates the tree under this supervisor before anything starts.

        Calls every worker's factory once (its actor becomes the first incarnation, so
        nothing is built twice). A factory that raises `ConfigError` or does not return
        an `Actor` aborts the start; any other exception from a factory is kept as that
        child's first start failure (retried under intensity when its turn comes).

        Raises:
            ConfigError: Naming the child's path ("agent/db.read_timeout").
        """
        for slot in self._children:
            self._prepare(slot)

    async def run(self, ready: Callable[[], None]) -> None:
        """Runs until asked to stop (returns) or until it gives up.

        Args:
            ready: Called once every initial child has started.

        Raises:
            IntensityExceeded: Too many restarts; the children have been stopped and
                their addresses left restarting for the owner to decide.
        """
        self._lock = anyio.Lock()
        self._kernel = current_kernel()
        self._restart_times.clear()
        self._exits.clear()
        self._stopping = False
        self._final_now = True
        self._auto_shutdown = False
        self._failure = None
        children = self._children
        for slot in [slot for slot in children if slot.dynamic]:
            children.remove(slot)  # their addresses were closed when this one stopped
        group = children.new_group()
        for slot in children:
            slot.state = ChildState.STARTING
            children.join(group, slot)
        children.schedule(group, anyio.current_time())
        error: Exception | None = None
        self._context = contextvars.copy_context()
        try:
            async with anyio.create_task_group() as tg:
                host = self._host = create_task_host()
                await tg.start(host.run)
                self._tg = tg
                try:
                    await self._loop(ready)
                except Exception as exc:  # re-raised below, outside the task group
                    error = exc
                finally:
                    try:
                        await self._terminate_all(final=error is None and self._stop_final)
                    finally:
                        self._end_hibernated()
                        host.close()
        finally:
            self.running = False
            self._tg = None
            self._host = None
            # Reset here, not at the start: a stop asked for before the run began holds.
            self._stop_requested = False
            self._stop_final = True
        if error is not None:
            raise error

    def request_stop(self, *, final: bool = True) -> None:
        """Asks the supervisor to stop its children (reverse order) and return.

        A child being started finishes starting first; the ones queued behind it never
        start.

        Args:
            final: False when it will be restarted: its static children's addresses then
                stay RESTARTING and keep their queued messages (dynamic children are
                gone: a restarted supervisor starts only its static children, as OTP).
        """
        self._stop_requested = True
        self._stop_final = final
        self._wake_up()

    def close_addresses(self, reason: BaseException | None) -> None:
        """Closes every address in this subtree for good (after its owner gave up)."""
        for slot in self._children:
            self._close(slot, reason)
            slot.state = ChildState.STOPPED

    # -- the loop --------------------------------------------------------------------

    async def _loop(self, ready: Callable[[], None]) -> None:
        children = self._children
        exits = self._exits
        announced = False
        started = 0
        kernel = self._kernel
        assert self._lock is not None
        assert kernel is not None
        while True:
            async with self._lock:
                while True:
                    while exits and self._failure is None:
                        slot, token, reason = exits.popleft()
                        if token == slot.token and not slot.expected:
                            await self._handle_exit(slot, reason)
                    if self._failure is not None:
                        raise self._failure
                    if self._stop_requested or self._auto_shutdown:
                        return
                    due = children.next_due(anyio.current_time())
                    if due is None:
                        break
                    failure = await self._start(due)
                    if failure is not None:
                        await self._handle_exit(due, failure)
                    started += 1
                    if started % _BURST == 0:  # children started asleep never yield
                        await kernel.checkpoint()
            if not announced and not children.pending:
                announced = True
                self.running = True
                emit("supervisor.started", supervisor=self.path, children=len(children))
                ready()
            wake = self._wake = anyio.Event()
            if exits or self._stop_requested or self._failure is not None:
                continue
            with anyio.move_on_at(children.next_time()):
                await wake.wait()

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _handle_exit(self, slot: Slot, reason: BaseException | None) -> None:
        """Applies restart type, intensity, strategy and backoff to one child's exit
        (or failed start). O(1) under one_for_one; O(group) otherwise."""
        children = self._children
        children.set_running(slot, False)
        spec = slot.spec
        if reason is None:
            emit("supervisor.child_exited", supervisor=self.path, child=slot.id)
        else:
            emit_failure("supervisor.child_crashed", reason, supervisor=self.path, child=slot.id)
        restart = spec.restart
        if restart is RestartType.TEMPORARY or (
            restart is RestartType.TRANSIENT and reason is None
        ):
            self._stop_for_good(slot, reason)
            self._check_auto_shutdown(slot)
            return
        if not self._count_restart(reason):
            return
        now = anyio.current_time()
        backoff = self.spec.backoff
        if slot.running_since is not None and now - slot.running_since >= backoff.reset_after:
            slot.attempt = 0
        delay = backoff.delay(slot.attempt, self._rng)
        slot.attempt += 1
        slot.running_since = None
        strategy = self.spec.strategy
        if strategy is Strategy.ONE_FOR_ONE:
            # A failed start keeps its group: the siblings queued behind it wait for it.
            group = slot.group
            if group is None:
                group = children.new_group()
                children.join(group, slot)
            slot.state = ChildState.RESTARTING
            slot.delay = delay
        else:
            everyone = strategy is Strategy.ONE_FOR_ALL
            members = list(children if everyone else children.from_slot(slot))
            for other in reversed(members):
                if other is not slot and other.running:
                    await self._terminate(other, final=other.spec.restart is RestartType.TEMPORARY)
            group = children.new_group()
            for member in members:
                if member is not slot and member.spec.restart is RestartType.TEMPORARY:
                    self._stop_for_good(member, None)
                    continue
                children.join(group, member)
                member.state = ChildState.RESTARTING
                member.delay = delay
        children.schedule(group, now + delay)
        self._wake_up()

    def _stop_for_good(self, slot: Slot, reason: BaseException | None) -> None:
        """The child is not coming back: its addresses are closed, a dynamic one removed."""
        self._children.leave(slot)
        slot.state = ChildState.STOPPED
        self._close(slot, reason)
        if slot.dynamic:
            self._children.remove(slot)

    def _count_restart(self, reason: BaseException | None) -> bool:
        """Counts one restart; False (and the supervisor fails) when it is one too many."""
        now = anyio.current_time()
        times = self._restart_times
        while times and times[0] <= now - self.spec.period:
            times.popleft()
        times.append(now)
        if len(times) <= self.spec.max_restarts:
            return True
        emit(
            "supervisor.intensity_exceeded",
            level="error",
            supervisor=self.path,
            max_restarts=self.spec.max_restarts,
            period=self.spec.period,
        )
        self._failure = IntensityExceeded(
            self.path, self.spec.max_restarts, self.spec.period, reason
        )
        self._wake_up()
        return False

    def _check_auto_shutdown(self, slot: Slot) -> None:
        if not slot.spec.significant:
            return
        mode = self.spec.auto_shutdown
        if mode is AutoShutdown.ANY_SIGNIFICANT or (
            mode is AutoShutdown.ALL_SIGNIFICANT and not self._children.significant_live
        ):
            emit("supervisor.auto_shutdown", supervisor=self.path, child=slot.id)
            self._auto_shutdown = True
            self._wake_up()

    # -- starting and stopping children ---------------------------------------------

    def _prepare(self, slot: Slot) -> None:
        """Builds a child's first incarnation now (see `prepare`)."""
        if slot.sub is not None:
            slot.sub.prepare()
            return
        spec = slot.spec
        assert isinstance(spec, ChildSpec)
        cell = self._cell(slot)
        try:
            actor = spec.factory()
        except ConfigError as exc:
            raise _in_child(cell.name, exc) from exc
        except Exception as exc:
            slot.prepared = exc
            return
        slot.prepared = self._incarnation(slot, cell, actor)

    def _cell(self, slot: Slot) -> Cell:
        cell = slot.cell
        if cell is None:
            spec = slot.spec
            assert isinstance(spec, ChildSpec)
            cell = slot.cell = Cell(
                f"{self.path}/{spec.id}",
                spec.config,
                current_kernel(),
                restart_wait=spec.while_restarting is WhileRestarting.WAIT,
            )
        return cell

    def _incarnation(self, slot: Slot, cell: Cell, actor: object) -> Incarnation:
        if not isinstance(actor, Actor):
            raise ConfigError(
                f"{cell.name}.factory", type(actor).__name__, "must return an actors.Actor"
            )
        try:
            return Incarnation(cell, actor, slot)
        except ConfigError as exc:
            raise _in_child(cell.name, exc) from exc

    async def _start(self, slot: Slot) -> BaseException | None:
        """Starts one child and waits until it is up; returns the start failure (None on
        success). A checkpoint; if cancelled, the child goes on starting (see `_Ready`)."""
        tg, kernel = self._tg, self._kernel
        assert tg is not None
        assert kernel is not None
        slot.token += 1
        slot.expected = False
        slot.final = True
        reply = kernel.new_slot()
        ready = _Ready(self, slot, reply)
        failure: BaseException | None
        if slot.sub is not None:
            slot.done = anyio.Event()
            tg.start_soon(self._run_sub, slot, ready)
            failure = await kernel.park(reply)
        else:
            slot.done = None
            incarnation = self._next_incarnation(slot)
            if isinstance(incarnation, Incarnation):
                slot.incarnation = incarnation
                host, context = self._host, self._context
                assert host is not None
                assert context is not None
                if not incarnation.launch(host, context, ready):  # (else: started asleep)
                    context.run(tg.start_soon, self._run_worker, incarnation, ready)
                failure = await kernel.park(reply)
            else:
                failure = incarnation
        if failure is not None:
            emit_failure(
                "supervisor.child_start_failed", failure, supervisor=self.path, child=slot.id
            )
        return failure

    def _next_incarnation(self, slot: Slot) -> Incarnation | Exception:
        """The incarnation to start (the prepared one first), or why there is none."""
        cell = self._cell(slot)
        if cell.closed:
            cell.reopen()
        prepared, slot.prepared = slot.prepared, None
        if prepared is not None:
            return prepared
        spec = slot.spec
        assert isinstance(spec, ChildSpec)
        try:
            # A later incarnation: a bad factory now is this start's failure.
            return self._incarnation(slot, cell, spec.factory())
        except Exception as exc:
            return exc

    def _mark_started(self, slot: Slot) -> None:
        """Bookkeeping the moment a child is ready (before its first message runs)."""
        restarting = slot.state is ChildState.RESTARTING
        children = self._children
        children.leave(slot)
        children.set_running(slot, True)
        slot.state = ChildState.RUNNING
        slot.running_since = anyio.current_time()
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

    @staticmethod
    async def _run_worker(incarnation: Incarnation, ready: _Ready) -> None:
        try:
            await incarnation.run(task_status=ready)
        finally:
            ready.abandon()

    def _child_crashed(self, slot: Slot, reason: BaseException) -> None:
        """A running incarnation crashed (called synchronously, before its handlers
        unwind): a child that will be restarted is RESTARTING from this moment, so a
        call sent meanwhile waits for the next incarnation (or fails fast, per spec)
        instead of reaching the dying one; with on_crash='fail' the calls queued before
        the crash get `ActorDown` now."""
        cell = slot.cell
        spec = slot.spec
        if cell is None or slot.expected or self._stopping or not isinstance(spec, ChildSpec):
            return
        if spec.restart is RestartType.TEMPORARY:
            return  # closed for good at its exit
        cell.mark_restarting()
        if spec.on_crash is OnCrash.FAIL:
            cell.fail_queued(lambda: ActorDown(cell.name, reason), "down")
        self._failed_early.add(slot.incarnation)

    def _child_exited(self, slot: Slot, reason: BaseException | None) -> None:
        """An incarnation ended (called synchronously, before its on_stop)."""
        cell = slot.cell
        incarnation = slot.incarnation
        assert cell is not None
        if incarnation is not None and not incarnation.started:
            if not cell.closed:
                cell.mark_restarting()  # a start failure: the starter decides
            return
        if slot.expected or self._stopping:
            if slot.expected:
                restarting = not slot.final
            else:
                restarting = not self._final_now and not slot.dynamic
            if restarting:
                cell.mark_restarting()
            else:
                cell.close(reason)
            return
        spec = slot.spec
        assert isinstance(spec, ChildSpec)
        restart = spec.restart
        early = incarnation in self._failed_early
        self._failed_early.discard(incarnation)
        if restart is RestartType.PERMANENT or (restart is RestartType.TRANSIENT and reason):
            cell.mark_restarting()
            if reason is not None and spec.on_crash is OnCrash.FAIL and not early:
                cell.fail_queued(lambda: ActorDown(cell.name, reason), "down")
        else:
            cell.close(reason)
        self._exits.append((slot, slot.token, reason))
        self._wake_up()

    async def _run_sub(self, slot: Slot, ready: _Ready) -> None:
        sub = slot.sub
        assert sub is not None
        reason: BaseException | None = None
        try:
            with anyio.CancelScope() as scope:
                slot.scope = scope
                try:
                    await sub.run(ready.started)
                except IntensityExceeded as exc:
                    reason = exc
        finally:
            if slot.done is not None:
                slot.done.set()
            was_ready = ready.reported
            if not was_ready:
                ready.started(reason or _StartAborted(f"{sub.path} stopped while starting"))
        if was_ready and not slot.expected:
            self._exits.append((slot, slot.token, reason))
            self._wake_up()

    async def _terminate(self, slot: Slot, *, final: bool) -> None:
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
        self._children.set_running(slot, False)
        slot.running_since = None
        slot.state = ChildState.STOPPED if final else ChildState.RESTARTING
        emit("supervisor.child_terminated", supervisor=self.path, child=slot.id, final=final)

    def _mark_restarting(self) -> None:
        for slot in self._children:
            slot.state = ChildState.RESTARTING

    async def _terminate_all(self, *, final: bool) -> None:
        """Stops every running child in reverse start order.

        Dynamic children stop for good even when this supervisor will be restarted:
        the new run starts only the static children (as OTP), so their addresses close.
        """
        self._stopping = True
        self._final_now = final
        children = self._children
        children.clear_schedule()
        for slot in children.reversed():
            slot_final = final or slot.dynamic
            if slot.running:
                await self._terminate(slot, final=slot_final)
            elif slot_final:
                self._close(slot, None)
                slot.state = ChildState.STOPPED
        emit("supervisor.shutdown", supervisor=self.path, final=final)

    def _end_hibernated(self) -> None:
        """Ends the hibernated children a hard stop cut the ordered one short of (the
        running ones are being cancelled with the task group): each ends as if
        cancelled (its `on_stop`, if any, runs in a task of the cancelled group)."""
        for slot in self._children:
            incarnation = slot.incarnation
            if incarnation is not None and incarnation.asleep:
                incarnation.request_stop()

    def _close(self, slot: Slot, reason: BaseException | None) -> None:
        """Closes a child's addresses that are not already closed (for good)."""
        if slot.sub is not None:
            slot.sub.close_addresses(reason)
        elif slot.cell is not None and slot.cell.state in (
            ActorState.RESTARTING,
            ActorState.STARTING,
        ):
            slot.cell.close(reason)

    # -- helpers ---------------------------------------------------------------------

    def _make_slot(self, spec: Child, dynamic: bool) -> Slot:
        slot = Slot(spec, dynamic, self)
        if isinstance(spec, SupervisorSpec):
            slot.sub = Supervisor(spec, path=f"{self.path}/{spec.id}", rng=self._rng)
        return slot

    def _get(self, child_id: str) -> Slot:
        slot = self._children.get(child_id)
        if slot is None:
            raise UnknownChild(self.path, child_id)
        return slot

    def _control(self) -> anyio.Lock:
        if self._lock is None or self._tg is None or self._stopping:
            raise ActorStopped(self.path)
        return self._lock

    def __repr__(self) -> str:
        return f"<Supervisor {self.path!r} children={len(self._children)}>"
