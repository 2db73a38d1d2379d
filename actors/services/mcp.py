"""MCP tool servers through the official `mcp` SDK (extra `mcp`): stdio or streamable HTTP.

A pool "connection" here is one MCP session (for stdio, one server subprocess). The SDK
keeps each session's tasks in async context managers, which must be entered and left
by the same task, so every session runs in a task of its own inside the client's
lifespan; the pool only holds handles. Several requests share a session (JSON-RPC
multiplexes them), so the default pool holds one session and the actor handles several
requests at once.

Starting a session (spawning the server, initialising) takes as long as it takes,
whoever waits for it: a caller that gives up during the start (a health probe with a
short timeout, a request past its deadline) leaves the start running, and the next
`connect` takes that session over, started or still starting. So a dead server is
replaced even when every single wait is shorter than its start (probes of a service
the routers avoid are then the only callers).

Errors are translated at this boundary:

- a broken transport (the subprocess exited or was killed, the stream closed, JSON-RPC
  -32000 "connection closed") is `ServiceUnavailable`: the pool discards that session
  and the next attempt starts a fresh one — that is how a crashed server is replaced;
- no answer in time (JSON-RPC -32001) is `ServiceTimeout`;
- any other JSON-RPC error the server sends (-32602 invalid params, which is also what
  servers answer for an unknown tool, -32601 method not found, ...) is `ProtocolError`
  with its code: the caller's mistake;
- an answer that does not have the documented shape is `MalformedResponse`;
- a tool that runs and reports an error is `ToolError` (never retried), or, with
  ``CallTool(return_errors=True)``, a `ToolResult` with `is_error` set.

`check_request` refuses, before the request is queued, what the SDK could not even send
(see `CallTool`): such a value would end the whole session, not just its own call.
"""

from __future__ import annotations

import contextlib
import math
import sys
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import anyio
import anyio.abc

from actors._envelope import current_correlation_id
from actors._errors import (
    ConfigError,
    InvalidRequest,
    MalformedResponse,
    ProtocolError,
    ServiceResponseError,
    ServiceTimeout,
    ServiceUnavailable,
    ToolError,
)
from actors._otel_metrics import MCP_DURATION
from actors._public import publish as _publish
from actors._redact import one_line, redact
from actors._tracing import AttributeValue, Operation, error_type, inject
from actors._validate import check_finite_positive
from actors.services._base import ServiceClient
from actors.services._mcp_requests import (
    CallTool,
    ListTools,
    ToolResult,
    ToolSpec,
    call_problem,
)

__all__ = ["CallTool", "ListTools", "MCPClient", "ToolResult", "ToolSpec", "server_command"]

_CONNECTION_CLOSED = -32000  # JSON-RPC codes the SDK uses for its own transport trouble
_REQUEST_TIMEOUT = -32001
_MAX_PAGES = 100  # of a paginated tools/list
_MESSAGE_LIMIT = 200
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    EOFError,
    OSError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)


class _Session:
    """A handle on one MCP session running in its own task."""

    __slots__ = ("client", "closed", "done", "failure", "ready")

    def __init__(self) -> None:
        self.client: Any = None
        self.ready = anyio.Event()  # set when the session has started, or failed to
        self.closed = anyio.Event()  # set to ask the session task to end
        self.done = anyio.Event()  # set when the session task has ended
        self.failure: BaseException | None = None


Request = ListTools | CallTool
Response = list[ToolSpec] | ToolResult


def _command_problem(command: object) -> str | None:
    if isinstance(command, str | bytes) or not isinstance(command, Sequence) or not command:
        return "must be a non-empty list of arguments"
    for part in command:
        if not isinstance(part, str) or "\x00" in part:
            return "every argument must be a string without NUL characters"
    if not command[0]:
        return "must start with the program to run"
    return None


def _url_problem(url: object) -> str | None:
    if not isinstance(url, str):
        return f"must be a string, not {type(url).__name__}"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    return None


def _env_problem(env: object) -> str | None:
    if not isinstance(env, Mapping):
        return f"must be a mapping of strings, not {type(env).__name__}"
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key or "\x00" in key:
            return "names must be non-empty strings without '=' or NUL"
        if not isinstance(value, str) or "\x00" in value:
            return f"{key}: values must be strings without NUL"
    return None


def _content_blocks(result: Any) -> tuple[dict[str, Any], ...]:
    return tuple(
        part.model_dump(mode="json", by_alias=True, exclude_none=True)
        for part in result.content or ()
    )


class MCPClient(ServiceClient[_Session, Request, Response]):
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
            ConfigError: Neither or both transports, a field of the wrong type or out of
                range (named; `env` values are never shown), or the `mcp` extra is
                missing.
        """
        super().__init__(name)
        if (command is None) == (url is None):
            raise ConfigError("command", None, "give exactly one of command and url")
        reason = _command_problem(command) if command is not None else _url_problem(url)
        if reason is not None:
            # Neither is shown: a command line or a URL may carry a token.
            raise ConfigError("command" if command is not None else "url", None, reason)
        reason = _env_problem(env) if env is not None else None
        if reason is not None:
            raise ConfigError("env", None, reason)
        try:
            import mcp  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ConfigError("client", "mcp", "install the 'mcp' extra") from exc
        self.command = list(command) if command is not None else None
        self.url = url
        self.env = dict(env or {})
        self.start_timeout = check_finite_positive("start_timeout", start_timeout)
        self._tg: anyio.abc.TaskGroup | None = None
        self._unclaimed: list[_Session] = []  # starts whose caller gave up waiting
        self._transport: dict[str, AttributeValue] = (
            {"network.transport": "pipe"} if url is None else _http_server(url)
        )

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield
            finally:
                self._tg = None
                self._unclaimed.clear()
                tg.cancel_scope.cancel()

    def _server(self) -> Any:
        if self.url is not None:
            return self.url
        from mcp import StdioServerParameters

        assert self.command is not None
        return StdioServerParameters(command=self.command[0], args=self.command[1:], env=self.env)

    async def _run_session(self, session: _Session) -> None:
        from mcp import Client

        try:
            with anyio.CancelScope(deadline=anyio.current_time() + self.start_timeout) as scope:
                async with Client(self._server()) as client:
                    scope.deadline = math.inf  # started: the session lives until closed
                    session.client = client
                    session.ready.set()
                    await session.closed.wait()
            if scope.cancelled_caught and not session.ready.is_set():
                raise TimeoutError(f"no session within {self.start_timeout:g}s")
        except Exception as exc:
            session.failure = exc
        finally:
            session.ready.set()
            session.done.set()
            if session in self._unclaimed:
                self._unclaimed.remove(session)

    async def connect(self) -> _Session:
        """Starts a session (for stdio: spawns the server) and initialises it, or takes
        over one whose start an earlier caller gave up waiting for.

        Cancellation while waiting leaves the start running for the next `connect`.
        """
        if self._tg is None:
            raise ServiceUnavailable(self.name, "client is not open")
        if self._unclaimed:
            session = self._unclaimed.pop(0)
        else:
            session = _Session()
            self._tg.start_soon(self._run_session, session, name=f"mcp session {self.name}")
        try:
            await session.ready.wait()
        except BaseException:  # cancelled: the start goes on for the next caller
            if not session.done.is_set():
                self._unclaimed.append(session)
            raise
        if session.client is None or session.done.is_set():
            failure = session.failure
            why = "it ended at once" if failure is None else type(failure).__name__
            raise ServiceUnavailable(
                self.name,
                f"cannot start an MCP session: {why}",
                correlation_id=current_correlation_id(),
            ) from failure
        return session

    async def close(self, conn: _Session) -> None:
        conn.closed.set()
        with anyio.move_on_after(10):
            await conn.done.wait()

    async def validate(self, conn: _Session) -> bool:
        return not conn.done.is_set()

    def check_request(self, request: object) -> None:
        """Refuses a request that is not `ListTools` or `CallTool` (or one built around
        their checks), a tool name that is not a non-empty string, and arguments that
        are not plain JSON (see `CallTool`).

        Raises:
            InvalidRequest: Naming the field, e.g. ``arguments.items[3]``.
        """
        if isinstance(request, ListTools):
            return
        if not isinstance(request, CallTool):
            kind = type(request).__name__
            raise InvalidRequest(self.name, "request", f"must be ListTools or CallTool, not {kind}")
        problem = call_problem(request)
        if problem is not None:
            raise InvalidRequest(self.name, *problem)

    async def probe(self, conn: _Session) -> None:
        """Listing the tools must succeed (MCP's ping is deprecated in current protocols)."""
        await self._list_tools(conn)

    def describe(self, request: Request, *, content: bool) -> Operation:
        """An MCP client span: ``tools/call {tool}`` (a GenAI ``execute_tool``) or
        ``tools/list``; the tool's arguments only with `content`."""
        attributes: dict[str, AttributeValue] = dict(self._transport)
        if not isinstance(request, CallTool):
            attributes["mcp.method.name"] = "tools/list"
            return Operation(name="tools/list", attributes=attributes, metric=MCP_DURATION)
        tool = str(request.name)[:_MESSAGE_LIMIT]
        attributes.update(
            {
                "mcp.method.name": "tools/call",
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": tool,
            }
        )
        if content:
            attributes["gen_ai.tool.call.arguments"] = _json_text(request.arguments)
        return Operation(name=f"tools/call {tool}", attributes=attributes, metric=MCP_DURATION)

    def describe_result(self, response: Response, *, content: bool) -> Mapping[str, AttributeValue]:
        """A tool's reported error (returned, with `return_errors`) is ``tool_error``."""
        if not isinstance(response, ToolResult):
            return {}
        out: dict[str, AttributeValue] = {"error.type": "tool_error"} if response.is_error else {}
        if content:
            out["gen_ai.tool.call.result"] = response.text
        return out

    def describe_error(self, exc: Exception) -> Mapping[str, AttributeValue]:
        """``tool_error``, the JSON-RPC code of the server's error, or the failure's type."""
        if isinstance(exc, ToolError):
            return {"error.type": "tool_error"}
        if isinstance(exc, ProtocolError):
            return {"error.type": str(exc.code), "rpc.response.status_code": str(exc.code)}
        return {"error.type": error_type(exc)}

    async def request(self, conn: _Session, request: Request) -> Response:
        self.check_request(request)  # the dispatch; also refuses what skipped the screen
        if isinstance(request, ListTools):
            return await self._list_tools(conn)
        return await self._call_tool(conn, request)

    async def _list_tools(self, conn: _Session) -> list[ToolSpec]:
        tools: list[ToolSpec] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            meta = _meta()
            page = await self._do(
                conn,
                lambda client, cursor=cursor, meta=meta: client.list_tools(
                    cursor=cursor, meta=meta
                ),
            )
            tools.extend(
                ToolSpec(
                    name=tool.name,
                    description=tool.description or "",
                    input_schema=tool.input_schema,
                    output_schema=tool.output_schema,
                )
                for tool in page.tools
            )
            cursor = page.next_cursor
            if cursor is None:
                return tools
        raise MalformedResponse(
            self.name,
            f"tools/list did not end within {_MAX_PAGES} pages",
            correlation_id=current_correlation_id(),
        )

    async def _call_tool(self, conn: _Session, request: CallTool) -> ToolResult:
        meta = _meta()
        result = await self._do(
            conn, lambda client: client.call_tool(request.name, dict(request.arguments), meta=meta)
        )
        text = "".join(part.text for part in result.content or () if part.type == "text")
        reply = ToolResult(
            text=text,
            structured=result.structured_content,
            content=_content_blocks(result),
            is_error=bool(result.is_error),
        )
        if reply.is_error and not request.return_errors:
            raise ToolError(
                self.name,
                f"tool {request.name!r} failed: {redact(text)[:_MESSAGE_LIMIT]}",
                correlation_id=current_correlation_id(),
            )
        return reply

    async def _do(self, conn: _Session, operation: Any) -> Any:
        """Runs one SDK call, translating what it raises (see the module docstring)."""
        import httpx2
        import pydantic
        from mcp.shared.exceptions import MCPError

        if conn.done.is_set() or conn.client is None:
            raise ServiceUnavailable(self.name, "the session has ended")
        cid = current_correlation_id()
        transport: tuple[type[BaseException], ...] = (*_TRANSPORT_ERRORS, httpx2.TransportError)
        try:
            return await operation(conn.client)
        except MCPError as exc:
            code = exc.code
            if code == _CONNECTION_CLOSED or conn.done.is_set():
                raise ServiceUnavailable(
                    self.name, "connection closed", correlation_id=cid
                ) from exc
            if code == _REQUEST_TIMEOUT:
                raise ServiceTimeout(
                    self.name, "the server did not answer", correlation_id=cid
                ) from exc
            raise ProtocolError(
                self.name, code, one_line(exc.message, limit=_MESSAGE_LIMIT), correlation_id=cid
            ) from exc
        except httpx2.HTTPStatusError as exc:
            raise ServiceResponseError(
                self.name, exc.response.status_code, correlation_id=cid
            ) from exc
        except (TimeoutError, httpx2.TimeoutException) as exc:
            raise ServiceTimeout(
                self.name, "the server did not answer", correlation_id=cid
            ) from exc
        except transport as exc:
            raise ServiceUnavailable(
                self.name, f"transport: {type(exc).__name__}", correlation_id=cid
            ) from exc
        except pydantic.ValidationError as exc:
            raise MalformedResponse(
                self.name,
                f"the answer is not the documented shape: {exc.error_count()} errors",
                correlation_id=cid,
            ) from exc


def _meta() -> Any:
    """The request's ``_meta``: the trace context (``traceparent``), while tracing is on."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier or None


def _json_text(value: object) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, default=str)


def _http_server(url: str) -> dict[str, AttributeValue]:
    parts = urllib.parse.urlsplit(url)
    out: dict[str, AttributeValue] = {"network.transport": "tcp"}
    if parts.hostname:
        out["server.address"] = parts.hostname
        with contextlib.suppress(ValueError):  # a port out of range: the connection says so
            out["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
    return out


def server_command(*args: str) -> list[str]:
    """The command line running `actors.testing.mcp_server` with this interpreter."""
    return [sys.executable, "-m", "actors.testing.mcp_server", *args]


_publish(globals(), "actors.services.mcp")
