"""A group of LLM members on hypercorn servers on 127.0.0.1 (both backends, real time,
short durations): what only real connections show (drops, hangs cut mid-request)."""

from __future__ import annotations

import anyio
import pytest

from actors.services import ChatRequest
from actors.testing import Behaviour, serve_mock_llm
from supervisor.groups import ServiceGroup
from tests.supervisor.groups.members import mock_member, running

pytestmark = pytest.mark.anyio


async def test_a_dropped_connection_and_a_hang_fail_over() -> None:
    """Against hypercorn on 127.0.0.1 (real time): a dropped connection fails over at
    once, and a hung member is cut at its share of the deadline."""
    async with serve_mock_llm() as first, serve_mock_llm() as second:
        members = [
            mock_member("a", first.control, base_url=first.base_url, in_process=False),
            mock_member("b", second.control, base_url=second.base_url, in_process=False),
        ]
        group = ServiceGroup("llm", members)
        async with running(group):
            first.control.script(Behaviour.drop())
            reply = await group.call(ChatRequest.user("hi"), timeout=5)
            assert reply.content == "echo: hi"
            first.control.script(Behaviour.hang())
            start = anyio.current_time()
            reply = await group.call(ChatRequest.user("again"), timeout=1.0)
            took = anyio.current_time() - start
    assert reply.content == "echo: again"
    assert 0.6 <= took < 0.95
    assert first.control.chat_requests == 2
