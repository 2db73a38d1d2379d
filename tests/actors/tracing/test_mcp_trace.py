"""MCP client spans and metrics of the MCP service actor, against the test tool server
(a subprocess over stdio; in process where the server must read the request's
``_meta``), both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp.server.mcpserver import Context
from opentelemetry.trace import SpanKind, StatusCode

from actors import ActorRef, Service, ServiceConfig, ToolError, open_actor
from actors.resilience import RetryPolicy
from actors.services.mcp import CallTool, ListTools, MCPClient, server_command
from actors.testing.mcp_server import build_server
from tests.actors.services.mcp_replies import MCPService, call_tool
from tests.actors.tracing.conftest import Telemetry, attributes, texts

pytestmark = pytest.mark.anyio

FAST = RetryPolicy.for_mcp(backoff_initial=0.01, backoff_max=0.05, budget_ratio=None)


def tools_service(**changes: Any) -> MCPService:
    return Service(
        "tools",
        lambda: MCPClient("tools", command=server_command()),
        ServiceConfig.for_mcp(retry=FAST, **changes),
    )


@pytest.fixture
async def tools() -> AsyncIterator[ActorRef[Any, Any]]:
    async with open_actor(tools_service().actor(), name="tools") as ref:
        await ref.call(ListTools(), timeout=20)  # the session is up
        yield ref


async def test_a_tool_call_is_an_mcp_client_span(
    tools: ActorRef[Any, Any], telemetry: Telemetry
) -> None:
    """``tools/call add``: the MCP method, the tool, the GenAI operation and transport."""
    await tools.call(CallTool("add", {"a": 2, "b": 3}), timeout=10)
    (span,) = telemetry.named("tools/call add")
    assert span.kind is SpanKind.CLIENT
    assert dict(span.attributes or {}) == {
        "mcp.method.name": "tools/call",
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "add",
        "network.transport": "pipe",
        "actorvisor.service": "tools",
        "actorvisor.attempt": 1,
    }
    calls = {call.context.span_id: call for call in telemetry.named("call tools")}
    assert span.parent is not None
    assert attributes(calls[span.parent.span_id])["actorvisor.message.type"] == "CallTool"


async def test_listing_tools_is_its_own_method(
    tools: ActorRef[Any, Any], telemetry: Telemetry
) -> None:
    """``tools/list`` carries its method and no tool."""
    await tools.call(ListTools(), timeout=10)
    (span,) = telemetry.named("tools/list")
    assert attributes(span)["mcp.method.name"] == "tools/list"
    assert "gen_ai.tool.name" not in attributes(span)


async def test_a_tool_error_is_error_type_tool_error(
    tools: ActorRef[Any, Any], telemetry: Telemetry
) -> None:
    """A tool reporting an error ends its span with error.type ``tool_error``."""
    with pytest.raises(ToolError):
        await tools.call(CallTool("fail", {"message": "nope"}), timeout=10)
    (span,) = telemetry.named("tools/call fail")
    assert attributes(span)["error.type"] == "tool_error"
    assert span.status.status_code is StatusCode.ERROR


async def test_arguments_and_results_only_when_captured(telemetry: Telemetry) -> None:
    """Tool arguments and results are recorded only with capture_content."""
    async with open_actor(tools_service(capture_content=True).actor(), name="tools") as ref:
        await ref.call(CallTool("echo", {"text": "private words"}), timeout=20)
    (span,) = telemetry.named("tools/call echo")
    assert attributes(span)["gen_ai.tool.call.arguments"] == '{"text": "private words"}'
    assert attributes(span)["gen_ai.tool.call.result"] == "private words"


async def test_content_is_not_recorded_by_default(
    tools: ActorRef[Any, Any], telemetry: Telemetry
) -> None:
    """Without capture_content, no span holds a tool's arguments or result."""
    await tools.call(CallTool("echo", {"text": "private words"}), timeout=10)
    assert not any("private words" in text for text in texts(telemetry.spans()))


async def test_mcp_client_operation_duration(
    tools: ActorRef[Any, Any], telemetry: Telemetry
) -> None:
    """Each request is an mcp.client.operation.duration point with its method and tool."""
    await tools.call(CallTool("add", {"a": 1, "b": 1}), timeout=10)
    metric = telemetry.metrics()["mcp.client.operation.duration"]
    assert metric.unit == "s"
    (point,) = [p for p in metric.data.data_points if p.attributes.get("gen_ai.tool.name") == "add"]
    assert dict(point.attributes) == {
        "mcp.method.name": "tools/call",
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "add",
        "network.transport": "pipe",
    }
    assert point.count == 1


class InProcessClient(MCPClient):
    """The test tools plus one that answers with the ``traceparent`` of its request's
    ``_meta``, served in process (the SDK's in-memory transport)."""

    def _server(self) -> Any:
        server = build_server()

        @server.tool()
        def traceparent(ctx: Context) -> str:
            """The trace context the request carried."""
            meta = ctx.request_context.meta or {}
            return str(meta.get("traceparent", ""))

        return server


async def test_a_tool_call_carries_its_spans_trace_context(telemetry: Telemetry) -> None:
    """The request's ``_meta`` holds the W3C traceparent of the attempt's span."""
    svc = Service(
        "tools",
        lambda: InProcessClient("tools", command=server_command()),
        ServiceConfig.for_mcp(retry=FAST),
    )
    async with open_actor(svc.actor(), name="tools") as ref:
        reply = await call_tool(ref, CallTool("traceparent", {}), timeout=20)
    (span,) = telemetry.named("tools/call traceparent")
    context = span.context
    assert reply.text == (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
    )
