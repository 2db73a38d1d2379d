"""How a tree ends: cancelled from outside, shut down by itself, or giving up (both
backends, virtual time)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest

import supervisor as sv
from actors import ActorError, ActorStopped, ConfigError
from actors.testing import capture_events
from tests.actors.scripted import settle
from tests.supervisor.helpers import Log, Worker, worker

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

NO_BACKOFF = sv.Backoff.none()


async def _in_start(
    spec: sv.SupervisorSpec, *, task_status: anyio.abc.TaskStatus[sv.Supervisor]
) -> None:
    async with sv.start(spec) as sup:
        task_status.started(sup)
        await anyio.sleep_forever()
    pytest.fail("the block returned although it was cancelled")


async def _in_start_tree(
    spec: sv.SupervisorSpec, *, task_status: anyio.abc.TaskStatus[sv.Supervisor]
) -> None:
    async with anyio.create_task_group() as tg:
        task_status.started(await tg.start(sv.start_tree, spec))


ENTRY_POINTS = {"start": _in_start, "start_tree": _in_start_tree}


class App:
    """A tree run inside a cancel scope of its own, and what became of that scope."""

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.ended_at: float | None = None

    @asynccontextmanager
    async def running(
        self, spec: sv.SupervisorSpec, entry: Callable[..., Any]
    ) -> AsyncIterator[tuple[sv.Supervisor, anyio.abc.TaskGroup]]:
        """Runs the tree; yields it with a task group outside the tree's scope (callers)."""

        async def app(*, task_status: anyio.abc.TaskStatus[sv.Supervisor]) -> None:
            with self.scope:
                await entry(spec, task_status=task_status)
            self.ended_at = anyio.current_time()

        async with anyio.create_task_group() as outside:
            yield await outside.start(app), outside


async def call_into(ref: Any, msg: object, into: list[object], timeout: float = 100) -> None:
    try:
        into.append(await ref.call(msg, timeout=timeout))
    except ActorError as exc:
        into.append(exc)
    into.append(anyio.current_time())


@pytest.mark.parametrize("entry", ENTRY_POINTS)
async def test_cancelling_the_tree_stops_children_in_reverse_with_their_grace(entry: str) -> None:
    """A cancelled tree stops its children in reverse order; a call in hand finishes within
    the child's shutdown; then the cancellation propagates."""
    log = Log()
    spec = sv.SupervisorSpec(id="root", children=[worker(n, log) for n in ("a", "b", "c")])
    app = App()
    replies: list[object] = []
    async with app.running(spec, ENTRY_POINTS[entry]) as (sup, outside):
        outside.start_soon(call_into, sup.ref("b"), ("sleep", 2), replies)
        await settle()
        start = anyio.current_time()
        app.scope.cancel()
    assert replies == [("sleep", 2), start + 2]
    assert log.stops() == ["c", "b", "a"]
    assert app.ended_at == start + 2
    assert app.scope.cancelled_caught


@pytest.mark.parametrize("entry", ENTRY_POINTS)
async def test_each_child_gets_its_own_shutdown_when_the_tree_is_cancelled(entry: str) -> None:
    """Stopping after a cancellation, a child that outlasts its shutdown is cancelled hard
    at its own budget; a later one still gets all of its own."""
    log = Log()
    spec = sv.SupervisorSpec(
        id="root", children=[worker("a", log, shutdown=5), worker("b", log, shutdown=1)]
    )
    app = App()
    a_replies: list[object] = []
    b_replies: list[object] = []
    async with app.running(spec, ENTRY_POINTS[entry]) as (sup, outside):
        outside.start_soon(call_into, sup.ref("a"), ("sleep", 3), a_replies)
        outside.start_soon(call_into, sup.ref("b"), ("sleep", 10), b_replies)
        await settle()
        start = anyio.current_time()
        app.scope.cancel()
    assert isinstance(b_replies[0], ActorStopped)
    assert b_replies[1] == start + 1
    assert a_replies == [("sleep", 3), start + 3]
    assert app.ended_at == start + 3


async def test_the_root_shutdown_bounds_a_cancelled_tree() -> None:
    """The root spec's shutdown bounds the whole orderly stop; then the tree is cancelled
    hard and its addresses are closed."""
    log = Log()
    spec = sv.SupervisorSpec(id="root", shutdown=2, children=[worker("a", log, shutdown=50)])
    app = App()
    replies: list[object] = []
    async with app.running(spec, _in_start_tree) as (sup, outside):
        outside.start_soon(call_into, sup.ref("a"), ("sleep", 100), replies)
        await settle()
        start = anyio.current_time()
        app.scope.cancel()
    assert app.ended_at == start + 2
    assert isinstance(replies[0], ActorError)
    assert replies[1] == start + 2
    assert not sup.ref("a").alive


async def test_a_cancelled_tree_reports_terminations_not_crashes() -> None:
    """Cancellation is never a failure: children are terminated, none crashed, no
    intensity used."""
    log = Log()
    spec = sv.SupervisorSpec(id="root", max_restarts=1, children=[worker("a", log)])
    app = App()
    with capture_events() as events:
        async with app.running(spec, _in_start_tree) as (sup, outside):
            replies: list[object] = []
            outside.start_soon(call_into, sup.ref("a"), ("sleep", 1), replies)
            await settle()
            app.scope.cancel()
    names = [event["event"] for event in events]
    assert "supervisor.child_terminated" in names
    assert "supervisor.child_crashed" not in names
    assert "supervisor.intensity_exceeded" not in names
    assert names[-1] == "supervisor.shutdown"


async def test_cancelling_while_starting_stops_what_has_started() -> None:
    """A tree cancelled while its children start stops the ones that started, in reverse,
    and never starts the rest."""
    log = Log()

    class Slow(Worker):
        async def on_start(self) -> None:
            await super().on_start()
            await anyio.sleep(1)

    spec = sv.SupervisorSpec(
        id="root",
        children=[sv.ChildSpec(id=n, factory=functools.partial(Slow, n, log)) for n in "abcd"],
    )
    with anyio.move_on_after(1.5) as scope:
        async with sv.start(spec):
            pytest.fail("the tree cannot have started")
    assert scope.cancelled_caught
    assert log.starts() == ["a", "b"]
    assert log.stops() == ["b", "a"]


async def test_auto_shutdown_of_the_root_ends_the_start_block() -> None:
    """When the root shuts itself down (auto_shutdown), the block is cancelled and
    `sv.start` returns normally."""
    log = Log()
    spec = sv.SupervisorSpec(
        id="root",
        auto_shutdown="any_significant",
        children=[worker("a", log), worker("job", log, restart="transient", significant=True)],
    )
    with anyio.fail_after(10):
        async with sv.start(spec) as sup:
            await sup.ref("job").call("exit")
            await anyio.sleep_forever()
    assert not sup.running
    assert log.stops() == ["job", "a"]


async def test_auto_shutdown_of_the_root_returns_from_start_tree() -> None:
    """When the root shuts itself down, `start_tree` returns normally."""
    log = Log()
    spec = sv.SupervisorSpec(
        id="root",
        auto_shutdown="all_significant",
        children=[worker("job", log, restart="temporary", significant=True)],
    )
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            sup = await tg.start(sv.start_tree, spec)
            await sup.ref("job").call("exit")
    assert not sup.running


async def test_start_tree_raises_intensity_exceeded_bare() -> None:
    """Awaited directly, `start_tree` raises `IntensityExceeded` itself (no
    ExceptionGroup), chained to the failure that tipped it over."""

    class Bad(Worker):
        async def on_start(self) -> None:
            raise ConnectionError("down")

    spec = sv.SupervisorSpec(
        id="root",
        max_restarts=1,
        backoff=NO_BACKOFF,
        children=[sv.ChildSpec(id="bad", factory=lambda: Bad("bad", Log()))],
    )
    with pytest.raises(sv.IntensityExceeded) as info:
        await sv.start_tree(spec)
    assert isinstance(info.value.__cause__, ConnectionError)


async def test_a_factory_turning_bad_on_restart_is_a_start_failure() -> None:
    """A factory that stops returning an Actor on a restart fails that start (under
    intensity): the tree gives up with a bare `IntensityExceeded`, never an
    ExceptionGroup, even from a nested supervisor."""
    log = Log()
    made: list[int] = []

    def factory() -> Any:
        made.append(1)
        return Worker("w", log) if len(made) == 1 else "not an actor"

    leaf = sv.SupervisorSpec(
        id="leaf", backoff=NO_BACKOFF, children=[sv.ChildSpec(id="w", factory=factory)]
    )
    spec = sv.SupervisorSpec(id="root", backoff=NO_BACKOFF, max_restarts=1, children=[leaf])

    with pytest.raises(sv.IntensityExceeded) as info:
        async with sv.start(spec) as sup:
            with pytest.raises(RuntimeError):
                await sup.ref("leaf/w").call("crash")
            await anyio.sleep(10)
    leaf_failure = info.value.__cause__
    assert isinstance(leaf_failure, sv.IntensityExceeded)
    assert isinstance(leaf_failure.__cause__, ConfigError)
    assert "leaf/w.factory" in str(leaf_failure.__cause__)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
async def test_a_tree_cancelled_before_it_runs_never_starts(entry: str) -> None:
    """A tree whose scope is cancelled before it gets to run starts nothing and ends."""
    log = Log()
    spec = sv.SupervisorSpec(id="root", children=[worker("a", log)])
    with anyio.fail_after(10), anyio.CancelScope() as scope:
        scope.cancel()
        async with anyio.create_task_group() as tg:
            await tg.start(ENTRY_POINTS[entry], spec)
    assert log.starts() == []
