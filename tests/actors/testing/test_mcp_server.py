"""The test MCP server: its tools in-process, and as a subprocess over stdio and HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("mcp")

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp.types import ImageContent

from actors.testing.mcp_server import PIXEL_PNG, URL_PREFIX, build_server

pytestmark = pytest.mark.anyio

ROOT = str(Path(__file__).resolve().parents[3])
TOOLS = ["add", "crash", "echo", "fail", "pid", "pixel", "slow"]


def text(result: Any) -> str:
    return "".join(part.text for part in result.content)


def stdio_params() -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "actors.testing.mcp_server"], cwd=ROOT
    )


async def test_echo_and_add() -> None:
    """echo returns its text and add returns the sum."""
    async with Client(build_server()) as client:
        assert text(await client.call_tool("echo", {"text": "hi"})) == "hi"
        result = await client.call_tool("add", {"a": 2, "b": 3.5})
    assert not result.is_error
    assert result.structured_content == {"result": 5.5}


async def test_pixel_is_an_image_block() -> None:
    """pixel answers with one base64 PNG image block."""
    import base64

    async with Client(build_server()) as client:
        result = await client.call_tool("pixel", {})
    (block,) = result.content
    assert isinstance(block, ImageContent)
    assert (block.type, block.mime_type) == ("image", "image/png")
    assert base64.b64decode(block.data) == PIXEL_PNG


async def test_fail_is_a_tool_error_not_a_crash() -> None:
    """fail answers with an isError result carrying the message; the server stays up."""
    async with Client(build_server()) as client:
        result = await client.call_tool("fail", {"message": "bad input"})
        assert result.is_error
        assert "bad input" in text(result)
        assert text(await client.call_tool("echo", {"text": "still here"})) == "still here"


@pytest.mark.virtual_time
async def test_slow_sleeps_then_answers() -> None:
    """slow answers after sleeping the given seconds."""
    async with Client(build_server()) as client:
        start = anyio.current_time()
        result = await client.call_tool("slow", {"seconds": 0.2})
        assert anyio.current_time() - start >= 0.2
    assert text(result) == "slept 0.2"


async def test_stdio_subprocess_answers_until_it_crashes() -> None:
    """Over stdio the subprocess lists its tools and answers; crash closes the transport."""
    with anyio.fail_after(20):
        async with Client(stdio_params()) as client:
            tools = await client.list_tools()
            assert sorted(tool.name for tool in tools.tools) == TOOLS
            assert text(await client.call_tool("echo", {"text": "over stdio"})) == "over stdio"
            pid = (await client.call_tool("pid", {})).structured_content
            assert pid is not None
            assert pid["result"] != os.getpid()
            start = anyio.current_time()
            with pytest.raises(MCPError, match="Connection closed"):
                await client.call_tool("crash", {})
            assert anyio.current_time() - start < 5


async def test_http_subprocess_serves_on_loopback() -> None:
    """With --transport http the server announces a 127.0.0.1 URL and answers there."""
    command = [sys.executable, "-m", "actors.testing.mcp_server", "--transport", "http"]
    with anyio.fail_after(20):
        async with await anyio.open_process(command, cwd=ROOT) as process:
            try:
                assert process.stdout is not None
                line = b""
                async for chunk in process.stdout:
                    line += chunk
                    if b"\n" in line:
                        break
                announced = line.decode().splitlines()[0]
                assert announced.startswith(f"{URL_PREFIX}http://127.0.0.1:")
                url = announced.removeprefix(URL_PREFIX)
                async with Client(url) as client:
                    result = await client.call_tool("add", {"a": 1, "b": 2})
                assert result.structured_content == {"result": 3.0}
            finally:
                process.terminate()
                await process.wait()


def test_cli_rejects_unknown_transport() -> None:
    """An unknown --transport is a usage error (exit status 2)."""
    result = subprocess.run(
        [sys.executable, "-m", "actors.testing.mcp_server", "--transport", "pigeon"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


async def test_exit_at_start_fails_the_connection() -> None:
    """A server told to exit at start makes the client fail fast instead of hanging."""
    params = stdio_params()
    params.args.extend(["--exit-at-start", "4"])
    start = anyio.current_time()
    with anyio.fail_after(20), pytest.raises(ExceptionGroup) as info:
        async with Client(params) as client:
            await client.list_tools()
    assert info.group_contains(MCPError, match="Connection closed")
    assert anyio.current_time() - start < 10
