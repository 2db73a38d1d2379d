"""Property: arbitrary request-shaped input to the MCP service actor (the test server over
stdio) yields a reply or a documented error (`InvalidRequest`, `ToolError`,
`ProtocolError`), never anything else, and the session keeps serving (both backends)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import InvalidRequest, ProtocolError, Service, ServiceConfig, ToolError, open_actor
from actors.services.mcp import CallTool, ListTools, MCPClient, ToolResult, server_command

from .test_mcp import json_like

# Tools that answer at once (not `slow`, not `crash`), and names the server lacks.
names = st.sampled_from(["echo", "add", "fail", "pid", "nope", ""]) | st.text(max_size=10)
arguments = st.dictionaries(st.sampled_from(["text", "a", "b", "message"]), json_like) | json_like


def _call(name: object, args: object, return_errors: bool) -> object:
    try:
        return CallTool(name, args, return_errors=return_errors)  # type: ignore[arg-type]
    except InvalidRequest as exc:
        return exc


def _forge(name: object, args: object, return_errors: object) -> CallTool:
    call = object.__new__(CallTool)
    for field, value in (("name", name), ("arguments", args), ("return_errors", return_errors)):
        object.__setattr__(call, field, value)
    return call


requests = st.one_of(
    st.builds(_call, names, arguments, st.booleans()),
    st.builds(_forge, names, arguments, st.booleans() | json_like),
    st.just(ListTools()),
    json_like,
)


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def harness(request: pytest.FixtureRequest) -> Iterator[tuple[BlockingPortal, Any]]:
    svc = Service(
        "tools",
        lambda: MCPClient("tools", command=server_command()),
        ServiceConfig.for_mcp(retry=None),
    )
    with start_blocking_portal(request.param) as portal:
        with portal.wrap_async_context_manager(open_actor(svc.actor())) as ref:
            yield portal, ref


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(request=requests)
def test_any_request_gets_a_reply_or_a_documented_error(
    harness: tuple[BlockingPortal, Any], request: object
) -> None:
    """A reply or InvalidRequest/ToolError/ProtocolError; the same session still answers."""
    portal, ref = harness
    if isinstance(request, InvalidRequest):
        return  # the constructor refused it: nothing reaches the actor
    try:
        reply = portal.call(lambda: ref.call(request, timeout=20))
    except (InvalidRequest, ToolError, ProtocolError):
        pass
    else:
        assert isinstance(reply, ToolResult | list)
    assert ref.alive
    echo = portal.call(lambda: ref.call(CallTool("echo", {"text": "still"}), timeout=20))
    assert echo.text == "still"
