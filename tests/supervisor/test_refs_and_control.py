"""Stable refs across restarts, backoff timing, dynamic children, control and events."""

from __future__ import annotations

import random

import anyio
import pytest

import supervisor as sv
from actors import ActorDown, ActorRestarting, ActorStopped, ConfigError
from actors.testing import capture_events
from tests.actors.scripted import settle
from tests.supervisor.helpers import Log, Worker, worker

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


def single(log: Log, backoff: sv.Backoff, **child: object) -> sv.SupervisorSpec:
    return sv.SupervisorSpec(
        id="root", backoff=backoff, max_restarts=100, period=1, children=[worker("a", log, **child)]
    )


async def test_ref_stays_valid_across_restarts() -> None:
    """The same ref reaches every new incarnation."""
    log = Log()
    async with sv.start(single(log, sv.Backoff.none())) as sup:
        ref = sup.ref("a")
        for _ in range(3):
            with pytest.raises(RuntimeError):
                await ref.call("crash")
            assert await ref.call("hi") == ("a", "hi")
        assert log.starts() == ["a"] * 4
        assert sup.ref("a")._cell is ref._cell


async def test_call_waits_through_backoff_for_the_new_incarnation() -> None:
    """During restart backoff a call waits (default) and the new incarnation answers it."""
    log = Log()
    async with sv.start(single(log, sv.Backoff(min=2, max=2, jitter=0))) as sup:
        ref = sup.ref("a")
        with pytest.raises(RuntimeError):
            await ref.call("crash")
        assert ref.state.value == "restarting"
        start = anyio.current_time()
        assert await ref.call("after", timeout=5) == ("a", "after")
        assert anyio.current_time() - start == pytest.approx(2, abs=1e-9)


async def test_call_during_backoff_times_out_within_its_deadline() -> None:
    """A call that cannot be served before its deadline during backoff gets CallTimeout."""
    log = Log()
    async with sv.start(single(log, sv.Backoff(min=5, max=5, jitter=0))) as sup:
        ref = sup.ref("a")
        with pytest.raises(RuntimeError):
            await ref.call("crash")
        start = anyio.current_time()
        with pytest.raises(TimeoutError):
            await ref.call("late", timeout=1)
        assert anyio.current_time() - start == pytest.approx(1, abs=1e-9)


async def test_fail_fast_while_restarting() -> None:
    """With while_restarting=fail, calls during the restart get ActorRestarting at once."""
    log = Log()
    spec = single(log, sv.Backoff(min=2, max=2, jitter=0), while_restarting="fail")
    async with sv.start(spec) as sup:
        ref = sup.ref("a")
        with pytest.raises(RuntimeError):
            await ref.call("crash")
        with pytest.raises(ActorRestarting):
            await ref.call("now")
        await anyio.sleep(3)
        assert await ref.call("later") == ("a", "later")


async def test_queued_messages_are_kept_for_the_next_incarnation_by_option() -> None:
    """With on_crash=keep, messages queued behind a crash are answered by the next
    incarnation."""
    log = Log()
    results: list[tuple[str, int]] = []
    spec = single(log, sv.Backoff(min=1, max=1, jitter=0), on_crash="keep")
    async with sv.start(spec) as sup:
        ref = sup.ref("a")

        async def queued(i: int) -> None:
            results.append(await ref.call(i, timeout=10))

        async with anyio.create_task_group() as tg:
            tg.start_soon(ref.call, ("sleep", 1))
            await settle()

            async def crasher() -> None:
                with pytest.raises(RuntimeError):
                    await ref.call("crash", timeout=10)

            tg.start_soon(crasher)
            await settle()
            for i in range(3):
                tg.start_soon(queued, i)
                await settle()
    assert sorted(results) == [("a", 0), ("a", 1), ("a", 2)]  # (wake-up order varies)


async def test_queued_messages_get_actor_down_at_once_when_the_child_crashes() -> None:
    """By default, calls queued behind a crash get ActorDown at once, with the crash as
    reason (as an unsupervised actor's, and as OTP's monitored calls)."""
    log = Log()
    errors: list[ActorDown] = []
    times: list[float] = []
    spec = single(log, sv.Backoff(min=1, max=1, jitter=0))
    async with sv.start(spec) as sup:
        ref = sup.ref("a")

        async def queued() -> None:
            try:
                await ref.call("x", timeout=10)
            except ActorDown as exc:
                errors.append(exc)
                times.append(anyio.current_time())

        async with anyio.create_task_group() as tg:
            tg.start_soon(ref.call, ("sleep", 1))
            await settle()

            async def crasher() -> None:
                with pytest.raises(RuntimeError):
                    await ref.call("crash", timeout=10)
                times.append(anyio.current_time())

            tg.start_soon(crasher)
            await settle()
            tg.start_soon(queued)
            await settle()
        assert len(errors) == 1
        assert isinstance(errors[0].reason, RuntimeError)
        assert len(times) == 2
        assert times[0] == times[1]  # at the crash, not at a timeout


async def test_call_running_when_a_concurrent_handler_crashes_gets_actor_down() -> None:
    """A call in flight when its actor crashes gets ActorDown at once; the ref lives on."""

    class Concurrent(Worker):
        max_concurrency = 4

    log = Log()
    spec = sv.SupervisorSpec(
        id="root",
        backoff=sv.Backoff.none(),
        children=[sv.ChildSpec(id="c", factory=lambda: Concurrent("c", log))],
    )
    async with sv.start(spec) as sup:
        ref = sup.ref("c")
        seen: list[ActorDown] = []

        async def slow() -> None:
            try:
                await ref.call(("sleep", 100), timeout=200)
            except ActorDown as exc:
                seen.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow)
            await settle()
            with pytest.raises(RuntimeError):
                await ref.call("crash")
        assert len(seen) == 1
        assert isinstance(seen[0].reason, RuntimeError)
        assert await ref.call(1) == ("c", 1)


async def test_backoff_grows_and_is_capped() -> None:
    """Restart delays follow min * multiplier**n up to max (jitter 0), exactly."""
    log = Log()
    backoff = sv.Backoff(min=1, max=4, multiplier=2, jitter=0, reset_after=100)
    async with sv.start(single(log, backoff)) as sup:
        ref = sup.ref("a")
        delays = []
        for _ in range(5):
            with pytest.raises(RuntimeError):
                await ref.call("crash")
            start = anyio.current_time()
            await ref.call("up", timeout=10)
            delays.append(anyio.current_time() - start)
        assert delays == pytest.approx([1, 2, 4, 4, 4], abs=1e-9)


async def test_backoff_resets_after_a_stable_period() -> None:
    """After running reset_after seconds without crashing, the delay starts from min again."""
    log = Log()
    backoff = sv.Backoff(min=1, max=8, multiplier=2, jitter=0, reset_after=10)
    async with sv.start(single(log, backoff)) as sup:
        ref = sup.ref("a")
        for _ in range(3):
            with pytest.raises(RuntimeError):
                await ref.call("crash")
            await ref.call("up", timeout=20)
        await anyio.sleep(10)
        with pytest.raises(RuntimeError):
            await ref.call("crash")
        start = anyio.current_time()
        await ref.call("up", timeout=20)
        assert anyio.current_time() - start == pytest.approx(1, abs=1e-9)


async def test_backoff_jitter_stays_within_bounds() -> None:
    """Jittered delays stay within [base * (1 - j), base * (1 + j)], capped at max."""
    backoff = sv.Backoff(min=1, max=100, multiplier=2, jitter=0.5)
    rng = random.Random(7)
    for attempt in range(6):
        base = min(100, 2**attempt)
        for _ in range(50):
            delay = backoff.delay(attempt, rng)
            assert base * 0.5 - 1e-9 <= delay <= min(100, base * 1.5) + 1e-9


async def test_dynamic_instances_start_and_restart() -> None:
    """start_instance adds children of one template with numbered ids; they restart."""
    log = Log()
    template = sv.ChildSpec(id="w", factory=lambda: Worker("w", log))
    async with sv.start(sv.SupervisorSpec(id="pool", backoff=sv.Backoff.none())) as sup:
        refs = [await sup.start_instance(template) for _ in range(5)]
        assert [child.id for child in sup.which_children()] == [f"w-{i}" for i in range(1, 6)]
        with pytest.raises(RuntimeError):
            await refs[2].call("crash")
        assert await refs[2].call(1) == ("w", 1)
        assert sup.count_children().active == 5
        await sup.terminate_child("w-1")
        assert [child.id for child in sup.which_children()] == [f"w-{i}" for i in range(2, 6)]
        with pytest.raises(ActorStopped):
            await refs[0].call(1)


async def test_terminate_restart_and_delete_a_static_child() -> None:
    """terminate_child keeps a static spec; restart_child brings it back; delete removes it."""
    log = Log()
    spec = sv.SupervisorSpec(id="root", children=[worker("a", log), worker("b", log)])
    async with sv.start(spec) as sup:
        await sup.terminate_child("a")
        assert sup.which_children()[0].state is sv.ChildState.STOPPED
        with pytest.raises(ActorStopped):
            await sup.ref("a").call(1)
        with pytest.raises(ConfigError):
            await sup.delete_child("b")
        await sup.restart_child("a")
        assert await sup.ref("a").call(1) == ("a", 1)
        assert sup.which_children()[0].restarts == 1
        await sup.terminate_child("a")
        await sup.delete_child("a")
        assert [child.id for child in sup.which_children()] == ["b"]


async def test_start_child_refuses_a_duplicate_id() -> None:
    """start_child with an id already in use raises ConfigError."""
    log = Log()
    async with sv.start(sv.SupervisorSpec(id="root", children=[worker("a", log)])) as sup:
        with pytest.raises(ConfigError, match="duplicate"):
            await sup.start_child(worker("a", log))


async def test_start_child_reports_a_failed_start() -> None:
    """A dynamic child whose start fails is not added; the caller gets ActorDown."""

    def broken() -> Worker:
        raise OSError("nope")

    async with sv.start(sv.SupervisorSpec(id="root")) as sup:
        with pytest.raises(ActorDown) as info:
            await sup.start_child(sv.ChildSpec(id="x", factory=broken))
        assert isinstance(info.value.__cause__, OSError)
        assert sup.which_children() == []


async def test_unknown_paths_are_clear_errors() -> None:
    """ref() with an unknown id or a supervisor path raises UnknownChild."""
    log = Log()
    spec = sv.SupervisorSpec(
        id="root", children=[sv.SupervisorSpec(id="sub", children=[worker("a", log)])]
    )
    async with sv.start(spec) as sup:
        assert await sup.ref("sub/a").call(1) == ("a", 1)
        with pytest.raises(sv.UnknownChild, match="nope"):
            sup.ref("nope")
        with pytest.raises(sv.UnknownChild, match="supervisor"):
            sup.ref("sub")
        with pytest.raises(LookupError):
            sup.ref("sub/zzz")


async def test_lifecycle_events_are_emitted() -> None:
    """started, crashed, restarted, intensity_exceeded and shutdown are structlog events."""
    log = Log()
    spec = sv.SupervisorSpec(
        id="root",
        backoff=sv.Backoff(min=0.5, max=0.5, jitter=0),
        max_restarts=1,
        children=[worker("a", log)],
    )
    with capture_events() as events, pytest.raises(sv.IntensityExceeded):
        async with sv.start(spec) as sup:
            for _ in range(2):
                with pytest.raises(RuntimeError):
                    await sup.ref("a").call("crash")
                await anyio.sleep(1)
    names = [event["event"] for event in events if event["event"].startswith("supervisor.")]
    assert names[:2] == ["supervisor.child_started", "supervisor.started"]
    assert "supervisor.child_crashed" in names
    restarted = next(e for e in events if e["event"] == "supervisor.child_restarted")
    assert restarted["restarts"] == 1
    assert restarted["backoff"] == 0.5
    crashed = next(e for e in events if e["event"] == "supervisor.child_crashed")
    assert crashed["error_type"] == "RuntimeError"
    assert names[-2:] == ["supervisor.intensity_exceeded", "supervisor.shutdown"]


async def test_start_tree_embeds_in_a_task_group() -> None:
    """start_tree runs a tree inside the caller's task group until cancelled."""
    log = Log()
    spec = sv.SupervisorSpec(id="root", children=[worker("a", log), worker("b", log)])
    async with anyio.create_task_group() as tg:
        sup = await tg.start(sv.start_tree, spec)
        assert await sup.ref("b").call(2) == ("b", 2)
        tg.cancel_scope.cancel()
    assert log.starts() == ["a", "b"]
    assert not sup.ref("a").alive


@pytest.mark.parametrize("cause", ["escalation", "sibling"])
async def test_dynamic_child_ref_fails_at_once_after_its_supervisor_is_rebuilt(
    cause: str,
) -> None:
    """A rebuilt supervisor starts only its static children (as OTP): the old ref of a
    dynamic child says ActorStopped at once instead of waiting out its timeout."""
    log = Log()
    leaf = sv.SupervisorSpec(
        id="leaf", backoff=sv.Backoff.none(), max_restarts=0, children=[worker("w", log)]
    )
    spec = sv.SupervisorSpec(
        id="root",
        strategy="one_for_all",
        backoff=sv.Backoff.none(),
        children=[worker("x", log), leaf],
    )
    async with sv.start(spec) as sup:
        ref = await sup.supervisor("leaf").start_child(worker("dyn", log))
        assert ref is not None
        with pytest.raises(RuntimeError):
            await sup.ref("leaf/w" if cause == "escalation" else "x").call("crash")
        await settle()
        start = anyio.current_time()
        with pytest.raises(ActorStopped):
            await ref.call(1, timeout=5)
        assert anyio.current_time() == start
        assert [c.id for c in sup.supervisor("leaf").which_children()] == ["w"]
        assert await sup.ref("leaf/w").call(1) == ("w", 1)


async def test_restarts_of_looks_a_child_up_by_path() -> None:
    """restarts_of finds a child's restart count by full or relative path (None if
    unknown)."""
    log = Log()
    spec = sv.SupervisorSpec(
        id="root",
        backoff=sv.Backoff.none(),
        children=[sv.SupervisorSpec(id="sub", children=[worker("a", log)])],
    )
    async with sv.start(spec) as sup:
        with pytest.raises(RuntimeError):
            await sup.ref("sub/a").call("crash")
        await anyio.sleep(1)
        assert sup.restarts_of("root/sub/a") == 1
        assert sup.restarts_of("sub/a") == 1
        assert sup.restarts_of("sub") == 0
        assert sup.restarts_of("sub/zzz") is None
        assert sup.restarts_of("root/nope") is None
