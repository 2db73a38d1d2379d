"""Restart strategies, restart types, ordering and escalation (both backends)."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import pytest

import supervisor as sv
from actors import ActorRestarting, ConfigError
from tests.actors.scripted import settle
from tests.supervisor.helpers import Log, Worker, worker

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

NO_BACKOFF = sv.Backoff.none()


def tree(log: Log, strategy: str, **kwargs: Any) -> sv.SupervisorSpec:
    return sv.SupervisorSpec(
        id="root",
        strategy=strategy,
        backoff=NO_BACKOFF,
        max_restarts=10,
        children=[worker(name, log) for name in ("a", "b", "c", "d")],
        **kwargs,
    )


async def crash(sup: sv.Supervisor, child: str) -> None:
    with pytest.raises(RuntimeError):
        await sup.ref(child).call("crash")
    await settle()


async def test_children_start_in_order_and_stop_in_reverse() -> None:
    """Children start in spec order, each ready first, and stop in reverse order."""
    log = Log()
    async with sv.start(tree(log, "one_for_one")):
        assert log.starts() == ["a", "b", "c", "d"]
    assert log.stops() == ["d", "c", "b", "a"]


@pytest.mark.parametrize(
    ("strategy", "crashed", "stopped", "restarted"),
    [
        ("one_for_one", "b", [], ["b"]),
        ("one_for_all", "b", ["d", "c", "a"], ["a", "b", "c", "d"]),
        ("rest_for_one", "b", ["d", "c"], ["b", "c", "d"]),
        ("rest_for_one", "d", [], ["d"]),
        ("one_for_all", "a", ["d", "c", "b"], ["a", "b", "c", "d"]),
    ],
)
async def test_strategy_restarts_the_right_children_in_order(
    strategy: str, crashed: str, stopped: list[str], restarted: list[str]
) -> None:
    """Each strategy stops the right siblings (reverse order) and restarts in order."""
    log = Log()
    async with sv.start(tree(log, strategy)) as sup:
        log.clear()
        await crash(sup, crashed)
        assert log.stops() == [crashed, *stopped]
        assert log.starts() == restarted
        for name in ("a", "b", "c", "d"):
            assert await sup.ref(name).call("ping") == (name, "ping")


async def test_restart_counts_are_reported() -> None:
    """which_children reports each child's restarts and state."""
    log = Log()
    async with sv.start(tree(log, "one_for_one")) as sup:
        await crash(sup, "c")
        await crash(sup, "c")
        info = {child.id: child for child in sup.which_children()}
        assert info["c"].restarts == 2
        assert info["a"].restarts == 0
        assert all(child.state is sv.ChildState.RUNNING for child in info.values())
        counts = sup.count_children()
        assert counts == sv.ChildCounts(specs=4, active=4, supervisors=0, workers=4)


async def test_transient_child_restarts_only_after_a_crash() -> None:
    """A transient child is restarted after a crash but not after a normal exit."""
    log = Log()
    spec = sv.SupervisorSpec(
        id="root", backoff=NO_BACKOFF, children=[worker("t", log, restart="transient")]
    )
    async with sv.start(spec) as sup:
        await crash(sup, "t")
        assert log.starts() == ["t", "t"]
        assert await sup.ref("t").call("exit") == "bye"
        await settle()
        assert log.starts() == ["t", "t"]
        assert sup.which_children()[0].state is sv.ChildState.STOPPED
        assert not sup.ref("t").alive


async def test_permanent_child_restarts_after_a_normal_exit() -> None:
    """A permanent child is restarted even after it stops normally."""
    log = Log()
    spec = sv.SupervisorSpec(id="root", backoff=NO_BACKOFF, children=[worker("p", log)])
    async with sv.start(spec) as sup:
        assert await sup.ref("p").call("exit") == "bye"
        await settle()
        assert log.starts() == ["p", "p"]
        assert await sup.ref("p").call(1) == ("p", 1)


async def test_temporary_child_is_never_restarted() -> None:
    """A temporary child that crashes is gone; its ref says it is down."""
    log = Log()
    spec = sv.SupervisorSpec(
        id="root", backoff=NO_BACKOFF, children=[worker("tmp", log, restart="temporary")]
    )
    async with sv.start(spec) as sup:
        await crash(sup, "tmp")
        assert log.starts() == ["tmp"]
        assert sup.ref("tmp").state.value == "down"


async def test_temporary_sibling_is_not_restarted_under_one_for_all() -> None:
    """A temporary child taken down by a sibling's crash under one_for_all stays down."""
    log = Log()
    spec = sv.SupervisorSpec(
        id="root",
        strategy="one_for_all",
        backoff=NO_BACKOFF,
        children=[worker("tmp", log, restart="temporary"), worker("p", log)],
    )
    async with sv.start(spec) as sup:
        log.clear()
        await crash(sup, "p")
        assert log.stops() == ["p", "tmp"]
        assert log.starts() == ["p"]
        assert not sup.ref("tmp").alive


async def test_intensity_exceeded_stops_children_and_fails() -> None:
    """One restart more than max_restarts in period stops the tree and raises."""
    log = Log()
    spec = sv.SupervisorSpec(
        id="root",
        backoff=NO_BACKOFF,
        max_restarts=2,
        period=10,
        children=[worker("a", log), worker("b", log)],
    )
    with pytest.raises(sv.IntensityExceeded) as info:
        async with sv.start(spec) as sup:
            for _ in range(3):
                await crash(sup, "b")
            await anyio.sleep(1)
    assert info.value.supervisor == "root"
    assert isinstance(info.value.__cause__, RuntimeError)
    assert log.starts() == ["a", "b", "b", "b"]
    assert log.stops() == ["b", "b", "b", "a"]
    assert not sup.ref("a").alive


async def test_restarts_outside_the_period_do_not_accumulate() -> None:
    """Failures spaced wider than the period never exceed the intensity."""
    log = Log()
    spec = sv.SupervisorSpec(
        id="root", backoff=NO_BACKOFF, max_restarts=1, period=5, children=[worker("a", log)]
    )
    async with sv.start(spec) as sup:
        for _ in range(4):
            await crash(sup, "a")
            await anyio.sleep(6)
        assert sup.which_children()[0].restarts == 4


async def test_escalation_multiplies_up_a_three_level_tree() -> None:
    """Leaf intensity 1, middle 2, root 1: the worker starts exactly 12 times, then the root
    gives up."""
    log = Log()
    leaf = sv.SupervisorSpec(
        id="leaf", backoff=NO_BACKOFF, max_restarts=1, children=[worker("w", log)]
    )
    middle = sv.SupervisorSpec(id="middle", backoff=NO_BACKOFF, max_restarts=2, children=[leaf])
    root = sv.SupervisorSpec(id="root", backoff=NO_BACKOFF, max_restarts=1, children=[middle])
    with pytest.raises(sv.IntensityExceeded) as info:
        async with sv.start(root) as sup:
            ref = sup.ref("middle/leaf/w")
            for _ in range(100):
                with contextlib.suppress(RuntimeError, ActorRestarting):
                    await ref.call("crash", timeout=1)
                await settle()
    assert info.value.supervisor == "root"
    assert log.starts().count("w") == 12


async def test_parent_strategy_decides_after_escalation() -> None:
    """When a nested supervisor gives up, its parent restarts it (and siblings per strategy)."""
    log = Log()
    leaf = sv.SupervisorSpec(
        id="leaf", backoff=NO_BACKOFF, max_restarts=1, children=[worker("w", log)]
    )
    root = sv.SupervisorSpec(
        id="root",
        strategy="one_for_all",
        backoff=NO_BACKOFF,
        max_restarts=5,
        children=[worker("x", log), leaf],
    )
    async with sv.start(root) as sup:
        log.clear()
        await crash(sup, "leaf/w")
        await crash(sup, "leaf/w")  # leaf gives up: root restarts x and leaf
        assert log.starts() == ["w", "x", "w"]
        info = {child.id: child for child in sup.which_children()}
        assert info["leaf"].restarts == 1
        assert await sup.ref("leaf/w").call(1) == ("w", 1)


async def test_timeouts_and_cancellations_never_count_as_crashes() -> None:
    """Callers timing out or cancelled do not use up restart intensity."""
    log = Log()
    spec = sv.SupervisorSpec(
        id="root", backoff=NO_BACKOFF, max_restarts=1, children=[worker("a", log)]
    )
    async with sv.start(spec) as sup:
        ref = sup.ref("a")
        for _ in range(20):
            with pytest.raises(TimeoutError):
                await ref.call(("sleep", 10), timeout=0.5)
            with anyio.move_on_after(0.2):
                await ref.call(("sleep", 10))
        await anyio.sleep(30)
        assert sup.which_children()[0].restarts == 0
        assert log.starts() == ["a"]


async def test_hung_child_is_cancelled_after_its_shutdown_timeout() -> None:
    """A child that ignores its shutdown timeout is cancelled hard; shutdown completes."""
    log = Log()

    class Stubborn(Worker):
        async def on_stop(self, reason: BaseException | None) -> None:
            self.log.entries.append(f"stop:{self.name}")

    spec = sv.SupervisorSpec(
        id="root",
        children=[
            worker("a", log),
            sv.ChildSpec(id="hung", factory=lambda: Stubborn("hung", log), shutdown=3),
        ],
    )
    async with anyio.create_task_group() as tg, sv.start(spec) as sup:
        ref = sup.ref("hung")

        async def busy() -> None:
            with pytest.raises(Exception):
                await ref.call(("sleep", 1000), timeout=2000)

        tg.start_soon(busy)
        await settle()
        start = anyio.current_time()
    assert anyio.current_time() - start == pytest.approx(3, abs=1e-9)
    assert log.stops() == ["hung", "a"]


async def test_brutal_kill_cancels_at_once() -> None:
    """shutdown='brutal_kill' cancels a busy child without waiting."""
    log = Log()
    spec = sv.SupervisorSpec(id="root", children=[worker("a", log, shutdown="brutal_kill")])
    async with anyio.create_task_group() as tg, sv.start(spec) as sup:
        ref = sup.ref("a")

        async def busy() -> None:
            with pytest.raises(Exception):
                await ref.call(("sleep", 1000), timeout=2000)

        tg.start_soon(busy)
        await settle()
        start = anyio.current_time()
    assert anyio.current_time() == start


async def test_failing_factory_is_retried_then_escalates() -> None:
    """A factory that raises is a start failure: retried under intensity, then escalated."""
    attempts: list[float] = []

    def broken() -> Worker:
        attempts.append(anyio.current_time())
        raise ConnectionError("no route")

    spec = sv.SupervisorSpec(
        id="root",
        max_restarts=3,
        period=100,
        backoff=sv.Backoff(min=1, max=1, jitter=0),
        children=[sv.ChildSpec(id="bad", factory=broken)],
    )
    start = anyio.current_time()
    with pytest.raises(sv.IntensityExceeded) as info:
        async with sv.start(spec):
            pass
    assert isinstance(info.value.__cause__, ConnectionError)
    assert [t - start for t in attempts] == [0, 1, 2, 3]


async def test_flaky_start_recovers_and_later_children_wait() -> None:
    """A child whose start fails twice is retried; the next child starts only after it."""
    log = Log()
    failures = [RuntimeError("1"), RuntimeError("2")]

    def flaky() -> Worker:
        if failures:
            raise failures.pop(0)
        return Worker("flaky", log)

    spec = sv.SupervisorSpec(
        id="root",
        backoff=sv.Backoff(min=1, max=10, jitter=0),
        children=[worker("a", log), sv.ChildSpec(id="flaky", factory=flaky), worker("z", log)],
    )
    start = anyio.current_time()
    async with sv.start(spec) as sup:
        assert anyio.current_time() - start == pytest.approx(3, abs=1e-9)  # 1 s, then 2 s
        assert log.starts() == ["a", "flaky", "z"]
        assert await sup.ref("z").call(1) == ("z", 1)


async def test_factory_returning_non_actor_is_a_config_error() -> None:
    """A factory that does not return an Actor raises ConfigError naming the child."""
    spec = sv.SupervisorSpec(
        id="root",
        children=[sv.ChildSpec(id="x", factory=lambda: 42)],  # type: ignore[arg-type, return-value]
    )
    with pytest.raises(ConfigError, match=r"x\.factory"):
        async with sv.start(spec):
            pass


async def test_any_significant_child_shuts_the_supervisor_down() -> None:
    """With auto_shutdown=any_significant, a significant child's normal exit ends the tree."""
    log = Log()
    spec = sv.SupervisorSpec(
        id="root",
        auto_shutdown="any_significant",
        children=[worker("a", log), worker("job", log, restart="transient", significant=True)],
    )
    async with sv.start(spec) as sup:
        await sup.ref("job").call("exit")
        await settle()
        assert not sup.ref("a").alive
        assert log.stops() == ["job", "a"]


async def test_all_significant_waits_for_every_significant_child() -> None:
    """With auto_shutdown=all_significant, the tree ends after the last significant exit."""
    log = Log()
    spec = sv.SupervisorSpec(
        id="root",
        auto_shutdown="all_significant",
        children=[
            worker("a", log),
            worker("j1", log, restart="transient", significant=True),
            worker("j2", log, restart="temporary", significant=True),
        ],
    )
    async with sv.start(spec) as sup:
        await sup.ref("j1").call("exit")
        await settle()
        assert sup.ref("a").alive
        await sup.ref("j2").call("exit")
        await settle()
        assert not sup.ref("a").alive
