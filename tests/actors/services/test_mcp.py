"""The MCP service against the real test server: a subprocess over stdio, and over
streamable HTTP (both backends, real time)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import (
    CallTimeout,
    ConfigError,
    InvalidRequest,
    PoolTimeout,
    Service,
    ServiceConfig,
    ServiceUnavailable,
    ToolError,
    open_actor,
)
from actors.resilience import RetryPolicy
from actors.services.mcp import CallTool, MCPClient, ToolResult, server_command
from actors.testing.mcp_server import URL_PREFIX
from tests.actors.services.mcp_replies import MCPRef, MCPService, call_tool, list_tools

pytestmark = pytest.mark.anyio

# Values shaped like tool arguments, and what is not JSON: any code point (surrogates
# too), non-finite floats, bytes, non-string keys, sets, objects.
json_like = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(st.characters(codec=None, exclude_categories=())),
        st.binary(max_size=4),
        st.builds(object),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner),
        st.frozensets(st.integers(), max_size=2),
        st.dictionaries(st.text(st.characters(codec=None, exclude_categories=())), inner),
        st.dictionaries(st.integers() | st.none(), inner, max_size=2),
    ),
    max_leaves=8,
)

FAST = RetryPolicy.for_mcp(backoff_initial=0.01, backoff_max=0.05, budget_ratio=None)


def mcp_service(retry: RetryPolicy | None = FAST, **client: Any) -> MCPService:
    params = client or {"command": server_command()}
    return Service(
        "tools",
        lambda: MCPClient("tools", **params),
        attrs.evolve(ServiceConfig.for_mcp(), retry=retry),
    )


@pytest.fixture
async def tools() -> AsyncIterator[tuple[MCPService, MCPRef]]:
    svc = mcp_service()
    async with open_actor(svc.actor(), name="tools") as ref:
        yield svc, ref


async def test_list_and_call_tools(tools: tuple[MCPService, MCPRef]) -> None:
    """Tools are listed and called over stdio."""
    _, ref = tools
    listed = await list_tools(ref, timeout=20)
    assert {"echo", "add", "slow", "fail", "crash"} <= {tool.name for tool in listed}
    echo = next(tool for tool in listed if tool.name == "echo")
    assert echo.description == "Returns the text unchanged."
    assert echo.input_schema["properties"]["text"]["type"] == "string"
    result = await call_tool(ref, CallTool("add", {"a": 2, "b": 3}), timeout=10)
    assert isinstance(result, ToolResult)
    assert float(result.text) == 5


async def test_tool_error_is_not_retried(tools: tuple[MCPService, MCPRef]) -> None:
    """A tool that reports an error raises ToolError after one attempt; the actor stays up."""
    svc, ref = tools
    await list_tools(ref, timeout=20)
    attempts = svc.stats.attempts
    with pytest.raises(ToolError, match="nope"):
        await call_tool(ref, CallTool("fail", {"message": "nope"}), timeout=10)
    assert svc.stats.attempts == attempts + 1
    reply = await call_tool(ref, CallTool("echo", {"text": "still up"}), timeout=10)
    assert reply.text == "still up"


async def test_crashed_server_is_restarted() -> None:
    """A server process that dies is a broken transport: the session is discarded and
    the next request runs on a freshly started server."""
    async with open_actor(mcp_service(retry=None).actor()) as ref:
        await _crash_and_recover(ref)


async def _crash_and_recover(ref: MCPRef) -> None:
    await call_tool(ref, CallTool("echo", {"text": "before"}), timeout=20)
    with pytest.raises(ServiceUnavailable):
        await call_tool(ref, CallTool("crash", {}), timeout=30)
    reply = await call_tool(ref, CallTool("echo", {"text": "after"}), timeout=20)
    assert reply.text == "after"


SLOW_START = 1.5  # seconds the server sleeps before serving (plus the interpreter's start)


async def test_a_start_its_caller_gave_up_on_serves_the_next_caller() -> None:
    """A caller giving up while the server starts leaves the start running; the next
    request is served by that session, sooner than a fresh start could be."""
    svc = mcp_service(retry=None, command=server_command("--start-delay", str(SLOW_START)))
    async with open_actor(svc.actor()) as ref:
        with pytest.raises((CallTimeout, PoolTimeout)):  # whichever deadline fires first
            await list_tools(ref, timeout=0.3)
        await anyio.sleep(SLOW_START + 3)  # the abandoned start completes meanwhile
        tools = await list_tools(ref, timeout=SLOW_START - 0.5)
        assert "echo" in {tool.name for tool in tools}


async def test_probes_shorter_than_the_start_bring_a_killed_server_back() -> None:
    """A killed server is replaced by health probes alone (no request reaches it) even
    when each probe's timeout is shorter than the server's start."""
    from supervisor.health import (
        HealthConfig,
        HealthStatus,
        HealthTransition,
        open_health_monitor,
    )

    svc = mcp_service(retry=None, command=server_command("--start-delay", "0.8"))
    config = HealthConfig(interval=0.3, jitter=0.0, timeout=0.3, failures_to_degrade=1)
    async with open_actor(svc.actor()) as ref, open_health_monitor() as monitor:
        pid = int((await call_tool(ref, CallTool("pid", {}), timeout=30)).text)
        seen: list[HealthStatus] = []
        healthy_again = anyio.Event()

        def on_change(transition: HealthTransition) -> None:
            seen.append(transition.to_status)
            if transition.to_status is HealthStatus.HEALTHY:
                healthy_again.set()

        monitor.add("tools", ref.probe, config)
        monitor.add_listener(on_change)
        os.kill(pid, signal.SIGKILL)
        with anyio.fail_after(30):
            await healthy_again.wait()
        assert seen[0] is not HealthStatus.HEALTHY
        assert int((await call_tool(ref, CallTool("pid", {}), timeout=0.3)).text) != pid


async def test_slow_tool_times_out_and_the_session_survives(
    tools: tuple[MCPService, MCPRef],
) -> None:
    """A tool running past the caller's deadline yields CallTimeout on time."""
    _, ref = tools
    await list_tools(ref, timeout=20)
    start = time.monotonic()
    with pytest.raises(CallTimeout):
        await call_tool(ref, CallTool("slow", {"seconds": 30}), timeout=0.5)
    assert time.monotonic() - start < 2
    assert (await call_tool(ref, CallTool("echo", {"text": "x"}), timeout=20)).text == "x"


async def test_server_that_exits_at_start_is_unavailable() -> None:
    """A server command that exits at once is ServiceUnavailable; the actor stays up."""
    svc = mcp_service(command=[sys.executable, "-c", "raise SystemExit(1)"])
    async with open_actor(svc.actor()) as ref:
        with pytest.raises(ServiceUnavailable):
            await list_tools(ref, timeout=30)
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
        reply = await call_tool(ref, CallTool("echo", {"text": "over http"}), timeout=20)
        assert reply.text == "over http"
        await ref.probe(timeout=10)
    await anyio.lowlevel.checkpoint()


async def test_tool_error_can_be_returned_as_a_result(
    tools: tuple[MCPService, MCPRef],
) -> None:
    """With return_errors=True a failing tool answers with an is_error ToolResult."""
    _, ref = tools
    result = await call_tool(
        ref, CallTool("fail", {"message": "nope"}, return_errors=True), timeout=20
    )
    assert result.is_error
    assert result.text == "Error executing tool fail: nope"
    assert result.content == ({"type": "text", "text": result.text},)


async def test_structured_content_and_blocks_are_kept(
    tools: tuple[MCPService, MCPRef],
) -> None:
    """A tool's structured content and its content blocks reach the caller."""
    _, ref = tools
    result = await call_tool(ref, CallTool("add", {"a": 1, "b": 2}), timeout=20)
    assert result.structured == {"result": 3.0}
    assert result.content == ({"type": "text", "text": "3.0"},)
    assert not result.is_error


async def test_unsendable_arguments_fail_only_their_caller(
    tools: tuple[MCPService, MCPRef],
) -> None:
    """Arguments the SDK could not serialise (a lone surrogate would end the session for
    every call on it) are InvalidRequest for that caller; a concurrent call succeeds on
    the same session."""
    _, ref = tools
    await list_tools(ref, timeout=20)
    slow = CallTool("slow", {"seconds": 0.3})
    async with anyio.create_task_group() as tg:
        results: list[ToolResult] = []

        async def in_flight() -> None:
            results.append(await call_tool(ref, slow, timeout=20))

        tg.start_soon(in_flight)
        await anyio.sleep(0.05)
        forged = object.__new__(CallTool)
        for field, value in (("name", "echo"), ("arguments", {"text": "\ud800"})):
            object.__setattr__(forged, field, value)
        object.__setattr__(forged, "return_errors", False)
        with pytest.raises(InvalidRequest) as info:
            await ref.call(forged, timeout=20)
        assert info.value.field == "arguments.text"
    assert [r.text for r in results] == ["slept 0.3"]


@pytest.mark.parametrize(
    "request_",
    [42, "echo", None, {"name": "echo"}],
    ids=["int", "str", "None", "dict"],
)
async def test_what_is_not_a_request_fails_only_its_caller(request_: object) -> None:
    """Anything but ListTools or CallTool is InvalidRequest; the actor carries on."""
    svc = mcp_service()
    async with open_actor(svc.actor()) as ref:
        with pytest.raises(InvalidRequest) as info:
            await ref.call(request_, timeout=20)  # type: ignore[arg-type]
        assert info.value.field == "request"
        assert ref.alive


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        ((42,), {}, "name"),
        (("",), {}, "name"),
        (("x\ud800",), {}, "name"),
        (("echo", "text"), {}, "arguments"),
        (("echo", ["text"]), {}, "arguments"),
        (("echo", {1: "a"}), {}, "arguments"),
        (("echo", {"a": float("nan")}), {}, "arguments.a"),
        (("echo", {"a": {"b": [1, object()]}}), {}, "arguments.a.b[1]"),
        (("echo", {"a": {"b": b"bytes"}}), {}, "arguments.a.b"),
        (("echo", {"a": "\udfff"}), {}, "arguments.a"),
        (("echo", {}), {"return_errors": "yes"}, "return_errors"),
    ],
)
def test_call_tool_refuses_malformed_fields(
    args: tuple[object, ...], kwargs: dict[str, object], field: str
) -> None:
    """The CallTool constructor names the malformed field."""
    with pytest.raises(InvalidRequest) as info:
        CallTool(*args, **kwargs)  # type: ignore[arg-type]
    assert (info.value.service, info.value.field) == ("CallTool", field)


def test_arguments_nested_too_deeply_are_refused() -> None:
    """Arguments nested a thousand levels deep are refused before the SDK's serialiser
    fails."""
    nested: dict[str, object] = {}
    inner = nested
    for _ in range(1000):
        inner["n"] = {}
        inner = inner["n"]  # type: ignore[assignment]
    with pytest.raises(InvalidRequest, match="deeper"):
        CallTool("echo", nested)


def test_call_tool_repr_hides_the_arguments() -> None:
    """A CallTool's repr shows how many arguments it has, never their values."""
    call = CallTool("login", {"password": "hunter2"})
    assert repr(call) == "CallTool(name='login', arguments=<1 arguments>, return_errors=False)"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"command": []}, "command"),
        ({"command": "python -m server"}, "command"),
        ({"command": ["python", 3]}, "command"),
        ({"command": ["python", "a\x00b"]}, "command"),
        ({"command": [""]}, "command"),
        ({"url": "ftp://127.0.0.1/mcp"}, "url"),
        ({"url": "127.0.0.1:8000"}, "url"),
        ({"url": 8000}, "url"),
        ({"command": ["python"], "env": ["A=1"]}, "env"),
        ({"command": ["python"], "env": {"A=B": "1"}}, "env"),
        ({"command": ["python"], "env": {"A": 1}}, "env"),
        ({"command": ["python"], "start_timeout": 0}, "start_timeout"),
        ({"command": ["python"], "start_timeout": float("inf")}, "start_timeout"),
        ({"command": ["python"], "start_timeout": "10"}, "start_timeout"),
        ({"command": ["python"], "url": "http://127.0.0.1/mcp"}, "command"),
        ({}, "command"),
    ],
)
def test_client_options_are_checked(kwargs: dict[str, object], field: str) -> None:
    """Every MCPClient option is type- and range-checked, naming the field."""
    with pytest.raises(ConfigError) as info:
        MCPClient("tools", **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_env_values_are_never_shown() -> None:
    """A refused env shows none of its values."""
    with pytest.raises(ConfigError) as info:
        MCPClient("tools", command=["python"], env={"TOKEN": "s3cr3t", "BAD": 1})  # type: ignore[dict-item]
    assert "s3cr3t" not in str(info.value)


@settings(max_examples=300, deadline=None)
@given(value=json_like)
def test_arguments_the_check_accepts_are_sendable(value: object) -> None:
    """Whatever arguments CallTool accepts serialise as JSON and as UTF-8 (what the SDK
    does); anything else is an InvalidRequest, whatever the input."""
    import json

    import pydantic_core

    try:
        call = CallTool("echo", {"value": value})
    except InvalidRequest:
        return
    json.dumps(call.arguments, allow_nan=False, ensure_ascii=False).encode("utf-8")
    pydantic_core.to_json(call.arguments)


async def test_a_tool_error_echoing_a_credential_is_redacted(
    tools: tuple[MCPService, MCPRef],
) -> None:
    """Server text kept on a ToolError goes through redaction (a key=value credential)."""
    _, ref = tools
    with pytest.raises(ToolError) as info:
        await call_tool(
            ref, CallTool("fail", {"message": "bad password=hunter2 given"}), timeout=20
        )
    assert "hunter2" not in str(info.value)
    assert "bad password=" in str(info.value)
