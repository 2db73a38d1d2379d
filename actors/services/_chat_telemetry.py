"""Chat requests and answers as GenAI client spans and metrics (OpenTelemetry semantic
conventions for generative AI: inference spans, ``gen_ai.*`` attributes).

An attempt is ``chat {model}`` (kind CLIENT) with the operation, provider, requested
model, sampling parameters and server; its answer adds the response model and id, the
finish reasons and the token usage (input tokens count cached ones, as the convention
says). Content is recorded only when the service captures it: the conversation as
``gen_ai.input.messages`` and the answer as ``gen_ai.output.messages``, in the
convention's message shape (role and parts: text, tool calls, tool results; other parts
by type only, never their data). Values the provider chooses are cut to a bounded
length.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any, Final

from actors._otel_metrics import GEN_AI_DURATION
from actors._tracing import AttributeValue, Operation
from actors.services._chat import ChatRequest, ChatResponse

__all__ = ["chat_operation", "chat_outcome", "server_of"]

_MAX_CHOSEN: Final = 256  # characters of a provider-chosen value (model, id, reason)


def server_of(base_url: str) -> dict[str, AttributeValue]:
    """``server.address`` and ``server.port`` of an API root."""
    parts = urllib.parse.urlsplit(base_url)
    out: dict[str, AttributeValue] = {}
    if parts.hostname:
        out["server.address"] = parts.hostname
    try:
        port = parts.port
    except ValueError:  # checked at configuration; a port out of range is simply not told
        port = None
    out["server.port"] = port or (443 if parts.scheme == "https" else 80)
    return out


def chat_operation(
    request: ChatRequest,
    *,
    model: str,
    provider: str,
    server: Mapping[str, AttributeValue],
    content: bool,
) -> Operation:
    """One chat attempt: ``chat {model}`` with the request's attributes."""
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.request.stream": bool(request.stream),
        **server,
    }
    if isinstance(request.max_tokens, int):
        attributes["gen_ai.request.max_tokens"] = request.max_tokens
    if isinstance(request.temperature, int | float):
        attributes["gen_ai.request.temperature"] = float(request.temperature)
    extra = request.extra
    for field, key in (("top_p", "gen_ai.request.top_p"), ("seed", "gen_ai.request.seed")):
        value = extra.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attributes[key] = value
    if content:
        attributes["gen_ai.input.messages"] = _json(list(_input_messages(request)))
        system = extra.get("system")
        if system is not None:
            attributes["gen_ai.system_instructions"] = _json(list(_parts(system)))
    return Operation(name=f"chat {model}", attributes=attributes, metric=GEN_AI_DURATION)


def chat_outcome(response: ChatResponse, *, content: bool) -> dict[str, AttributeValue]:
    """The answer's attributes: response model and id, finish reasons, token usage."""
    usage = response.usage
    attributes: dict[str, AttributeValue] = {
        "gen_ai.response.model": _chosen(response.model),
        "gen_ai.usage.input_tokens": usage.prompt_tokens,
        "gen_ai.usage.output_tokens": usage.completion_tokens,
    }
    if response.id:
        attributes["gen_ai.response.id"] = _chosen(response.id)
    if response.finish_reason:
        attributes["gen_ai.response.finish_reasons"] = (_chosen(response.finish_reason),)
    if usage.cached_tokens:
        attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
    if usage.cache_creation_tokens:
        attributes["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_creation_tokens
    if usage.reasoning_tokens:
        attributes["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
    if content:
        parts: list[dict[str, Any]] = []
        if response.content:
            parts.append({"type": "text", "content": response.content})
        parts.extend(
            {"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments}
            for call in response.tool_calls
        )
        message: dict[str, Any] = {"role": "assistant", "parts": parts}
        if response.finish_reason:
            message["finish_reason"] = response.finish_reason
        attributes["gen_ai.output.messages"] = _json([message])
    return attributes


def _chosen(value: str) -> str:
    return value if len(value) <= _MAX_CHOSEN else value[:_MAX_CHOSEN]


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


def _input_messages(request: ChatRequest) -> Iterator[dict[str, Any]]:
    for message in request.messages:
        role = message.get("role")
        parts = list(_parts(message.get("content")))
        for call in message.get("tool_calls") or ():  # OpenAI's assistant tool calls
            if isinstance(call, Mapping):
                function = call.get("function")
                function = function if isinstance(function, Mapping) else {}
                parts.append(
                    {
                        "type": "tool_call",
                        "id": call.get("id"),
                        "name": function.get("name"),
                        "arguments": function.get("arguments"),
                    }
                )
        if role == "tool":  # OpenAI's tool result
            parts = [
                {
                    "type": "tool_call_response",
                    "id": message.get("tool_call_id"),
                    "response": message.get("content"),
                }
            ]
        yield {"role": role, "parts": parts}


def _parts(content: object) -> Iterator[dict[str, Any]]:
    """The convention's parts of a message's content: text, tool calls and results;
    other parts (images, audio, files) by type only."""
    if isinstance(content, str):
        yield {"type": "text", "content": content}
        return
    if not isinstance(content, list | tuple):
        return
    for part in content:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text"):
            yield {"type": "text", "content": part.get("text")}
        elif kind == "tool_use":  # Anthropic
            yield {
                "type": "tool_call",
                "id": part.get("id"),
                "name": part.get("name"),
                "arguments": part.get("input"),
            }
        elif kind == "tool_result":
            yield {
                "type": "tool_call_response",
                "id": part.get("tool_use_id"),
                "response": part.get("content"),
            }
        else:
            yield {"type": str(kind)}
