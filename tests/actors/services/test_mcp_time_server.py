"""The MCP service against third-party software: the official reference server
`mcp-server-time` (pip package, in the `test` extra) over stdio, through the service
actor (both backends, real time)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from actors import ProtocolError, Service, ServiceConfig, ServiceUnavailable, ToolError, open_actor
from actors.resilience import RetryPolicy
from actors.services.mcp import CallTool, MCPClient
from tests.actors.services.mcp_replies import MCPRef, MCPService, call_tool, list_tools

pytestmark = pytest.mark.anyio

COMMAND = [sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"]
FAST = RetryPolicy.for_mcp(backoff_initial=0.01, backoff_max=0.05, budget_ratio=None)


def time_service(retry: RetryPolicy | None = FAST) -> MCPService:
    return Service(
        "time",
        lambda: MCPClient("time", command=COMMAND),
        ServiceConfig.for_mcp(retry=retry),
    )


def time_servers() -> list[int]:
    """Process ids of this process's mcp-server-time children (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # it ended meanwhile
        if parent == os.getpid() and b"mcp_server_time" in command:
            found.append(int(entry.name))
    return found


@pytest.fixture
async def time_ref() -> AsyncIterator[MCPRef]:
    async with open_actor(time_service().actor(), name="time") as ref:
        yield ref


async def test_lists_the_reference_tools(time_ref: MCPRef) -> None:
    """The reference server's tools arrive with their descriptions and input schemas."""
    tools = await list_tools(time_ref, timeout=30)
    by_name = {tool.name: tool for tool in tools}
    assert set(by_name) == {"get_current_time", "convert_time"}
    schema = by_name["convert_time"].input_schema
    assert schema["type"] == "object"
    assert set(schema["required"]) == {"source_timezone", "time", "target_timezone"}
    assert by_name["get_current_time"].description == "Get current time in a specific timezone"


async def test_calls_a_tool(time_ref: MCPRef) -> None:
    """convert_time answers with structured content and its JSON text."""
    arguments = {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}
    result = await call_tool(time_ref, CallTool("convert_time", arguments), timeout=30)
    assert result.structured["time_difference"] == "+9.0h"
    assert result.structured["target"]["datetime"].endswith("T21:00:00+09:00")
    assert '"time_difference": "+9.0h"' in result.text


async def test_unknown_tool_is_a_protocol_error(time_ref: MCPRef) -> None:
    """A tool the server does not have is its JSON-RPC -32602, as a ProtocolError
    (not an HTTP status), after one attempt."""
    with pytest.raises(ProtocolError) as info:
        await call_tool(time_ref, CallTool("get_weather", {}), timeout=30)
    assert info.value.code == -32602
    assert "Unknown tool: get_weather" in str(info.value)
    assert "HTTP" not in str(info.value)


async def test_bad_arguments_are_a_tool_error() -> None:
    """Arguments that fail the tool's schema, or a value the tool rejects, are ToolError
    after one attempt; the actor carries on."""
    svc = time_service()
    async with open_actor(svc.actor()) as ref:
        with pytest.raises(ToolError, match="Field required"):
            await call_tool(ref, CallTool("get_current_time", {"tz": "UTC"}), timeout=30)
        before = svc.stats.attempts
        with pytest.raises(ToolError, match="Invalid timezone"):
            await call_tool(
                ref, CallTool("get_current_time", {"timezone": "Mars/Base"}), timeout=30
            )
        assert svc.stats.attempts == before + 1
        reply = await call_tool(ref, CallTool("get_current_time", {"timezone": "UTC"}), timeout=30)
        assert reply.structured["timezone"] == "UTC"


async def _kill_the_server(ref: MCPRef) -> int:
    await list_tools(ref, timeout=30)
    (pid,) = time_servers()
    os.kill(pid, signal.SIGKILL)
    with anyio.fail_after(10):
        while pid in time_servers():  # noqa: ASYNC110 - another process: no event to wait on
            await anyio.sleep(0.05)
    return pid


async def test_server_killed_from_outside_is_replaced_by_the_retry() -> None:
    """A server SIGKILLed between calls costs one retry: the next call runs on a freshly
    started server process."""
    svc = time_service()
    async with open_actor(svc.actor()) as ref:
        killed = await _kill_the_server(ref)
        before = svc.stats.attempts
        reply = await call_tool(ref, CallTool("get_current_time", {"timezone": "UTC"}), timeout=30)
        assert reply.structured["timezone"] == "UTC"
        assert svc.stats.attempts == before + 2
        assert [pid for pid in time_servers() if pid != killed] == time_servers()
        assert len(time_servers()) == 1


async def test_server_killed_without_retries_is_unavailable_then_replaced() -> None:
    """Without retries the call after the kill is ServiceUnavailable, and the one after
    it runs on a fresh server."""
    async with open_actor(time_service(retry=None).actor()) as ref:
        killed = await _kill_the_server(ref)
        with pytest.raises(ServiceUnavailable):
            await call_tool(ref, CallTool("get_current_time", {"timezone": "UTC"}), timeout=30)
        reply = await call_tool(ref, CallTool("get_current_time", {"timezone": "UTC"}), timeout=30)
        assert reply.structured["timezone"] == "UTC"
        assert killed not in time_servers()
