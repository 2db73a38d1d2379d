"""Stream recovery: one continuous stream for the caller across members.

A streamed chat request (`ChatRequest.stream` with an `on_chunk`) goes to members
through a `Relay`, which forwards each text delta to the caller's `on_chunk` and keeps
what was delivered. When a member's stream breaks after some text reached the caller,
the relay builds the request the next member gets: the original messages plus the
partial answer, as the assistant's own turn to continue (Anthropic prefill; trailing
whitespace trimmed, as the API requires) or as an assistant message followed by an
instruction to continue (OpenAI-compatible). Leading whitespace the continuation
repeats after delivered whitespace is dropped, so the caller's text is the exact
concatenation of what each member delivered.

The reply is a `RecoveredResponse` (a `ChatResponse`): its content is the whole text
the caller received, its tool calls, finish reason and usage the last member's (the
broken stream's usage is unknown), plus `breaks` saying where it broke. A tool call
being streamed when the stream broke is not kept: the next member makes its own.
Without recovery, a stream that broke after delivering text is not failed over (the
caller would read the answer twice).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from actors.services import ChatRequest, ChatResponse

__all__ = ["RecoveredResponse", "Relay", "StreamBreak"]


@attrs.frozen
class StreamBreak:
    """Where a streamed answer broke and another member took over.

    Attributes:
        member: The member whose stream broke.
        chunks: Text deltas it had delivered to the caller.
        chars: Characters it had delivered.
        error: The failure's type name.
    """

    member: str
    chunks: int
    chars: int
    error: str


@attrs.frozen(kw_only=True)
class RecoveredResponse(ChatResponse):
    """A chat answer whose stream broke and was continued on another member.

    Attributes:
        breaks: Each break, in order.
        answered_by: The members whose text makes up `content`, in order.
    """

    breaks: tuple[StreamBreak, ...] = ()
    answered_by: tuple[str, ...] = ()


def _with_content(message: Mapping[str, Any], content: str) -> dict[str, Any]:
    """The last member's assistant message carrying the whole text."""
    out = dict(message)
    blocks = out.get("content")
    if isinstance(blocks, list):  # Anthropic content blocks: one text block first
        others = [b for b in blocks if not (isinstance(b, Mapping) and b.get("type") == "text")]
        out["content"] = [{"type": "text", "text": content}, *others]
    else:
        out["content"] = content
    return out


class Relay:
    """One streamed request's text, as the caller receives it across members."""

    __slots__ = (
        "_answered_by",
        "_attempt_chars",
        "_attempt_chunks",
        "_breaks",
        "_forward",
        "_member",
        "_parts",
        "_trim",
        "chunks",
    )

    def __init__(self, on_chunk: Callable[[str], None]) -> None:
        self._forward = on_chunk
        self._parts: list[str] = []
        self._breaks: list[StreamBreak] = []
        self._answered_by: list[str] = []
        self._member = ""
        self._attempt_chunks = 0
        self._attempt_chars = 0
        self._trim = False
        self.chunks = 0

    @property
    def text(self) -> str:
        """Everything delivered to the caller so far."""
        return "".join(self._parts)

    @property
    def delivered(self) -> bool:
        """Whether any text reached the caller."""
        return bool(self._parts)

    @property
    def breaks(self) -> int:
        """Streams broken after delivering text, so far."""
        return len(self._breaks)

    def feed(self, piece: str) -> None:
        """The member's `on_chunk`: forwards a delta (the caller's callback may raise;
        the member's client reports that as the caller's mistake)."""
        if self._trim:
            piece = piece.lstrip()
            if not piece:
                return
            self._trim = False
        self._forward(piece)
        self._parts.append(piece)
        self.chunks += 1
        self._attempt_chunks += 1
        self._attempt_chars += len(piece)

    def request_for(
        self, request: ChatRequest, member: str, wire: str | None, instruction: str
    ) -> ChatRequest:
        """The request `member` gets: the original, or a continuation of the partial."""
        self._member = member
        self._attempt_chunks = 0
        self._attempt_chars = 0
        partial = self.text
        if not partial:
            return attrs.evolve(request, on_chunk=self.feed)
        trimmed = partial.rstrip()
        self._trim = trimmed != partial
        if wire == "anthropic":
            extra: tuple[dict[str, Any], ...] = ({"role": "assistant", "content": trimmed},)
        else:
            extra = (
                {"role": "assistant", "content": partial},
                {"role": "user", "content": instruction},
            )
        return attrs.evolve(request, messages=(*request.messages, *extra), on_chunk=self.feed)

    def broke(self, error: BaseException) -> bool:
        """Records the current member's failure; True if it had delivered text."""
        if not self._attempt_chunks:
            return False
        self._breaks.append(
            StreamBreak(
                self._member, self._attempt_chunks, self._attempt_chars, type(error).__name__
            )
        )
        self._answered_by.append(self._member)
        return True

    def finish(self, response: ChatResponse) -> ChatResponse:
        """The caller's reply: `response` itself, or a `RecoveredResponse` after breaks."""
        if not self._breaks:
            return response
        if not self._attempt_chunks and response.content:
            self.feed(response.content)  # a continuation answered in one piece
        self._answered_by.append(self._member)
        content = self.text
        return RecoveredResponse(
            content=content,
            model=response.model,
            finish_reason=response.finish_reason,
            usage=response.usage,
            tool_calls=response.tool_calls,
            message=_with_content(response.message, content),
            raw=response.raw,
            headers=response.headers,
            chunks=self.chunks,
            wire=response.wire,
            id=response.id,
            breaks=tuple(self._breaks),
            answered_by=tuple(self._answered_by),
        )
