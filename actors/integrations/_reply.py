"""The provider's answer as an SDK reads it, and what the service actor learns from it.

An `ActorResponse` is an `httpx2.Response` (what the SDK's HTTP client gets from our
transport) that is also `Unsettled`: the pipeline judges it by its status when the
headers are in, and settles its attempt (the token reservation, the pooled connection)
when its body is closed. Its ``body`` holds an error answer's parsed JSON, so the
classifier reads the provider's error code (``insufficient_quota`` is a quota, not a
rate limit) as it does on our own errors.

A streamed body is relayed chunk by chunk (decoded: the SDK gets identity bytes)
while the chat client's own stream assembler reads it on the side, bounded, to learn
the usage from the last event; what the assembler cannot read is left to the SDK
(the bytes are forwarded untouched). A reader that stops early, fails or is
cancelled closes the provider's response at once.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any, Final

import anyio
import httpx2

from actors._errors import ActorError
from actors.resilience._unsettled import Unsettled
from actors.services._http import HTTPChatClient
from actors.services._wire import SSEDecoder, Wire

__all__ = ["ActorResponse", "read_reply", "relay"]

_CLOSE_TIMEOUT: Final = 5.0  # seconds closing the provider's response may take
# Headers describing the provider's encoding of the body: we relay decoded bytes.
_ENCODING_HEADERS: Final = ("content-encoding", "content-length", "transfer-encoding")


class ActorResponse(httpx2.Response, Unsettled):
    """The provider's answer, relayed to the SDK by `ActorTransport`.

    Attributes:
        body: An error answer's JSON body (None for a success, or when unreadable).
        used: What the answer used, by limit name (known once its body is read).
    """

    def __init__(
        self,
        status_code: int,
        *,
        headers: httpx2.Headers,
        content: bytes | None = None,
        stream: httpx2.AsyncByteStream | None = None,
        extensions: dict[str, Any] | None = None,
        body: object = None,
        used: Mapping[str, float] | None = None,
    ) -> None:
        httpx2.Response.__init__(
            self,
            status_code,
            headers=_decoded(headers),
            content=content,
            stream=stream,
            extensions=extensions,
        )
        Unsettled.__init__(self, settled=stream is None)
        self.body = body
        self.used: Mapping[str, float] = used or {}


def _decoded(headers: httpx2.Headers) -> httpx2.Headers:
    """The provider's headers (taken over from its response) without those describing
    its encoding of the body."""
    for name in _ENCODING_HEADERS:
        if name in headers:
            del headers[name]
    return headers


def _extensions(response: httpx2.Response) -> dict[str, Any]:
    """The response extensions worth relaying (not the provider's network stream)."""
    keep = ("http_version", "reason_phrase")
    return {key: response.extensions[key] for key in keep if key in response.extensions}


class _Usage:
    """Reads a streamed chat answer on the side, to learn its usage at the end."""

    __slots__ = ("_assembler", "_chat", "_decoder", "failed")

    def __init__(self, chat: HTTPChatClient, wire: Wire) -> None:
        self._chat = chat
        self._decoder = SSEDecoder(wire)
        self._assembler = chat.wire_format.assembler(wire, model=chat.model, on_chunk=None)
        self.failed = False

    def feed(self, chunk: bytes) -> None:
        if self.failed:
            return
        try:
            for event in self._decoder.feed(chunk):
                self._assembler.feed(event)
        except ActorError:  # not ours to judge: the SDK reads the same bytes
            self.failed = True

    def result(self) -> Mapping[str, float] | None:
        """The usage of a complete answer (empty if it reported none), else None."""
        if self.failed:
            return None
        try:
            for event in self._decoder.end():
                self._assembler.feed(event)
            return self._chat.usage(self._assembler.result({}))
        except ActorError:  # cut off before its end marker, or unreadable
            return None


class _Relay(httpx2.AsyncByteStream):
    """The provider's body, relayed to the SDK; closing it settles the reply.

    An iterator object rather than a generator: a reader that stops at the end marker
    and closes the body leaves nothing suspended behind.
    """

    def __init__(self, response: httpx2.Response, usage: _Usage | None) -> None:
        self._response = response
        self._usage = usage
        self._chunks: AsyncGenerator[bytes, None] | None = None
        self.reply: ActorResponse | None = None
        self._closed = False
        self._drained = False

    def __aiter__(self) -> _Relay:
        if self._chunks is None:
            self._chunks = self._response.aiter_bytes()
        return self

    async def __anext__(self) -> bytes:
        assert self._chunks is not None
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._drained = True
            await self.aclose()
            raise
        except BaseException:  # the read failed or was cancelled
            await self.aclose()
            raise
        if self._usage is not None:
            self._usage.feed(chunk)
        return chunk

    async def aclose(self) -> None:
        """Closes the provider's response and settles the reply (shielded, once).

        The reply is `finished` (its usage known) when a chat answer's end marker was
        read, or any other body was read to its end.
        """
        if self._closed:
            return
        self._closed = True
        try:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_TIMEOUT):
                if self._chunks is not None:
                    await self._chunks.aclose()
                await self._response.aclose()
        finally:
            reply = self.reply
            if reply is not None:
                used = {} if self._usage is None else self._usage.result()
                if used is not None and (self._drained or self._usage is not None):
                    reply.used = used
                    reply.finished = True
                await reply.settle()


def relay(response: httpx2.Response, chat: HTTPChatClient | None, wire: Wire) -> ActorResponse:
    """An unsettled reply relaying `response`'s body; `chat` reads its usage on the side
    (None: a body that is not a chat answer)."""
    stream = _Relay(response, None if chat is None else _Usage(chat, wire))
    reply = ActorResponse(
        response.status_code,
        headers=response.headers,
        stream=stream,
        extensions=_extensions(response),
    )
    stream.reply = reply
    return reply


def read_reply(
    response: httpx2.Response,
    content: bytes,
    *,
    body: object = None,
    used: Mapping[str, float] | None = None,
) -> ActorResponse:
    """A settled reply whose body was read in the attempt."""
    return ActorResponse(
        response.status_code,
        headers=response.headers,
        content=content,
        extensions=_extensions(response),
        body=body,
        used=used,
    )
