"""The OpenAI-compatible chat-completions wire format: building bodies, reading answers.

Pure functions over bytes and dicts (no I/O), so each parser is property-tested on
its own. Every parser raises only `MalformedResponse` or `ServiceResponseError`,
with the `Wire` context's service name and correlation id.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from actors._errors import ServiceResponseError
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
    "StreamAssembler",
    "build_body",
    "parse_completion",
    "parse_error",
    "parse_usage",
]

WIRE: Final = "openai"


def build_body(
    request: ChatRequest, *, model: str, max_tokens_field: str = "max_tokens"
) -> dict[str, Any]:
    """The JSON body of a chat-completions request (`extra` merged in untouched)."""
    body: dict[str, Any] = {"model": request.model or model, "messages": list(request.messages)}
    fields = request.body_fields()
    if "max_tokens" in fields and max_tokens_field != "max_tokens":
        fields[max_tokens_field] = fields.pop("max_tokens")
    body.update(fields)
    body.update(request.extra)
    if request.stream:
        body["stream"] = True
        options = body.get("stream_options")
        body["stream_options"] = {
            **(options if isinstance(options, Mapping) else {}),
            "include_usage": True,
        }
    return body


def parse_usage(wire: Wire, data: object) -> Usage:
    """Usage from an OpenAI ``usage`` object: checked, and clamped to the request's bound."""
    if not isinstance(data, dict):
        return Usage()
    bound = wire.bound
    prompt = clamp(
        wire, "prompt_tokens", token_count(wire, data, "prompt_tokens") or 0, bound.prompt
    )
    completion = clamp(
        wire,
        "completion_tokens",
        token_count(wire, data, "completion_tokens") or 0,
        bound.completion,
    )
    total = token_count(wire, data, "total_tokens")
    total = clamp(
        wire, "total_tokens", prompt + completion if total is None else total, bound.total
    )
    cached = token_count(wire, data.get("prompt_tokens_details"), "cached_tokens") or 0
    reasoning = token_count(wire, data.get("completion_tokens_details"), "reasoning_tokens") or 0
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        cached_tokens=clamp(wire, "cached_tokens", cached, prompt),
        reasoning_tokens=clamp(wire, "reasoning_tokens", reasoning, completion),
    )


def _content_text(wire: Wire, value: object, what: str) -> str:
    """A message's content: a string, null, or a list of parts whose text is joined."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    parts = sequence(wire, value, what)
    pieces: list[str] = []
    for i, item in enumerate(parts):
        part = mapping(wire, item, f"{what}[{i}]")
        if part.get("type") == "text":
            pieces.append(text(wire, part.get("text"), f"{what}[{i}].text"))
    return "".join(pieces)


def _arguments(wire: Wire, value: object, what: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):  # some servers send the object itself
        return json.dumps(value)
    raise malformed(wire, f"{what} is not a string")


def _tool_calls(wire: Wire, value: object) -> tuple[ToolCall, ...]:
    if value is None:
        return ()
    calls: list[ToolCall] = []
    for i, item in enumerate(sequence(wire, value, "message.tool_calls")):
        call = mapping(wire, item, f"message.tool_calls[{i}]")
        function = mapping(wire, call.get("function"), f"message.tool_calls[{i}].function")
        calls.append(
            ToolCall(
                id=opt_text(call.get("id")) or f"call_{i}",
                name=text(wire, function.get("name"), f"message.tool_calls[{i}].function.name"),
                arguments=_arguments(
                    wire, function.get("arguments"), f"message.tool_calls[{i}].function.arguments"
                ),
            )
        )
    return tuple(calls)


def assistant_message(content: str, tool_calls: tuple[ToolCall, ...]) -> dict[str, Any]:
    """The assistant message to append to the conversation (only fields it accepts back)."""
    message: dict[str, Any] = {"role": "assistant", "content": content or None}
    if tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in tool_calls
        ]
    elif message["content"] is None:
        message["content"] = ""
    return message


def parse_completion(
    wire: Wire, raw: bytes, headers: Mapping[str, str], *, model: str
) -> ChatResponse:
    """A JSON chat completion (the first choice).

    Raises:
        MalformedResponse: Not JSON, too large or deep, or not a chat completion.
        ServiceResponseError: A 200 whose body is an error object.
    """
    data = mapping(wire, load_json(wire, raw, "the answer"), "the answer")
    if "choices" not in data and isinstance(data.get("error"), dict):
        raise error_from_object(wire, data["error"], headers)
    choices = sequence(wire, data.get("choices"), "choices")
    if not choices:
        raise malformed(wire, "the answer has no choices")
    choice = mapping(wire, choices[0], "choices[0]")
    message = mapping(wire, choice.get("message"), "choices[0].message")
    content = _content_text(wire, message.get("content"), "choices[0].message.content")
    calls = _tool_calls(wire, message.get("tool_calls"))
    return ChatResponse(
        content=content,
        model=opt_text(data.get("model")) or model,
        finish_reason=opt_text(choice.get("finish_reason")),
        usage=parse_usage(wire, data.get("usage")),
        tool_calls=calls,
        message=assistant_message(content, calls),
        raw=data,
        headers=headers,
        wire=WIRE,
        id=opt_text(data.get("id")),
    )


# --------------------------------------------------------------------------- errors


def _status_of_code(code: object) -> int:
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
        return code
    if isinstance(code, str) and code.isdigit() and 400 <= int(code) <= 599:
        return int(code)
    return 500


def error_from_object(
    wire: Wire, error: Mapping[str, Any], headers: Mapping[str, str], status: int | None = None
) -> ServiceResponseError:
    """A `ServiceResponseError` from an OpenAI ``error`` object (all its text redacted).

    `status` defaults to the object's numeric ``code`` (vLLM and others send one in a
    stream), else 500.
    """
    scrub = wire.redactor
    raw_code = error.get("code")
    code = raw_code if isinstance(raw_code, str) and raw_code else opt_text(error.get("type"))
    message = opt_text(error.get("message")) or ""
    param = opt_text(error.get("param"))
    if param:
        message = f"{message} (param {param})"
    return ServiceResponseError(
        wire.service,
        status if status is not None else _status_of_code(raw_code),
        headers=dict(headers),
        code=one_line(code, redactor=scrub, limit=100) if code else None,
        message=one_line(message, redactor=scrub),
        correlation_id=wire.correlation_id,
    )


def parse_error(
    wire: Wire, status: int, headers: Mapping[str, str], raw: bytes | None
) -> ServiceResponseError:
    """The error for an error status; the body's ``error`` object adds code and message.

    Never raises: a body that is missing, too large, not JSON or not the documented
    shape leaves only the status.
    """
    body = error_body(wire, raw)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):  # some servers: {"error": "message"}
        error = {"message": error}
    return error_from_object(wire, error if isinstance(error, dict) else {}, headers, status)


# --------------------------------------------------------------------------- streams


class StreamAssembler:
    """Assembles a streamed completion from its server-sent events.

    Text deltas are joined (and handed to `on_chunk`), tool-call fragments are joined
    by their ``index`` (id and name from the first fragment that has them, arguments
    concatenated), the last usage wins. Only the first choice (index 0) is kept.
    """

    def __init__(
        self, wire: Wire, *, model: str, on_chunk: Callable[[str], None] | None = None
    ) -> None:
        self.wire = wire
        self.model = model
        self.on_chunk = on_chunk
        self.done = False
        self.chunks = 0
        self._parts: list[str] = []
        self._calls: dict[int, dict[str, str]] = {}
        self._finish: str | None = None
        self._usage: object = None
        self._id: str | None = None
        self._created: object = None

    def feed(self, event: SSEEvent) -> None:
        """Takes one event; after ``[DONE]`` the rest is ignored.

        Raises:
            MalformedResponse: The event is not a chunk object of the documented shape.
            ServiceResponseError: The event is an error object.
            InvalidRequest: `on_chunk` raised (the caller's callback, not the service).
        """
        if self.done:
            return
        data = event.data.strip()
        if data == "[DONE]":
            self.done = True
            return
        if not data:
            return
        wire = self.wire
        self.chunks += 1
        chunk = mapping(
            wire,
            load_json(wire, data, "a stream event", max_bytes=wire.limits.max_event_bytes),
            "a stream event",
        )
        if isinstance(chunk.get("error"), dict):
            raise error_from_object(wire, chunk["error"], {})
        self.model = opt_text(chunk.get("model")) or self.model
        self._id = self._id or opt_text(chunk.get("id"))
        self._created = self._created or chunk.get("created")
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        if choices is None:
            return
        for i, item in enumerate(sequence(wire, choices, "a stream event's choices")):
            choice = mapping(wire, item, f"choices[{i}]")
            index = choice.get("index", 0)
            if not isinstance(index, int) or isinstance(index, bool):
                raise malformed(wire, f"choices[{i}].index is not an integer")
            if index == 0:
                self._choice(choice, i)

    def _choice(self, choice: Mapping[str, Any], i: int) -> None:
        wire = self.wire
        delta = choice.get("delta")
        delta = {} if delta is None else mapping(wire, delta, f"choices[{i}].delta")
        content = delta.get("content")
        if content is not None:
            piece = text(wire, content, f"choices[{i}].delta.content")
            self._parts.append(piece)
            deliver(wire, self.on_chunk, piece)
        calls = delta.get("tool_calls")
        if calls is not None:
            for j, item in enumerate(sequence(wire, calls, f"choices[{i}].delta.tool_calls")):
                self._call_fragment(mapping(wire, item, f"choices[{i}].delta.tool_calls[{j}]"), j)
        self._finish = opt_text(choice.get("finish_reason")) or self._finish

    def _call_fragment(self, fragment: Mapping[str, Any], position: int) -> None:
        wire = self.wire
        index = fragment.get("index", position)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 1024:
            raise malformed(wire, "a tool call fragment's index is not a small integer")
        call = self._calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
        call["id"] = call["id"] or opt_text(fragment.get("id")) or ""
        function = fragment.get("function")
        if function is None:
            return
        function = mapping(wire, function, "a tool call fragment's function")
        name = function.get("name")
        if name is not None:
            call["name"] += text(wire, name, "a tool call fragment's name")
        arguments = function.get("arguments")
        if arguments is not None:
            call["arguments"] += _arguments(wire, arguments, "a tool call fragment's arguments")

    def result(self, headers: Mapping[str, str]) -> ChatResponse:
        """The assembled answer.

        Raises:
            MalformedResponse: The stream ended without ``[DONE]``.
        """
        if not self.done:
            raise malformed(self.wire, "the stream ended without [DONE]")
        content = "".join(self._parts)
        calls = tuple(
            ToolCall(
                id=call["id"] or f"call_{index}", name=call["name"], arguments=call["arguments"]
            )
            for index, call in sorted(self._calls.items())
        )
        message = assistant_message(content, calls)
        raw = {
            "id": self._id,
            "object": "chat.completion",
            "created": self._created,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self._finish}],
            "usage": self._usage,
        }
        return ChatResponse(
            content=content,
            model=self.model,
            finish_reason=self._finish,
            usage=parse_usage(self.wire, self._usage),
            tool_calls=calls,
            message=message,
            raw=raw,
            headers=headers,
            chunks=self.chunks,
            wire=WIRE,
            id=self._id,
        )
