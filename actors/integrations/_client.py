"""`SDKClient`: the service client behind an SDK transport.

Its requests are the SDK's own `httpx2.Request`s and its replies `httpx2.Response`s
(`ActorResponse`), so an official SDK runs unchanged on top of a service actor. Every
part that is not the body is the chat client's (`LLMClient` or `AnthropicClient`),
the same code our own chat requests run: the connection (one `httpx2.AsyncClient`,
its limits matching the pool), the credentials (a `Secret` the SDK never sees), the
bounded reads, the translation of transport failures, the health probe.

What the limits see: a request costs one request and the chat client's token
estimate of its JSON body (messages, tools, every other field, and its completion
budget); the reply reconciles it with the usage the chat client reads from the answer
(for a stream, from its last event, when it is closed). What the pipeline judges: the
reply's status (`HTTPClassifier`: 429 throttled unless its error code is a quota,
5xx and 529 retried, other 4xx the caller's mistake), and the transport failures and
unreadable answers raised here (`ServiceUnavailable`, `ServiceTimeout`,
`MalformedResponse`, all retried).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import anyio
import attrs
import httpx2

from actors._classify import Classifier, HTTPClassifier
from actors._errors import ConfigError, InvalidRequest, MalformedResponse
from actors._kinds import LLM
from actors._redact import CREDENTIAL_HEADERS, redact
from actors._tracing import AttributeValue, Operation, inject
from actors.integrations._reply import ActorResponse, read_reply, relay
from actors.services._base import ServiceClient
from actors.services._chat import ChatRequest
from actors.services._http import HTTPChatClient
from actors.services._wire import Wire, error_body, load_json

__all__ = ["REPLIES", "VIRTUAL_ORIGIN", "SDKClient"]

VIRTUAL_ORIGIN: Final = "http://actors.invalid"
"""The base URL the SDK clients made by `openai_client` / `anthropic_client` use: a
reserved name that resolves nowhere, mapped onto the service's own base URL."""
_VIRTUAL_HOST: Final = "actors.invalid"
_PLAN: Final = "actors.plan"  # request extension: the request's path and costs, once
REPLIES: Final = "actors.replies"
"""Request extension: a list the client appends each streamed reply to, so that the
transport closes a reply its caller gave up on before receiving it."""
_CORE: Final = frozenset({"model", "messages", "max_tokens", "temperature", "stream"})
_CLOSE_TIMEOUT: Final = 5.0
_URL_CACHE: Final = 256  # paths remembered (a caller inventing paths only clears it)


@attrs.frozen
class _Plan:
    """What the client reads from a request, once: where it goes and what it costs."""

    path: str  # relative to the chat client's base URL
    chat: ChatRequest | None  # the body, for a request to the chat endpoint
    costs: Mapping[str, float]


def _chat_request(data: Mapping[str, Any]) -> ChatRequest:
    """A JSON request body as a `ChatRequest`, for the token estimate and bound only."""
    messages = data.get("messages")
    budget = data.get("max_tokens", data.get("max_output_tokens"))
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        budget = None
    model = data.get("model")
    return ChatRequest(
        messages=tuple(m for m in messages if isinstance(m, Mapping))
        if isinstance(messages, list)
        else (),
        model=model if isinstance(model, str) and model else None,
        max_tokens=budget,
        extra={key: value for key, value in data.items() if key not in _CORE},
    )


async def _close(response: httpx2.Response) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_TIMEOUT):
        await response.aclose()


class SDKClient(ServiceClient[httpx2.AsyncClient, httpx2.Request, httpx2.Response]):
    """Sends an SDK's requests to the provider of a chat client.

    ::

        gpt = Service("gpt", lambda: SDKClient(LLMClient("gpt", url, model="gpt-4o-mini",
                                                         api_key=Secret.from_env("KEY"))))
        openai = openai_client(sup.ref("gpt"))  # every request through the actor

    A request's URL is the chat client's base URL plus a path (what the SDK builds
    with ``base_url`` set to it), or `VIRTUAL_ORIGIN` plus the same path; any other URL
    is refused (`InvalidRequest`), so the credentials never go anywhere else. When the
    chat client holds an API key, the SDK's own credential headers are dropped and
    the key is sent instead. Calling ``ref.call(request)`` yourself returns the
    `ActorResponse`: close it (``await response.aclose()``), streamed or not.
    """

    kind = LLM
    cost_keys: ClassVar[frozenset[str]] = HTTPChatClient.cost_keys

    def __init__(self, chat: HTTPChatClient) -> None:
        """Wraps `chat` (configured as for its own requests; its `model` is the probe's).

        Raises:
            ConfigError: `chat` is not an `LLMClient` or `AnthropicClient`.
        """
        if not isinstance(chat, HTTPChatClient):
            raise ConfigError(
                "chat", type(chat).__name__, "must be an LLMClient or AnthropicClient"
            )
        super().__init__(chat.name)
        self.chat = chat
        # The Anthropic SDK's paths start with the version its base URL leaves out.
        self._prefix = "v1/" if chat.wire_format.name == "anthropic" else ""
        self._drop: frozenset[str] | None = None  # request headers not relayed
        self._urls: dict[str, httpx2.URL] = {}  # path -> the provider's URL

    # -- the chat client's parts ----------------------------------------------------

    def lifespan(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.chat.lifespan()

    async def connect(self) -> httpx2.AsyncClient:
        return await self.chat.connect()

    async def close(self, conn: httpx2.AsyncClient) -> None:
        await self.chat.close(conn)

    async def probe(self, conn: httpx2.AsyncClient) -> None:
        """The chat client's health probe (see `LLMClient`'s ``probe``)."""
        await self.chat.probe(conn)

    def classifier(self) -> Classifier:
        """The HTTP rule, judging each reply by its status and error body."""
        return HTTPClassifier()

    def rate_headers(self, response_or_error: object) -> Mapping[str, str] | None:
        return self.chat.rate_headers(response_or_error)

    # -- the boundary ----------------------------------------------------------------

    def check_request(self, request: object) -> None:
        """Refuses what is not an `httpx2.Request` for this service's base URL.

        The body is not checked: what the provider refuses it answers with a 400,
        which reaches the SDK (and counts as the caller's mistake, never the
        service's).

        Raises:
            InvalidRequest: Not an `httpx2.Request`, or a URL elsewhere.
        """
        if not isinstance(request, httpx2.Request):
            raise InvalidRequest(
                self.name, "request", f"must be an httpx2.Request, not {type(request).__name__}"
            )
        self._plan(request)

    def costs(self, request: httpx2.Request) -> Mapping[str, float]:
        """One request, plus the chat client's token estimate of a JSON body."""
        return self._plan(request).costs

    def usage(self, response: httpx2.Response) -> Mapping[str, float]:
        """What the answer used (for a stream, known once it is read to its end)."""
        return response.used if isinstance(response, ActorResponse) else {}

    def describe(self, request: httpx2.Request, *, content: bool) -> Operation:
        """A chat request is the chat client's GenAI span (``chat {model}``); any other
        request a client span named after the service."""
        chat = self._plan(request).chat
        if chat is None:
            return super().describe(request, content=content)
        return self.chat.describe(chat, content=content)

    def describe_result(
        self, response: httpx2.Response, *, content: bool
    ) -> Mapping[str, AttributeValue]:
        """The token usage an answer read in the attempt reported."""
        used = self.usage(response)
        return {
            f"gen_ai.usage.{name}": int(used[name])
            for name in ("input_tokens", "output_tokens")
            if name in used
        }

    def _plan(self, request: httpx2.Request) -> _Plan:
        plan = request.extensions.get(_PLAN)
        if isinstance(plan, _Plan):
            return plan
        path = self._path(request.url)
        chat = None
        costs: dict[str, float] = {"requests": 1.0}
        try:
            body: bytes | None = request.content
        except httpx2.RequestNotRead:  # a streamed upload: its size is unknown
            body = None
        if body:
            data = self._json(body)
            if isinstance(data, dict):
                estimated = _chat_request(data)
                costs = dict(self.chat.costs(estimated))
                if path.partition("?")[0] == self.chat.path:
                    chat = estimated
            else:
                tokens = len(body) / 4
                costs.update(tokens=tokens, input_tokens=tokens)
        plan = _Plan(path, chat, costs)
        request.extensions[_PLAN] = plan
        return plan

    def _path(self, url: httpx2.URL) -> str:
        base = self.chat.base_url
        text = str(url)
        if text.startswith(base):
            path = text[len(base) :]
        elif url.host == _VIRTUAL_HOST:
            path = url.raw_path.decode("ascii").lstrip("/").removeprefix(self._prefix)
        else:
            raise InvalidRequest(
                self.name, "url", f"is not under the service's base URL {redact(base)}"
            )
        if any(part in {".", ".."} for part in path.partition("?")[0].split("/")):
            raise InvalidRequest(self.name, "url", "has a . or .. segment")
        return path

    def _json(self, body: bytes) -> object:
        wire = Wire(service=self.name, limits=self.chat.wire_limits)
        try:
            return load_json(wire, body, "the request body")
        except MalformedResponse:  # not JSON: the provider will say so
            return None

    # -- requests --------------------------------------------------------------------

    def _outgoing(
        self, conn: httpx2.AsyncClient, request: httpx2.Request, path: str
    ) -> httpx2.Request:
        """The request as sent: the service's URL and credentials, the SDK's headers,
        body and timeouts (the chat client's when the SDK sets none)."""
        drop = self._drop
        if drop is None:
            holds_key = any(name in conn.headers for name in CREDENTIAL_HEADERS)
            drop = self._drop = frozenset({"host"} | (CREDENTIAL_HEADERS if holds_key else set()))
        kept = [(k, v) for k, v in request.headers.multi_items() if k not in drop]
        names = {k for k, _ in kept}  # multi_items names are lower-case
        headers = httpx2.Headers(
            [(k, v) for k, v in conn.headers.multi_items() if k not in names] + kept
        )
        extensions = {k: v for k, v in request.extensions.items() if not k.startswith("actors.")}
        timeout = extensions.get("timeout")
        if not isinstance(timeout, Mapping) or all(v is None for v in timeout.values()):
            extensions["timeout"] = conn.timeout.as_dict()
        url = self._urls.get(path)
        if url is None:  # joining costs more than the rest of the request: once per path
            if len(self._urls) >= _URL_CACHE:
                self._urls.clear()
            url = self._urls[path] = conn.base_url.join(path)
        headers["host"] = url.netloc.decode("ascii")  # a request given a stream gets none
        trace: dict[str, str] = {}
        inject(trace)  # the attempt's W3C traceparent, while tracing is on
        headers.update(trace)
        return httpx2.Request(
            request.method,
            url,
            headers=headers,
            stream=request.stream,
            extensions=extensions,
        )

    async def request(self, conn: httpx2.AsyncClient, request: httpx2.Request) -> httpx2.Response:
        """Sends the SDK's request; the reply carries the provider's answer.

        An error answer's body (bounded) and a chat answer's JSON body are read here;
        a streamed body is relayed to the SDK, and this attempt's reservation and
        connection are held until the SDK closes it.

        Raises:
            ServiceTimeout: Connect or read timeout.
            ServiceUnavailable: Connection refused, reset or dropped.
            MalformedResponse: A chat answer too large, not JSON or not a completion.
            ServiceResponseError: A successful status whose body is an error object.
        """
        chat = self.chat
        plan = self._plan(request)
        wire = chat._wire(plan.chat)
        try:
            outgoing = self._outgoing(conn, request, plan.path)
            # The SDK's own client has done redirects, cookies, hooks and logging:
            # send on the connection pool directly when httpx2 lets us reach it.
            transport = getattr(conn, "_transport", None)
            if isinstance(transport, httpx2.AsyncBaseTransport):
                response = await transport.handle_async_request(outgoing)
            else:  # pragma: no cover - an httpx2 without the attribute
                response = await conn.send(outgoing, stream=True)
        except httpx2.HTTPError as exc:
            raise chat._transport_error(exc, wire) from exc
        streamed = response.headers.get("content-type", "").startswith("text/event-stream")
        try:
            if response.status_code >= 400:
                raw = await chat._read_error(response)
                await _close(response)
                return read_reply(response, raw or b"", body=error_body(wire, raw))
            if plan.chat is not None and response.is_success and not streamed:
                raw = await chat._read(wire, response)
                answer = chat.wire_format.parse(wire, raw, {}, model=chat.model)
                return read_reply(response, raw, used=chat.usage(answer))
        except httpx2.HTTPError as exc:
            await _close(response)
            raise chat._transport_error(exc, wire) from exc
        except BaseException:
            await _close(response)
            raise
        # A stream (its usage read on the side when it is a chat answer), or a body that
        # is not a chat answer (a file, a list...): relayed as it comes.
        reply = relay(response, chat if plan.chat is not None and streamed else None, wire)
        replies = request.extensions.get(REPLIES)
        if isinstance(replies, list):
            replies.append(reply)
        return reply


def replies_of(request: httpx2.Request) -> list[ActorResponse]:
    """The list `SDKClient` records `request`'s streamed replies in (made here)."""
    replies: list[ActorResponse] = []
    request.extensions[REPLIES] = replies
    return replies


async def close_replies(replies: list[ActorResponse]) -> None:
    """Closes replies nobody received (their caller gave up as they were made)."""
    for reply in replies:
        await reply.aclose()
