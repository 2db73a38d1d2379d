"""Hypothesis: random crashes, normal exits, terminations, dynamic starts and time steps
against a running tree, compared step by step with a small reference model of OTP
semantics (strategies, restart types, intensity) — on both backends, virtual time."""

from __future__ import annotations

import functools
import itertools
from typing import Any

import anyio
import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import supervisor as sv
from actors.testing import virtual_time_backend
from tests.actors.scripted import settle
from tests.supervisor.helpers import Log, Worker

RESTARTS = ["permanent", "transient", "temporary"]


@attrs.define
class ModelChild:
    id: str
    restart: str
    dynamic: bool
    running: bool = True
    restarts: int = 0


@attrs.define
class Model:
    """OTP supervisor semantics, written for obviousness rather than speed."""

    strategy: str
    max_restarts: int
    period: float
    children: list[ModelChild]
    alive: bool = True
    times: list[float] = attrs.field(factory=list)

    def exit(self, index: int, now: float, *, crashed: bool) -> None:
        child = self.children[index]
        child.running = False
        if child.restart == "temporary" or (child.restart == "transient" and not crashed):
            if child.dynamic:
                self.children.remove(child)
            return
        self.times = [t for t in self.times if t > now - self.period] + [now]
        if len(self.times) > self.max_restarts:
            self.alive = False
            for other in self.children:
                other.running = False
            return
        if self.strategy == "one_for_one":
            group = [child]
        elif self.strategy == "one_for_all":
            group = list(self.children)
        else:
            group = self.children[self.children.index(child) :]
        for member in group:
            if member.restart == "temporary" and member is not child:
                member.running = False
                if member.dynamic:
                    self.children.remove(member)
                continue
            member.running = True
            member.restarts += 1

    def terminate(self, index: int) -> None:
        child = self.children[index]
        child.running = False
        if child.dynamic:
            self.children.remove(child)


ops = st.one_of(
    st.tuples(st.just("crash"), st.integers(0, 5)),
    st.tuples(st.just("exit"), st.integers(0, 5)),
    st.tuples(st.just("terminate"), st.integers(0, 5)),
    st.tuples(st.just("restart_child"), st.integers(0, 5)),
    st.tuples(st.just("start"), st.sampled_from(RESTARTS)),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 3.0])),
)


async def _run(
    static: list[str], strategy: str, max_restarts: int, period: float, script: list[Any]
) -> None:
    log = Log()
    names = itertools.count()
    specs = [
        sv.ChildSpec(id=f"s{i}", factory=functools.partial(Worker, f"s{i}", log), restart=restart)
        for i, restart in enumerate(static)
    ]
    spec = sv.SupervisorSpec(
        id="root",
        strategy=strategy,
        max_restarts=max_restarts,
        period=period,
        backoff=sv.Backoff.none(),
        children=specs,
    )
    model = Model(
        strategy,
        max_restarts,
        period,
        [ModelChild(f"s{i}", restart, False) for i, restart in enumerate(static)],
    )
    steps_done = 0
    try:
        async with sv.start(spec) as sup:
            for op, arg in script:
                now = anyio.current_time()
                running = [i for i, child in enumerate(model.children) if child.running]
                if op in {"crash", "exit"} and running:
                    index = running[arg % len(running)]
                    ref = sup.ref(model.children[index].id)
                    steps_done += 1
                    model.exit(index, now, crashed=op == "crash")
                    if op == "crash":
                        with pytest.raises(RuntimeError):
                            await ref.call("crash")
                    else:
                        assert await ref.call("exit") == "bye"
                elif op == "terminate" and model.children:
                    index = arg % len(model.children)
                    steps_done += 1
                    await sup.terminate_child(model.children[index].id)
                    model.terminate(index)
                elif op == "restart_child" and model.children:
                    index = arg % len(model.children)
                    child = model.children[index]
                    if child.restart == "temporary" and not child.running:
                        continue  # OTP cannot restart a temporary child
                    steps_done += 1
                    await sup.restart_child(child.id)
                    child.running = True
                    child.restarts += 1
                elif op == "start":
                    name = f"d{next(names)}"
                    steps_done += 1
                    await sup.start_child(
                        sv.ChildSpec(
                            id=name, factory=functools.partial(Worker, name, log), restart=arg
                        )
                    )
                    model.children.append(ModelChild(name, arg, True))
                elif op == "advance":
                    await anyio.sleep(arg)
                await settle()
                assert model.alive, "the model gave up but the supervisor did not"
                actual = [
                    (child.id, child.state is sv.ChildState.RUNNING, child.restarts)
                    for child in sup.which_children()
                    if child.state is not sv.ChildState.STOPPED or not _is_dynamic(child.id)
                ]
                expected = [(c.id, c.running, c.restarts) for c in model.children]
                assert actual == expected, f"after {op} {arg}"
    except sv.IntensityExceeded:
        assert not model.alive, f"the supervisor gave up early, after {steps_done} steps"
        return
    assert model.alive


def _is_dynamic(child_id: str) -> bool:
    return child_id.startswith("d")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    static=st.lists(st.sampled_from(RESTARTS), min_size=1, max_size=4),
    strategy=st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]),
    max_restarts=st.integers(0, 4),
    period=st.sampled_from([1.0, 5.0]),
    script=st.lists(ops, max_size=25),
)
def test_tree_follows_the_otp_model(
    backend: str,
    static: list[str],
    strategy: str,
    max_restarts: int,
    period: float,
    script: list[Any],
) -> None:
    """After every step, each child's running state and restart count match the model."""
    name, options = virtual_time_backend(backend)
    anyio.run(
        _run, static, strategy, max_restarts, period, script, backend=name, backend_options=options
    )
