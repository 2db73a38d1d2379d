"""The MCP service against the real test server: a subprocess over stdio, and over
streamable HTTP (both backends, real time)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import attrs
import pytest

from actors import CallTimeout, RetryPolicy, ServiceUnavailable, ToolError, open_actor
from actors.services import Service, ServiceConfig
from actors.services.mcp import CallTool, ListTools, MCPClient, ToolResult, server_command
from actors.testing.mcp_server import URL_PREFIX

pytestmark = pytest.mark.anyio

FAST = RetryPolicy.for_mcp(backoff_initial=0.01, backoff_max=0.05, budget_ratio=None)


def mcp_service(
    retry: RetryPolicy | None = FAST, **client: object
) -> Service[ListTools | CallTool, object]:
    params = client or {"command": server_command()}
    return Service(
        "tools",
        lambda: MCPClient("tools", **params),  # type: ignore[arg-type]
        attrs.evolve(ServiceConfig.for_mcp(), retry=retry),
    )


@pytest.fixture
async def tools() -> AsyncIterator[object]:
    svc = mcp_service()
    async with open_actor(svc.actor(), name="tools") as ref:
        yield svc, ref


async def test_list_and_call_tools(tools: tuple[Service[object, object], object]) -> None:
    """Tools are listed and called over stdio."""
    _, ref = tools
    names = await ref.call(ListTools(), timeout=20)  # type: ignore[attr-defined]
    assert {"echo", "add", "slow", "fail", "crash"} <= set(names)
    result = await ref.call(CallTool("add", {"a": 2, "b": 3}), timeout=10)  # type: ignore[attr-defined]
    assert isinstance(result, ToolResult)
    assert float(result.text) == 5


async def test_tool_error_is_not_retried(tools: tuple[Service[object, object], object]) -> None:
    """A tool that reports an error raises ToolError after one attempt; the actor stays up."""
    svc, ref = tools
    await ref.call(ListTools(), timeout=20)  # type: ignore[attr-defined]
    attempts = svc.stats.attempts
    with pytest.raises(ToolError, match="nope"):
        await ref.call(CallTool("fail", {"message": "nope"}), timeout=10)  # type: ignore[attr-defined]
    assert svc.stats.attempts == attempts + 1
    assert (await ref.call(CallTool("echo", {"text": "still up"}), timeout=10)).text == "still up"  # type: ignore[attr-defined]


async def test_crashed_server_is_restarted() -> None:
    """A server process that dies is a broken transport: the session is discarded and
    the next request runs on a freshly started server."""
    async with open_actor(mcp_service(retry=None).actor()) as ref:
        await _crash_and_recover(ref)


async def _crash_and_recover(ref: object) -> None:
    await ref.call(CallTool("echo", {"text": "before"}), timeout=20)  # type: ignore[attr-defined]
    with pytest.raises(ServiceUnavailable):
        await ref.call(CallTool("crash", {}), timeout=30)  # type: ignore[attr-defined]
    reply = await ref.call(CallTool("echo", {"text": "after"}), timeout=20)  # type: ignore[attr-defined]
    assert reply.text == "after"


async def test_slow_tool_times_out_and_the_session_survives(
    tools: tuple[Service[object, object], object],
) -> None:
    """A tool running past the caller's deadline yields CallTimeout on time."""
    _, ref = tools
    await ref.call(ListTools(), timeout=20)  # type: ignore[attr-defined]
    start = time.monotonic()
    with pytest.raises(CallTimeout):
        await ref.call(CallTool("slow", {"seconds": 30}), timeout=0.5)  # type: ignore[attr-defined]
    assert time.monotonic() - start < 2
    assert (await ref.call(CallTool("echo", {"text": "x"}), timeout=20)).text == "x"  # type: ignore[attr-defined]


async def test_server_that_exits_at_start_is_unavailable() -> None:
    """A server command that exits at once is ServiceUnavailable; the actor stays up."""
    svc = mcp_service(command=[sys.executable, "-c", "raise SystemExit(1)"])
    async with open_actor(svc.actor()) as ref:
        with pytest.raises(ServiceUnavailable):
            await ref.call(ListTools(), timeout=30)
        assert ref.alive


@pytest.fixture
def http_server() -> Iterator[str]:
    process = subprocess.Popen(
        [*server_command(), "--transport", "http"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(URL_PREFIX), line
        yield line[len(URL_PREFIX) :].strip()
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


async def test_streamable_http_transport(http_server: str) -> None:
    """The same tools over streamable HTTP."""
    svc = mcp_service(url=http_server)
    async with open_actor(svc.actor()) as ref:
        reply = await ref.call(CallTool("echo", {"text": "over http"}), timeout=20)
        assert reply.text == "over http"
        await ref.probe(timeout=10)
    await anyio.lowlevel.checkpoint()
