"""Chat requests and answers, shared by the OpenAI-compatible and Anthropic clients.

A `ChatRequest` types the fields every provider has (model, messages, max tokens,
temperature, stream) and carries every other body field in `extra`, untouched
(tools, tool_choice, response_format, stop, seed, metadata, thinking, ...). Messages
are the provider's own dicts (every role, tool calls and tool results, content parts
and blocks), sent as given: write them in the wire format of the client they go to.
A plain text conversation reads the same on both; the Anthropic client lifts
``system`` messages into its ``system`` field.

A `ChatResponse` gives the text, the tool calls (assembled from streamed fragments),
the finish reason, the usage (with cached and reasoning tokens), the assistant
message to append to the conversation, and the raw body.

`check_chat_request` is the boundary check run in the caller's task before a request
is queued (see `ServiceClient.check_request`): whatever it accepts, the clients can
build and send without raising anything but a documented error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from actors._errors import InvalidRequest
from actors.services._wire import UsageBound

__all__ = [
    "ChatRequest",
    "ChatResponse",
    "ToolCall",
    "Usage",
    "check_chat_request",
    "json_safe",
]

DEFAULT_MAX_TOKENS: Final = 256
"""The completion budget assumed for the token estimate when a request sets none."""

_CORE_FIELDS: Final = frozenset({"model", "messages", "max_tokens", "temperature", "stream"})
_MEDIA_TYPES: Final = frozenset(
    {"image_url", "input_image", "image", "input_audio", "audio", "file", "input_file", "document"}
)
_MEDIA_ESTIMATE: Final = 1_000  # tokens an image or file part is estimated at
_MEDIA_BOUND: Final = 16_384  # the most tokens a part is allowed (plus 4 per character)
_HIDDEN_PROMPT: Final = 1_024  # tool-use preambles and chat templates a provider adds
_PER_MESSAGE: Final = 16
_UNBOUNDED_COMPLETION: Final = 262_144  # no max_tokens: the largest output of any model
_MAX_JSON_DEPTH: Final = 64


def _tuple(value: object) -> object:
    return tuple(value) if isinstance(value, list | tuple) else value


def _dict(value: object) -> object:
    return dict(value) if isinstance(value, Mapping) else value


@attrs.frozen(kw_only=True)
class ChatRequest:
    """One chat completion, for `LLMClient` or `AnthropicClient`.

    Treat it as immutable once made (its message dicts too): the clients measure it
    once for the token estimate.

    Attributes:
        messages: The conversation: the provider's message dicts, every role.
        model: Overrides the client's model.
        max_tokens: Completion budget (also the token estimate's completion part).
        temperature: Sampling temperature.
        stream: Receive the answer as server-sent events (assembled before replying).
        extra: Every other body field, sent untouched (``tools``, ``tool_choice``,
            ``response_format``, ``stop``, ``seed``, ``metadata``, ...).
        on_chunk: Called with each streamed text delta (stream only).
    """

    messages: tuple[Mapping[str, Any], ...] = attrs.field(converter=_tuple)
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    stream: bool = False
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=_dict)
    on_chunk: Callable[[str], None] | None = attrs.field(default=None, eq=False, repr=False)
    _measure: _Measure | None = attrs.field(
        default=None, init=False, eq=False, repr=False, alias="_measure"
    )

    @classmethod
    def create(cls, messages: Iterable[Mapping[str, Any]], **fields: Any) -> ChatRequest:
        """A request from messages; keywords that are not fields go to `extra`.

        ``ChatRequest.create(history, tools=TOOLS, max_tokens=200)`` sets `max_tokens`
        and sends ``tools`` as a body field.
        """
        own = {name: fields.pop(name) for name in list(fields) if name in _OWN_FIELDS}
        extra = {**own.pop("extra", {}), **fields}
        return cls(messages=tuple(messages), extra=extra, **own)

    @classmethod
    def user(cls, content: str | Sequence[Mapping[str, Any]], **fields: Any) -> ChatRequest:
        """A one-message request from the user (text, or content parts).

        Keywords as in `create`.
        """
        return cls.create(({"role": "user", "content": content},), **fields)

    def followed_by(self, *messages: Mapping[str, Any]) -> ChatRequest:
        """The same request with `messages` appended (e.g. an answer and tool results)."""
        return attrs.evolve(self, messages=(*self.messages, *messages))

    def body_fields(self) -> dict[str, Any]:
        """The typed fields that are set, as body fields (without messages)."""
        body: dict[str, Any] = {}
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body

    def completion_budget(self, default: int | None = None) -> int | None:
        """`max_tokens`, else a ``max_completion_tokens`` in `extra`, else `default`."""
        if self.max_tokens is not None:
            return self.max_tokens
        budget = self.extra.get("max_completion_tokens")
        if isinstance(budget, int) and not isinstance(budget, bool) and budget > 0:
            return budget
        return default

    def estimated_tokens(self, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> float:
        """A cheap estimate of the tokens this request will use.

        Text (messages, tool schemas and every other field, keys included) at 4
        characters a token,
        about 1,000 tokens per image or file part, a few per message, plus the
        completion budget (`max_tokens`, or `default_max_tokens`).
        """
        measure = self._measured()
        completion = self.completion_budget(default_max_tokens) or 0
        return (
            measure.chars / 4
            + measure.media * _MEDIA_ESTIMATE
            + measure.messages * 4
            + completion * self._choices()
        )

    def usage_bound(self, default_max_tokens: int | None = None) -> UsageBound:
        """The most tokens a provider can sanely report for this request.

        A token is at least one byte of the prompt (4 per character at most), plus a
        generous allowance per image or file part and for hidden preambles; the
        completion is at most its budget (or the largest output of any model).
        """
        measure = self._measured()
        prompt = (
            4 * measure.chars
            + measure.media * _MEDIA_BOUND
            + measure.messages * _PER_MESSAGE
            + _HIDDEN_PROMPT
        )
        completion = self.completion_budget(default_max_tokens) or _UNBOUNDED_COMPLETION
        return UsageBound(prompt=prompt, completion=completion * self._choices())

    def _choices(self) -> int:
        n = self.extra.get("n")
        return n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 128 else 1

    def _measured(self) -> _Measure:
        measure = self._measure
        if measure is None:
            measure = _Measure.of(self)
            object.__setattr__(self, "_measure", measure)  # a cache, not state
        return measure


_OWN_FIELDS: Final = frozenset(field.alias for field in attrs.fields(ChatRequest) if field.init) - {
    "messages"
}


@attrs.frozen
class _Measure:
    """What the estimate and the bound read from a request, counted once."""

    chars: int
    media: int
    messages: int

    @classmethod
    def of(cls, request: ChatRequest) -> _Measure:
        chars = 0
        media = 0
        stack: list[object] = [request.messages, request.extra]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                chars += len(item)
            elif isinstance(item, Mapping):
                if item.get("type") in _MEDIA_TYPES:
                    media += 1
                    # A document's text counts in full; an image's data does not.
                    if item.get("type") in {"file", "input_file", "document"}:
                        stack.extend(item.values())
                else:
                    chars += sum(len(key) for key in item if isinstance(key, str))
                    stack.extend(item.values())
            elif isinstance(item, list | tuple):
                stack.extend(item)
        messages = len(request.messages) if isinstance(request.messages, tuple) else 0
        return cls(chars=chars, media=media, messages=messages)


@attrs.frozen
class Usage:
    """Tokens a completion used (zeros where the provider said nothing).

    Attributes:
        prompt_tokens: Every prompt token, cached or not (Anthropic: input plus cache
            writes plus cache reads).
        completion_tokens: Output tokens, reasoning included.
        total_tokens: Prompt plus completion (as reported, within the bound).
        cached_tokens: Prompt tokens read from the provider's cache.
        cache_creation_tokens: Prompt tokens written to the cache (Anthropic).
        reasoning_tokens: Completion tokens spent reasoning (OpenAI).
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0


@attrs.frozen
class ToolCall:
    """A tool the model asked to call.

    Attributes:
        id: The call's id (send it back with the result).
        name: The tool's name.
        arguments: The arguments as JSON text, as the model wrote them (may be invalid).
    """

    id: str
    name: str
    arguments: str

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as a dict.

        Raises:
            ValueError: They are not a JSON object (the model's mistake).
        """
        try:
            value = json.loads(self.arguments or "{}")
        except (ValueError, RecursionError):
            raise ValueError(f"tool call {self.id!r}: arguments are not JSON") from None
        if not isinstance(value, dict):
            raise ValueError(  # noqa: TRY004 - one documented error for bad arguments
                f"tool call {self.id!r}: arguments are not a JSON object"
            )
        return value


@attrs.frozen(kw_only=True)
class ChatResponse:
    """A completed chat answer.

    Attributes:
        content: The assistant's text (text parts or blocks joined).
        model: The model that answered.
        finish_reason: Why generation stopped, as the provider says it ("stop",
            "tool_calls", "length"; Anthropic "end_turn", "tool_use", "max_tokens").
        usage: Token usage, checked and bounded (zeros when the provider sent none).
        tool_calls: Tools the model asked to call, in order.
        message: The assistant message in the provider's wire format, to append to the
            conversation (see `ChatRequest.followed_by` and `tool_results`).
        raw: The answer's JSON body; for a stream, the answer assembled in the same
            shape.
        headers: The response's rate-limit and retry headers (redacted).
        chunks: How many streamed events were received (0 for JSON answers).
        wire: "openai" or "anthropic".
        id: The provider's id for the answer, if given.
    """

    content: str
    model: str
    finish_reason: str | None
    usage: Usage
    tool_calls: tuple[ToolCall, ...] = ()
    message: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
    raw: Any = attrs.field(default=None, repr=False)
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    chunks: int = 0
    wire: str = "openai"
    id: str | None = None

    def tool_results(self, results: Mapping[str, str]) -> tuple[dict[str, Any], ...]:
        """Messages that answer this response's tool calls, in its wire format.

        Args:
            results: Each call's id -> the tool's output text.

        Returns:
            OpenAI: one ``tool`` message per result; Anthropic: one ``user`` message
            with a ``tool_result`` block per result.
        """
        if self.wire == "anthropic":
            blocks = [
                {"type": "tool_result", "tool_use_id": call_id, "content": output}
                for call_id, output in results.items()
            ]
            return ({"role": "user", "content": blocks},)
        return tuple(
            {"role": "tool", "tool_call_id": call_id, "content": output}
            for call_id, output in results.items()
        )


# --------------------------------------------------------------------------- validation


def json_safe(value: object, *, max_depth: int = _MAX_JSON_DEPTH) -> tuple[str, str] | None:
    """Where and why `value` cannot be sent as JSON (``(path, reason)``), or None if it can.

    Strings, finite numbers, integers of at most 1,024 bits, bools, None, mappings with
    string keys and lists or tuples, nested at most `max_depth` levels. The path is
    dotted (``"tools[0].name"``); empty for `value` itself.
    """
    stack: list[tuple[object, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if item is None or isinstance(item, str | bool):
            continue
        if isinstance(item, int):
            if item.bit_length() > 1024:
                return path, "is too large an integer"
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return path, "must be a finite number"
            continue
        if depth >= max_depth:
            return path, f"is nested deeper than {max_depth} levels"
        if isinstance(item, Mapping):
            for key, child in item.items():
                if not isinstance(key, str):
                    return path, "must have string keys"
                stack.append((child, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
        else:
            return path, f"is a {type(item).__name__}, not JSON"
    return None


def _join(prefix: str, path: str) -> str:
    if not path:
        return prefix
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_parts(service: str, field: str, parts: object, *, allow_empty: bool = False) -> None:
    if not isinstance(parts, list | tuple) or (not parts and not allow_empty):
        raise InvalidRequest(service, field, "must be a string or a non-empty list of parts")
    for i, part in enumerate(parts):
        if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
            raise InvalidRequest(service, f"{field}[{i}]", "must be a mapping with a type")
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise InvalidRequest(service, f"{field}[{i}].text", "must be a string")


def _check_openai_tool_calls(service: str, field: str, calls: object) -> None:
    if not isinstance(calls, list | tuple) or not calls:
        raise InvalidRequest(service, field, "must be a non-empty list")
    for i, call in enumerate(calls):
        function = call.get("function") if isinstance(call, Mapping) else None
        if (
            not isinstance(call, Mapping)
            or not isinstance(call.get("id"), str)
            or not isinstance(function, Mapping)
            or not isinstance(function.get("name"), str)
            or not isinstance(function.get("arguments"), str)
        ):
            raise InvalidRequest(
                service, f"{field}[{i}]", "must have an id and a function with name and arguments"
            )


def _check_openai_message(service: str, field: str, message: Mapping[str, Any]) -> None:
    role = message["role"]
    content = message.get("content")
    if role == "assistant":
        if content is None:
            if "tool_calls" not in message and "function_call" not in message:
                raise InvalidRequest(
                    service, f"{field}.content", "may be None only next to tool_calls"
                )
        elif not isinstance(content, str):
            _check_parts(service, f"{field}.content", content)
        if "tool_calls" in message:
            _check_openai_tool_calls(service, f"{field}.tool_calls", message["tool_calls"])
        return
    if not isinstance(content, str):
        if content is None:
            raise InvalidRequest(service, f"{field}.content", f"must be set for role {role!r}")
        _check_parts(service, f"{field}.content", content)
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise InvalidRequest(service, f"{field}.tool_call_id", "must be a string")


def _check_anthropic_message(service: str, field: str, message: Mapping[str, Any]) -> None:
    content = message.get("content")
    if isinstance(content, str):
        return
    if content is None:
        raise InvalidRequest(service, f"{field}.content", "must be a string or a list of blocks")
    _check_parts(service, f"{field}.content", content)
    if message["role"] == "system":
        for i, block in enumerate(content):
            if block["type"] != "text":
                raise InvalidRequest(service, f"{field}.content[{i}]", "must be a text block")


_ROLES: Final = {
    "openai": frozenset({"system", "developer", "user", "assistant", "tool", "function"}),
    "anthropic": frozenset({"system", "user", "assistant"}),
}
_MESSAGE_CHECKS: Final = {"openai": _check_openai_message, "anthropic": _check_anthropic_message}


def check_chat_request(service: str, request: object, *, wire: str) -> None:
    """Refuses a request that the `wire` client could not build or send.

    Checks the types and ranges of the typed fields, that `extra` holds no typed
    field and only JSON, and each message's role, content and tool fields. What the
    provider itself validates (model names, schema contents) is left to it: its 400
    is the caller's mistake, classified as such.

    Raises:
        InvalidRequest: Naming the field (``messages[2].content``, ``max_tokens``...).
    """
    if not isinstance(request, ChatRequest):
        raise InvalidRequest(
            service, "request", f"must be a ChatRequest, not {type(request).__name__}"
        )
    if request.model is not None and (not isinstance(request.model, str) or not request.model):
        raise InvalidRequest(service, "model", "must be a non-empty string")
    if request.max_tokens is not None and (
        not _is_int(request.max_tokens) or request.max_tokens < 1
    ):
        raise InvalidRequest(service, "max_tokens", "must be an integer >= 1")
    temperature = request.temperature
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not 0 <= temperature < math.inf
    ):
        raise InvalidRequest(service, "temperature", "must be a finite number >= 0")
    if not isinstance(request.stream, bool):
        raise InvalidRequest(service, "stream", "must be True or False")
    if request.on_chunk is not None and not callable(request.on_chunk):
        raise InvalidRequest(service, "on_chunk", "must be callable")
    if not isinstance(request.extra, Mapping):
        raise InvalidRequest(service, "extra", "must be a mapping of body fields")
    typed = _CORE_FIELDS.intersection(request.extra)
    if typed:
        raise InvalidRequest(
            service, f"extra.{min(typed)}", "is a typed field: set it on the request"
        )
    unsafe = json_safe(request.extra)
    if unsafe is not None:
        raise InvalidRequest(service, _join("extra", unsafe[0]), unsafe[1])
    messages = request.messages
    if not isinstance(messages, tuple) or not messages:
        raise InvalidRequest(service, "messages", "must be a non-empty list of messages")
    roles = _ROLES[wire]
    check = _MESSAGE_CHECKS[wire]
    for i, message in enumerate(messages):
        field = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise InvalidRequest(service, field, "must be a mapping")
        role = message.get("role")
        if not isinstance(role, str) or role not in roles:
            raise InvalidRequest(
                service, f"{field}.role", f"must be one of {', '.join(sorted(roles))}"
            )
        check(service, field, message)
        unsafe = json_safe(message)
        if unsafe is not None:
            raise InvalidRequest(service, _join(field, unsafe[0]), unsafe[1])
