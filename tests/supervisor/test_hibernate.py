"""Hibernating children under `sv.start`: started without a task, woken by messages,
restarted, introspected and shut down like any child (both backends, virtual time)."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import pytest

import supervisor as sv
from actors import Actor, ActorConfig, ActorDown, ActorState
from actors.testing import capture_events
from tests.actors.scripted import settle

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

AFTER = 1.0
CONFIG = ActorConfig(hibernate_after=AFTER)
NO_BACKOFF = sv.Backoff.none()


class Echo(Actor[Any, Any]):
    """Echoes; ("crash", s) sleeps, then raises."""

    async def handle(self, msg: Any) -> Any:
        if isinstance(msg, tuple) and msg[0] == "crash":
            await anyio.sleep(msg[1])
            raise RuntimeError("crash")
        return msg


class Stopping(Echo):
    """Records its stop in a shared list; its on_stop takes `delay` seconds."""

    def __init__(self, name: str, log: list[str], delay: float = 0.0) -> None:
        self.name = name
        self.log = log
        self.delay = delay

    async def on_stop(self, reason: BaseException | None) -> None:
        self.log.append(self.name)
        await anyio.sleep(self.delay)


def _spec(count: int, **options: Any) -> sv.SupervisorSpec:
    children = [sv.ChildSpec(id=f"c{i}", factory=Echo, config=CONFIG) for i in range(count)]
    return sv.SupervisorSpec(id="root", children=children, backoff=NO_BACKOFF, **options)


def _stopping(names: list[str], log: list[str], delay: float = 0.0) -> list[sv.ChildSpec[Any, Any]]:
    return [
        sv.ChildSpec(id=name, factory=functools.partial(Stopping, name, log, delay), config=CONFIG)
        for name in names
    ]


async def test_children_start_hibernated() -> None:
    """Children without on_start start without a task and count as running."""
    async with sv.start(_spec(3)) as sup:
        rows = sup.which_children()
        assert [row.state for row in rows] == [sv.ChildState.RUNNING] * 3
        assert all(row.ref is not None and row.ref.hibernating for row in rows)
        assert sup.count_children().active == 3
        assert sup.ref("c1").state is ActorState.RUNNING


async def test_introspection_shows_hibernated_children_running() -> None:
    """The tree and its dump show a hibernated child as running."""
    async with sv.start(_spec(2)) as sup:
        assert [node.state for node in sup.tree().children] == ["running", "running"]
        assert "c1 [worker queued=0] running restarts=0" in sup.dump()


async def test_a_call_wakes_a_hibernated_child() -> None:
    """A call to a hibernated child is answered; the child hibernates again later."""
    async with sv.start(_spec(3)) as sup:
        ref = sup.ref("c2")
        assert await ref.call("x") == "x"
        assert not ref.hibernating
        await anyio.sleep(3 * AFTER)
        assert ref.hibernating


async def test_a_dynamic_child_starts_hibernated() -> None:
    """start_child adds a hibernated child."""
    async with sv.start(_spec(1)) as sup:
        ref = await sup.start_child(sv.ChildSpec(id="d", factory=Echo, config=CONFIG))
        assert ref is not None
        assert ref.hibernating
        assert await ref.call("y") == "y"


async def test_a_crashed_woken_child_restarts_hibernated() -> None:
    """A woken child that crashes is restarted; its next incarnation starts hibernated."""
    async with sv.start(_spec(3)) as sup:
        ref = sup.ref("c1")
        with pytest.raises(RuntimeError):
            await ref.call(("crash", 0))
        await settle()
        assert sup.restarts_of("c1") == 1
        assert ref.hibernating
        assert await ref.call("again") == "again"


async def test_a_crash_fails_calls_queued_behind_it_at_once() -> None:
    """With on_crash='fail', calls queued behind a crashing message get ActorDown then."""
    spec = sv.SupervisorSpec(
        id="root",
        backoff=NO_BACKOFF,
        children=[sv.ChildSpec(id="c", factory=Echo, config=CONFIG, on_crash="fail")],
    )
    failures: list[float] = []

    async def queued(ref: Any) -> None:
        try:
            await ref.call("x", timeout=60)
        except ActorDown:
            failures.append(anyio.current_time())

    async with sv.start(spec) as sup:
        ref = sup.ref("c")
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(queued, ref)
            with pytest.raises(RuntimeError):
                await ref.call(("crash", 1), timeout=60)
        assert [when - start for when in failures] == [1.0]


async def test_restarting_a_hibernated_child() -> None:
    """restart_child replaces a hibernated child's incarnation without waking it."""
    async with sv.start(_spec(2)) as sup:
        ref = sup.ref("c0")
        first = ref._cell.incarnation
        await sup.restart_child("c0")
        assert ref._cell.incarnation is not first
        assert ref.hibernating
        assert sup.which_children()[0].restarts == 1
        assert await ref.call("z") == "z"


async def test_one_for_all_restarts_hibernated_siblings() -> None:
    """A crash under one_for_all restarts the hibernated siblings too."""
    async with sv.start(_spec(3, strategy="one_for_all")) as sup:
        with pytest.raises(RuntimeError):
            await sup.ref("c1").call(("crash", 0))
        await settle()
        assert [row.restarts for row in sup.which_children()] == [1, 1, 1]
        assert all(row.ref is not None and row.ref.hibernating for row in sup.which_children())


async def test_a_tree_of_hibernated_children_stops_in_reverse_order() -> None:
    """Hibernated children are woken for their on_stop one at a time, last started first."""
    log: list[str] = []
    names = ["a", "b", "c", "d"]
    spec = sv.SupervisorSpec(id="root", children=_stopping(names, log, delay=0.5))
    async with sv.start(spec) as sup:
        assert all(sup.ref(name).hibernating for name in names)
        start = anyio.current_time()
    assert log == ["d", "c", "b", "a"]
    assert anyio.current_time() - start == 2.0


async def test_hibernated_children_without_on_stop_stop_in_reverse_order() -> None:
    """Hibernated children with nothing to run stop at once, in reverse order."""
    with capture_events() as events:
        async with sv.start(_spec(4)):
            start = anyio.current_time()
    stopped = [e["actor"] for e in events if e["event"] == "actor.stopped"]
    assert stopped == ["root/c3", "root/c2", "root/c1", "root/c0"]
    assert anyio.current_time() == start


async def test_a_hibernated_child_on_stop_is_bounded() -> None:
    """A hibernated child's on_stop is cut off when its stop budget (the child spec's
    shutdown, not the config's shutdown_timeout) runs out."""
    log: list[str] = []
    config = ActorConfig(hibernate_after=AFTER, shutdown_timeout=30.0)
    child = sv.ChildSpec(
        id="slow", factory=lambda: Stopping("slow", log, 60.0), config=config, shutdown=2.0
    )
    spec = sv.SupervisorSpec(id="root", children=[child])
    async with sv.start(spec) as sup:
        ref = sup.ref("slow")
        start = anyio.current_time()
    assert log == ["slow"]
    assert anyio.current_time() - start == 2.0
    assert ref.state is ActorState.STOPPED


async def test_a_hard_stop_ends_hibernated_children() -> None:
    """When the root's shutdown runs out, hibernated children still run on_stop and close."""
    log: list[str] = []
    spec = sv.SupervisorSpec(
        id="root", shutdown=1.0, children=_stopping(["a", "b", "c"], log, delay=10.0)
    )
    async with sv.start(spec) as sup:
        refs = [sup.ref(name) for name in ("a", "b", "c")]
    assert sorted(log) == ["a", "b", "c"]
    assert [ref.state for ref in refs] == [ActorState.STOPPED] * 3


async def test_a_probe_of_a_hibernated_child_leaves_it_hibernated() -> None:
    """Probes run on the control lane without waking the child."""
    async with sv.start(_spec(1)) as sup:
        ref = sup.ref("c0")
        await ref.probe()
        assert ref.hibernating


async def test_a_hard_stop_cancels_a_woken_child_mid_call() -> None:
    """When the root's shutdown runs out, a woken child's running handler is cancelled."""
    spec = sv.SupervisorSpec(
        id="root",
        shutdown=1.0,
        children=[sv.ChildSpec(id="c", factory=Echo, config=CONFIG, shutdown=50)],
    )
    outcome: list[BaseException] = []

    async def caller(ref: Any) -> None:
        try:
            await ref.call(("crash", 30), timeout=60)
        except Exception as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        async with sv.start(spec) as sup:
            ref = sup.ref("c")
            assert ref.hibernating
            tg.start_soon(caller, ref)
            await settle()
            start = anyio.current_time()
            assert not ref.hibernating
    assert anyio.current_time() - start == 1.0
    assert [type(exc).__name__ for exc in outcome] == ["ActorStopped"]
    assert ref.state is ActorState.STOPPED
