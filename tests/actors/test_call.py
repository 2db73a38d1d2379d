"""`ref.call`: one deadline, monitored, cancellation-safe, correlation ids (both backends)."""

from __future__ import annotations

import functools
import traceback

import anyio
import pytest
import structlog

import actors
from actors import ActorConfig, ActorDown, CallTimeout, open_actor
from actors.testing import capture_events
from tests.actors.scripted import Call, Context, Echo, Raise, Scripted, Sleep, hang, settle

pytestmark = pytest.mark.anyio


async def test_call_returns_the_handlers_reply() -> None:
    """A call returns what the handler returned."""
    async with open_actor(Scripted()) as ref:
        assert await ref.call(Echo(42)) == 42


async def test_calls_are_handled_in_order() -> None:
    """A sequential actor handles messages in the order they were sent."""
    actor = Scripted()
    async with open_actor(actor) as ref:
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(ref.call, Echo(i))
                await settle()
    assert [m.value for m in actor.handled] == list(range(20))


@pytest.mark.virtual_time
async def test_timeout_covers_handling() -> None:
    """A call whose handler takes too long raises CallTimeout exactly at its deadline."""
    async with open_actor(Scripted()) as ref:
        start = anyio.current_time()
        with pytest.raises(CallTimeout) as info:
            await ref.call(Sleep(10), timeout=2)
        assert anyio.current_time() - start == pytest.approx(2, abs=1e-9)
        assert info.value.timeout == 2
        assert info.value.actor == "Scripted"


@pytest.mark.virtual_time
async def test_default_deadline_is_finite() -> None:
    """Without a timeout, a call to a hung actor ends after the default 5 s."""
    async with open_actor(Scripted()) as ref:
        start = anyio.current_time()
        with pytest.raises(CallTimeout):
            await ref.call(hang())
        assert anyio.current_time() - start == pytest.approx(5.0, abs=1e-9)


@pytest.mark.virtual_time
async def test_configured_default_deadline() -> None:
    """The actor's call_timeout replaces the 5 s default."""
    async with open_actor(Scripted(), call_timeout=1.5) as ref:
        start = anyio.current_time()
        with pytest.raises(CallTimeout):
            await ref.call(hang())
        assert anyio.current_time() - start == pytest.approx(1.5, abs=1e-9)


@pytest.mark.virtual_time
async def test_one_deadline_covers_queueing_and_handling() -> None:
    """Time spent queued behind another message counts against the same deadline."""
    async with open_actor(Scripted()) as ref, anyio.create_task_group() as tg:
        tg.start_soon(ref.call, Sleep(3))
        await settle()
        start = anyio.current_time()
        with pytest.raises(CallTimeout):
            # 3 s queued + 2 s handling would be 5 s; the budget is 4 s.
            await ref.call(Sleep(2), timeout=4)
        assert anyio.current_time() - start == pytest.approx(4, abs=1e-9)


@pytest.mark.virtual_time
async def test_one_deadline_covers_waiting_for_room() -> None:
    """Waiting for mailbox room, queueing and handling share one deadline."""
    actor = Scripted()
    async with open_actor(actor, mailbox_size=1) as ref, anyio.create_task_group() as tg:
        tg.start_soon(ref.call, Sleep(1))  # handled now, 1 s
        await settle()
        tg.start_soon(ref.call, Sleep(1))  # queued: the mailbox is full
        await settle()
        start = anyio.current_time()
        with pytest.raises(CallTimeout):
            # 1 s waiting for room + 1 s queued + 1 s handling > 2.5 s budget
            await ref.call(Sleep(1), timeout=2.5)
        assert anyio.current_time() - start == pytest.approx(2.5, abs=1e-9)


@pytest.mark.virtual_time
async def test_expired_request_is_skipped() -> None:
    """A queued request whose caller's deadline passed is never handled."""
    actor = Scripted()
    async with open_actor(actor) as ref, anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(ref.call, Sleep(10), timeout=20))
        await settle()
        with pytest.raises(CallTimeout):
            await ref.call(Echo("late"), timeout=2)
        await anyio.sleep(9)
        assert await ref.call(Echo("next")) == "next"
    assert [type(m).__name__ for m in actor.handled] == ["Sleep", "Echo"]
    assert actor.handled[-1] == Echo("next")


@pytest.mark.virtual_time
async def test_late_reply_is_dropped_and_actor_keeps_running() -> None:
    """A reply after the caller gave up (a run-to-completion actor) is dropped; the actor
    stays up."""
    actor = Scripted()
    actor.cancel_abandoned = False
    async with open_actor(actor) as ref:
        with pytest.raises(CallTimeout):
            await ref.call(Sleep(3, "late"), timeout=1)
        await anyio.sleep(5)
        assert ref.alive
        assert await ref.call(Echo("ok")) == "ok"
    assert actor.cancelled == 0
    assert actor.stopped == [None]


@pytest.mark.virtual_time
async def test_caller_cancellation_is_not_a_crash() -> None:
    """Cancelling a caller mid-handling neither crashes nor stops the actor."""
    actor = Scripted()
    async with open_actor(actor) as ref:
        with anyio.move_on_after(1):
            await ref.call(Sleep(3))
        assert ref.alive
        assert await ref.call(Echo(1)) == 1
    assert actor.stopped == [None]


@pytest.mark.virtual_time
async def test_cancelled_queued_call_frees_its_place() -> None:
    """A caller cancelled while queued frees its mailbox place at once and is never handled."""
    actor = Scripted()
    config = ActorConfig(mailbox_size=1, call_full="fail")
    async with open_actor(actor, config=config) as ref, anyio.create_task_group() as tg:
        tg.start_soon(ref.call, Sleep(1))
        await settle()
        scope = anyio.CancelScope()

        async def queued_caller() -> None:
            with scope:
                await ref.call(Echo("cancelled"))

        tg.start_soon(queued_caller)
        await settle()
        assert ref.queued == 1
        with pytest.raises(actors.MailboxFull):
            await ref.call(Echo("no room"))
        scope.cancel()
        await settle()
        assert ref.queued == 0
        assert await ref.call(Echo("after")) == "after"
    assert Echo("cancelled") not in actor.handled


@pytest.mark.virtual_time
async def test_crash_while_queued_resolves_callers_at_once() -> None:
    """Callers queued behind a crashing message get ActorDown at the crash, not at timeout."""
    ended: list[tuple[str, float]] = []

    async def queued_caller(ref: actors.ActorRef[object, object]) -> None:
        try:
            await ref.call(Echo("queued"), timeout=60)
        except ActorDown as exc:
            ended.append((type(exc.reason).__name__, anyio.current_time()))

    with pytest.raises(ActorDown):
        async with open_actor(Scripted()) as ref, anyio.create_task_group() as tg:
            start = anyio.current_time()

            async def crasher() -> None:
                with pytest.raises(KeyError):
                    await ref.call(Raise(KeyError("bad")))

            tg.start_soon(ref.call, Sleep(1))
            await settle()
            tg.start_soon(crasher)  # queued behind Sleep: crashes the actor at t=1
            await anyio.sleep(0.5)
            tg.start_soon(queued_caller, ref)
            await anyio.sleep(100)
    assert [name for name, _ in ended] == ["KeyError"]
    assert [at for _, at in ended] == pytest.approx([start + 1], abs=1e-9)


@pytest.mark.virtual_time
async def test_crash_while_running_resolves_other_handlers() -> None:
    """A crash in one handler of a concurrent actor resolves the other running calls."""
    seen: list[ActorDown] = []

    async def long_call(ref: actors.ActorRef[object, object]) -> None:
        try:
            await ref.call(Sleep(50), timeout=60)
        except ActorDown as exc:
            seen.append(exc)

    with pytest.raises(ActorDown):
        async with open_actor(Scripted(max_concurrency=4)) as ref:
            async with anyio.create_task_group() as tg:
                tg.start_soon(long_call, ref)
                tg.start_soon(long_call, ref)
                await anyio.sleep(1)
                start = anyio.current_time()
                with pytest.raises(ValueError, match="bug"):
                    await ref.call(Raise(ValueError("bug")))
            assert anyio.current_time() == pytest.approx(start, abs=1e-9)
    assert len(seen) == 2
    assert all(isinstance(exc.reason, ValueError) for exc in seen)


async def test_handler_exception_reaches_caller_with_handler_traceback() -> None:
    """The handler's exception is re-raised in the caller with the handler's frames."""
    with pytest.raises(ActorDown) as down:
        async with open_actor(Scripted()) as ref:
            with pytest.raises(ZeroDivisionError) as info:
                await ref.call(Raise(ZeroDivisionError("x")))
            frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
            assert "handle" in frames
            assert "test_handler_exception_reaches_caller_with_handler_traceback" in frames
    assert isinstance(down.value.__cause__, ZeroDivisionError)


async def test_handler_exception_without_crash() -> None:
    """With crash_on_error False, the caller gets the exception and the actor keeps going."""
    actor = Scripted(crash_on_error=False)
    async with open_actor(actor) as ref:
        with pytest.raises(ValueError, match="nope"):
            await ref.call(Raise(ValueError("nope")))
        assert ref.alive
        assert await ref.call(Echo(2)) == 2
    assert actor.stopped == [None]


async def test_correlation_id_is_generated_when_none_is_bound() -> None:
    """A call made without a bound correlation id gets a fresh one in the handler."""
    async with open_actor(Scripted()) as ref:
        first, _ = await ref.call(Context())
        second, _ = await ref.call(Context())
    assert isinstance(first, str)
    assert first
    assert first != second


async def test_correlation_id_travels_with_the_call() -> None:
    """The caller's bound correlation id is the handler's, and in its structlog events."""

    class Logs(Scripted):
        async def handle(self, msg: object) -> object:
            structlog.get_logger("test").info("inside.handler")
            return await super().handle(msg)

    async with open_actor(Logs()) as ref:
        with (
            capture_events() as events,
            structlog.contextvars.bound_contextvars(correlation_id="req-7"),
        ):
            cid, _ = await ref.call(Context())
        assert cid == "req-7"
        inside = [e for e in events if e["event"] == "inside.handler"]
        assert inside[0]["correlation_id"] == "req-7"
        with actors.correlation_id("req-8"):
            cid, _ = await ref.call(Context())
        assert cid == "req-8"


@pytest.mark.virtual_time
async def test_handler_sees_the_call_deadline() -> None:
    """Inside the handler, current_deadline() is the caller's absolute deadline."""
    async with open_actor(Scripted()) as ref:
        start = anyio.current_time()
        _, deadline = await ref.call(Context(), timeout=3)
    assert deadline == pytest.approx(start + 3, abs=1e-9)


@pytest.mark.virtual_time
async def test_nested_call_inherits_the_remaining_budget() -> None:
    """A call made from a handler never waits past the outer call's deadline."""
    async with (
        open_actor(Scripted(), name="inner") as inner,
        open_actor(Scripted(crash_on_error=False), name="outer") as outer,
    ):
        start = anyio.current_time()
        with pytest.raises(CallTimeout) as info:
            await outer.call(Call(inner, hang(), timeout=30), timeout=2)
        assert anyio.current_time() - start == pytest.approx(2, abs=1e-9)
        assert info.value.actor in {"inner", "outer"}


async def test_call_cycle_is_refused() -> None:
    """A sequential actor calling itself gets CallCycle instead of deadlocking."""

    class SelfCaller(Scripted):
        async def handle(self, msg: object) -> object:
            if msg == "loop":
                return await self.ref.call("inner")
            return msg

    async with open_actor(SelfCaller(crash_on_error=False)) as ref:
        with pytest.raises(actors.CallCycle, match="SelfCaller"):
            await ref.call("loop")


async def test_concurrent_actor_may_call_itself() -> None:
    """An actor with max_concurrency > 1 may call itself."""

    class SelfCaller(Scripted):
        async def handle(self, msg: object) -> object:
            if msg == "outer":
                return await self.ref.call("inner")
            return msg

    async with open_actor(SelfCaller(max_concurrency=2)) as ref:
        assert await ref.call("outer") == "inner"


async def test_config_object_sets_the_default_deadline() -> None:
    """An ActorConfig passed to open_actor applies, with keyword overrides on top."""
    config = ActorConfig(call_timeout=0.5, mailbox_size=3)
    async with open_actor(Scripted(), config=config, mailbox_size=7) as ref:
        cell = ref._cell
        assert cell.config.call_timeout == 0.5
        assert cell.mailbox.capacity == 7
