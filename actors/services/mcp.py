"""MCP tool servers through the official `mcp` SDK (extra `mcp`): stdio or streamable HTTP.

A pool "connection" here is one MCP session (for stdio, one server subprocess). The SDK
keeps each session's tasks in async context managers, which must be entered and left
by the same task, so every session runs in a task of its own inside the client's
lifespan; the pool only holds handles. Several requests share a session (JSON-RPC
multiplexes them), so the default pool holds one session and the actor handles several
requests at once.

A broken transport (the subprocess exited, the stream closed) is `ServiceUnavailable`:
the pool discards that session and the next request starts a fresh one — that is how a
crashed server subprocess is restarted. A tool that runs and reports an error is a
`ToolError`, which is never retried.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import anyio
import anyio.abc
import attrs

from actors._envelope import current_correlation_id
from actors._errors import (
    ConfigError,
    ServiceResponseError,
    ServiceTimeout,
    ServiceUnavailable,
    ToolError,
)
from actors.services._base import ServiceClient

__all__ = ["CallTool", "ListTools", "MCPClient", "ToolResult"]

_CONNECTION_CLOSED = -32000
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    EOFError,
    OSError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)


@attrs.frozen
class ListTools:
    """Ask the server for its tools."""


@attrs.frozen
class CallTool:
    """Call one tool.

    Attributes:
        name: The tool's name.
        arguments: Its arguments (JSON-serialisable).
    """

    name: str
    arguments: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ToolResult:
    """A successful tool call: its text content and any structured content."""

    text: str
    structured: Any = None


class _Session:
    """A handle on one MCP session running in its own task."""

    __slots__ = ("client", "closed", "done", "failure")

    def __init__(self) -> None:
        self.client: Any = None
        self.closed = anyio.Event()  # set to ask the session task to end
        self.done = anyio.Event()  # set when the session task has ended
        self.failure: BaseException | None = None


class MCPClient(ServiceClient[_Session, "ListTools | CallTool", "list[str] | ToolResult"]):
    """Talks to one MCP tool server (a subprocess over stdio, or streamable HTTP)."""

    service_type = "mcp"

    def __init__(
        self,
        name: str,
        *,
        command: Sequence[str] | None = None,
        url: str | None = None,
        env: Mapping[str, str] | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        """Configures the client; exactly one of `command` and `url`.

        Args:
            name: The service name.
            command: The server's command line (stdio transport).
            url: The server's streamable HTTP endpoint.
            env: Extra environment for the subprocess (stdio).
            start_timeout: Seconds a session may take to start and initialise.

        Raises:
            ConfigError: Neither or both transports, or the `mcp` extra is missing.
        """
        super().__init__(name)
        if (command is None) == (url is None):
            raise ConfigError("command", command, "give exactly one of command and url")
        if command is not None and (isinstance(command, str) or not command):
            raise ConfigError("command", command, "must be a non-empty list of arguments")
        try:
            import mcp  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ConfigError("client", "mcp", "install the 'mcp' extra") from exc
        self.command = list(command) if command is not None else None
        self.url = url
        self.env = dict(env or {})
        self.start_timeout = start_timeout
        self._tg: anyio.abc.TaskGroup | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    def _server(self) -> Any:
        if self.url is not None:
            return self.url
        from mcp import StdioServerParameters

        assert self.command is not None
        return StdioServerParameters(command=self.command[0], args=self.command[1:], env=self.env)

    async def _run_session(
        self, session: _Session, *, task_status: anyio.abc.TaskStatus[BaseException | None]
    ) -> None:
        from mcp import Client

        started = False
        try:
            with anyio.CancelScope(deadline=anyio.current_time() + self.start_timeout) as scope:
                async with Client(self._server()) as client:
                    scope.deadline = math.inf  # started: the session lives until closed
                    session.client = client
                    started = True
                    task_status.started(None)
                    await session.closed.wait()
            if scope.cancelled_caught and not started:
                raise TimeoutError(f"no session within {self.start_timeout:g}s")
        except Exception as exc:
            session.failure = exc
            if not started:
                task_status.started(exc)
        finally:
            session.done.set()

    async def connect(self) -> _Session:
        """Starts a session (for stdio: spawns the server) and initialises it."""
        if self._tg is None:
            raise ServiceUnavailable(self.name, "client is not open")
        session = _Session()
        failure = await self._tg.start(self._run_session, session)
        if failure is not None:
            raise ServiceUnavailable(
                self.name,
                f"cannot start an MCP session: {type(failure).__name__}",
                correlation_id=current_correlation_id(),
            ) from failure
        return session

    async def close(self, conn: _Session) -> None:
        conn.closed.set()
        with anyio.move_on_after(10):
            await conn.done.wait()

    async def validate(self, conn: _Session) -> bool:
        return not conn.done.is_set()

    async def probe(self, conn: _Session) -> None:
        """Listing the tools must succeed (MCP's ping is deprecated in current protocols)."""
        await self._do(conn, lambda client: client.list_tools())

    async def request(
        self, conn: _Session, request: ListTools | CallTool
    ) -> list[str] | ToolResult:
        if isinstance(request, ListTools):
            result = await self._do(conn, lambda client: client.list_tools())
            return [tool.name for tool in result.tools]
        if isinstance(request, CallTool):
            result = await self._do(
                conn, lambda client: client.call_tool(request.name, dict(request.arguments))
            )
            text = "".join(getattr(part, "text", "") for part in result.content or ())
            if getattr(result, "is_error", None) or getattr(result, "isError", None):
                raise ToolError(
                    self.name,
                    f"tool {request.name!r} failed: {text[:200]}",
                    correlation_id=current_correlation_id(),
                )
            structured = getattr(result, "structured_content", None)
            return ToolResult(text=text, structured=structured)
        raise ConfigError("request", type(request).__name__, "must be ListTools or CallTool")

    async def _do(self, conn: _Session, operation: Any) -> Any:
        if conn.done.is_set() or conn.client is None:
            raise ServiceUnavailable(self.name, "the session has ended")
        cid = current_correlation_id()
        try:
            return await operation(conn.client)
        except TimeoutError as exc:
            raise ServiceTimeout(
                self.name, "the server did not answer", correlation_id=cid
            ) from exc
        except _TRANSPORT_ERRORS as exc:
            raise ServiceUnavailable(
                self.name, f"transport: {type(exc).__name__}", correlation_id=cid
            ) from exc
        except Exception as exc:
            code = getattr(exc, "code", None)
            if code == _CONNECTION_CLOSED or conn.done.is_set():
                raise ServiceUnavailable(
                    self.name, "connection closed", correlation_id=cid
                ) from exc
            if isinstance(code, int):
                raise ServiceResponseError(
                    self.name,
                    400 if code != 408 else 408,
                    code=str(code),
                    message=str(exc)[:200],
                    correlation_id=cid,
                ) from exc
            raise


def server_command(*args: str) -> list[str]:
    """The command line running `actors.testing.mcp_server` with this interpreter."""
    return [sys.executable, "-m", "actors.testing.mcp_server", *args]
