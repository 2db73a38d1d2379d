"""Hibernation through `open_actor`: an idle actor holds no task, and the next message
wakes it with every contract of a running actor intact (both backends, virtual time)."""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from actors import (
    Actor,
    ActorConfig,
    ActorDown,
    CallTimeout,
    ConfigError,
    InvalidRequest,
    open_actor,
)
from actors.testing import capture_events
from tests.actors.scripted import settle

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

AFTER = 1.0  # hibernate_after in these tests
CONFIG = ActorConfig(hibernate_after=AFTER)
REQUEST = contextvars.ContextVar("request", default="unset")


class Counter(Actor[Any, Any]):
    """Counts what it handled; ("sleep", s) sleeps; ("crash", s) sleeps, then raises;
    "bad" is screened."""

    def __init__(self, *, max_concurrency: int = 1) -> None:
        self.max_concurrency = max_concurrency
        self.handled = 0
        self.running = 0
        self.peak = 0
        self.cancelled = 0

    def screen(self, msg: Any) -> None:
        if msg == "bad":
            raise InvalidRequest("counter", "msg", "refused")

    async def handle(self, msg: Any) -> Any:
        self.handled += 1
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            if isinstance(msg, tuple) and msg[0] == "crash":
                await anyio.sleep(msg[1])
                raise RuntimeError("crash")
            if msg == "context":
                return REQUEST.get()
            if isinstance(msg, tuple) and msg[0] == "sleep":
                try:
                    await anyio.sleep(msg[1])
                except anyio.get_cancelled_exc_class():
                    self.cancelled += 1
                    raise
            return self.handled
        finally:
            self.running -= 1


class Started(Counter):
    def __init__(self) -> None:
        super().__init__()
        self.starts = 0
        self.stops: list[BaseException | None] = []

    async def on_start(self) -> None:
        self.starts += 1

    async def on_stop(self, reason: BaseException | None) -> None:
        self.stops.append(reason)


class Held(Counter):
    """Holds a resource for its whole life: never hibernates."""

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        yield


class Probed(Counter):
    def __init__(self) -> None:
        super().__init__()
        self.probes = 0

    async def probe(self) -> None:
        self.probes += 1


async def test_an_actor_without_on_start_starts_hibernated() -> None:
    """An actor that overrides neither on_start nor lifespan holds no task once open."""
    async with open_actor(Counter(), config=CONFIG) as ref:
        assert ref.hibernating


async def test_a_call_wakes_a_hibernated_actor() -> None:
    """A call to a hibernated actor is answered at once and leaves it awake."""
    async with open_actor(Counter(), config=CONFIG) as ref:
        start = anyio.current_time()
        assert await ref.call("x") == 1
        assert anyio.current_time() == start
        assert not ref.hibernating


async def test_a_cast_wakes_a_hibernated_actor() -> None:
    """A cast to a hibernated actor is handled without anyone waiting for it."""
    actor = Counter()
    async with open_actor(actor, config=CONFIG) as ref:
        await ref.cast("x")
        await settle()
        assert actor.handled == 1


async def test_an_idle_actor_hibernates_within_twice_hibernate_after() -> None:
    """After its last message an actor stays awake at least hibernate_after, at most twice it."""
    async with open_actor(Counter(), config=CONFIG) as ref:
        await ref.call("x")
        await anyio.sleep(AFTER * 1.9)
        assert not ref.hibernating
        await anyio.sleep(AFTER * 0.2)
        assert ref.hibernating


async def test_a_busy_actor_does_not_hibernate() -> None:
    """An actor handling one long message stays awake however long it takes."""
    async with open_actor(Counter(), config=CONFIG) as ref:
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(ref.call, ("sleep", 10 * AFTER), timeout=20 * AFTER))
            await anyio.sleep(9 * AFTER)
            assert not ref.hibernating


async def test_state_survives_hibernation() -> None:
    """The actor object (its state) is the same before and after a hibernation."""
    async with open_actor(Counter(), config=CONFIG) as ref:
        assert await ref.call("x") == 1
        await anyio.sleep(3 * AFTER)
        assert ref.hibernating
        assert await ref.call("x") == 2


async def test_on_start_runs_once_then_the_actor_hibernates() -> None:
    """An actor with on_start runs it in a task, hibernates later, and never reruns it."""
    actor = Started()
    async with open_actor(actor, config=CONFIG) as ref:
        assert not ref.hibernating
        await anyio.sleep(3 * AFTER)
        assert ref.hibernating
        await ref.call("x")
        await anyio.sleep(3 * AFTER)
        await ref.call("x")
    assert actor.starts == 1
    assert actor.stops == [None]


async def test_an_actor_with_a_lifespan_never_hibernates() -> None:
    """An actor holding a lifespan keeps its task."""
    async with open_actor(Held(), config=CONFIG) as ref:
        await anyio.sleep(10 * AFTER)
        assert not ref.hibernating


async def test_hibernation_can_be_turned_off() -> None:
    """With hibernate_after=None an idle actor keeps its task."""
    async with open_actor(Counter(), config=ActorConfig(hibernate_after=None)) as ref:
        await ref.call("x")
        await anyio.sleep(10 * AFTER)
        assert not ref.hibernating


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), float("nan"), True, "1"])
async def test_hibernate_after_is_validated(value: object) -> None:
    """hibernate_after must be None or a finite number > 0."""
    with pytest.raises(ConfigError) as info:
        ActorConfig(hibernate_after=value)  # type: ignore[arg-type]
    assert info.value.field == "hibernate_after"


async def test_a_call_deadline_covers_the_wake_up() -> None:
    """A call to a hibernated actor times out at its own deadline, and the actor carries on."""
    actor = Counter()
    async with open_actor(actor, config=CONFIG) as ref:
        start = anyio.current_time()
        with pytest.raises(CallTimeout):
            await ref.call(("sleep", 5), timeout=0.5)
        assert anyio.current_time() - start == 0.5
        await settle()
        assert actor.cancelled == 1
        assert await ref.call("x") == 2


async def test_a_message_expired_before_the_woken_actor_takes_it_is_skipped() -> None:
    """A cast queued behind a long call is skipped if its caller's budget ran out."""
    actor = Counter()
    async with open_actor(actor, config=CONFIG) as ref:
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(ref.call, ("sleep", 2), timeout=5))
            await settle()
            with pytest.raises(CallTimeout):
                await ref.call("late", timeout=1)
            await anyio.sleep(2)
        assert actor.handled == 1


async def test_a_crash_of_a_woken_actor_answers_queued_callers_at_once() -> None:
    """Callers queued behind a crashing message get ActorDown when it crashes."""
    failures: list[tuple[float, BaseException]] = []

    async def queued(ref: Any) -> None:
        try:
            await ref.call("x", timeout=60)
        except ActorDown as exc:
            failures.append((anyio.current_time(), exc))

    with pytest.raises(ActorDown):
        async with open_actor(Counter(), config=CONFIG) as ref, anyio.create_task_group() as tg:
            start = anyio.current_time()
            assert ref.hibernating
            tg.start_soon(queued, ref)  # queued behind the crashing call
            with pytest.raises(RuntimeError):
                await ref.call(("crash", 1), timeout=60)
    assert [when - start for when, _ in failures] == [1.0]


async def test_a_call_racing_hibernation_is_answered() -> None:
    """A call sent at the instant the actor hibernates is answered."""
    async with open_actor(Counter(), config=CONFIG) as ref:
        await ref.call("x")
        replies = []
        for delay in (2 * AFTER, 4 * AFTER):  # at the idle checks' instants
            await anyio.sleep(delay - anyio.current_time() % delay)
            with anyio.fail_after(1):
                replies.append(await ref.call("x"))
        assert replies == [2, 3]


async def test_a_probe_runs_while_the_actor_hibernates() -> None:
    """A probe runs in the prober's task: the actor stays hibernated."""
    actor = Probed()
    async with open_actor(actor, config=CONFIG) as ref:
        await ref.probe()
        assert actor.probes == 1
        assert ref.hibernating


async def test_a_screened_request_leaves_the_actor_hibernated() -> None:
    """A request refused by the screen never wakes the actor."""
    async with open_actor(Counter(), config=CONFIG) as ref:
        with pytest.raises(InvalidRequest):
            await ref.call("bad")
        assert ref.hibernating


async def test_a_caller_giving_up_cancels_the_woken_handler() -> None:
    """cancel_abandoned holds after a wake-up, and the actor hibernates again afterwards."""
    actor = Counter()
    async with open_actor(actor, config=CONFIG) as ref:
        with anyio.move_on_after(0.5):
            await ref.call(("sleep", 5))
        await settle()
        assert actor.cancelled == 1
        await anyio.sleep(3 * AFTER)
        assert ref.hibernating


async def test_a_concurrent_actor_hibernates_and_wakes_concurrently() -> None:
    """A concurrent actor hibernates once all workers are idle and serves in parallel again."""
    actor = Counter(max_concurrency=4)
    async with open_actor(actor, config=CONFIG) as ref:
        for _ in range(2):
            start = anyio.current_time()
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(ref.call, ("sleep", 1))
            assert anyio.current_time() - start == 1
            await anyio.sleep(3 * AFTER)
            assert ref.hibernating
        assert actor.peak == 4


async def test_stopping_a_hibernated_actor_runs_on_stop_once() -> None:
    """Leaving the block stops a hibernated actor: on_stop runs once, actor.stopped follows."""
    actor = Started()
    with capture_events() as events:
        async with open_actor(actor, config=CONFIG) as ref:
            await anyio.sleep(3 * AFTER)
            assert ref.hibernating
    assert actor.stops == [None]
    assert [e["event"] for e in events if e["event"].startswith("actor.")][-1] == "actor.stopped"


async def test_stopping_a_hibernated_actor_without_on_stop_takes_no_time() -> None:
    """A hibernated actor with nothing to run on stop ends at once."""
    async with open_actor(Counter(), config=CONFIG) as ref:
        assert ref.hibernating
        start = anyio.current_time()
    assert anyio.current_time() == start
    assert ref.state.value == "stopped"


async def test_a_woken_handler_runs_in_the_owner_context() -> None:
    """A handler sees the context the actor was opened in, not its first caller's."""
    REQUEST.set("owner")
    async with open_actor(Counter(), config=CONFIG) as ref:
        REQUEST.set("caller")
        assert ref.hibernating
        assert await ref.call("context") == "owner"


class Fatal(BaseException):
    """Not an Exception: escapes the actor loop like a KeyboardInterrupt would."""


class Escaping(Counter):
    async def handle(self, msg: Any) -> Any:
        if msg == "fatal":
            raise Fatal
        return await super().handle(msg)


@pytest.mark.parametrize("after", [AFTER, None])
async def test_a_base_exception_escaping_a_handler_fails_the_block(after: float | None) -> None:
    """A BaseException from a woken handler propagates as from an awake one."""
    with pytest.raises(BaseExceptionGroup) as info:
        async with open_actor(Escaping(), config=ActorConfig(hibernate_after=after)) as ref:
            with contextlib.suppress(Exception):
                await ref.call("fatal", timeout=60)
            await anyio.sleep_forever()
    assert info.group_contains(Fatal)
