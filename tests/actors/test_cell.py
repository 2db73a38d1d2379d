"""The address's state machine (`actors.lowlevel.Cell`) and refs' equality (both backends)."""

from __future__ import annotations

import pytest

import supervisor as sv
from actors import ActorConfig, ActorDown, ActorState, ActorStopped, open_actor
from actors.lowlevel import Cell, current_kernel
from tests.actors.scripted import Scripted

pytestmark = pytest.mark.anyio


def _cell() -> Cell:
    return Cell("worker", ActorConfig(), current_kernel())


async def test_a_new_address_is_starting_and_accepts_messages() -> None:
    """A new cell is STARTING, not closed, with no reason and no refusal."""
    cell = _cell()
    assert cell.state is ActorState.STARTING
    assert not cell.closed
    assert cell.reason is None
    assert cell.refusal() is None


async def test_mark_running_moves_starting_and_restarting_to_running() -> None:
    """mark_running makes a STARTING or a RESTARTING address RUNNING."""
    cell = _cell()
    assert cell.mark_running()
    assert cell.state is ActorState.RUNNING
    cell.mark_restarting()
    assert cell.mark_running()
    assert cell.state is ActorState.RUNNING


async def test_mark_running_refuses_a_running_address() -> None:
    """A second incarnation marked running on a RUNNING address is a RuntimeError."""
    cell = _cell()
    cell.mark_running()
    with pytest.raises(RuntimeError, match="cannot mark running while running"):
        cell.mark_running()
    assert cell.state is ActorState.RUNNING


async def test_a_stop_asked_for_while_starting_stands() -> None:
    """mark_running leaves a STOPPING address stopping and returns False."""
    cell = _cell()
    cell.mark_stopping()
    assert not cell.mark_running()
    assert cell.state is ActorState.STOPPING
    assert isinstance(cell.refusal(), ActorStopped)


async def test_mark_running_leaves_a_closed_address_closed() -> None:
    """An incarnation that finishes starting after its address closed does not reopen it."""
    cell = _cell()
    cell.close(None)
    assert not cell.mark_running()
    assert cell.state is ActorState.STOPPED


async def test_mark_stopping_leaves_a_restarting_address_restarting() -> None:
    """An orderly stop of an incarnation being replaced keeps the address RESTARTING."""
    cell = _cell()
    cell.mark_restarting()
    cell.mark_stopping()
    assert cell.state is ActorState.RESTARTING


async def test_mark_restarting_refuses_a_closed_address() -> None:
    """A closed address is never marked restarting (it is reopened instead)."""
    cell = _cell()
    cell.close(ValueError("crash"))
    with pytest.raises(RuntimeError, match="cannot mark restarting while down"):
        cell.mark_restarting()
    assert cell.state is ActorState.DOWN


async def test_reopen_refuses_an_open_address() -> None:
    """reopen is only for a STOPPED or DOWN address."""
    cell = _cell()
    with pytest.raises(RuntimeError, match="cannot reopen while starting"):
        cell.reopen()


async def test_close_with_a_reason_is_down_and_refuses_with_it() -> None:
    """close(exc) makes the address DOWN; new messages get ActorDown carrying exc."""
    cell = _cell()
    crash = ValueError("crash")
    assert cell.close(crash)
    assert cell.state is ActorState.DOWN
    assert cell.reason is crash
    refusal = cell.refusal()
    assert isinstance(refusal, ActorDown)
    assert refusal.reason is crash


async def test_the_first_close_stands() -> None:
    """Closing a closed address returns False and keeps its state and reason."""
    cell = _cell()
    crash = ValueError("crash")
    cell.close(crash)
    assert not cell.close(None)
    assert cell.state is ActorState.DOWN
    assert cell.reason is crash


async def test_reopen_forgets_the_crash() -> None:
    """A reopened address is STARTING again, with no reason, and accepts messages."""
    cell = _cell()
    cell.close(ValueError("crash"))
    cell.reopen()
    assert cell.state is ActorState.STARTING
    assert cell.reason is None
    assert cell.refusal() is None


async def test_refs_to_one_child_are_equal_and_hash_alike() -> None:
    """Two refs a supervisor hands out for one child compare equal and hash alike."""
    spec = sv.SupervisorSpec(
        id="root",
        children=[sv.ChildSpec(id="a", factory=Scripted), sv.ChildSpec(id="b", factory=Scripted)],
    )
    async with sv.start(spec) as sup:
        assert sup.ref("a") == sup.ref("a")
        assert hash(sup.ref("a")) == hash(sup.ref("a"))
        assert sup.ref("a") != sup.ref("b")
        assert len({sup.ref("a"), sup.ref("a"), sup.ref("b")}) == 2


async def test_an_actor_own_ref_equals_the_ref_open_actor_yields() -> None:
    """`actor.ref` and open_actor's ref name one address; a ref never equals a non-ref."""
    actor = Scripted()
    async with open_actor(actor) as ref:
        assert actor.ref == ref
        assert ref != "Scripted"
