"""A handler whose caller gives up: cancelled (default) or run to completion (opt-out),
whatever the actor's concurrency (both backends, virtual time)."""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest

import supervisor as sv
from actors import Actor, CallTimeout, open_actor
from actors.testing import capture_events
from tests.actors.scripted import Call, Scripted, hang, settle

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

CONCURRENCY = pytest.mark.parametrize("concurrency", [1, 3], ids=["sequential", "concurrent"])


class Recorder(Actor[Any, Any]):
    """Records when each handler starts, ends, is cancelled and cleans up.

    Messages: ("sleep", s) sleeps s seconds; ("echo", v) replies v; ("cleanup", s, c)
    sleeps s, with a shielded cleanup of c seconds in `finally`; ("swallow", s) sleeps
    s and returns normally even when cancelled; ("raise_on_cancel", s) raises
    RuntimeError when cancelled.
    """

    def __init__(self, *, concurrency: int = 1, cancel_abandoned: bool = True) -> None:
        self.max_concurrency = concurrency
        self.cancel_abandoned = cancel_abandoned
        self.log: list[tuple[str, Any, float]] = []

    def _note(self, what: str, msg: Any) -> None:
        self.log.append((what, msg, anyio.current_time()))

    def times(self, what: str) -> list[float]:
        return [at for kind, _, at in self.log if kind == what]

    async def handle(self, msg: Any) -> Any:
        self._note("start", msg)
        kind = msg[0]
        try:
            if kind == "echo":
                return msg[1]
            if kind == "swallow":
                try:
                    await anyio.sleep(msg[1])
                except anyio.get_cancelled_exc_class():
                    self._note("cancelled", msg)
                return "swallowed"
            await anyio.sleep(msg[1])
        except anyio.get_cancelled_exc_class():
            self._note("cancelled", msg)
            if kind == "raise_on_cancel":
                raise RuntimeError("cancelled mid-request") from None
            raise
        finally:
            if kind == "cleanup":
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(msg[2])
                self._note("cleaned", msg)
        self._note("end", msg)
        return msg


async def _call_in_background(tg: anyio.abc.TaskGroup, ref: Any, msg: Any, timeout: float) -> None:
    async def call() -> None:
        with pytest.raises(CallTimeout):
            await ref.call(msg, timeout=timeout)

    tg.start_soon(call)


@CONCURRENCY
async def test_hung_handler_is_cancelled_at_the_callers_deadline(concurrency: int) -> None:
    """A hung handler is cancelled exactly when its caller's call times out."""
    actor = Recorder(concurrency=concurrency)
    async with open_actor(actor) as ref:
        start = anyio.current_time()
        with pytest.raises(CallTimeout):
            await ref.call(("sleep", math.inf), timeout=1)
        await settle()
        assert actor.times("cancelled") == [pytest.approx(start + 1, abs=1e-9)]


@CONCURRENCY
async def test_next_call_is_served_at_once_after_an_abandoned_one(concurrency: int) -> None:
    """With every worker hung on abandoned calls, the next call is answered at once."""
    actor = Recorder(concurrency=concurrency)
    async with open_actor(actor) as ref:
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                await _call_in_background(tg, ref, ("sleep", math.inf), timeout=1)
            await settle()
            queued = anyio.current_time()
            assert await ref.call(("echo", "next"), timeout=30) == "next"
        assert anyio.current_time() - queued == pytest.approx(1, abs=1e-9)
        # the hung handlers went at their callers' deadline, and later calls still work
        assert await ref.call(("sleep", 2), timeout=30) == ("sleep", 2)
    assert len(actor.times("cancelled")) == concurrency


@CONCURRENCY
async def test_callers_cancellation_cancels_the_handler(concurrency: int) -> None:
    """A caller cancelled mid-call cancels that call's handler at the same instant."""
    actor = Recorder(concurrency=concurrency)
    async with open_actor(actor) as ref:
        start = anyio.current_time()
        with anyio.move_on_after(2):
            await ref.call(("sleep", 50), timeout=60)
        await settle()
        assert actor.times("cancelled") == [pytest.approx(start + 2, abs=1e-9)]
        assert actor.times("end") == []


@CONCURRENCY
async def test_casts_are_never_cancelled(concurrency: int) -> None:
    """A cast has no caller to give up: it runs to its end."""
    actor = Recorder(concurrency=concurrency)
    async with open_actor(actor) as ref:
        start = anyio.current_time()
        await ref.cast(("sleep", 7))
        await anyio.sleep(10)
    assert actor.times("end") == [pytest.approx(start + 7, abs=1e-9)]
    assert actor.times("cancelled") == []


@CONCURRENCY
async def test_opt_out_runs_to_completion_and_drops_the_reply(concurrency: int) -> None:
    """With cancel_abandoned False the handler finishes after its caller left; the reply
    is dropped and the worker is busy until then, as in a gen_server."""
    actor = Recorder(concurrency=concurrency, cancel_abandoned=False)
    async with open_actor(actor) as ref:
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                await _call_in_background(tg, ref, ("sleep", 3), timeout=1)
        assert anyio.current_time() - start == pytest.approx(1, abs=1e-9)
        assert await ref.call(("echo", "next"), timeout=30) == "next"
        assert anyio.current_time() - start == pytest.approx(3, abs=1e-9)
    assert actor.times("end") == [pytest.approx(start + 3, abs=1e-9)] * concurrency
    assert actor.times("cancelled") == []


@CONCURRENCY
async def test_handler_cleanup_runs_before_the_next_message(concurrency: int) -> None:
    """A cancelled handler's finally block (shielded here) runs in full; a sequential
    actor takes its next message only after it."""
    actor = Recorder(concurrency=concurrency)
    async with open_actor(actor) as ref:
        start = anyio.current_time()
        with pytest.raises(CallTimeout):
            await ref.call(("cleanup", math.inf, 0.5), timeout=1)
        assert await ref.call(("echo", "next")) == "next"
        done = anyio.current_time() - start
    assert actor.times("cleaned") == [pytest.approx(start + 1.5, abs=1e-9)]
    assert done == pytest.approx(1.5 if concurrency == 1 else 1, abs=1e-9)


@CONCURRENCY
async def test_shielded_section_completes_before_the_cancellation_lands(concurrency: int) -> None:
    """A caller giving up during a shielded section cancels the handler at its end."""

    class Shielded(Recorder):
        async def handle(self, msg: Any) -> Any:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(2)
            self._note("shield_done", msg)
            return await super().handle(msg)

    actor = Shielded(concurrency=concurrency)
    async with open_actor(actor) as ref:
        start = anyio.current_time()
        with pytest.raises(CallTimeout):
            await ref.call(("sleep", 10), timeout=1)
        await anyio.sleep(5)
    assert actor.times("shield_done") == [pytest.approx(start + 2, abs=1e-9)]
    assert actor.times("cancelled") == [pytest.approx(start + 2, abs=1e-9)]


@CONCURRENCY
async def test_handler_that_swallows_the_cancellation_leaves_later_messages_alone(
    concurrency: int,
) -> None:
    """A handler that catches its cancellation and returns has its reply dropped, and
    the next message is not cancelled by it."""
    actor = Recorder(concurrency=concurrency)
    async with open_actor(actor) as ref:
        with pytest.raises(CallTimeout):
            await ref.call(("swallow", 10), timeout=1)
        start = anyio.current_time()
        assert await ref.call(("sleep", 2), timeout=30) == ("sleep", 2)
        assert anyio.current_time() - start == pytest.approx(2, abs=1e-9)
    assert len(actor.times("cancelled")) == 1


@CONCURRENCY
async def test_exception_raised_while_cancelled_is_not_a_crash(concurrency: int) -> None:
    """An exception a cancelled handler raises goes nowhere and does not crash the actor."""
    actor = Recorder(concurrency=concurrency)
    with capture_events() as events:
        async with open_actor(actor) as ref:
            with pytest.raises(CallTimeout):
                await ref.call(("raise_on_cancel", 10), timeout=1)
            assert await ref.call(("echo", "still up")) == "still up"
    assert "actor.crashed" not in [event["event"] for event in events]
    [letter] = [event for event in events if event["event"] == "actor.dead_letter"]
    assert letter["reason"] == "abandoned"
    assert letter["error_type"] == "RuntimeError"


@CONCURRENCY
async def test_abandonment_is_no_crash_and_uses_no_restart_intensity(concurrency: int) -> None:
    """Abandoned calls under a supervisor: no crash event, no restart, intensity unused."""

    def factory() -> Recorder:
        return Recorder(concurrency=concurrency)

    spec = sv.SupervisorSpec(
        id="root",
        max_restarts=1,
        period=60,
        children=[sv.ChildSpec(id="worker", factory=factory)],
    )
    with capture_events() as events:
        async with sv.start(spec) as sup:
            ref = sup.ref("worker")
            for _ in range(5):
                with pytest.raises(CallTimeout):
                    await ref.call(("sleep", math.inf), timeout=1)
                with anyio.move_on_after(1):
                    await ref.call(("sleep", math.inf), timeout=10)
            assert await ref.call(("echo", "up")) == "up"
            counts = sup.count_children()
    names = [event["event"] for event in events]
    assert "actor.crashed" not in names
    assert "supervisor.child_crashed" not in names
    assert names.count("supervisor.child_started") == 1  # never restarted
    assert counts.active == 1


async def test_nested_call_is_cancelled_with_its_outer_call() -> None:
    """A call made by a handler inherits the outer deadline; when the outer caller gives
    up, the outer handler and the inner one are both cancelled at that instant."""
    inner_actor = Scripted()
    async with (
        open_actor(inner_actor, name="inner") as inner,
        open_actor(Scripted(crash_on_error=False), name="outer") as outer,
    ):
        start = anyio.current_time()
        with pytest.raises(CallTimeout):
            await outer.call(Call(inner, hang(), timeout=30), timeout=2)
        assert anyio.current_time() - start == pytest.approx(2, abs=1e-9)
        await settle()
        assert inner_actor.cancelled == 1
        assert await inner.call("free", timeout=1) == "free"  # inner is free again


@CONCURRENCY
async def test_stop_after_an_abandoned_call_is_prompt(concurrency: int) -> None:
    """Leaving the block right after a call timed out does not wait for its handler."""
    actor = Recorder(concurrency=concurrency)
    async with open_actor(actor) as ref:
        with pytest.raises(CallTimeout):
            await ref.call(("sleep", 4), timeout=1)
        leaving = anyio.current_time()
    assert anyio.current_time() == pytest.approx(leaving, abs=1e-9)
