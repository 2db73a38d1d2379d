"""Typed access to an MCP service actor's replies for the tests.

An MCP actor answers `ListTools | CallTool` with `list[ToolSpec] | ToolResult`; these
helpers narrow a reply to what its request gets.
"""

from __future__ import annotations

from actors import ActorRef, Service
from actors.services.mcp import CallTool, ListTools, ToolResult, ToolSpec

MCPService = Service[ListTools | CallTool, list[ToolSpec] | ToolResult]
MCPRef = ActorRef[ListTools | CallTool, list[ToolSpec] | ToolResult]


async def list_tools(ref: MCPRef, *, timeout: float | None = None) -> list[ToolSpec]:
    """`ref.call(ListTools())`: the server's tools."""
    tools = await ref.call(ListTools(), timeout=timeout)
    assert isinstance(tools, list)
    return tools


async def call_tool(ref: MCPRef, call: CallTool, *, timeout: float | None = None) -> ToolResult:
    """`ref.call(call)`: a CallTool's reply is one `ToolResult`."""
    result = await ref.call(call, timeout=timeout)
    assert isinstance(result, ToolResult)
    return result
