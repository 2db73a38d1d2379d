"""A hedged request of a service group in one trace: the hedge is an event, and both
members' attempts are spans under the caller's (both backends, virtual time)."""

from __future__ import annotations

import anyio
import pytest

from actors.services import ChatRequest
from actors.testing import MockLLM
from supervisor.groups import GroupConfig, HedgePolicy, ServiceGroup
from tests.actors.tracing.conftest import Telemetry, attributes
from tests.supervisor.groups.members import mock_member, running

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


async def test_a_hedge_is_an_event_and_both_members_are_in_the_trace(
    telemetry: Telemetry,
) -> None:
    """The slow first member is hedged after 0.5 s: a hedged event names the second
    member, and both members' attempts belong to the caller's trace."""
    servers = {"a": MockLLM(latency=5.0), "b": MockLLM(latency=0.1)}
    group = ServiceGroup(
        "llm",
        [mock_member(name, mock) for name, mock in servers.items()],
        GroupConfig(hedge=HedgePolicy(delay=0.5, budget=1.0)),
    )
    tracer = telemetry.tracer_provider.get_tracer("test")
    async with running(group):
        with tracer.start_as_current_span("turn") as turn:
            await group.call(ChatRequest.user("hi"), timeout=30)
        await anyio.sleep(0.1)  # the loser's cancellation has ended its spans
    hedged = [
        dict(event.attributes or {})
        for span in telemetry.spans()
        for event in span.events
        if event.name == "actorvisor.group.hedged"
    ]
    assert hedged == [{"actorvisor.group": "llm", "actorvisor.member": "b", "actorvisor.hedge": 1}]
    attempts = telemetry.named("chat m")
    assert {attributes(span)["actorvisor.service"] for span in attempts} == {"a", "b"}
    trace_id = turn.get_span_context().trace_id
    assert {span.context.trace_id for span in attempts} == {trace_id}
