"""The Anthropic Messages wire format: building bodies, reading answers and events.

Pure functions over bytes and dicts (no I/O), property-tested on their own. Every
parser raises only `MalformedResponse` or `ServiceResponseError`, with the `Wire`
context's service name and correlation id. An ``error`` event in a stream (e.g.
``overloaded_error``) is raised as a `ServiceResponseError` with the HTTP status its
type stands for (``overloaded_error`` -> 529), so it is classified like the status.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from actors._errors import InvalidRequest, ServiceResponseError
from actors._redact import one_line
from actors.services._chat import ChatRequest, ChatResponse, ToolCall, Usage
from actors.services._wire import (
    SSEEvent,
    Wire,
    clamp,
    deliver,
    error_body,
    load_json,
    malformed,
    mapping,
    opt_text,
    sequence,
    text,
    token_count,
)

__all__ = [
    "ERROR_STATUS",
    "StreamAssembler",
    "build_body",
    "parse_error",
    "parse_message",
    "parse_usage",
]

WIRE: Final = "anthropic"

ERROR_STATUS: Final = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
"""Anthropic's error types and the HTTP status each stands for."""


def build_body(request: ChatRequest, *, model: str, max_tokens: int) -> dict[str, Any]:
    """The JSON body of a Messages request.

    ``system`` messages are lifted into the ``system`` field (text joined by blank
    lines, or text blocks when any of them is a list of blocks); `extra` is merged in
    untouched. ``max_tokens`` is required by the API: the client's default fills it.
    """
    system: list[Any] = []
    messages: list[Any] = []
    for message in request.messages:
        (system if message.get("role") == "system" else messages).append(message)
    body: dict[str, Any] = {"model": request.model or model, "messages": messages}
    body["max_tokens"] = max_tokens
    body.update(request.body_fields())
    if system:
        contents = [message.get("content") for message in system]
        if all(isinstance(content, str) for content in contents):
            body["system"] = "\n\n".join(contents)
        else:
            body["system"] = [
                block
                for content in contents
                for block in (
                    [{"type": "text", "text": content}] if isinstance(content, str) else content
                )
            ]
    body.update(request.extra)
    if request.stream:
        body["stream"] = True
    return body


def check_body_fields(service: str, request: ChatRequest) -> None:
    """Anthropic-only request rules: one place for the system prompt, a user turn.

    Raises:
        InvalidRequest: ``system`` both as messages and in `extra`, or no user or
            assistant message.
    """
    lifted = any(message.get("role") == "system" for message in request.messages)
    if lifted and "system" in request.extra:
        raise InvalidRequest(service, "extra.system", "is also given as system messages")
    if all(message.get("role") == "system" for message in request.messages):
        raise InvalidRequest(service, "messages", "needs a user or assistant message")


def parse_usage(wire: Wire, data: object) -> Usage:
    """Usage from an Anthropic ``usage`` object, checked and clamped to the bound.

    The prompt counts input, cache writes and cache reads (all of it was read).
    """
    if not isinstance(data, dict):
        return Usage()
    bound = wire.bound
    fresh = token_count(wire, data, "input_tokens") or 0
    created = token_count(wire, data, "cache_creation_input_tokens") or 0
    read = token_count(wire, data, "cache_read_input_tokens") or 0
    output = token_count(wire, data, "output_tokens") or 0
    prompt = clamp(wire, "input_tokens", fresh + created + read, bound.prompt)
    completion = clamp(wire, "output_tokens", output, bound.completion)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cached_tokens=min(read, prompt),
        cache_creation_tokens=min(created, prompt),
    )


def _blocks(wire: Wire, value: object) -> tuple[str, tuple[ToolCall, ...]]:
    pieces: list[str] = []
    calls: list[ToolCall] = []
    for i, item in enumerate(sequence(wire, value, "content")):
        block = mapping(wire, item, f"content[{i}]")
        kind = text(wire, block.get("type"), f"content[{i}].type")
        if kind == "text":
            pieces.append(text(wire, block.get("text"), f"content[{i}].text"))
        elif kind == "tool_use":
            calls.append(
                ToolCall(
                    id=text(wire, block.get("id"), f"content[{i}].id"),
                    name=text(wire, block.get("name"), f"content[{i}].name"),
                    arguments=json.dumps(mapping(wire, block.get("input"), f"content[{i}].input")),
                )
            )
    return "".join(pieces), tuple(calls)


def parse_message(
    wire: Wire, raw: bytes, headers: Mapping[str, str], *, model: str
) -> ChatResponse:
    """A JSON Messages answer.

    Raises:
        MalformedResponse: Not JSON, too large or deep, or not a message.
        ServiceResponseError: A 200 whose body is an error object.
    """
    data = mapping(wire, load_json(wire, raw, "the answer"), "the answer")
    if data.get("type") == "error":
        raise parse_error_object(wire, data.get("error"), headers, status=None)
    content = data.get("content")
    joined, calls = _blocks(wire, content)
    return ChatResponse(
        content=joined,
        model=opt_text(data.get("model")) or model,
        finish_reason=opt_text(data.get("stop_reason")),
        usage=parse_usage(wire, data.get("usage")),
        tool_calls=calls,
        message={"role": "assistant", "content": content},
        raw=data,
        headers=headers,
        wire=WIRE,
        id=opt_text(data.get("id")),
    )


def parse_error_object(
    wire: Wire, error: object, headers: Mapping[str, str], *, status: int | None
) -> ServiceResponseError:
    """A `ServiceResponseError` from an ``error`` object (text redacted); without a
    `status`, the one its type stands for (unknown types: 500)."""
    error = error if isinstance(error, dict) else {}
    scrub = wire.redactor
    kind = opt_text(error.get("type"))
    message = opt_text(error.get("message")) or ""
    details = error.get("details")
    # A spend limit's 429 names itself only in details.error_code: that is the code.
    detail = opt_text(details.get("error_code")) if isinstance(details, dict) else None
    code = detail or kind
    return ServiceResponseError(
        wire.service,
        status if status is not None else ERROR_STATUS.get(kind or "", 500),
        headers=dict(headers),
        code=one_line(code, redactor=scrub, limit=100) if code else None,
        message=one_line(message, redactor=scrub),
        correlation_id=wire.correlation_id,
    )


def parse_error(
    wire: Wire, status: int, headers: Mapping[str, str], raw: bytes | None
) -> ServiceResponseError:
    """The error for an error status; never raises (an unreadable body leaves the status)."""
    body = error_body(wire, raw)
    error = body.get("error") if isinstance(body, dict) else None
    return parse_error_object(wire, error, headers, status=status)


# --------------------------------------------------------------------------- streams


class StreamAssembler:
    """Assembles a streamed message from its events (``message_start``,
    ``content_block_start|delta|stop``, ``message_delta``, ``message_stop``, ``ping``,
    ``error``); unknown event and delta types are skipped (forward compatible)."""

    def __init__(
        self, wire: Wire, *, model: str, on_chunk: Callable[[str], None] | None = None
    ) -> None:
        self.wire = wire
        self.model = model
        self.on_chunk = on_chunk
        self.done = False
        self.chunks = 0
        self._message: dict[str, Any] = {}
        self._usage: dict[str, Any] = {}
        self._blocks: dict[int, dict[str, Any]] = {}
        self._json: dict[int, list[str]] = {}

    def feed(self, event: SSEEvent) -> None:
        """Takes one event; after ``message_stop`` the rest is ignored.

        Raises:
            MalformedResponse: The event is not of the documented shape.
            ServiceResponseError: An ``error`` event.
            InvalidRequest: `on_chunk` raised (the caller's callback, not the service).
        """
        if self.done or not event.data.strip():
            return
        wire = self.wire
        self.chunks += 1
        data = mapping(
            wire,
            load_json(wire, event.data, "a stream event", max_bytes=wire.limits.max_event_bytes),
            "a stream event",
        )
        kind = opt_text(data.get("type")) or event.event
        if kind == "error":
            raise parse_error_object(wire, data.get("error"), {}, status=None)
        if kind == "message_start":
            message = mapping(wire, data.get("message"), "message_start.message")
            self._message = dict(message)
            self.model = opt_text(message.get("model")) or self.model
            if isinstance(message.get("usage"), dict):
                self._usage.update(message["usage"])
        elif kind == "content_block_start":
            index = self._index(data, open_=False)
            block = dict(mapping(wire, data.get("content_block"), "content_block"))
            text(wire, block.get("type"), "content_block.type")
            self._blocks[index] = block
            if block["type"] == "tool_use":
                text(wire, block.get("id"), "content_block.id")
                text(wire, block.get("name"), "content_block.name")
                self._json[index] = []
        elif kind == "content_block_delta":
            self._delta(self._index(data), mapping(wire, data.get("delta"), "delta"))
        elif kind == "content_block_stop":
            self._close(self._index(data))
        elif kind == "message_delta":
            delta = data.get("delta")
            if isinstance(delta, dict):
                for key in ("stop_reason", "stop_sequence"):
                    if key in delta:
                        self._message[key] = delta[key]
            if isinstance(data.get("usage"), dict):
                self._usage.update(data["usage"])  # cumulative counts
        elif kind == "message_stop":
            self.done = True

    def _index(self, data: Mapping[str, Any], *, open_: bool = True) -> int:
        index = data.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 4096:
            raise malformed(self.wire, "a content block's index is not a small integer")
        if open_ and index not in self._blocks:
            raise malformed(self.wire, f"content block {index} was never started")
        return index

    def _delta(self, index: int, delta: Mapping[str, Any]) -> None:
        wire = self.wire
        block = self._blocks[index]
        kind = delta.get("type")
        if kind == "text_delta":
            piece = text(wire, delta.get("text"), "text_delta.text")
            block["text"] = opt_text(block.get("text")) or ""
            block["text"] += piece
            deliver(wire, self.on_chunk, piece)
        elif kind == "input_json_delta":
            if index not in self._json:
                raise malformed(wire, f"content block {index} is not a tool_use block")
            self._json[index].append(text(wire, delta.get("partial_json"), "partial_json"))
        elif kind == "thinking_delta":
            block["thinking"] = (opt_text(block.get("thinking")) or "") + text(
                wire, delta.get("thinking"), "thinking_delta.thinking"
            )
        elif kind == "signature_delta":
            block["signature"] = text(wire, delta.get("signature"), "signature_delta.signature")

    def _close(self, index: int) -> None:
        parts = self._json.pop(index, None)
        if parts is None:
            return
        joined = "".join(parts)
        if joined.strip():
            value = load_json(self.wire, joined, "a tool call's input")
            self._blocks[index]["input"] = mapping(self.wire, value, "a tool call's input")
        elif not isinstance(self._blocks[index].get("input"), dict):
            self._blocks[index]["input"] = {}

    def result(self, headers: Mapping[str, str]) -> ChatResponse:
        """The assembled answer.

        Raises:
            MalformedResponse: The stream ended without ``message_stop``, or a tool
                call's input is not a JSON object.
        """
        if not self.done:
            raise malformed(self.wire, "the stream ended without message_stop")
        for index in list(self._json):
            self._close(index)
        content = [self._blocks[index] for index in sorted(self._blocks)]
        joined, calls = _blocks(self.wire, content)
        raw = {
            **self._message,
            "type": "message",
            "content": content,
            "usage": self._usage,
        }
        return ChatResponse(
            content=joined,
            model=self.model,
            finish_reason=opt_text(self._message.get("stop_reason")),
            usage=parse_usage(self.wire, self._usage),
            tool_calls=calls,
            message={"role": "assistant", "content": content},
            raw=raw,
            headers=headers,
            chunks=self.chunks,
            wire=WIRE,
            id=opt_text(self._message.get("id")),
        )
