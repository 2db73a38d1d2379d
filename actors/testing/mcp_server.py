"""A small MCP tool server for tests, on the official `mcp` SDK (extra `mcp`).

Run it as a subprocess::

    python -m actors.testing.mcp_server                      # stdio (the default)
    python -m actors.testing.mcp_server --transport http     # streamable HTTP on 127.0.0.1

Over HTTP it is served by `actors.serve_asgi` (hypercorn, extra `http`), binds 127.0.0.1
only (on `--port`, or a free port when 0) and, once it listens, prints one line
`MCP_URL http://127.0.0.1:<port>/mcp` on stdout.

For "bad server" tests: `--exit-at-start CODE` exits at once with that status (after a
message on stderr), and `--start-delay SECONDS` waits before serving (slow startup).

Tools:

- `echo(text)` returns `text`;
- `add(a, b)` returns `a + b`;
- `slow(seconds)` sleeps, then returns `"slept <seconds>"` (cancellation and timeouts);
- `fail(message)` is a tool error (`isError` result carrying `message`), not a crash;
- `crash(code=3)` ends the server process at once, without answering (a broken transport);
- `pid()` returns the server's process id (to tell a restarted server from the old one);
- `pixel()` returns a 1x1 PNG image (an image content block).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

__all__ = ["PIXEL_PNG", "URL_PREFIX", "build_server", "main"]

URL_PREFIX = "MCP_URL "
"""The stdout line prefix announcing the HTTP endpoint."""

PIXEL_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8ffff3f0005fe02fea7d6a4f40000000049454e44ae426082"
)
"""The 1x1 PNG the `pixel` tool returns."""


def build_server(name: str = "actors-test-tools") -> MCPServer[Any]:
    """The `MCPServer` with the test tools (see the module docstring)."""
    from mcp.server.mcpserver import Image, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server: MCPServer[Any] = MCPServer(name, log_level="WARNING")

    @server.tool()
    def echo(text: str) -> str:
        """Returns the text unchanged."""
        return text

    @server.tool()
    def add(a: float, b: float) -> float:
        """Returns a + b."""
        return a + b

    @server.tool()
    async def slow(seconds: float) -> str:
        """Sleeps `seconds`, then answers."""
        await anyio.sleep(seconds)
        return f"slept {seconds:g}"

    @server.tool()
    def fail(message: str) -> str:
        """Always fails with a tool error carrying `message`."""
        raise ToolError(message)

    @server.tool()
    def pid() -> int:
        """Returns the server process id."""
        return os.getpid()

    @server.tool()
    def pixel() -> Any:  # an Image (a local name: a string annotation would not resolve)
        """Returns a 1x1 PNG image."""
        return Image(data=PIXEL_PNG, format="png")

    @server.tool()
    def crash(code: int = 3) -> str:
        """Ends the server process immediately (no answer is sent)."""
        sys.stderr.flush()
        os._exit(code)

    return server


async def _serve_http(server: MCPServer[Any], port: int) -> None:
    from actors._serve import serve_asgi

    app = server.streamable_http_app(host="127.0.0.1")
    async with serve_asgi(app, port=port) as url:
        print(f"{URL_PREFIX}{url}/mcp", flush=True)
        await anyio.sleep_forever()


def main(argv: Sequence[str] | None = None) -> None:
    """Parses `--transport stdio|http` and `--port N` and serves until stopped."""
    parser = argparse.ArgumentParser(prog="python -m actors.testing.mcp_server")
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--port", type=int, default=0, help="HTTP port on 127.0.0.1 (0: free)")
    parser.add_argument("--exit-at-start", type=int, default=None, metavar="CODE")
    parser.add_argument("--start-delay", type=float, default=0.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    if args.exit_at_start is not None:
        print("mcp_server: exiting at start as asked", file=sys.stderr, flush=True)
        sys.exit(args.exit_at_start)
    if args.start_delay > 0:
        time.sleep(args.start_delay)
    server = build_server()
    if args.transport == "stdio":
        server.run("stdio")
    else:
        anyio.run(_serve_http, server, args.port)


if __name__ == "__main__":
    main()
