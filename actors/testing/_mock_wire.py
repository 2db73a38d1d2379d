"""How the mock LLM writes its answers on each wire format (OpenAI, Anthropic).

Pure functions from a `Reply` (what the mock decided to say) to JSON bodies and
server-sent events in the shapes the official SDKs parse: chat completions and
chunks (tool-call arguments streamed in fragments), Anthropic messages and their
event sequence, and both formats' error bodies.
"""

from __future__ import annotations

import json
from typing import Any, Final

import attrs

__all__ = [
    "ANTHROPIC_ERROR_TYPES",
    "OPENAI_ERROR_TYPES",
    "Reply",
    "anthropic_error",
    "anthropic_events",
    "anthropic_message",
    "openai_chunks",
    "openai_completion",
    "openai_error",
    "sse",
]

OPENAI_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    408: "timeout",
    409: "conflict",
    422: "invalid_request_error",
    429: "requests",
    500: "server_error",
    503: "service_unavailable",
    529: "overloaded_error",
}
ANTHROPIC_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_FRAGMENT: Final = 7  # characters of tool-call arguments per streamed fragment


@attrs.frozen(kw_only=True)
class Reply:
    """What the mock answers: text or tool calls, with the usage it reports."""

    id: str
    model: str
    created: int
    text: str
    calls: tuple[tuple[str, str, str], ...] = ()  # (id, name, arguments JSON)
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0


def sse(data: str, event: str | None = None) -> bytes:
    """One server-sent event."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode()


# --------------------------------------------------------------------------- OpenAI


def _openai_usage(reply: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def openai_completion(reply: Reply) -> dict[str, Any]:
    """A ``chat.completion`` body."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.calls:
        message["tool_calls"] = [
            {"id": id_, "type": "function", "function": {"name": name, "arguments": args}}
            for id_, name, args in reply.calls
        ]
    elif message["content"] is None:
        message["content"] = ""
    return {
        "id": reply.id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if reply.calls else "stop",
                "logprobs": None,
            }
        ],
        "usage": _openai_usage(reply),
    }


def openai_chunks(reply: Reply) -> list[str]:
    """The data of each ``chat.completion.chunk`` event (``[DONE]`` not included)."""
    base = {
        "id": reply.id,
        "object": "chat.completion.chunk",
        "created": reply.created,
        "model": reply.model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return json.dumps({**base, "choices": [choice]})

    out = [chunk({"role": "assistant", "content": ""})]
    if reply.text:
        words = reply.text.split(" ")
        out += [chunk({"content": w if i == 0 else f" {w}"}) for i, w in enumerate(words)]
    for index, (id_, name, args) in enumerate(reply.calls):
        start = {"index": index, "id": id_, "type": "function"}
        out.append(chunk({"tool_calls": [{**start, "function": {"name": name, "arguments": ""}}]}))
        for at in range(0, len(args), _FRAGMENT):
            piece = {"index": index, "function": {"arguments": args[at : at + _FRAGMENT]}}
            out.append(chunk({"tool_calls": [piece]}))
    out.append(chunk({}, "tool_calls" if reply.calls else "stop"))
    out.append(json.dumps({**base, "choices": [], "usage": _openai_usage(reply)}))
    return out


def openai_error(
    status: int,
    message: str,
    *,
    type_: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """An OpenAI ``{"error": {...}}`` body (type from the status unless given)."""
    kind = type_ or OPENAI_ERROR_TYPES.get(status, "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# --------------------------------------------------------------------------- Anthropic


def _anthropic_usage(reply: Reply, output: int) -> dict[str, Any]:
    return {
        "input_tokens": max(0, reply.prompt_tokens - reply.cached_tokens),
        "output_tokens": output,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": reply.cached_tokens,
    }


def _blocks(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.text or not reply.calls:
        blocks.append({"type": "text", "text": reply.text})
    blocks += [
        {"type": "tool_use", "id": id_, "name": name, "input": json.loads(args)}
        for id_, name, args in reply.calls
    ]
    return blocks


def anthropic_message(reply: Reply) -> dict[str, Any]:
    """A Messages answer body."""
    return {
        "id": reply.id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": _blocks(reply),
        "stop_reason": "tool_use" if reply.calls else "end_turn",
        "stop_sequence": None,
        "usage": _anthropic_usage(reply, reply.completion_tokens),
    }


def anthropic_events(reply: Reply) -> list[tuple[str, str]]:
    """The ``(event, data)`` sequence of a streamed answer, message_start to message_stop."""
    start = {**anthropic_message(reply), "content": [], "stop_reason": None}
    start["usage"] = _anthropic_usage(reply, 1)
    out: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(_blocks(reply)):
        opened: dict[str, Any]
        if block["type"] == "text":
            opened = {"type": "text", "text": ""}
            words = block["text"].split(" ") if block["text"] else []
            deltas = [
                {"type": "text_delta", "text": w if i == 0 else f" {w}"}
                for i, w in enumerate(words)
            ]
        else:
            opened = {**block, "input": {}}
            args = json.dumps(block["input"])
            deltas = [
                {"type": "input_json_delta", "partial_json": args[at : at + _FRAGMENT]}
                for at in range(0, len(args), _FRAGMENT)
            ]
        out.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": opened},
            )
        )
        out += [
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        ]
        out.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    out.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": "tool_use" if reply.calls else "end_turn",
                    "stop_sequence": None,
                },
                "usage": {"output_tokens": reply.completion_tokens},
            },
        )
    )
    out.append(("message_stop", {"type": "message_stop"}))
    return [(event, json.dumps(data)) for event, data in out]


def anthropic_error(status: int, message: str, *, type_: str | None = None) -> dict[str, Any]:
    """An Anthropic ``{"type": "error", "error": {...}}`` body (type from the status)."""
    kind = type_ or ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}
