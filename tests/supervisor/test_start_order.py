"""Children start in order, each up before the next, even when a start fails and the
restart is immediate; failed restarts go through the supervisor's own loop (both
backends, virtual time)."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import pytest

import supervisor as sv
from actors import ActorDown
from tests.actors.scripted import settle
from tests.supervisor.helpers import Log, Worker, worker

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


class Flaky(Worker):
    """A worker whose on_start fails while `failures[name]` is positive ("name!")."""

    def __init__(self, name: str, log: Log, failures: dict[str, int]) -> None:
        super().__init__(name, log)
        self.failures = failures

    async def on_start(self) -> None:
        if self.failures.get(self.name, 0) > 0:
            self.failures[self.name] -= 1
            self.log.entries.append(f"start:{self.name}!")
            raise RuntimeError(f"{self.name} cannot start")
        await super().on_start()


def tree(log: Log, failures: dict[str, int], strategy: str, **kwargs: Any) -> sv.SupervisorSpec:
    return sv.SupervisorSpec(
        id="root",
        strategy=strategy,
        backoff=sv.Backoff.none(),
        max_restarts=10,
        children=[
            sv.ChildSpec(id=name, factory=functools.partial(Flaky, name, log, failures))
            for name in ("a", "f", "c")
        ],
        **kwargs,
    )


@pytest.mark.parametrize(
    ("strategy", "starts"),
    [
        ("one_for_one", ["a", "f!", "f!", "f", "c"]),
        ("rest_for_one", ["a", "f!", "f!", "f", "c"]),
        # A failed start is a failure like any other: one_for_all restarts everyone.
        ("one_for_all", ["a", "f!", "a", "f!", "a", "f", "c"]),
    ],
)
async def test_a_failed_first_start_holds_back_the_later_siblings(
    strategy: str, starts: list[str]
) -> None:
    """With no backoff, a child whose first start fails is started again before any
    sibling after it."""
    log = Log()
    async with sv.start(tree(log, {"f": 2}, strategy)) as sup:
        assert log.starts() == starts
        assert await sup.ref("c").call(1) == ("c", 1)


@pytest.mark.parametrize(
    ("strategy", "crashed", "restarted"),
    [
        ("rest_for_one", "a", ["a", "f!", "f", "c"]),
        ("one_for_all", "c", ["a", "f!", "a", "f", "c"]),
    ],
)
async def test_a_failed_restart_holds_back_the_rest_of_its_group(
    strategy: str, crashed: str, restarted: list[str]
) -> None:
    """With no backoff, a child failing to start during a group restart is up again before
    the group's later children start."""
    log = Log()
    failures: dict[str, int] = {}
    async with sv.start(tree(log, failures, strategy)) as sup:
        log.clear()
        failures["f"] = 1
        with pytest.raises(RuntimeError):
            await sup.ref(crashed).call("crash")
        await settle()
        assert log.starts() == restarted
        for name in ("a", "f", "c"):
            assert await sup.ref(name).call(1) == (name, 1)


async def test_a_failed_restart_child_is_retried_after_its_backoff() -> None:
    """A child whose `restart_child` start fails is restarted by the supervisor after
    the backoff, and the caller gets ActorDown."""
    log = Log()
    failures: dict[str, int] = {}
    spec = sv.SupervisorSpec(
        id="root",
        backoff=sv.Backoff(min=1, max=1, jitter=0),
        children=[sv.ChildSpec(id="f", factory=lambda: Flaky("f", log, failures))],
    )
    async with sv.start(spec) as sup:
        failures["f"] = 1
        with pytest.raises(ActorDown):
            await sup.restart_child("f")
        start = anyio.current_time()
        assert await sup.ref("f").call(1, timeout=5) == ("f", 1)
        assert anyio.current_time() - start == pytest.approx(1, abs=1e-9)
        assert log.starts() == ["f", "f!", "f"]


async def test_restart_child_beyond_intensity_makes_the_supervisor_give_up() -> None:
    """A failed `restart_child` counts against intensity; one too many and the supervisor
    itself gives up (the caller gets ActorDown)."""
    log = Log()
    failures: dict[str, int] = {}
    spec = sv.SupervisorSpec(
        id="root",
        backoff=sv.Backoff.none(),
        max_restarts=0,
        children=[
            worker("a", log),
            sv.ChildSpec(id="f", factory=lambda: Flaky("f", log, failures)),
        ],
    )
    with pytest.raises(sv.IntensityExceeded) as info:
        async with sv.start(spec) as sup:
            failures["f"] = 1
            with pytest.raises(ActorDown):
                await sup.restart_child("f")
            await anyio.sleep(10)
            pytest.fail("the supervisor kept running past its intensity")
    assert isinstance(info.value.__cause__, RuntimeError)
    assert log.stops() == ["f", "a"]
