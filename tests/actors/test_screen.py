"""`Actor.screen`: a caller-side check that refuses a request before it is queued
(both backends)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import supervisor as sv
from actors import ActorConfig, InvalidRequest, MailboxFull, open_actor
from tests.actors.scripted import Echo, Raise, Scripted, Sleep, settle

pytestmark = pytest.mark.anyio


class Screened(Scripted):
    """Refuses negative numbers in its caller's task; records where the screen ran."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.screened_in: list[object] = []

    def screen(self, msg: Any) -> None:
        self.screened_in.append(anyio.get_current_task().id)
        if isinstance(msg, Echo) and isinstance(msg.value, int) and msg.value < 0:
            raise InvalidRequest(type(self).__name__, "value", "must be >= 0")


async def test_screen_refuses_a_call_in_the_callers_task() -> None:
    """A refused call raises InvalidRequest in the caller; the handler never sees it."""
    actor = Screened()
    async with open_actor(actor) as ref:
        with pytest.raises(InvalidRequest, match="must be >= 0"):
            await ref.call(Echo(-1))
        assert await ref.call(Echo(1)) == 1
    assert actor.handled == [Echo(1)]
    assert actor.screened_in == [anyio.get_current_task().id] * 2


async def test_screen_refuses_a_cast() -> None:
    """A refused cast raises InvalidRequest at once and is never handled."""
    actor = Screened()
    async with open_actor(actor) as ref:
        with pytest.raises(InvalidRequest):
            await ref.cast(Echo(-5))
        await ref.cast(Echo(5))
        await settle()
    assert actor.handled == [Echo(5)]


@pytest.mark.virtual_time
async def test_refused_request_never_takes_a_mailbox_place() -> None:
    """Against a full mailbox a refused request is refused, not MailboxFull, and the
    mailbox holds exactly what it held."""
    actor = Screened()
    config = ActorConfig(mailbox_size=1, call_full="fail")
    async with open_actor(actor, config=config) as ref, anyio.create_task_group() as tg:
        tg.start_soon(ref.call, Sleep(1))
        await settle()
        tg.start_soon(ref.call, Echo("queued"))
        await settle()
        assert ref.queued == 1
        with pytest.raises(InvalidRequest):
            await ref.call(Echo(-1))
        with pytest.raises(MailboxFull):
            await ref.call(Echo(2))
        assert ref.queued == 1
    assert Echo(-1) not in actor.handled


async def test_screen_errors_other_than_refusals_reach_the_caller_only() -> None:
    """A bug in the screen goes to that caller as it is; the actor stays up."""

    class Buggy(Scripted):
        def screen(self, msg: Any) -> None:
            if msg == "bad":
                raise KeyError("screen bug")

    async with open_actor(Buggy()) as ref:
        with pytest.raises(KeyError, match="screen bug"):
            await ref.call("bad")
        assert ref.alive
        assert await ref.call("fine") == "fine"


@pytest.mark.virtual_time
async def test_screen_works_while_the_actor_restarts() -> None:
    """During restart backoff, a request the screen refuses is refused at once instead
    of waiting for the new incarnation; an accepted one waits and is answered."""
    spec = sv.SupervisorSpec(
        id="root",
        backoff=sv.Backoff(min=2, max=2, jitter=0),
        max_restarts=10,
        period=60,
        children=[sv.ChildSpec(id="screened", factory=Screened)],
    )
    async with sv.start(spec) as sup:
        ref = sup.ref("screened")
        with pytest.raises(RuntimeError):
            await ref.call(Raise(RuntimeError("crash")))
        assert ref.state.value == "restarting"
        start = anyio.current_time()
        with pytest.raises(InvalidRequest):
            await ref.call(Echo(-1), timeout=5)
        assert anyio.current_time() == start
        assert await ref.call(Echo(3), timeout=5) == 3
        assert anyio.current_time() - start == pytest.approx(2, abs=1e-9)


async def test_only_an_overridden_screen_is_installed() -> None:
    """An actor that does not override screen gives its address none (no cost per call)."""
    async with open_actor(Scripted()) as plain, open_actor(Screened()) as screened:
        assert plain._cell.screen is None
        assert screened._cell.screen is not None
