"""Reading untrusted provider bytes: bounded JSON, a bounded SSE decoder, checked fields.

Shared by the OpenAI-compatible and Anthropic wire modules. Everything here raises
only `MalformedResponse` (with the service name and correlation id of the `Wire`
context), never `RecursionError`, `OverflowError`, `AttributeError` and the like:

- `load_json` refuses bodies over a size and values nested deeper than a bound;
- `SSEDecoder` splits server-sent events incrementally, with any line ending and any
  chunking, refusing an event (or a stream) over its size bound;
- `mapping`, `sequence`, `text`, `opt_text` check a field's shape and type;
- `error_body` reads an error response's body leniently (the status stands alone);
- `token_count` and `clamp` turn a reported token count into a finite, non-negative
  int within the request's own bound, or report it (events ``llm.usage_invalid`` and
  ``llm.usage_clamped``) and leave it out: a provider's figure is never charged as is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs

from actors._errors import InvalidRequest, MalformedResponse
from actors._events import emit
from actors._redact import Redactor
from actors._validate import positive_int

__all__ = [
    "NO_BOUND",
    "SSEDecoder",
    "SSEEvent",
    "UsageBound",
    "Wire",
    "WireLimits",
    "clamp",
    "deliver",
    "error_body",
    "load_json",
    "malformed",
    "mapping",
    "opt_text",
    "sequence",
    "text",
    "token_count",
]

_MiB: Final = 1 << 20


@attrs.frozen(kw_only=True)
class WireLimits:
    """How much of a provider's answer is read before it is refused as malformed.

    Attributes:
        max_body_bytes: A JSON answer's body.
        max_error_bytes: An error response's body (only its message is kept anyway).
        max_event_bytes: One server-sent event.
        max_stream_bytes: A whole streamed answer.
        max_depth: Nesting of JSON arrays and objects.
    """

    max_body_bytes: int = attrs.field(default=32 * _MiB, validator=positive_int)
    max_error_bytes: int = attrs.field(default=_MiB, validator=positive_int)
    max_event_bytes: int = attrs.field(default=4 * _MiB, validator=positive_int)
    max_stream_bytes: int = attrs.field(default=256 * _MiB, validator=positive_int)
    max_depth: int = attrs.field(default=64, validator=positive_int)


@attrs.frozen
class UsageBound:
    """The most tokens one request can sanely use: more is clamped, never charged."""

    prompt: int
    completion: int

    @property
    def total(self) -> int:
        """Prompt plus completion."""
        return self.prompt + self.completion


NO_BOUND: Final = UsageBound(prompt=2**62, completion=2**62)
"""No bound: for answers that are not to a chat request (a probe)."""
_NO_SECRETS: Final = Redactor()


@attrs.frozen(kw_only=True)
class Wire:
    """The context one answer is parsed in: who asked, and within which bounds."""

    service: str
    correlation_id: str | None = None
    limits: WireLimits = attrs.field(factory=WireLimits)
    bound: UsageBound = NO_BOUND
    redactor: Redactor = _NO_SECRETS


def error_body(wire: Wire, raw: bytes | None) -> object:
    """An error response's parsed body, or None when it is absent or unreadable (the
    status alone is then the error): never raises."""
    if not raw:
        return None
    try:
        return load_json(wire, raw, "the error body", max_bytes=wire.limits.max_error_bytes)
    except MalformedResponse:
        return None


def deliver(wire: Wire, on_chunk: Callable[[str], None] | None, piece: str) -> None:
    """Hands a streamed text delta to the caller's `on_chunk`.

    Raises:
        InvalidRequest: The callback raised (the caller's code failed, not the service;
            the callback's exception is the cause).
    """
    if on_chunk is None or not piece:
        return
    try:
        on_chunk(piece)
    except Exception as exc:
        raise InvalidRequest(wire.service, "on_chunk", f"raised {type(exc).__name__}") from exc


def malformed(wire: Wire, why: str) -> MalformedResponse:
    """The documented error for an answer that is not the documented shape."""
    return MalformedResponse(wire.service, why, correlation_id=wire.correlation_id)


def _too_deep(value: object, max_depth: int) -> bool:
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Any
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def load_json(wire: Wire, raw: bytes | str, what: str, *, max_bytes: int | None = None) -> Any:
    """Parses `raw` as JSON within the size and depth bounds.

    Raises:
        MalformedResponse: Too large, not JSON, or nested deeper than `max_depth`.
    """
    limit = wire.limits.max_body_bytes if max_bytes is None else max_bytes
    if len(raw) > limit:
        raise malformed(wire, f"{what} is larger than {limit} bytes")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested beyond the C stack
        raise malformed(wire, f"{what} is not JSON") from None
    depth = wire.limits.max_depth
    if isinstance(raw, bytes):
        brackets = raw.count(b"[") + raw.count(b"{")
    else:
        brackets = raw.count("[") + raw.count("{")
    if brackets > depth and _too_deep(value, depth):
        raise malformed(wire, f"{what} is nested deeper than {depth} levels")
    return value


# --------------------------------------------------------------------------- fields


def mapping(wire: Wire, value: object, what: str) -> Mapping[str, Any]:
    """`value` if it is a JSON object."""
    if not isinstance(value, dict):
        raise malformed(wire, f"{what} is not an object")
    return value


def sequence(wire: Wire, value: object, what: str) -> Sequence[Any]:
    """`value` if it is a JSON array."""
    if not isinstance(value, list):
        raise malformed(wire, f"{what} is not an array")
    return value


def text(wire: Wire, value: object, what: str) -> str:
    """`value` if it is a string."""
    if not isinstance(value, str):
        raise malformed(wire, f"{what} is not a string")
    return value


def opt_text(value: object) -> str | None:
    """`value` if it is a string, else None (for informational fields)."""
    return value if isinstance(value, str) else None


def token_count(wire: Wire, holder: object, key: str) -> int | None:
    """A token count from `holder[key]`: a finite non-negative integer, or None.

    An absent or null field is None. Anything else that is not a whole number >= 0
    (a string, a negative, 1e999, a bool) is reported as ``llm.usage_invalid`` and
    treated as absent.
    """
    if not isinstance(holder, dict):
        return None
    value = holder.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and math.isfinite(value) and value >= 0 and value.is_integer():
        return int(value)
    emit(
        "llm.usage_invalid",
        level="warning",
        service=wire.service,
        field=key,
        type=type(value).__name__,
        correlation_id=wire.correlation_id,
    )
    return None


def clamp(wire: Wire, key: str, value: int, bound: int) -> int:
    """`value`, or `bound` (reported as ``llm.usage_clamped``) when it is larger."""
    if value <= bound:
        return value
    emit(
        "llm.usage_clamped",
        level="warning",
        service=wire.service,
        field=key,
        reported=value if value < 2**63 else "huge",
        bound=bound,
        correlation_id=wire.correlation_id,
    )
    return bound


# --------------------------------------------------------------------------- SSE


@attrs.frozen
class SSEEvent:
    """One server-sent event: its type (``"message"`` unless named) and its data."""

    event: str
    data: str


class SSEDecoder:
    """Splits a byte stream into server-sent events (the WHATWG rules).

    Lines end with CRLF, LF or CR, anywhere in any chunk; ``data:`` lines of one event
    are joined with LF; comments and unknown fields are skipped; an event is
    dispatched at a blank line (and, leniently, at the end of the stream). Invalid
    UTF-8 is replaced, so the JSON check that follows decides.
    """

    __slots__ = ("_buffer", "_data", "_event", "_size", "_total", "_wire")

    def __init__(self, wire: Wire) -> None:
        self._wire = wire
        self._buffer = b""
        self._data: list[str] = []
        self._size = 0
        self._event = ""
        self._total = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events completed by `chunk`.

        Raises:
            MalformedResponse: An event or the stream is over its size bound.
        """
        limits = self._wire.limits
        self._total += len(chunk)
        if self._total > limits.max_stream_bytes:
            raise malformed(
                self._wire, f"the stream is larger than {limits.max_stream_bytes} bytes"
            )
        buffer = self._buffer + chunk if self._buffer else chunk
        lines = buffer.splitlines(keepends=True)
        rest = b""
        if lines and (not lines[-1].endswith((b"\n", b"\r")) or lines[-1].endswith(b"\r")):
            rest = lines.pop()  # incomplete, or a CR that may be the first half of CRLF
        if len(rest) > limits.max_event_bytes:
            raise malformed(
                self._wire, f"a stream event is larger than {limits.max_event_bytes} bytes"
            )
        self._buffer = rest
        events: list[SSEEvent] = []
        for line in lines:
            event = self._line(line.rstrip(b"\r\n"))
            if event is not None:
                events.append(event)
        return events

    def end(self) -> list[SSEEvent]:
        """The events left when the stream ends (a last event without its blank line)."""
        events: list[SSEEvent] = []
        if self._buffer:
            event = self._line(self._buffer.rstrip(b"\r\n"))
            self._buffer = b""
            if event is not None:
                events.append(event)
        event = self._line(b"")
        if event is not None:
            events.append(event)
        return events

    def _line(self, line: bytes) -> SSEEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = SSEEvent(self._event or "message", "\n".join(self._data))
            self._data = []
            self._size = 0
            self._event = ""
            return event
        if line.startswith(b":"):
            return None
        name, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._size += len(value) + 1
            if self._size > self._wire.limits.max_event_bytes:
                raise malformed(
                    self._wire,
                    f"a stream event is larger than {self._wire.limits.max_event_bytes} bytes",
                )
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        return None
