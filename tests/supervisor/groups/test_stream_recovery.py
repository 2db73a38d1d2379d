"""Stream recovery: a stream cut after N chunks continues on another member, on both
wire formats; the caller reads one continuous text (the concatenation) and the reply
says where it broke. In process on virtual time, and on loopback against hypercorn."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from actors import CallTimeout, ServiceResponseError, ServiceUnavailable
from actors.services import ChatRequest
from actors.testing import Behaviour, MockLLM, serve_mock_llm
from supervisor.groups import (
    GroupConfig,
    RecoveredResponse,
    ServiceGroup,
    StreamBreak,
    StreamRecovery,
)
from tests.supervisor.groups.members import mock_member, running

pytestmark = pytest.mark.anyio

WIRES = ["openai", "anthropic"]
PROMPT = [{"role": "user", "content": "count to six"}]


def group_of(
    servers: dict[str, MockLLM], wire: str, recovery: StreamRecovery | None, **member: Any
) -> ServiceGroup:
    members = [mock_member(name, mock, wire=wire, **member) for name, mock in servers.items()]
    return ServiceGroup("llm", members, GroupConfig(stream_recovery=recovery))


def streamed(seen: list[str]) -> ChatRequest:
    return ChatRequest.create(PROMPT, stream=True, on_chunk=seen.append, max_tokens=64)


@pytest.mark.virtual_time
@pytest.mark.parametrize("wire", WIRES)
async def test_a_stream_cut_after_three_chunks_continues_on_another_member(wire: str) -> None:
    """The caller's chunks concatenate to the whole answer; the reply records the break."""
    servers = {"a": MockLLM(), "b": MockLLM()}
    servers["a"].script(Behaviour.stream_error(content="one two three four", cut_after=3))
    servers["b"].script(Behaviour.ok(content=" four five six"))
    group = group_of(servers, wire, StreamRecovery())
    seen: list[str] = []
    async with running(group):
        reply = await group.call(streamed(seen))
    assert "".join(seen) == "one two three four five six"
    assert reply.content == "one two three four five six"
    assert isinstance(reply, RecoveredResponse)
    assert reply.breaks == (StreamBreak("a", 3, len("one two three"), "ServiceResponseError"),)
    assert reply.answered_by == ("a", "b")
    assert group.stats.recoveries == 1


@pytest.mark.virtual_time
@pytest.mark.parametrize("wire", WIRES)
async def test_the_next_member_gets_the_partial_answer_as_context(wire: str) -> None:
    """Anthropic continues its own prefilled turn; OpenAI gets the partial answer and an
    instruction to continue."""
    servers = {"a": MockLLM(), "b": MockLLM()}
    servers["a"].script(Behaviour.stream_error(content="one two three four", cut_after=2))
    group = group_of(servers, wire, StreamRecovery(instruction="go on"))
    async with running(group):
        await group.call(streamed([]))
    messages = servers["b"].last_request["messages"]
    if wire == "anthropic":
        assert messages == [*PROMPT, {"role": "assistant", "content": "one two"}]
    else:
        assert messages == [
            *PROMPT,
            {"role": "assistant", "content": "one two"},
            {"role": "user", "content": "go on"},
        ]


@pytest.mark.virtual_time
@pytest.mark.parametrize("wire", WIRES)
async def test_without_recovery_a_broken_stream_is_not_sent_again(wire: str) -> None:
    """The caller already read part of the answer: the failure is raised, no failover."""
    servers = {"a": MockLLM(), "b": MockLLM()}
    servers["a"].script(Behaviour.stream_error(content="one two three", cut_after=1))
    group = group_of(servers, wire, None)
    seen: list[str] = []
    async with running(group):
        with pytest.raises(ServiceResponseError):
            await group.call(streamed(seen))
    assert seen == ["one"]
    assert servers["b"].chat_requests == 0


@pytest.mark.virtual_time
async def test_a_stream_failing_before_any_chunk_is_a_plain_failover() -> None:
    """Nothing reached the caller: the next member gets the original request."""
    servers = {"a": MockLLM(), "b": MockLLM()}
    servers["a"].script(Behaviour.error(503))
    group = group_of(servers, "openai", None)
    seen: list[str] = []
    async with running(group):
        reply = await group.call(streamed(seen))
    assert not isinstance(reply, RecoveredResponse)
    assert "".join(seen) == reply.content == "echo: count to six"
    assert servers["b"].last_request["messages"] == PROMPT


@pytest.mark.virtual_time
async def test_breaks_beyond_max_recoveries_are_raised() -> None:
    """With one recovery allowed, a second break is the caller's failure."""
    servers = {"a": MockLLM(), "b": MockLLM(), "c": MockLLM()}
    servers["a"].script(Behaviour.stream_error(content="one two three", cut_after=1))
    servers["b"].script(Behaviour.stream_error(content=" two three", cut_after=1))
    group = group_of(servers, "openai", StreamRecovery(max_recoveries=1))
    seen: list[str] = []
    async with running(group):
        with pytest.raises(ServiceResponseError):
            await group.call(streamed(seen))
    assert seen == ["one", " two"]
    assert servers["c"].chat_requests == 0


def test_the_relay_drops_whitespace_the_continuation_repeats() -> None:
    """After delivered trailing whitespace, the continuation's leading whitespace goes;
    the Anthropic prefill is trimmed as the API requires."""
    from supervisor.groups._stream import Relay

    seen: list[str] = []
    relay = Relay(seen.append)
    request = ChatRequest.create(PROMPT, stream=True, on_chunk=seen.append)
    relay.request_for(request, "a", "anthropic", "go on").on_chunk("one ")  # type: ignore[misc]
    relay.broke(ServiceUnavailable("a", "cut"))
    follow = relay.request_for(request, "b", "anthropic", "go on")
    assert follow.messages[-1] == {"role": "assistant", "content": "one"}
    follow.on_chunk(" ")  # type: ignore[misc]
    follow.on_chunk(" two")  # type: ignore[misc]
    assert seen == ["one ", "two"]


async def test_a_truncated_stream_on_loopback_continues_on_another_member() -> None:
    """Against hypercorn: the first member's connection drops after two chunks; the
    second member continues, and the caller reads one text."""
    async with serve_mock_llm() as first, serve_mock_llm() as second:
        first.control.script(Behaviour.truncated(content="alpha beta gamma", cut_after=2))
        second.control.script(Behaviour.ok(content=" gamma delta"))
        members = [
            mock_member("a", first.control, base_url=first.base_url, in_process=False),
            mock_member("b", second.control, base_url=second.base_url, in_process=False),
        ]
        group = ServiceGroup("llm", members, GroupConfig(stream_recovery=StreamRecovery()))
        seen: list[str] = []
        async with running(group):
            reply = await group.call(streamed(seen), timeout=10)
    assert "".join(seen) == reply.content == "alpha beta gamma delta"
    assert isinstance(reply, RecoveredResponse)
    assert reply.breaks[0].member == "a"
    assert reply.breaks[0].error == "ServiceUnavailable"


@pytest.mark.virtual_time
async def test_the_callers_deadline_holds_while_a_stream_is_recovered() -> None:
    """The member continuing a broken stream hangs: the caller's deadline still holds."""
    servers = {"a": MockLLM(), "b": MockLLM()}
    servers["a"].script(Behaviour.stream_error(content="one two three", cut_after=2))
    servers["b"].script(Behaviour.hang())
    group = group_of(servers, "openai", StreamRecovery())
    seen: list[str] = []
    async with running(group):
        start = anyio.current_time()
        with pytest.raises(CallTimeout):
            await group.call(streamed(seen), timeout=2.0)
        assert anyio.current_time() - start == pytest.approx(2.0)
        await anyio.sleep(0.1)
        assert servers["b"].hanging == 0
    assert seen == ["one", " two"]
