"""MCP tools in an agent loop: tool schemas for the model, tool calls run through the
MCP service actor, and tool results in each wire format.

The pure functions turn `ToolSpec`s (what `ListTools` answers) into the `tools` of a
chat request, and a `ToolOutcome` into the message that answers a tool call:

============  =====================================================  ===========================
wire format   tools                                                  answer to one tool call
============  =====================================================  ===========================
OpenAI chat   ``{"type": "function", "function": {"name",            ``{"role": "tool",
              "description", "parameters"}}``                        "tool_call_id", "content"}``
Anthropic     ``{"name", "description", "input_schema"}``            a ``tool_result`` block in
                                                                     a user message
============  =====================================================  ===========================

`MCPToolbox` holds one MCP service's tools and runs a model's tool calls through its
actor. What the model got wrong is reported *to the model*, as an error result it can
correct, never raised: arguments that are not a JSON object (or do not parse), an
unknown tool, arguments the tool's schema or the tool itself rejects (`ToolError`,
JSON-RPC invalid params). Failures of the service (unavailable, timed out, breaker
open) are raised to the agent's code, or reported too with ``report_failures=True``.

Model-facing names: OpenAI and Anthropic accept tool names matching
``[a-zA-Z0-9_-]{1,64}``; an MCP name outside that (``github.create_issue``) is offered
under a close, unique alias (``github_create_issue``) and mapped back when called.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import anyio
import attrs

from actors._errors import ActorError, InvalidRequest, ProtocolError, ToolError
from actors.services._chat import ToolCall
from actors.services._mcp_requests import CallTool, ListTools, ToolResult, ToolSpec

__all__ = [
    "MCPToolbox",
    "ToolOutcome",
    "anthropic_tool_result",
    "anthropic_tool_uses",
    "anthropic_tools",
    "model_names",
    "openai_tool_calls",
    "openai_tool_message",
    "openai_tools",
]

_NAME_LIMIT: Final = 64
_NOT_NAME: Final = re.compile(r"[^a-zA-Z0-9_-]")


@attrs.frozen
class ToolOutcome:
    """What running one tool call gave, to show the model.

    Attributes:
        call_id: The id of the `ToolCall` it answers.
        name: The tool's model-facing name.
        text: The result's text (or the error, for the model to read).
        is_error: The call failed (bad arguments, unknown tool, the tool's own error).
        content: The result's MCP content blocks (images, resources...), when any.
        structured: The result's structured content, when any.
    """

    call_id: str
    name: str
    text: str
    is_error: bool = False
    content: tuple[Mapping[str, Any], ...] = ()
    structured: Any = None


# -- tool schemas --------------------------------------------------------------------------


def model_names(names: Iterable[str]) -> dict[str, str]:
    """Maps each MCP tool name to a model-facing name matching ``[a-zA-Z0-9_-]{1,64}``:
    itself when it fits, otherwise a sanitised alias made unique with a ``_2``, ``_3``...
    suffix. Names that fit are never renamed to make room for an alias."""
    names = list(dict.fromkeys(names))
    fitting = {name for name in names if _fits(name)}
    taken = set(fitting)
    mapping: dict[str, str] = {}
    for name in names:
        if name in fitting:
            mapping[name] = name
            continue
        base = (_NOT_NAME.sub("_", name) or "tool")[:_NAME_LIMIT]
        alias, counter = base, 1
        while alias in taken:
            counter += 1
            suffix = f"_{counter}"
            alias = base[: _NAME_LIMIT - len(suffix)] + suffix
        taken.add(alias)
        mapping[name] = alias
    return mapping


def _fits(name: str) -> bool:
    return 0 < len(name) <= _NAME_LIMIT and not _NOT_NAME.search(name)


def _object_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The tool's input schema as an object schema (both APIs require ``type: object``)."""
    result = dict(schema)
    result.setdefault("type", "object")
    if result["type"] == "object":
        result.setdefault("properties", {})
    return result


def openai_tools(
    tools: Iterable[ToolSpec], names: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """The `tools` of an OpenAI chat-completions request.

    Args:
        tools: What `ListTools` answered.
        names: MCP name -> model-facing name (default: `model_names` of `tools`).
    """
    tools = list(tools)
    names = model_names(tool.name for tool in tools) if names is None else names
    result = []
    for tool in tools:
        function: dict[str, Any] = {"name": names[tool.name]}
        if tool.description:
            function["description"] = tool.description
        function["parameters"] = _object_schema(tool.input_schema)
        result.append({"type": "function", "function": function})
    return result


def anthropic_tools(
    tools: Iterable[ToolSpec], names: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """The `tools` of an Anthropic Messages request (arguments as for `openai_tools`)."""
    tools = list(tools)
    names = model_names(tool.name for tool in tools) if names is None else names
    result = []
    for tool in tools:
        entry: dict[str, Any] = {"name": names[tool.name]}
        if tool.description:
            entry["description"] = tool.description
        entry["input_schema"] = _object_schema(tool.input_schema)
        result.append(entry)
    return result


# -- tool calls from the model -------------------------------------------------------------


def _get(holder: object, key: str) -> Any:
    """A field of a wire dict or of an SDK object (``tool_call.function.name``)."""
    if isinstance(holder, Mapping):
        return holder.get(key)
    return getattr(holder, key, None)


def _text_field(value: object) -> str:
    return value if isinstance(value, str) else ""


def _call_id(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequest("tools", field, "must be a non-empty string (the call's id)")
    return value


def _as_json(value: object) -> str:
    """Anthropic's ``input`` as JSON text; what cannot be written is left unparsable, so
    that it is reported to the model rather than run as ``{}``."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return "<not JSON>"


def openai_tool_calls(message: object) -> list[ToolCall]:
    """The tool calls of an assistant message: a `ChatResponse`, an OpenAI wire message
    (a dict, or the SDK's `ChatCompletionMessage`), or its `tool_calls` list itself.

    Raises:
        InvalidRequest: A call without an id (it could not be answered).
    """
    calls = message if isinstance(message, Sequence) else _get(message, "tool_calls")
    found = []
    for index, call in enumerate(calls or ()):
        if isinstance(call, ToolCall):
            found.append(call)
            continue
        function = _get(call, "function")
        found.append(
            ToolCall(
                id=_call_id(_get(call, "id"), f"tool_calls[{index}].id"),
                name=_text_field(_get(function, "name")),
                arguments=_text_field(_get(function, "arguments")),
            )
        )
    return found


def anthropic_tool_uses(content: object) -> list[ToolCall]:
    """The tool calls of an Anthropic assistant message: a `ChatResponse`, its content
    blocks (dicts or the SDK's blocks; ``tool_use`` ones are taken), or the message.

    Raises:
        InvalidRequest: A ``tool_use`` block without an id (it could not be answered).
    """
    calls = _get(content, "tool_calls")
    if calls is not None and not isinstance(content, Sequence):
        return list(calls)  # a ChatResponse: already parsed
    blocks = content if isinstance(content, Sequence) else _get(content, "content")
    found = []
    for index, block in enumerate(blocks or ()):
        if _get(block, "type") != "tool_use":
            continue
        found.append(
            ToolCall(
                id=_call_id(_get(block, "id"), f"content[{index}].id"),
                name=_text_field(_get(block, "name")),
                arguments=_as_json(_get(block, "input")),
            )
        )
    return found


# -- tool results for the model --------------------------------------------------------------


def _result_text(outcome: ToolOutcome) -> str:
    if outcome.text or outcome.structured is None:
        return outcome.text
    return json.dumps(outcome.structured, ensure_ascii=False)


def openai_tool_message(outcome: ToolOutcome) -> dict[str, Any]:
    """The ``{"role": "tool", ...}`` message answering one OpenAI tool call.

    Chat-completions tool messages carry text only: the result's text (its structured
    content as JSON when it has no text); an error's text is prefixed ``Error:``.
    """
    text = _result_text(outcome)
    if outcome.is_error and not text.startswith("Error"):
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": outcome.call_id, "content": text}


def _anthropic_block(block: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = block.get("type")
    if kind == "text" and block.get("text"):
        return {"type": "text", "text": str(block["text"])}
    if kind == "image" and block.get("data") and block.get("mimeType"):
        source = {"type": "base64", "media_type": block["mimeType"], "data": block["data"]}
        return {"type": "image", "source": source}
    if kind == "resource":
        resource = block.get("resource")
        if isinstance(resource, Mapping) and resource.get("text"):
            return {"type": "text", "text": str(resource["text"])}
    if kind == "resource_link" and block.get("uri"):
        return {"type": "text", "text": f"[resource: {block['uri']}]"}
    return None


def anthropic_tool_result(outcome: ToolOutcome) -> dict[str, Any]:
    """The ``tool_result`` content block answering one Anthropic ``tool_use`` (put the
    blocks of one turn in one user message: `MCPToolbox.run_anthropic` does).

    Text and images are kept as blocks; other content as text; ``is_error`` is set for
    an error.
    """
    blocks = [b for b in map(_anthropic_block, outcome.content) if b is not None]
    if not blocks and _result_text(outcome):
        blocks = [{"type": "text", "text": _result_text(outcome)}]
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": outcome.call_id}
    if blocks:
        result["content"] = blocks
    if outcome.is_error:
        result["is_error"] = True
    return result


# -- running tool calls through the MCP service actor -------------------------------------------


class MCPToolbox:
    """One MCP service's tools for a model, and the runner of the model's tool calls.

    ::

        toolbox = await MCPToolbox.load(sup.ref("tools"))
        reply = await openai.chat.completions.create(..., tools=toolbox.openai_tools())
        messages += [reply.choices[0].message, *await toolbox.run_openai(reply.choices[0].message)]

    Tool calls of one turn run concurrently, through the actor (its retries, breaker
    and limits apply to each). Cancellation cancels the calls in flight.
    """

    def __init__(
        self,
        ref: Any,
        tools: Sequence[ToolSpec],
        *,
        timeout: float = 30.0,
        report_failures: bool = False,
    ) -> None:
        """Wraps the actor `ref` of an MCP service whose tools are `tools`.

        Args:
            ref: The MCP service actor's ref (`ActorRef` answering `CallTool`).
            tools: Its tools (see `load`).
            timeout: Deadline of each tool call, in seconds.
            report_failures: Report failures of the service (unavailable, timed out,
                breaker open, ...) to the model as error results instead of raising them.
        """
        self.ref = ref
        self.tools = tuple(tools)
        self.timeout = timeout
        self.report_failures = report_failures
        self.names = model_names(tool.name for tool in self.tools)
        self._by_model_name = {alias: name for name, alias in self.names.items()}

    @classmethod
    async def load(
        cls, ref: Any, *, timeout: float = 30.0, report_failures: bool = False
    ) -> MCPToolbox:
        """Lists the service's tools (`ListTools`) and wraps them.

        Raises:
            ServiceError: As `ref.call(ListTools())` (and `CallError` subclasses).
        """
        tools = await ref.call(ListTools(), timeout=timeout)
        return cls(ref, tools, timeout=timeout, report_failures=report_failures)

    def openai_tools(self) -> list[dict[str, Any]]:
        """The tools for an OpenAI chat-completions request."""
        return openai_tools(self.tools, self.names)

    def anthropic_tools(self) -> list[dict[str, Any]]:
        """The tools for an Anthropic Messages request."""
        return anthropic_tools(self.tools, self.names)

    async def run(self, call: ToolCall) -> ToolOutcome:
        """Runs one tool call through the actor.

        Returns:
            The outcome; the model's mistakes and the tool's own errors are outcomes
            with `is_error` set.

        Raises:
            ActorError: A failure of the service (`ServiceUnavailable`, `CallTimeout`,
                `CircuitOpen`, ...) unless `report_failures`.
        """

        def error(text: str) -> ToolOutcome:
            return ToolOutcome(call_id=call.id, name=call.name, text=text, is_error=True)

        name = self._by_model_name.get(call.name) if isinstance(call.name, str) else None
        if name is None:
            return error(f"Unknown tool: {call.name!r}.")
        try:
            arguments = call.parsed_arguments()
        except (ValueError, TypeError) as exc:  # TypeError: a hand-built call, not text
            return error(f"Invalid arguments: {exc}.")
        try:
            request = CallTool(name, arguments, return_errors=True)
            result: ToolResult = await self.ref.call(request, timeout=self.timeout)
        except InvalidRequest as exc:
            return error(f"Invalid arguments: {exc.field} {exc.reason}.")
        except (ProtocolError, ToolError) as exc:  # the server refused the call
            return error(f"Error: {_reason(exc)}")
        except ActorError as exc:
            if not self.report_failures:
                raise
            return error(f"Error: the tool is unavailable right now ({type(exc).__name__}).")
        return ToolOutcome(
            call_id=call.id,
            name=call.name,
            text=result.text,
            is_error=result.is_error,
            content=result.content,
            structured=result.structured,
        )

    async def run_all(self, calls: Sequence[ToolCall]) -> list[ToolOutcome]:
        """Runs tool calls concurrently; the outcomes are in the calls' order.

        Raises:
            ActorError: The first failure of the service among them (see `run`); the
                other calls still run to their end.
        """
        outcomes: list[ToolOutcome | None] = [None] * len(calls)
        failures: list[ActorError] = []

        async def one(index: int, call: ToolCall) -> None:
            try:
                outcomes[index] = await self.run(call)
            except ActorError as exc:
                failures.append(exc)

        async with anyio.create_task_group() as tg:
            for index, call in enumerate(calls):
                tg.start_soon(one, index, call)
        if failures:
            raise failures[0]
        return [outcome for outcome in outcomes if outcome is not None]

    async def run_openai(self, message: object) -> list[dict[str, Any]]:
        """Runs the tool calls of an OpenAI assistant message; returns the ``tool``
        messages answering them, in order (append them after the assistant message)."""
        outcomes = await self.run_all(openai_tool_calls(message))
        return [openai_tool_message(outcome) for outcome in outcomes]

    async def run_anthropic(self, content: object) -> dict[str, Any]:
        """Runs the ``tool_use`` blocks of an Anthropic assistant message; returns the
        user message carrying their ``tool_result`` blocks, in order."""
        outcomes = await self.run_all(anthropic_tool_uses(content))
        return {"role": "user", "content": [anthropic_tool_result(o) for o in outcomes]}

    def __repr__(self) -> str:
        return f"<MCPToolbox {len(self.tools)} tools>"


def _reason(exc: ToolError | ProtocolError) -> str:
    """The server's own words, without our service prefix and correlation id."""
    text = str(exc)
    prefix = f"{exc.service}: "
    text = text.removeprefix(prefix)
    return text.split(" [correlation_id=", 1)[0]
