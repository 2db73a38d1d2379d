"""An OpenAI-compatible chat-completions client on httpx2 (extra `http`).

One `httpx2.AsyncClient` per actor incarnation, its connection limits matching the
actor's pool, so the pool's size is the number of requests in flight. Plain JSON and
streamed (server-sent events) responses; token usage is read to reconcile the
tokens-per-minute limit, and `x-ratelimit-*` / `retry-after(-ms)` headers are handed to
the limits and the retry policy.

Errors are translated at this boundary: timeouts become `ServiceTimeout`, transport
failures `ServiceUnavailable`, error statuses `ServiceResponseError` (status, provider
code, the rate-limit headers), bodies that do not parse `MalformedResponse`. The API key
is a `Secret`: it is revealed only into the Authorization header and redacted from any
provider message we keep.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
import httpx2

from actors._envelope import current_correlation_id
from actors._errors import (
    ConfigError,
    MalformedResponse,
    ServiceResponseError,
    ServiceTimeout,
    ServiceUnavailable,
)
from actors.services._base import Secret, ServiceClient

__all__ = ["ChatRequest", "ChatResponse", "LLMClient", "Usage"]

_KEPT_HEADERS = ("retry-after", "retry-after-ms", "x-should-retry", "x-ratelimit-", "date")


def _messages(value: Iterable[Mapping[str, str]]) -> tuple[Mapping[str, str], ...]:
    messages = tuple(value)
    for message in messages:
        if not isinstance(message, Mapping) or "role" not in message:
            raise ConfigError("messages", None, "each message must be a mapping with a role")
    return messages


@attrs.frozen(kw_only=True)
class ChatRequest:
    """One chat completion.

    Attributes:
        messages: `{"role": ..., "content": ...}` dicts.
        model: Overrides the client's model.
        max_tokens: Completion budget (also used to estimate the token cost).
        temperature: Sampling temperature.
        stream: Receive the answer as server-sent events (assembled before replying).
        on_chunk: Called with each streamed text delta (stream only).
    """

    messages: tuple[Mapping[str, str], ...] = attrs.field(converter=_messages)
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    stream: bool = False
    on_chunk: Callable[[str], None] | None = attrs.field(default=None, eq=False, repr=False)

    @classmethod
    def user(cls, content: str, **kwargs: Any) -> ChatRequest:
        """A one-message request from the user."""
        return cls(messages=({"role": "user", "content": content},), **kwargs)

    def estimated_tokens(self) -> float:
        """A cheap upper-ish estimate: prompt characters / 4, plus the completion budget."""
        prompt = sum(len(message.get("content", "")) for message in self.messages)
        return prompt / 4 + (self.max_tokens if self.max_tokens is not None else 256)


@attrs.frozen
class Usage:
    """Tokens a completion used."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


@attrs.frozen(kw_only=True)
class ChatResponse:
    """A completed chat answer.

    Attributes:
        content: The assistant's text.
        model: The model that answered.
        finish_reason: Why generation stopped, if given.
        usage: Token usage (zeros when the provider sent none).
        headers: The response's rate-limit and retry headers.
        chunks: How many streamed events were received (0 for JSON answers).
    """

    content: str
    model: str
    finish_reason: str | None
    usage: Usage
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    chunks: int = 0


def _kept(headers: httpx2.Headers) -> dict[str, str]:
    return {
        key.lower(): value
        for key, value in headers.items()
        if key.lower().startswith(_KEPT_HEADERS)
    }


def _usage(data: object) -> Usage:
    if not isinstance(data, Mapping):
        return Usage()
    prompt = int(data.get("prompt_tokens") or 0)
    completion = int(data.get("completion_tokens") or 0)
    total = int(data.get("total_tokens") or prompt + completion)
    return Usage(prompt, completion, total)


class LLMClient(ServiceClient[httpx2.AsyncClient, ChatRequest, ChatResponse]):
    """Talks to an OpenAI-compatible `/chat/completions` endpoint."""

    service_type = "llm"

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        model: str,
        api_key: Secret | None = None,
        max_connections: int = 16,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        """Configures the client (nothing is opened until the actor starts).

        Args:
            name: The service name.
            base_url: The API root, e.g. "https://api.example.com/v1".
            model: The default model.
            api_key: Sent as a bearer token; never logged.
            max_connections: httpx2 connection limit (match the actor's pool size).
            connect_timeout: Seconds to establish a connection.
            read_timeout: Seconds between bytes of the answer (the caller's deadline
                bounds the whole call anyway).
            default_headers: Extra headers on every request (not secrets: use api_key).

        Raises:
            ConfigError: A bad URL, model or key.
        """
        super().__init__(name)
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError("base_url", base_url, "must be an http(s) URL")
        if not isinstance(model, str) or not model:
            raise ConfigError("model", model, "must be a non-empty string")
        if api_key is not None and not isinstance(api_key, Secret):
            raise ConfigError("api_key", None, "must be an actors.services.Secret")
        self.base_url = base_url.rstrip("/") + "/"
        self.model = model
        self._api_key = api_key
        self._max_connections = max_connections
        self._timeout = httpx2.Timeout(read_timeout, connect=connect_timeout)
        self._headers = dict(default_headers or {})
        self._http: httpx2.AsyncClient | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        headers = dict(self._headers)
        if self._api_key is not None:
            headers["authorization"] = f"Bearer {self._api_key.reveal()}"
        limits = httpx2.Limits(
            max_connections=self._max_connections, max_keepalive_connections=self._max_connections
        )
        async with httpx2.AsyncClient(
            base_url=self.base_url, headers=headers, limits=limits, timeout=self._timeout
        ) as http:
            self._http = http
            try:
                yield
            finally:
                self._http = None

    async def connect(self) -> httpx2.AsyncClient:
        """The shared HTTP client: a pool "connection" is a permit for one request."""
        if self._http is None:
            raise ServiceUnavailable(self.name, "client is not open")
        return self._http

    def costs(self, request: ChatRequest) -> Mapping[str, float]:
        return {"requests": 1.0, "tokens": request.estimated_tokens()}

    def usage(self, response: ChatResponse) -> Mapping[str, float]:
        used = response.usage.total_tokens
        return {"tokens": float(used)} if used else {}

    def rate_headers(self, response_or_error: object) -> Mapping[str, str] | None:
        headers = getattr(response_or_error, "headers", None)
        return headers if isinstance(headers, Mapping) and headers else None

    async def probe(self, conn: httpx2.AsyncClient) -> None:
        """GET /models must answer 200."""
        try:
            response = await conn.get("models")
        except httpx2.HTTPError as exc:
            raise self._transport_error(exc) from exc
        if response.status_code != 200:
            raise self._status_error(response, response.content)

    async def request(self, conn: httpx2.AsyncClient, request: ChatRequest) -> ChatResponse:
        body: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": [dict(message) for message in request.messages],
        }
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        cid = current_correlation_id()
        headers = {"x-request-id": cid} if cid else None
        try:
            if request.stream:
                body["stream"] = True
                body["stream_options"] = {"include_usage": True}
                return await self._stream(conn, body, headers, request.on_chunk)
            response = await conn.post("chat/completions", json=body, headers=headers)
            content = response.content
        except httpx2.HTTPError as exc:
            raise self._transport_error(exc) from exc
        if response.status_code >= 400:
            raise self._status_error(response, content)
        return self._parse(content, _kept(response.headers))

    async def _stream(
        self,
        conn: httpx2.AsyncClient,
        body: dict[str, Any],
        headers: dict[str, str] | None,
        on_chunk: Callable[[str], None] | None,
    ) -> ChatResponse:
        async with conn.stream("POST", "chat/completions", json=body, headers=headers) as response:
            if response.status_code >= 400:
                raise self._status_error(response, await response.aread())
            parts: list[str] = []
            model = body["model"]
            finish: str | None = None
            usage = Usage()
            chunks = 0
            done = False
            async for line in response.aiter_lines():
                if done or not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True  # read on to the end: an unfinished iterator leaks
                    continue
                chunks += 1
                try:
                    event = json.loads(data)
                except ValueError as exc:
                    raise self._malformed("a stream event is not JSON") from exc
                if not isinstance(event, Mapping):
                    raise self._malformed("a stream event is not an object")
                model = event.get("model", model)
                if event.get("usage"):
                    usage = _usage(event["usage"])
                for choice in event.get("choices") or ():
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        parts.append(delta)
                        if on_chunk is not None:
                            on_chunk(delta)
                    finish = choice.get("finish_reason") or finish
            if not done:
                raise self._malformed("the stream ended without [DONE]")
            return ChatResponse(
                content="".join(parts),
                model=str(model),
                finish_reason=finish,
                usage=usage,
                headers=_kept(response.headers),
                chunks=chunks,
            )

    def _parse(self, content: bytes, headers: dict[str, str]) -> ChatResponse:
        try:
            data = json.loads(content)
            choice = data["choices"][0]
            message = choice["message"]
            text = message.get("content") or ""
            if not isinstance(text, str):
                raise TypeError("content is not a string")
            return ChatResponse(
                content=text,
                model=str(data.get("model", "")),
                finish_reason=choice.get("finish_reason"),
                usage=_usage(data.get("usage")),
                headers=headers,
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise self._malformed("the answer is not a chat completion") from exc

    def _malformed(self, why: str) -> MalformedResponse:
        return MalformedResponse(self.name, why, correlation_id=current_correlation_id())

    def _transport_error(self, exc: httpx2.HTTPError) -> ServiceTimeout | ServiceUnavailable:
        cid = current_correlation_id()
        if isinstance(exc, httpx2.TimeoutException):
            return ServiceTimeout(self.name, f"{type(exc).__name__}", correlation_id=cid)
        return ServiceUnavailable(self.name, f"{type(exc).__name__}", correlation_id=cid)

    def _status_error(self, response: httpx2.Response, content: bytes) -> ServiceResponseError:
        code: str | None = None
        message = ""
        try:
            error = json.loads(content).get("error") or {}
            if isinstance(error, Mapping):
                raw_code = error.get("code") or error.get("type")
                code = str(raw_code) if raw_code else None
                message = str(error.get("message") or "")
        except (ValueError, AttributeError):
            pass
        return ServiceResponseError(
            self.name,
            response.status_code,
            headers=_kept(response.headers),
            code=code,
            message=self._redact(message)[:200],
            correlation_id=current_correlation_id(),
        )

    def _redact(self, text: str) -> str:
        if self._api_key is not None and self._api_key.reveal():
            text = text.replace(self._api_key.reveal(), "***")
        return text


def chat(content: str | Sequence[Mapping[str, str]], **kwargs: Any) -> ChatRequest:
    """A `ChatRequest` from a user string or a list of messages."""
    if isinstance(content, str):
        return ChatRequest.user(content, **kwargs)
    return ChatRequest(messages=content, **kwargs)
