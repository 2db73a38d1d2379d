"""The MCP requests (`ListTools`, `CallTool`) and replies (`ToolSpec`, `ToolResult`), checked.

Arguments travel as JSON, serialised by the SDK inside the session's writer task: a
value it cannot serialise (a string holding a lone surrogate, say) does not fail one
call there, it ends the whole session and every call multiplexed on it. So arguments
are checked here, before the request is queued: JSON types only (mappings with string
keys, sequences, strings that are valid UTF-8, finite numbers, booleans, None), nested
at most `MAX_DEPTH` levels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from actors._errors import InvalidRequest

__all__ = [
    "MAX_DEPTH",
    "CallTool",
    "ListTools",
    "ToolResult",
    "ToolSpec",
    "call_problem",
    "json_problem",
    "name_problem",
]

MAX_DEPTH = 64
"""How deeply tool arguments may nest (the SDK's serialiser gives up far deeper, with an
error that is not the caller's to read)."""


def _text_problem(value: str) -> str | None:
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid UTF-8 text (no lone surrogates)"
    return None


def json_problem(value: object, field: str) -> tuple[str, str] | None:
    """The first part of `value` that is not plain JSON, as (field path, reason), or None.

    Iterative (no recursion limit to hit), and bounded by `MAX_DEPTH`.
    """
    stack: list[tuple[object, str, int]] = [(value, field, 0)]
    while stack:
        item, path, depth = stack.pop()
        if item is None or isinstance(item, bool | int):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return path, "must be a finite number"
            continue
        if isinstance(item, str):
            reason = _text_problem(item)
            if reason is not None:
                return path, reason
            continue
        if depth >= MAX_DEPTH:
            return path, f"nests deeper than {MAX_DEPTH} levels"
        if isinstance(item, Mapping):
            for key, inner in item.items():
                if not isinstance(key, str):
                    return path, f"keys must be strings, not {type(key).__name__}"
                reason = _text_problem(key)
                if reason is not None:
                    return path, f"key {reason}"
                stack.append((inner, f"{path}.{key}", depth + 1))
            continue
        if isinstance(item, list | tuple):
            stack.extend((inner, f"{path}[{i}]", depth + 1) for i, inner in enumerate(item))
            continue
        kind = type(item).__name__
        return path, f"must be JSON (a mapping, list, string, number, bool or None), not {kind}"
    return None


def name_problem(value: object) -> str | None:
    """Why `value` is not a tool name, or None."""
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if not value:
        return "must be a non-empty string"
    return _text_problem(value)


def call_problem(request: CallTool) -> tuple[str, str] | None:
    """The first problem of a (possibly hand-built) `CallTool`, as (field, reason), or None."""
    reason = name_problem(request.name)
    if reason is not None:
        return "name", reason
    arguments: object = request.arguments  # a hand-built request may hold anything
    if not isinstance(arguments, Mapping):
        return "arguments", f"must be a mapping, not {type(arguments).__name__}"
    flag: object = request.return_errors
    if not isinstance(flag, bool):
        return "return_errors", "must be a bool"
    return json_problem(arguments, "arguments")


@attrs.frozen
class ListTools:
    """Ask the server for its tools (every page); the reply is a list of `ToolSpec`."""


def _arguments(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        kind = type(value).__name__
        raise InvalidRequest("CallTool", "arguments", f"must be a mapping, not {kind}")
    return dict(value)


def _check_call(instance: CallTool, _attr: attrs.Attribute[Any], _value: object) -> None:
    problem = call_problem(instance)
    if problem is not None:
        raise InvalidRequest("CallTool", *problem)


@attrs.frozen
class CallTool:
    """Call one tool.

    Attributes:
        name: The tool's name.
        arguments: Its arguments: plain JSON (shown in no repr).
        return_errors: If true, a tool that reports an error answers with a `ToolResult`
            whose `is_error` is set (what an agent loop shows the model) instead of
            raising `ToolError`.

    Raises:
        InvalidRequest: The name is not a non-empty string, or the arguments are not a
            mapping of plain JSON (see the module docstring).
    """

    name: str
    arguments: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_arguments, repr=lambda value: f"<{len(value)} arguments>"
    )
    return_errors: bool = attrs.field(default=False, kw_only=True, validator=_check_call)


@attrs.frozen
class ToolSpec:
    """One tool as the server lists it.

    Attributes:
        name: The tool's name.
        description: What it does, for the model (may be empty).
        input_schema: The JSON Schema of its arguments (an object schema).
        output_schema: The JSON Schema of its structured result, when it declares one.
    """

    name: str
    description: str = ""
    input_schema: Mapping[str, Any] = attrs.field(factory=lambda: {"type": "object"})
    output_schema: Mapping[str, Any] | None = None


@attrs.frozen
class ToolResult:
    """A tool's answer.

    Attributes:
        text: Its text content, joined.
        structured: Its structured content, when it returns one.
        content: Every content block as MCP sends it (``{"type": "text", "text": ...}``,
            ``{"type": "image", "data": ..., "mimeType": ...}``, ...).
        is_error: The tool reported an error (only with ``CallTool(return_errors=True)``;
            otherwise that is a `ToolError`).
    """

    text: str
    structured: Any = None
    content: tuple[Mapping[str, Any], ...] = ()
    is_error: bool = False
