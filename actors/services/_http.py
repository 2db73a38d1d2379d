"""What the HTTP chat clients share: one httpx2 client, bounded reads, error mapping.

`HTTPChatClient` is the `ServiceClient` for chat APIs over HTTP. A subclass says how
to authenticate, build a body and read an answer in its wire format; everything else
is here, once: configuration checks, the shared `httpx2.AsyncClient` (its connection
limits matching the actor's pool), the health probe, reading bodies and streams
within their bounds, translating transport failures (`ServiceTimeout`,
`ServiceUnavailable`) and error statuses (`ServiceResponseError`), and redacting every
header we keep.
"""

from __future__ import annotations

import abc
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, ClassVar, Final, Protocol

import attrs
import httpx2

from actors._envelope import current_correlation_id
from actors._errors import (
    ActorError,
    ConfigError,
    InvalidRequest,
    ServiceResponseError,
    ServiceTimeout,
    ServiceUnavailable,
)
from actors._redact import (
    CREDENTIAL_HEADERS,
    Redactor,
    one_line,
    redact,
    redact_headers,
    scrubbing_http_logs,
)
from actors._tracing import AttributeValue, Operation, inject
from actors._validate import check_finite_positive, check_instance, check_name, check_positive_int
from actors.services._base import Secret, ServiceClient
from actors.services._chat import (
    DEFAULT_MAX_TOKENS,
    ChatRequest,
    ChatResponse,
    check_chat_request,
)
from actors.services._chat_telemetry import chat_operation, chat_outcome, server_of
from actors.services._wire import NO_BOUND, SSEDecoder, SSEEvent, Wire, WireLimits, malformed

__all__ = ["HTTPChatClient", "Probe", "WireFormat"]

Probe = str | Callable[[httpx2.AsyncClient], Awaitable[object]]
"""A health probe: "auto", "models", "chat", "connect", or an async callable."""

_PROBES: Final = ("auto", "models", "chat", "connect")
_DRAIN_BYTES: Final = 65_536  # read after a failed stream event, for a clean close


class _Assembler(Protocol):
    def feed(self, event: SSEEvent) -> None: ...

    def result(self, headers: Mapping[str, str]) -> ChatResponse: ...


class _Parse(Protocol):
    def __call__(
        self, wire: Wire, raw: bytes, headers: Mapping[str, str], *, model: str
    ) -> ChatResponse: ...


class _NewAssembler(Protocol):
    def __call__(
        self, wire: Wire, *, model: str, on_chunk: Callable[[str], None] | None
    ) -> _Assembler: ...


@attrs.frozen
class WireFormat:
    """A wire format's readers: a JSON answer, an error status, a stream's assembler."""

    name: str
    parse: _Parse
    parse_error: Callable[[Wire, int, Mapping[str, str], bytes | None], ServiceResponseError]
    assembler: _NewAssembler


def _check_headers(value: object) -> dict[str, str]:
    if value is None:
        return {}
    headers = check_instance("default_headers", value, Mapping)
    out: dict[str, str] = {}
    for key, item in headers.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise ConfigError("default_headers", None, "names and values must be strings")
        if key.lower() in CREDENTIAL_HEADERS:
            raise ConfigError(
                f"default_headers.{key}", None, "pass credentials as api_key (a Secret)"
            )
        out[key] = item
    return out


def _chunks(response: httpx2.Response) -> contextlib.aclosing[AsyncGenerator[bytes, None]]:
    """The body's chunks, closed on leaving the block even when reading stops early."""
    return contextlib.aclosing(response.aiter_bytes())


class HTTPChatClient(ServiceClient[httpx2.AsyncClient, ChatRequest, ChatResponse]):
    """A chat API over HTTP; subclasses give the wire format (see `LLMClient`)."""

    service_type = "llm"
    cost_keys: ClassVar[frozenset[str]] = frozenset(
        {"requests", "tokens", "input_tokens", "output_tokens"}
    )

    wire_format: ClassVar[WireFormat]
    """How answers are read (and which `check_chat_request` rules apply)."""
    path: ClassVar[str]
    """The chat endpoint, relative to the base URL."""
    kept_headers: ClassVar[tuple[str, ...]]
    """Prefixes of the response headers kept on answers and errors."""

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
        probe: Probe = "auto",
        wire_limits: WireLimits | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name)
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            shown = redact(base_url) if isinstance(base_url, str) else base_url
            raise ConfigError("base_url", shown, "must be an http(s) URL")
        check_name("model", model)
        if api_key is not None and not isinstance(api_key, Secret):
            raise ConfigError("api_key", None, "must be an actors.Secret")
        if not (probe in _PROBES or callable(probe)):
            raise ConfigError("probe", probe, f"must be one of {', '.join(_PROBES)} or a callable")
        self.base_url = base_url.rstrip("/") + "/"
        self.model = model
        self._api_key = api_key
        self._max_connections = check_positive_int("max_connections", max_connections)
        self._timeout = httpx2.Timeout(
            check_finite_positive("read_timeout", read_timeout),
            connect=check_finite_positive("connect_timeout", connect_timeout),
        )
        self._headers = _check_headers(default_headers)
        self._probe = probe
        self.wire_limits = check_instance(
            "wire_limits", WireLimits() if wire_limits is None else wire_limits, WireLimits
        )
        self._transport = check_instance(
            "transport", transport, (httpx2.AsyncBaseTransport, type(None))
        )
        self._redactor = Redactor([api_key] if api_key is not None else [])
        self._http: httpx2.AsyncClient | None = None
        self._server = server_of(self.base_url)

    # -- what a wire format says ---------------------------------------------------

    @abc.abstractmethod
    def auth_headers(self, key: str) -> dict[str, str]:
        """The headers carrying the API key (and any the API requires on every call)."""

    @abc.abstractmethod
    def body(self, request: ChatRequest) -> dict[str, Any]:
        """The request's JSON body."""

    @abc.abstractmethod
    def probe_body(self) -> dict[str, Any]:
        """The body of the one-token completion the "chat" probe sends."""

    def default_max_tokens(self) -> int | None:
        """The completion budget assumed when a request sets none (None: unknown)."""
        return None

    # -- lifecycle -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        headers = dict(self._headers)
        if self._api_key is not None:
            headers.update(self.auth_headers(self._api_key.reveal()))
        limits = httpx2.Limits(
            max_connections=self._max_connections, max_keepalive_connections=self._max_connections
        )
        async with httpx2.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            limits=limits,
            timeout=self._timeout,
            transport=self._transport,
        ) as http:
            with scrubbing_http_logs(self._redactor):
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

    # -- the boundary ------------------------------------------------------------------

    def check_request(self, request: object) -> None:
        """Refuses a malformed request in the caller's task (see `check_chat_request`).

        Raises:
            InvalidRequest: Naming the offending field.
        """
        check_chat_request(self.name, request, wire=self.wire_format.name)

    def costs(self, request: ChatRequest) -> Mapping[str, float]:
        """One request, the estimated tokens, and the estimate's input and output parts."""
        default = self.default_max_tokens() or DEFAULT_MAX_TOKENS
        total = request.estimated_tokens(default)
        output = float(request.completion_budget(default) or 0)
        return {
            "requests": 1.0,
            "tokens": total,
            "input_tokens": max(0.0, total - output),
            "output_tokens": output,
        }

    def usage(self, response: ChatResponse) -> Mapping[str, float]:
        """Tokens used, total and input/output, when the answer reported them."""
        usage = response.usage
        if not usage.total_tokens:
            return {}
        return {
            "tokens": float(usage.total_tokens),
            "input_tokens": float(usage.prompt_tokens),
            "output_tokens": float(usage.completion_tokens),
        }

    def rate_headers(self, response_or_error: object) -> Mapping[str, str] | None:
        headers = getattr(response_or_error, "headers", None)
        return headers if isinstance(headers, Mapping) and headers else None

    def describe(self, request: ChatRequest, *, content: bool) -> Operation:
        """A GenAI client span ``chat {model}`` (see `actors.services._chat_telemetry`)."""
        return chat_operation(
            request,
            model=request.model or self.model,
            provider=self.wire_format.name,
            server=self._server,
            content=content,
        )

    def describe_result(
        self, response: ChatResponse, *, content: bool
    ) -> Mapping[str, AttributeValue]:
        """Response model and id, finish reasons, token usage (and the answer, if asked)."""
        return chat_outcome(response, content=content)

    # -- requests ----------------------------------------------------------------------

    def _wire(self, request: ChatRequest | None) -> Wire:
        bound = NO_BOUND if request is None else request.usage_bound(self.default_max_tokens())
        return Wire(
            service=self.name,
            correlation_id=current_correlation_id(),
            limits=self.wire_limits,
            bound=bound,
            redactor=self._redactor,
        )

    def _kept(self, headers: httpx2.Headers) -> dict[str, str]:
        prefixes = self.kept_headers
        return redact_headers(
            {k: v for k, v in headers.items() if k.lower().startswith(prefixes)}, self._redactor
        )

    def _encode(self, body: Mapping[str, Any]) -> bytes:
        try:
            return json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
        except (TypeError, ValueError, RecursionError):
            raise InvalidRequest(self.name, "request", "is not JSON-serialisable") from None

    async def request(self, conn: httpx2.AsyncClient, request: ChatRequest) -> ChatResponse:
        """Sends one chat request and reads the answer within the wire limits.

        Runs under the caller's deadline; cancelling closes the response and its
        connection (the provider sees the client go away).

        Raises:
            ServiceResponseError: An error status (or an error inside a stream).
            MalformedResponse: An answer that is too large, too deep, not JSON or not
                the documented shape.
            ServiceTimeout: Connect or read timeout.
            ServiceUnavailable: Connection refused, reset or dropped.
            InvalidRequest: The request cannot be encoded, or `on_chunk` raised.
        """
        wire = self._wire(request)
        try:
            body = self.body(request)
        except (TypeError, ValueError, KeyError, AttributeError):  # check_request was skipped
            raise InvalidRequest(self.name, "request", "cannot be built") from None
        payload = self._encode(body)
        model = request.model or self.model
        headers = {"content-type": "application/json"}
        if wire.correlation_id:
            headers["x-request-id"] = wire.correlation_id
        inject(headers)  # W3C traceparent of the attempt's span, while tracing is on
        try:
            async with conn.stream("POST", self.path, content=payload, headers=headers) as response:
                kept = self._kept(response.headers)
                if response.status_code >= 400:
                    raw = await self._read_error(response)
                    raise self.wire_format.parse_error(wire, response.status_code, kept, raw)
                content_type = response.headers.get("content-type", "")
                if request.stream and content_type.startswith("text/event-stream"):
                    return await self._stream(wire, response, request, model, kept)
                raw = await self._read(wire, response)
                return self.wire_format.parse(wire, raw, kept, model=model)
        except httpx2.HTTPError as exc:
            raise self._transport_error(exc, wire) from exc

    async def _read(self, wire: Wire, response: httpx2.Response) -> bytes:
        limit = wire.limits.max_body_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise malformed(wire, f"the answer is larger than {limit} bytes")
        parts: list[bytes] = []
        size = 0
        async with _chunks(response) as chunks:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise malformed(wire, f"the answer is larger than {limit} bytes")
                parts.append(chunk)
        return b"".join(parts)

    async def _read_error(self, response: httpx2.Response) -> bytes | None:
        """An error body, or None when it is larger than the bound (the status stands)."""
        limit = self.wire_limits.max_error_bytes
        parts: list[bytes] = []
        size = 0
        async with _chunks(response) as chunks:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    return None
                parts.append(chunk)
        return b"".join(parts)

    async def _stream(
        self,
        wire: Wire,
        response: httpx2.Response,
        request: ChatRequest,
        model: str,
        kept: Mapping[str, str],
    ) -> ChatResponse:
        decoder = SSEDecoder(wire)
        assembler = self.wire_format.assembler(wire, model=model, on_chunk=request.on_chunk)
        failure: ActorError | None = None
        drained = 0
        async with _chunks(response) as chunks:
            async for chunk in chunks:  # to the end, even after the end marker
                if failure is not None:
                    # Read a little further so the transport's own iterators finish
                    # (breaking out of them leaks them); a hostile stream is cut off.
                    drained += len(chunk)
                    if drained > _DRAIN_BYTES:
                        break
                    continue
                try:
                    for event in decoder.feed(chunk):
                        assembler.feed(event)
                except ActorError as exc:  # a documented failure of this answer
                    failure = exc
        if failure is not None:
            raise failure
        for event in decoder.end():
            assembler.feed(event)
        return assembler.result(kept)

    def _transport_error(
        self, exc: httpx2.HTTPError, wire: Wire
    ) -> ServiceTimeout | ServiceUnavailable:
        what = f"{type(exc).__name__}: {one_line(exc, redactor=self._redactor, limit=120)}"
        if isinstance(exc, httpx2.TimeoutException):
            return ServiceTimeout(self.name, what, correlation_id=wire.correlation_id)
        return ServiceUnavailable(self.name, what, correlation_id=wire.correlation_id)

    # -- health --------------------------------------------------------------------------

    async def probe(self, conn: httpx2.AsyncClient) -> None:
        """Checks health as configured by `probe`.

        "models": GET models answers 200. "chat": a one-token completion succeeds.
        "connect": the server answers anything below 500 at its base URL. "auto" (the
        default): "models", falling back to "chat" when the server has no models
        endpoint (404, 405, 501). A callable gets the HTTP client and raises to report
        unhealthy.

        Raises:
            ServiceResponseError, ServiceTimeout, ServiceUnavailable, MalformedResponse:
                The service is unhealthy.
        """
        wire = self._wire(None)
        probe = self._probe
        try:
            if callable(probe):
                await probe(conn)
                return
            if probe == "connect":
                status, kept, raw = await self._get(conn, "")
                if status >= 500:
                    raise self.wire_format.parse_error(wire, status, kept, raw)
                return
            if probe in ("models", "auto"):
                status, kept, raw = await self._get(conn, "models")
                if status == 200:
                    return
                if probe == "models" or status not in (404, 405, 501):
                    raise self.wire_format.parse_error(wire, status, kept, raw)
            await self._probe_chat(conn, wire)
        except httpx2.HTTPError as exc:
            raise self._transport_error(exc, wire) from exc

    async def _get(
        self, conn: httpx2.AsyncClient, path: str
    ) -> tuple[int, dict[str, str], bytes | None]:
        """GET `path`: its status, kept headers and (for an error) bounded body."""
        async with conn.stream("GET", path) as response:
            status = response.status_code
            raw = await self._read_error(response) if status >= 400 else None
            return status, self._kept(response.headers), raw

    async def _probe_chat(self, conn: httpx2.AsyncClient, wire: Wire) -> None:
        payload = self._encode(self.probe_body())
        async with conn.stream(
            "POST", self.path, content=payload, headers={"content-type": "application/json"}
        ) as response:
            kept = self._kept(response.headers)
            if response.status_code >= 400:
                raise self.wire_format.parse_error(
                    wire, response.status_code, kept, await self._read_error(response)
                )
            self.wire_format.parse(wire, await self._read(wire, response), kept, model=self.model)
