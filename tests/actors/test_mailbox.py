"""Bounded mailboxes: full policies for call and cast, FIFO room, the stop lane."""

from __future__ import annotations

import functools

import anyio
import pytest

from actors import ActorConfig, ActorStopped, MailboxFull, open_actor
from actors.testing import capture_events
from tests.actors.scripted import Echo, Scripted, Sleep, hang, settle

pytestmark = pytest.mark.anyio


async def _fill(tg: anyio.abc.TaskGroup, ref: object, n: int) -> None:
    """Occupies the actor with one long message and queues `n` more behind it."""
    call = ref.call  # type: ignore[attr-defined]
    tg.start_soon(functools.partial(call, Sleep(100), timeout=1000))
    await settle()
    for _ in range(n):
        tg.start_soon(functools.partial(call, Sleep(0), timeout=1000))
    await settle()


@pytest.mark.virtual_time
async def test_full_mailbox_call_waits_then_raises_mailbox_full() -> None:
    """With the wait policy, a call waits for room until its deadline, then MailboxFull."""
    async with open_actor(Scripted(), mailbox_size=2) as ref, anyio.create_task_group() as tg:
        await _fill(tg, ref, 2)
        assert ref.queued == 2
        start = anyio.current_time()
        with pytest.raises(MailboxFull) as info:
            await ref.call(Echo(1), timeout=3)
        assert anyio.current_time() - start == pytest.approx(3, abs=1e-9)
        assert info.value.capacity == 2
        tg.cancel_scope.cancel()


@pytest.mark.virtual_time
async def test_full_mailbox_call_fails_fast_by_policy() -> None:
    """With the fail policy, a call to a full mailbox raises MailboxFull at once."""
    config = ActorConfig(mailbox_size=1, call_full="fail")
    async with open_actor(Scripted(), config=config) as ref, anyio.create_task_group() as tg:
        await _fill(tg, ref, 1)
        start = anyio.current_time()
        with pytest.raises(MailboxFull):
            await ref.call(Echo(1), timeout=3)
        assert anyio.current_time() == start
        tg.cancel_scope.cancel()


@pytest.mark.virtual_time
async def test_waiting_caller_gets_room_when_a_message_leaves() -> None:
    """A caller waiting for room enqueues as soon as the actor takes a message."""
    async with open_actor(Scripted(), mailbox_size=1) as ref, anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(ref.call, Sleep(2), timeout=100))
        await settle()
        tg.start_soon(functools.partial(ref.call, Sleep(2), timeout=100))
        await settle()
        start = anyio.current_time()
        assert await ref.call(Echo("in"), timeout=10) == "in"
        assert anyio.current_time() - start == pytest.approx(4, abs=1e-9)


@pytest.mark.virtual_time
async def test_room_is_granted_first_in_first_out() -> None:
    """Callers waiting for room get it in the order they started waiting."""
    actor = Scripted()
    async with open_actor(actor, mailbox_size=1) as ref, anyio.create_task_group() as tg:
        await _fill(tg, ref, 1)
        for i in range(5):
            tg.start_soon(functools.partial(ref.call, Echo(i), timeout=1000))
            await settle()
    echoed = [m.value for m in actor.handled if isinstance(m, Echo)]
    assert echoed == [0, 1, 2, 3, 4]


@pytest.mark.virtual_time
async def test_cast_waits_for_room_then_raises() -> None:
    """A cast to a full mailbox waits (default policy) up to its timeout, then MailboxFull."""
    async with open_actor(Scripted(), mailbox_size=1) as ref, anyio.create_task_group() as tg:
        await _fill(tg, ref, 1)
        start = anyio.current_time()
        with pytest.raises(MailboxFull):
            await ref.cast(Echo(1), timeout=2)
        assert anyio.current_time() - start == pytest.approx(2, abs=1e-9)
        tg.cancel_scope.cancel()


@pytest.mark.virtual_time
async def test_cast_fails_fast_by_policy() -> None:
    """With cast_full=fail, a cast to a full mailbox raises MailboxFull at once."""
    config = ActorConfig(mailbox_size=1, cast_full="fail")
    async with open_actor(Scripted(), config=config) as ref, anyio.create_task_group() as tg:
        await _fill(tg, ref, 1)
        with pytest.raises(MailboxFull):
            await ref.cast(Echo(1))
        tg.cancel_scope.cancel()


@pytest.mark.virtual_time
async def test_cast_dropped_by_policy_is_a_dead_letter() -> None:
    """With cast_full=drop, a cast to a full mailbox is dropped with a dead-letter event."""
    config = ActorConfig(mailbox_size=1, cast_full="drop")
    actor = Scripted()
    async with open_actor(actor, config=config) as ref, anyio.create_task_group() as tg:
        await _fill(tg, ref, 1)
        with capture_events() as events:
            await ref.cast(Echo("dropped"))
        tg.cancel_scope.cancel()
    letters = [e for e in events if e["event"] == "actor.dead_letter"]
    assert letters[0]["reason"] == "mailbox_full"
    assert letters[0]["message_type"] == "Echo"
    assert Echo("dropped") not in actor.handled


async def test_cast_is_handled() -> None:
    """A cast is handled after the messages queued before it."""
    actor = Scripted()
    async with open_actor(actor) as ref:
        await ref.cast(Echo("fire"))
        assert await ref.call(Echo("sync")) == "sync"
    assert actor.handled == [Echo("fire"), Echo("sync")]


@pytest.mark.virtual_time
async def test_stop_is_not_blocked_by_a_full_mailbox() -> None:
    """An orderly stop goes through while the mailbox is full; queued calls get ActorStopped."""
    results: list[object] = []

    async def caller(ref: object, msg: object) -> None:
        try:
            results.append(await ref.call(msg, timeout=1000))  # type: ignore[attr-defined]
        except ActorStopped as exc:
            results.append(exc)

    actor = Scripted()
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        async with open_actor(actor, mailbox_size=2) as ref:
            tg.start_soon(caller, ref, Sleep(3, "first"))
            await settle()
            tg.start_soon(caller, ref, Echo("q1"))
            tg.start_soon(caller, ref, Echo("q2"))
            await settle()
            assert ref.queued == 2
    assert anyio.current_time() - start == pytest.approx(3, abs=1e-9)
    assert results[0] == "first" or "first" in results
    stopped = [r for r in results if isinstance(r, ActorStopped)]
    assert len(stopped) == 2
    assert ref.state.value == "stopped"
    assert actor.stopped == [None]


@pytest.mark.virtual_time
async def test_stop_cancels_a_hung_handler_after_shutdown_timeout() -> None:
    """A handler that outlives the shutdown timeout is cancelled hard at exactly that time."""
    actor = Scripted()
    config = ActorConfig(shutdown_timeout=2)
    errors: list[BaseException] = []

    async def caller(ref: object) -> None:
        try:
            await ref.call(hang(), timeout=1000)  # type: ignore[attr-defined]
        except ActorStopped as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        async with open_actor(actor, config=config) as ref:
            tg.start_soon(caller, ref)
            await settle()
            start = anyio.current_time()
        assert anyio.current_time() - start == pytest.approx(2, abs=1e-9)
    assert len(errors) == 1
    assert actor.cancelled == 1
    assert actor.stopped == [None]


async def test_stopped_ref_refuses_messages() -> None:
    """Calling or casting to a stopped actor raises ActorStopped naming it, without waiting."""
    async with open_actor(Scripted(), name="db") as ref:
        pass
    assert not ref.alive
    with pytest.raises(ActorStopped, match="'db'"):
        await ref.call(Echo(1))
    with pytest.raises(ActorStopped, match="'db'"):
        await ref.cast(Echo(1))


async def test_actor_can_stop_itself() -> None:
    """An actor's own stop() ends it normally after the current message."""
    from tests.actors.scripted import StopSelf

    actor = Scripted()
    async with open_actor(actor) as ref:
        assert await ref.call(StopSelf()) == "stopping"
        await settle()
        assert ref.state.value == "stopped"
        with pytest.raises(ActorStopped):
            await ref.call(Echo(1))
    assert actor.stopped == [None]


@pytest.mark.virtual_time
async def test_many_abandoned_calls_do_not_leak_places() -> None:
    """Thousands of timed-out queued calls leave the mailbox empty and usable."""
    async with open_actor(Scripted(), mailbox_size=10) as ref:
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(ref.call, Sleep(0.2), timeout=5))
            await settle()
            for _ in range(300):
                with anyio.move_on_after(0):
                    await ref.call(Echo(0), timeout=5)
        assert ref.queued == 0
        assert await ref.call(Echo("ok")) == "ok"
