"""open_actor: start, stop, crash, lifecycle events, and bad input (both backends)."""

from __future__ import annotations

import functools
import math

import anyio
import anyio.lowlevel
import pytest

import actors
from actors import ActorConfig, ActorDown, ActorState, ConfigError, open_actor
from actors.testing import capture_events
from tests.actors.scripted import Echo, Raise, Scripted, Sleep, settle

pytestmark = pytest.mark.anyio


async def test_on_start_runs_before_the_first_message() -> None:
    """on_start has finished when the block starts; on_stop gets None after a normal stop."""
    actor = Scripted()
    async with open_actor(actor) as ref:
        assert actor.started == 1
        assert ref.state is ActorState.RUNNING
        assert ref.alive
    assert actor.stopped == [None]
    # mypy keeps the narrowing to RUNNING past the block's exit, which stopped the actor
    assert ref.state is ActorState.STOPPED  # type: ignore[comparison-overlap]


async def test_failing_on_start_raises_actor_down() -> None:
    """An on_start that raises makes open_actor raise ActorDown caused by it; no on_stop."""

    class Broken(Scripted):
        async def on_start(self) -> None:
            raise ConnectionError("db unreachable")

    actor = Broken()
    body_ran = False
    with pytest.raises(ActorDown) as info:
        async with open_actor(actor):
            body_ran = True
    assert not body_ran
    assert isinstance(info.value.__cause__, ConnectionError)
    assert isinstance(info.value.reason, ConnectionError)
    assert actor.stopped == []


@pytest.mark.virtual_time
async def test_hanging_on_start_times_out() -> None:
    """An on_start that outlives start_timeout is a start failure at exactly that time."""

    class Slow(Scripted):
        async def on_start(self) -> None:
            await anyio.sleep(math.inf)

    start = anyio.current_time()
    with pytest.raises(ActorDown) as info:
        async with open_actor(Slow(), config=ActorConfig(start_timeout=3)):
            pass
    assert anyio.current_time() - start == pytest.approx(3, abs=1e-9)
    assert isinstance(info.value.reason, TimeoutError)


@pytest.mark.virtual_time
async def test_crash_cancels_the_block_and_surfaces_at_exit() -> None:
    """A crash while the block runs cancels the block and raises ActorDown from the crash."""
    actor = Scripted()
    reached_end = False
    with pytest.raises(ActorDown) as info:
        async with open_actor(actor) as ref:
            await ref.cast(Raise(RuntimeError("bug")))
            await anyio.sleep(10)
            reached_end = True
    assert not reached_end
    assert isinstance(info.value.__cause__, RuntimeError)
    assert ref.state is ActorState.DOWN
    assert len(actor.stopped) == 1
    assert isinstance(actor.stopped[0], RuntimeError)


async def test_down_ref_refuses_with_the_reason() -> None:
    """A crashed actor's ref raises ActorDown carrying the crash reason."""
    with pytest.raises(ActorDown):
        async with open_actor(Scripted()) as ref:
            with pytest.raises(KeyError):
                await ref.call(Raise(KeyError("k")))
    with pytest.raises(ActorDown) as info:
        await ref.call(Echo(1))
    assert isinstance(info.value.reason, KeyError)


async def test_body_exception_propagates_and_actor_stops() -> None:
    """An exception in the block propagates unchanged and the actor stops in order."""
    actor = Scripted()
    with pytest.raises(LookupError, match="user"):
        async with open_actor(actor):
            raise LookupError("user")
    assert actor.stopped == [None]


@pytest.mark.virtual_time
async def test_lifecycle_events() -> None:
    """started, crashed and dead_letter events are emitted with stable names."""
    with capture_events() as events:
        async with open_actor(Scripted(), name="svc"):
            pass
        with pytest.raises(ActorDown):
            async with open_actor(Scripted(), name="svc2") as ref:
                await ref.cast(Raise(ValueError("x")))
                await ref.cast(Echo("lost"))
                await anyio.sleep(1)
    names = [(e["event"], e.get("actor")) for e in events]
    assert ("actor.started", "svc") in names
    assert ("actor.stopped", "svc") in names
    assert ("actor.started", "svc2") in names
    assert ("actor.crashed", "svc2") in names
    crashed = next(e for e in events if e["event"] == "actor.crashed")
    assert crashed["error_type"] == "ValueError"
    letters = [e for e in events if e["event"] == "actor.dead_letter"]
    assert letters[0]["reason"] == "down"


async def test_cast_failure_without_crash_is_logged() -> None:
    """A failing cast on a crash_on_error=False actor logs actor.cast_failed and goes on."""
    with capture_events() as events:
        async with open_actor(Scripted(crash_on_error=False)) as ref:
            await ref.cast(Raise(ValueError("cast bug")))
            assert await ref.call(Echo(1)) == 1
    assert any(e["event"] == "actor.cast_failed" for e in events)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mailbox_size": 0}, "mailbox_size"),
        ({"mailbox_size": -3}, "mailbox_size"),
        ({"call_timeout": 0}, "call_timeout"),
        ({"call_timeout": -1.0}, "call_timeout"),
        ({"name": ""}, "name"),
    ],
)
async def test_bad_open_arguments_raise_config_error(kwargs: dict[str, object], field: str) -> None:
    """Invalid open_actor arguments raise ConfigError naming the field, before starting."""
    actor = Scripted()
    with pytest.raises(ConfigError) as info:
        async with open_actor(actor, **kwargs):  # type: ignore[arg-type]
            pass
    assert info.value.field == field
    assert actor.started == 0


async def test_non_actor_is_refused() -> None:
    """Passing something that is not an Actor raises ConfigError naming the argument."""
    with pytest.raises(ConfigError, match="actor"):
        async with open_actor(object()):  # type: ignore[arg-type]
            pass


async def test_bad_max_concurrency_is_refused() -> None:
    """A max_concurrency below 1 raises ConfigError naming the actor's field."""
    with pytest.raises(ConfigError, match=r"Scripted\.max_concurrency"):
        async with open_actor(Scripted(max_concurrency=0)):
            pass


@pytest.mark.parametrize("value", [1, "yes", None])
async def test_non_bool_cancel_abandoned_is_refused(value: object) -> None:
    """A cancel_abandoned that is not a bool raises ConfigError naming the actor's field."""
    actor = Scripted()
    actor.cancel_abandoned = value  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"Scripted\.cancel_abandoned"):
        async with open_actor(actor):
            pass


@pytest.mark.parametrize("timeout", [0, -1, float("nan")])
async def test_non_positive_call_timeout_is_refused(timeout: float) -> None:
    """call and cast with a timeout that is not > 0 raise ConfigError naming timeout."""
    async with open_actor(Scripted()) as ref:
        with pytest.raises(ConfigError, match="timeout"):
            await ref.call(Echo(1), timeout=timeout)
        with pytest.raises(ConfigError, match="timeout"):
            await ref.cast(Echo(1), timeout=timeout)
        assert await ref.call(Echo(1)) == 1


async def test_ref_of_unstarted_actor_is_refused() -> None:
    """An actor's own ref is unavailable before it has been started."""
    with pytest.raises(actors.ActorStopped):
        _ = Scripted().ref


@pytest.mark.virtual_time
async def test_concurrent_actor_handles_messages_at_once() -> None:
    """max_concurrency=N handles N slow messages in parallel."""
    async with open_actor(Scripted(max_concurrency=10)) as ref:
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(ref.call, Sleep(1))
        assert anyio.current_time() - start == pytest.approx(1, abs=1e-9)


@pytest.mark.virtual_time
async def test_concurrency_is_bounded() -> None:
    """No more than max_concurrency messages are handled at once."""
    async with open_actor(Scripted(max_concurrency=3)) as ref:
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for _ in range(9):
                tg.start_soon(ref.call, Sleep(1))
        assert anyio.current_time() - start == pytest.approx(3, abs=1e-9)


@pytest.mark.virtual_time
async def test_abandoned_call_cancels_its_handler_in_concurrent_actor() -> None:
    """In a concurrent actor, a caller's cancellation cancels that call's handler only."""
    actor = Scripted(max_concurrency=4)
    async with open_actor(actor) as ref, anyio.create_task_group() as tg:
        tg.start_soon(ref.call, Sleep(3))
        await settle()
        with anyio.move_on_after(1):
            await ref.call(Sleep(100))
        await settle()
        assert actor.cancelled == 1
        assert ref.alive
    assert actor.cancelled == 1
    assert actor.stopped == [None]


class Probed(Scripted):
    def __init__(self) -> None:
        super().__init__()
        self.healthy = True
        self.probe_delay = 0.0
        self.probes = 0

    async def probe(self) -> None:
        self.probes += 1
        await anyio.sleep(self.probe_delay)
        if not self.healthy:
            raise ConnectionError("backend unreachable")


@pytest.mark.virtual_time
async def test_probe_runs_beside_a_full_mailbox() -> None:
    """A probe answers at once while the handler is busy and the mailbox is full."""
    actor = Probed()
    async with open_actor(actor, mailbox_size=1) as ref, anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(ref.call, Sleep(10), timeout=60))
        await settle()
        tg.start_soon(functools.partial(ref.call, Echo(1), timeout=60))
        await settle()
        assert ref.queued == 1
        start = anyio.current_time()
        await ref.probe()
        assert anyio.current_time() == start
        actor.healthy = False
        with pytest.raises(ConnectionError):
            await ref.probe()
        tg.cancel_scope.cancel()
    assert actor.probes == 2


@pytest.mark.virtual_time
async def test_hanging_probe_times_out() -> None:
    """A probe that hangs raises CallTimeout at its timeout."""
    actor = Probed()
    actor.probe_delay = math.inf
    async with open_actor(actor) as ref:
        start = anyio.current_time()
        with pytest.raises(actors.CallTimeout):
            await ref.probe(timeout=2)
        assert anyio.current_time() - start == pytest.approx(2, abs=1e-9)


async def test_probe_of_a_stopped_actor_is_refused() -> None:
    """Probing a stopped actor raises ActorStopped."""
    async with open_actor(Probed()) as ref:
        await ref.probe()
    with pytest.raises(actors.ActorStopped):
        await ref.probe()


@pytest.mark.virtual_time
async def test_hanging_on_stop_is_bounded_by_the_shutdown_timeout() -> None:
    """on_stop runs shielded but time-limited: a hanging one ends at shutdown_timeout."""

    class SlowStop(Scripted):
        async def on_stop(self, reason: BaseException | None) -> None:
            await anyio.sleep(math.inf)

    with capture_events() as events:
        async with open_actor(SlowStop(), config=ActorConfig(shutdown_timeout=4)):
            start = anyio.current_time()
    assert anyio.current_time() - start == pytest.approx(4, abs=1e-9)
    assert any(e["event"] == "actor.on_stop_timeout" for e in events)


@pytest.mark.virtual_time
async def test_a_stop_has_one_budget_for_messages_and_on_stop() -> None:
    """The current message and on_stop share the stop's budget: a 3 s message and a
    hanging on_stop end 4 s after the stop began (shutdown_timeout=4), not 3 + 4."""

    class SlowStop(Scripted):
        async def on_stop(self, reason: BaseException | None) -> None:
            await anyio.sleep(math.inf)

    async with open_actor(SlowStop(), config=ActorConfig(shutdown_timeout=4)) as ref:
        await ref.cast(Sleep(3.0, 1))
        await anyio.lowlevel.checkpoint()
        start = anyio.current_time()
    assert anyio.current_time() - start == pytest.approx(4, abs=1e-9)
