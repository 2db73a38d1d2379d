"""A mock LLM server (OpenAI-compatible and Anthropic) with programmable misbehaviour.

`MockLLM` is a pure ASGI application (no framework) and its own control object::

    async with serve_mock_llm() as (url, mock):
        mock.script(Behaviour.rate_limited(retry_after=1.0, repeat=3), Behaviour.ok())
        ...  # POST {url}/v1/chat/completions or {url}/v1/messages with any HTTP client

Endpoints:

- `POST /v1/chat/completions`: an OpenAI chat completion, or server-sent events when
  the request says `"stream": true` (content deltas, tool-call fragments, a final chunk
  with `usage`, then `[DONE]`);
- `POST /v1/messages`: an Anthropic Messages answer, or its event stream
  (`message_start` ... `message_stop`);
- `GET /v1/models` (a list both SDKs read; 404 with `models_endpoint=False`),
  `GET /health`;
- `POST /_control` with a JSON object, so a test in another process can drive it:
  `{"script": [behaviour, ...], "default": behaviour, "latency": s, "jitter": s,
  "down": true, "reset": true, "tools": [rule, ...], "quota": {...} | null,
  "capacity": n | null, "backlog": n}` (each behaviour, rule and quota a dict of its
  fields); `GET /_control` returns the counters.

Each chat request, on either endpoint, takes the next scripted `Behaviour` (or the
default one) and plays it in that endpoint's wire format: an answer, an HTTP error
status with the format's error body and headers (429 with `retry-after` /
`retry-after-ms` / `x-ratelimit-*`, `insufficient_quota`, 500, 503, 529), an error
event in the middle of a stream (`overloaded_error`), a malformed or truncated body,
a hang (never answers until the client goes away or the server stops), a stall
(headers, or half a stream, then nothing), or a dropped connection. ASGI cannot close
a connection before the status line, so a drop sends the status line and headers,
then closes before the body: clients see the peer close the connection (httpx2:
`RemoteProtocolError`). `served` logs every answer with its time, status and usage.

Scripted tool calling (`tools`, a list of `ToolRule`): a prompt that mentions a
rule's `when`, in a request offering its tool, is answered with a call to it (in
fragments when streamed); once the tool's result is sent back, the answer quotes it.

Capacity (`capacity`, `backlog`): like an overloaded deployment, at most `capacity`
chat requests are answered at once; up to `backlog` more wait for a place (in arrival
order, which shows as latency), and the rest get 503 at once. Changing `capacity`
while requests run takes effect as places free up.

Per-key rate limits (`quota`, a `Quota`): requests and tokens per key (the bearer
token or `x-api-key`) over a rolling window; beyond them a 429 with `retry-after`, and
every answer carries `x-ratelimit-*` (OpenAI) or `anthropic-ratelimit-*` (Anthropic)
headers. With `api_keys` set, any other key gets a 401.

`serve_mock_llm` serves the app with hypercorn on 127.0.0.1 only, on asyncio or trio
(whichever is running). For in-process tests without a socket (virtual time), hand the
app to `httpx2.ASGITransport(app=mock)` (hangs and drops then surface differently: use
the real server for those).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Final, NamedTuple

import anyio
import attrs

from actors.testing._mock_quota import Quota, QuotaLedger, QuotaVerdict
from actors.testing._mock_tools import ToolRule, plan_answer, read_conversation
from actors.testing._mock_wire import (
    Reply,
    anthropic_error,
    anthropic_events,
    anthropic_message,
    openai_chunks,
    openai_completion,
    openai_error,
    sse,
)

__all__ = [
    "Behaviour",
    "MockLLM",
    "MockLLMServer",
    "Quota",
    "Served",
    "ToolRule",
    "serve_mock_llm",
]

KINDS: Final = ("ok", "status", "malformed", "truncated", "hang", "stall", "drop", "stream_error")
WIRES: Final = {"/v1/chat/completions": "openai", "/v1/messages": "anthropic"}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _Dropped(Exception):
    """Raised inside the app to make the server cut the connection."""


def _check_kind(_inst: Any, _attr: attrs.Attribute[str], value: object) -> None:
    if value not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {value!r}")


def _check_cut(_inst: Any, _attr: attrs.Attribute[int | None], value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"cut_after must be an integer >= 0 or None, not {value!r}")


def _as_dict(value: Mapping[str, str]) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()}


@attrs.frozen(kw_only=True)
class Behaviour:
    """What the server does with one chat request (on either endpoint).

    Attributes:
        kind: "ok" (an answer), "status" (an error response with `status`),
            "malformed" (200 with a body that is not JSON), "truncated" (200 with JSON
            cut in half; in a stream, some chunks then a dropped connection), "hang"
            (never respond), "stall" (send the headers, and half the chunks of a
            stream, then hang: a read timeout mid-response), "drop" (close the
            connection before the body), "stream_error" (half a stream, then an error
            event; a plain request gets the error status instead). A released hang or
            stall drops the connection.
        status: HTTP status of a "status" response (and of a "stream_error").
        headers: Extra response headers (e.g. `x-ratelimit-remaining-tokens`).
        body: JSON body of a "status" response, sent as is on both endpoints; by
            default each endpoint writes its own error body from the fields below.
        message: The error's message.
        code: The error's code (OpenAI `code`).
        error_type: The error's type (OpenAI `type`, Anthropic `error.type`); by
            default the one each format uses for `status`.
        param: The error's `param` (OpenAI).
        latency: Seconds before responding; `None` uses the server-wide latency.
        content: The assistant's reply for "ok" (default: a scripted tool call or
            answer, else an echo of the last user message).
        prompt_tokens: Usage reported; default: about one token per 4 characters.
        completion_tokens: Usage reported; default: one per word of the answer.
        cached_tokens: Prompt tokens reported as read from the cache.
        repeat: How many consecutive requests this behaviour serves when scripted.
        cut_after: For a streamed "truncated", "stall" or "stream_error": the text
            deltas sent before the stream breaks (default: half the stream's events).
    """

    kind: str = attrs.field(default="ok", validator=_check_kind)
    status: int = 200
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_as_dict)
    body: Any = None
    message: str = "mock failure"
    code: str | None = None
    error_type: str | None = None
    param: str | None = None
    latency: float | None = None
    content: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    repeat: int = 1
    cut_after: int | None = attrs.field(default=None, validator=_check_cut)

    @classmethod
    def ok(cls, content: str | None = None, **kwargs: Any) -> Behaviour:
        """A successful answer."""
        return cls(kind="ok", content=content, **kwargs)

    @classmethod
    def error(cls, status: int, message: str = "mock failure", **kwargs: Any) -> Behaviour:
        """An error status with the endpoint's error body (500, 503, 408, 400, ...)."""
        return cls(kind="status", status=status, message=message, **kwargs)

    @classmethod
    def overloaded(cls, **kwargs: Any) -> Behaviour:
        """529 overloaded_error, as Anthropic says when overloaded."""
        return cls.error(529, "Overloaded", **kwargs)

    @classmethod
    def stream_error(
        cls, status: int = 529, message: str = "Overloaded", **kwargs: Any
    ) -> Behaviour:
        """Half a stream, then an error event (Anthropic's mid-stream overloaded_error)."""
        return cls(kind="stream_error", status=status, message=message, **kwargs)

    @classmethod
    def rate_limited(
        cls,
        retry_after: float | None = 1.0,
        *,
        retry_after_ms: float | None = None,
        limit_requests: int = 60,
        limit_tokens: int = 10_000,
        remaining_tokens: int = 0,
        reset: str = "1s",
        **kwargs: Any,
    ) -> Behaviour:
        """429 rate_limit_exceeded with `retry-after(-ms)` and `x-ratelimit-*` headers."""
        headers: dict[str, str] = {
            "x-ratelimit-limit-requests": str(limit_requests),
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": reset,
            "x-ratelimit-limit-tokens": str(limit_tokens),
            "x-ratelimit-remaining-tokens": str(remaining_tokens),
            "x-ratelimit-reset-tokens": reset,
        }
        if retry_after is not None:
            headers["retry-after"] = f"{retry_after:g}"
        if retry_after_ms is not None:
            headers["retry-after-ms"] = f"{retry_after_ms:g}"
        headers.update(kwargs.pop("headers", {}))
        return cls(
            kind="status",
            status=429,
            headers=headers,
            code="rate_limit_exceeded",
            message="Rate limit reached; slow down.",
            **kwargs,
        )

    @classmethod
    def quota_exceeded(cls, **kwargs: Any) -> Behaviour:
        """429 insufficient_quota: retrying does not help (the code is kept on both
        endpoints, so quota tests read the same on either)."""
        return cls(
            kind="status",
            status=429,
            code="insufficient_quota",
            error_type="insufficient_quota",
            message="You exceeded your current quota.",
            **kwargs,
        )

    @classmethod
    def malformed(cls, **kwargs: Any) -> Behaviour:
        """200 with a body that is not JSON."""
        return cls(kind="malformed", **kwargs)

    @classmethod
    def truncated(cls, **kwargs: Any) -> Behaviour:
        """200 with JSON cut in half (a stream is cut off after a few chunks)."""
        return cls(kind="truncated", **kwargs)

    @classmethod
    def hang(cls, **kwargs: Any) -> Behaviour:
        """Never respond (until the client disconnects or the server stops)."""
        return cls(kind="hang", **kwargs)

    @classmethod
    def stall(cls, **kwargs: Any) -> Behaviour:
        """Start answering (headers; half a stream), then hang until released."""
        return cls(kind="stall", **kwargs)

    @classmethod
    def drop(cls, **kwargs: Any) -> Behaviour:
        """Close the connection without a response body."""
        return cls(kind="drop", **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Behaviour:
        """Builds a behaviour from its JSON form (the fields as keys).

        Raises:
            ValueError: An unknown field or kind.
        """
        fields = {a.name for a in attrs.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown behaviour fields: {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form accepted by `from_dict` and `POST /_control`."""
        return attrs.asdict(self)

    def error_body(self, wire: str) -> Any:
        """The error body this behaviour sends on `wire` ("openai" or "anthropic")."""
        if self.body is not None:
            return self.body
        if wire == "anthropic":
            return anthropic_error(self.status, self.message, type_=self.error_type)
        return openai_error(
            self.status, self.message, type_=self.error_type, code=self.code, param=self.param
        )


@attrs.frozen
class Served:
    """One answered chat request: when (`anyio.current_time()`), status and usage."""

    at: float
    status: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wire: str = "openai"

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


_ANSWERING: Final = frozenset({"ok", "truncated", "stall", "stream_error"})
_CONTROL_KEYS: Final = frozenset(
    {
        "reset",
        "script",
        "default",
        "latency",
        "jitter",
        "down",
        "tools",
        "quota",
        "capacity",
        "backlog",
    }
)


def _key_of(scope: Scope) -> str:
    """The caller's API key: the bearer token, or `x-api-key`."""
    for name, value in scope.get("headers") or ():
        lowered = bytes(name).lower()
        raw = bytes(value)
        if lowered == b"authorization" and raw[:7].lower() == b"bearer ":
            return raw[7:].decode("latin-1").strip()
        if lowered == b"x-api-key":
            return raw.decode("latin-1").strip()
    return ""


def _masked(key: str) -> str:
    return f"{key[:3]}{'*' * 8}{key[-4:]}" if len(key) > 8 else "****"


def _bad_request(request: object, wire: str) -> str | None:
    """What a real provider would refuse in this body (a 400), if anything."""
    if not isinstance(request, dict):
        return "the body must be a JSON object"
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: must be a non-empty array"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            return f"messages.{i}.role: Field required"
    if wire == "anthropic":
        max_tokens = request.get("max_tokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            return "max_tokens: Field required (an integer >= 1)"
    return None


@attrs.define(eq=False)
class MockLLM:
    """The ASGI app and its control panel (counters, script, latency, tools, quota).

    Attributes:
        latency: Seconds every response waits unless its behaviour says otherwise.
        jitter: Extra random latency, uniform in [0, jitter] seconds.
        default: What a request gets when the script is empty.
        model: The model name reported (unless the request names one).
        seed: Seeds the latency jitter.
        tools: Scripted tool calling: the `ToolRule`s applied to "ok" answers.
        quota: Per-key rate limits enforced on both endpoints (None: unlimited).
        api_keys: Keys accepted (None: any); others get a 401.
        capacity: Chat requests answered at once (None: unlimited); beyond it and the
            backlog, a 503.
        backlog: Chat requests that may wait for a place once `capacity` are answered.
        models_endpoint: Serve `GET /v1/models` (False: 404, like servers without it).
        date_header: Send a `date` header (`serve_mock_llm` turns it off: hypercorn
            sends its own).
        requests: Requests seen, all paths.
        chat_requests: Chat requests seen, both endpoints.
        by_path: Requests per path.
        by_kind: Chat requests per behaviour kind served.
        hanging: Requests hanging right now.
        busy: Chat requests holding a place of `capacity` right now.
        over_capacity: Chat requests answered 503 because every place and the backlog
            were taken.
        down: An outage: every API path (models, health, chat) answers 503 until cleared.
        last_request: The last chat request's JSON body.
        last_headers: The last chat request's headers (lower-case names).
        served: One `Served` record per chat request answered with a completion or an
            error status (time on `anyio.current_time()`, status, tokens, wire), for
            checking rates and token budgets over windows.
    """

    latency: float = 0.0
    jitter: float = 0.0
    default: Behaviour = attrs.field(factory=Behaviour)
    model: str = "mock-gpt"
    seed: int | None = None
    tools: list[ToolRule] = attrs.field(factory=list)
    quota: Quota | None = None
    api_keys: frozenset[str] | None = None
    capacity: int | None = None
    backlog: int = 0
    models_endpoint: bool = True
    date_header: bool = True
    requests: int = 0
    chat_requests: int = 0
    by_path: Counter[str] = attrs.field(factory=Counter)
    by_kind: Counter[str] = attrs.field(factory=Counter)
    hanging: int = 0
    busy: int = 0
    over_capacity: int = 0
    down: bool = False
    last_request: Any = None
    last_headers: dict[str, str] = attrs.field(factory=dict)
    served: list[Served] = attrs.field(factory=list)
    _script: deque[Behaviour] = attrs.field(factory=deque)
    _random: random.Random = attrs.field(init=False)
    _release: anyio.Event | None = attrs.field(default=None, init=False)
    _created: int = attrs.field(factory=lambda: int(time.time()), init=False)
    _ledger: QuotaLedger | None = attrs.field(default=None, init=False)
    _waiting: deque[anyio.Event] = attrs.field(factory=deque, init=False)
    _wall_base: float | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self._random = random.Random(self.seed)

    # -- control -------------------------------------------------------------------

    def script(self, *behaviours: Behaviour) -> None:
        """Queues behaviours for the next chat requests (each `repeat` times)."""
        for behaviour in behaviours:
            self._script.extend([behaviour] * behaviour.repeat)

    @property
    def scripted(self) -> int:
        """Scripted behaviours not yet served."""
        return len(self._script)

    def reset(self) -> None:
        """Clears the script, counters, tools and quota; restores the defaults."""
        self._script.clear()
        self.latency = 0.0
        self.jitter = 0.0
        self.default = Behaviour()
        self.requests = self.chat_requests = 0
        self.by_path.clear()
        self.by_kind.clear()
        self.last_request = None
        self.last_headers = {}
        self.served.clear()
        self.down = False
        self.tools = []
        self.quota = None
        self._ledger = None
        self.capacity = None
        self.backlog = 0
        self.over_capacity = 0

    def counters(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict (what `GET /_control` returns)."""
        return {
            "requests": self.requests,
            "chat_requests": self.chat_requests,
            "by_path": dict(self.by_path),
            "by_kind": dict(self.by_kind),
            "hanging": self.hanging,
            "busy": self.busy,
            "over_capacity": self.over_capacity,
            "scripted": self.scripted,
        }

    def control(self, command: Mapping[str, Any]) -> None:
        """Applies a JSON control command (see the module docstring).

        Raises:
            ValueError: An unknown key or a bad behaviour, rule or quota.
        """
        unknown = set(command) - _CONTROL_KEYS
        if unknown:
            raise ValueError(f"unknown control keys: {sorted(unknown)}")
        if command.get("reset"):
            self.reset()
        if "default" in command:
            self.default = Behaviour.from_dict(command["default"])
        if "latency" in command:
            self.latency = float(command["latency"])
        if "jitter" in command:
            self.jitter = float(command["jitter"])
        if "script" in command:
            self.script(*(Behaviour.from_dict(item) for item in command["script"]))
        if "down" in command:
            self.down = bool(command["down"])
        if "tools" in command:
            self.tools = [ToolRule.from_dict(item) for item in command["tools"]]
        if "quota" in command:
            self.quota = None if command["quota"] is None else Quota(**command["quota"])
        if "capacity" in command:
            capacity = command["capacity"]
            if capacity is not None and (not isinstance(capacity, int) or capacity < 0):
                raise ValueError(f"capacity must be an integer >= 0 or null, not {capacity!r}")
            self.capacity = capacity
            self._admit_waiting()
        if "backlog" in command:
            backlog = command["backlog"]
            if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 0:
                raise ValueError(f"backlog must be an integer >= 0, not {backlog!r}")
            self.backlog = backlog

    def release_hangs(self) -> None:
        """Ends every hanging request (their connections are dropped)."""
        if self._release is not None:
            self._release.set()
            self._release = None

    def _peek(self) -> Behaviour:
        return self._script[0] if self._script else self.default

    def _next(self) -> Behaviour:
        return self._script.popleft() if self._script else self.default

    def _wall(self, at: float) -> float:
        """Calendar seconds for `at` on `anyio.current_time()` (for dates and resets)."""
        if self._wall_base is None:
            self._wall_base = time.time() - anyio.current_time()
        return self._wall_base + at

    # -- ASGI ----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # pragma: no cover - websockets are not served
            return
        path: str = scope["path"]
        method: str = scope["method"]
        self.requests += 1
        self.by_path[path] += 1
        body = await _read_body(receive)
        wire = WIRES.get(path, "openai")
        if self.down and path != "/_control":
            error = Behaviour.error(503, "outage").error_body(wire)
            await _send_json(send, 503, error)
        elif path == "/health" and method == "GET":
            await _send_json(send, 200, {"status": "ok"})
        elif path == "/v1/models" and method == "GET" and self.models_endpoint:
            await _send_json(send, 200, self._models())
        elif path == "/_control" and method == "GET":
            await _send_json(send, 200, self.counters())
        elif path == "/_control" and method == "POST":
            try:
                self.control(json.loads(body or b"{}"))
            except (ValueError, TypeError) as exc:
                await _send_json(send, 400, {"error": str(exc)})
            else:
                await _send_json(send, 200, self.counters())
        elif path in WIRES and method == "POST":
            await self._chat(body, scope, receive, send, wire)
        else:
            await _send_json(send, 404, Behaviour.error(404, "not found").error_body(wire))

    def _models(self) -> dict[str, Any]:
        model = {
            "id": self.model,
            "object": "model",
            "created": 0,
            "owned_by": "mock",
            "type": "model",
            "display_name": self.model,
            "created_at": "2025-01-01T00:00:00Z",
        }
        return {
            "object": "list",
            "data": [model],
            "has_more": False,
            "first_id": self.model,
            "last_id": self.model,
        }

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _chat(
        self, raw: bytes, scope: Scope, receive: Receive, send: Send, wire: str
    ) -> None:
        self.chat_requests += 1
        self.last_headers = {
            bytes(k).decode("latin-1").lower(): bytes(v).decode("latin-1")
            for k, v in scope.get("headers") or ()
        }
        request: Any = None
        why: str | None
        try:
            request = json.loads(raw)
        except ValueError as exc:
            why = f"bad JSON: {exc}"
        else:
            why = _bad_request(request, wire)
        if why is not None:
            await self._refuse(send, wire, Behaviour.error(400, why), {})
            return
        self.last_request = request
        key = _key_of(scope)
        if self.api_keys is not None and key not in self.api_keys:
            denied = Behaviour.error(
                401,
                f"Incorrect API key provided: {_masked(key)}.",
                code="invalid_api_key",
            )
            await self._refuse(send, wire, denied, {})
            return
        behaviour = self._peek()
        reply = self._reply(request, behaviour) if behaviour.kind in _ANSWERING else None
        headers: dict[str, str] = {}
        if self.quota is not None:
            tokens = 0 if reply is None else reply.prompt_tokens + reply.completion_tokens
            verdict = self._admit(key, tokens)
            headers = self._quota_headers(verdict, wire)
            if not verdict.admitted:
                await self._refuse(send, wire, self._limited(verdict), headers)
                return
        placed = False
        if self.capacity is not None:
            if not await self._take_place():
                self.over_capacity += 1
                overloaded = Behaviour.error(503, "The server is at capacity; try again later.")
                await self._refuse(send, wire, overloaded, headers)
                return
            placed = True
        try:
            await self._answer(
                request=request,
                behaviour=behaviour,
                reply=reply,
                headers=headers,
                receive=receive,
                send=send,
                wire=wire,
            )
        finally:
            if placed:
                self._leave_place()

    async def _answer(
        self,
        *,
        request: Any,
        behaviour: Behaviour,
        reply: Reply | None,
        headers: dict[str, str],
        receive: Receive,
        send: Send,
        wire: str,
    ) -> None:
        self._next()
        self.by_kind[behaviour.kind] += 1
        latency = self.latency if behaviour.latency is None else behaviour.latency
        if self.jitter:
            latency += self._random.uniform(0, self.jitter)
        if latency > 0 and not await self._hang(receive, latency):
            raise _Dropped("client went away (or the server stopped) during the latency")
        headers.update(behaviour.headers)
        if self.date_header:
            at = datetime.fromtimestamp(self._wall(anyio.current_time()), UTC)
            headers.setdefault("date", format_datetime(at, usegmt=True))
        stream = bool(request.get("stream"))
        if behaviour.kind == "hang":
            await self._hang(receive)
        if behaviour.kind == "stall" and not stream:
            await send(_start(200, "application/json", {"content-length": "100", **headers}))
            await self._hang(receive)
            raise _Dropped("stalled response released")
        if behaviour.kind in {"hang", "drop"}:
            # ASGI cannot close a connection without a status line: send headers that
            # promise a body, then fail; the server closes the connection mid-response.
            await send(_start(200, "application/json", {"content-length": "100", **headers}))
            raise _Dropped("connection dropped on purpose")
        if behaviour.kind == "status" or (behaviour.kind == "stream_error" and not stream):
            await self._refuse(send, wire, behaviour, headers)
            return
        if behaviour.kind == "malformed":
            await _send_raw(send, 200, b'{"id": "mock", "choices": [', headers)
            return
        assert reply is not None  # every answering kind has one
        self.served.append(
            Served(
                at=anyio.current_time(),
                status=200,
                prompt_tokens=reply.prompt_tokens,
                completion_tokens=reply.completion_tokens,
                wire=wire,
            )
        )
        if stream:
            await self._stream(
                reply=reply,
                behaviour=behaviour,
                receive=receive,
                send=send,
                headers=headers,
                wire=wire,
            )
            return
        answer = anthropic_message(reply) if wire == "anthropic" else openai_completion(reply)
        payload = json.dumps(answer).encode()
        if behaviour.kind == "truncated":
            payload = payload[: len(payload) // 2]
        await _send_raw(send, 200, payload, headers)

    async def _refuse(
        self, send: Send, wire: str, behaviour: Behaviour, headers: Mapping[str, str]
    ) -> None:
        self.served.append(Served(at=anyio.current_time(), status=behaviour.status, wire=wire))
        await _send_json(send, behaviour.status, behaviour.error_body(wire), headers)

    def _reply(self, request: Mapping[str, Any], behaviour: Behaviour) -> Reply:
        conversation = read_conversation(request)
        calls: tuple[tuple[str, str, str], ...] = ()
        text = behaviour.content
        if text is None:
            plan = plan_answer(self.tools, conversation)
            if plan is None:
                text = f"echo: {conversation.last_user_text}"
            else:
                text = plan.text
                calls = tuple(
                    (f"call_mock_{self.chat_requests}_{i}", name, arguments)
                    for i, (name, arguments) in enumerate(plan.calls)
                )
        prompt = behaviour.prompt_tokens
        if prompt is None:
            prompt = max(1, conversation.chars // 4)
        completion = behaviour.completion_tokens
        if completion is None:
            words = len(text.split()) + sum(len(args) for _, _, args in calls) // 4
            completion = max(1, words)
            budget = request.get("max_tokens", request.get("max_completion_tokens"))
            if isinstance(budget, int) and not isinstance(budget, bool) and budget > 0:
                completion = min(completion, budget)  # no provider answers past its budget
        model = request.get("model")
        self._created += 1
        return Reply(
            id=f"mock-{self.chat_requests}",
            model=model if isinstance(model, str) and model else self.model,
            created=self._created,
            text=text,
            calls=calls,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=min(behaviour.cached_tokens, prompt),
        )

    # -- capacity ----------------------------------------------------------------------

    async def _take_place(self) -> bool:
        """Takes a place among `capacity`, waiting in the backlog; False when full."""
        capacity = self.capacity
        assert capacity is not None
        if self.busy < capacity and not self._waiting:
            self.busy += 1
            return True
        if len(self._waiting) >= self.backlog:
            return False
        ready = anyio.Event()
        self._waiting.append(ready)
        try:
            await ready.wait()
        except BaseException:
            if ready.is_set():  # handed a place at the moment we left
                self._leave_place()
            else:
                self._waiting.remove(ready)
            raise
        return True

    def _leave_place(self) -> None:
        self.busy -= 1
        self._admit_waiting()

    def _admit_waiting(self) -> None:
        capacity = self.capacity
        while self._waiting and (capacity is None or self.busy < capacity):
            self.busy += 1
            self._waiting.popleft().set()

    # -- rate limits -----------------------------------------------------------------

    def _admit(self, key: str, tokens: int) -> QuotaVerdict:
        assert self.quota is not None
        if self._ledger is None or self._ledger.quota != self.quota:
            self._ledger = QuotaLedger(self.quota)
        return self._ledger.admit(key, tokens, anyio.current_time())

    def _limited(self, verdict: QuotaVerdict) -> Behaviour:
        if verdict.retry_after is None:
            return Behaviour(
                kind="status",
                status=429,
                code="rate_limit_exceeded",
                message="Request too large for the tokens-per-minute limit.",
            )
        return Behaviour(
            kind="status",
            status=429,
            code="rate_limit_exceeded",
            message="Rate limit reached; slow down.",
        )

    def _quota_headers(self, verdict: QuotaVerdict, wire: str) -> dict[str, str]:
        quota = self.quota
        assert quota is not None
        headers: dict[str, str] = {}
        if verdict.retry_after is not None:
            headers["retry-after"] = str(max(1, math.ceil(verdict.retry_after)))
            if wire == "openai":
                headers["retry-after-ms"] = str(max(1, math.ceil(verdict.retry_after * 1000)))
        now = anyio.current_time()
        figures = (
            (
                "requests",
                quota.requests_per_minute,
                verdict.remaining_requests,
                verdict.reset_requests,
            ),
            ("tokens", quota.tokens_per_minute, verdict.remaining_tokens, verdict.reset_tokens),
        )
        for name, limit, remaining, reset in figures:
            if limit is None or remaining is None:
                continue
            if wire == "anthropic":
                at = datetime.fromtimestamp(self._wall(now + reset), UTC)
                prefix = f"anthropic-ratelimit-{name}-"
                headers[f"{prefix}limit"] = str(limit)
                headers[f"{prefix}remaining"] = str(remaining)
                headers[f"{prefix}reset"] = at.isoformat().replace("+00:00", "Z")
            else:
                headers[f"x-ratelimit-limit-{name}"] = str(limit)
                headers[f"x-ratelimit-remaining-{name}"] = str(remaining)
                headers[f"x-ratelimit-reset-{name}"] = f"{reset:.3f}s"
        return headers

    # -- hangs and streams ---------------------------------------------------------------

    async def _hang(self, receive: Receive, seconds: float = math.inf) -> bool:
        """Waits `seconds` (a hang: forever); True if they passed, False if the client
        disconnected or `release_hangs` (the server stopping) ended the wait first."""
        if self._release is None:
            self._release = anyio.Event()
        release = self._release
        waited = False
        hang = math.isinf(seconds)
        if hang:
            self.hanging += 1
        try:
            async with anyio.create_task_group() as tg:

                async def until_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(until_disconnect)
                with anyio.move_on_after(seconds):
                    await release.wait()
                    tg.cancel_scope.cancel()
                waited = not tg.cancel_scope.cancel_called
                tg.cancel_scope.cancel()
        finally:
            if hang:
                self.hanging -= 1
        return waited

    async def _stream(
        self,
        *,
        reply: Reply,
        behaviour: Behaviour,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        wire: str,
    ) -> None:
        await send(_start(200, "text/event-stream", {"cache-control": "no-cache", **headers}))
        pairs: Sequence[tuple[str | None, str]]
        if wire == "anthropic":
            pairs = anthropic_events(reply)
            events = [sse(data, event) for event, data in pairs]
            end = b""
        else:
            pairs = [(None, data) for data in openai_chunks(reply)]
            events = [sse(data) for _, data in pairs]
            end = sse("[DONE]")
        if behaviour.kind in {"truncated", "stall", "stream_error"}:
            cut = (
                max(1, len(events) // 2)
                if behaviour.cut_after is None
                else _after_deltas(pairs, behaviour.cut_after)
            )
            for event in events[:cut]:
                await _send_body(send, event)
            if behaviour.kind == "stall":
                await self._hang(receive)
            if behaviour.kind == "stream_error":
                error = behaviour.error_body(wire)
                await _send_body(
                    send,
                    sse(json.dumps(error), "error" if wire == "anthropic" else None),
                    more=False,
                )
                return
            raise _Dropped("stream cut off on purpose")
        for event in events:
            await _send_body(send, event)
        await _send_body(send, end, more=False)


def _after_deltas(pairs: Sequence[tuple[str | None, str]], deltas: int) -> int:
    """How many events of a stream to send so that `deltas` text deltas are sent (and
    nothing after the last of them)."""
    if deltas == 0:
        for index, (_, data) in enumerate(pairs):
            if _text_delta(data):
                return index
        return len(pairs)
    seen = 0
    for index, (_, data) in enumerate(pairs):
        if _text_delta(data):
            seen += 1
            if seen == deltas:
                return index + 1
    return len(pairs)


def _text_delta(data: str) -> bool:
    """Whether a stream event's data carries answer text (either wire format)."""
    event = json.loads(data)
    delta = event.get("delta")
    if event.get("type") == "content_block_delta":
        return isinstance(delta, dict) and delta.get("type") == "text_delta"
    choices = event.get("choices") or []
    return bool(choices) and bool((choices[0].get("delta") or {}).get("content"))


def _start(status: int, content_type: str, headers: Mapping[str, str]) -> Message:
    pairs = [(b"content-type", content_type.encode())]
    pairs += [(k.lower().encode(), str(v).encode()) for k, v in headers.items()]
    return {"type": "http.response.start", "status": status, "headers": pairs}


async def _send_raw(send: Send, status: int, body: bytes, headers: Mapping[str, str]) -> None:
    all_headers = {"content-length": str(len(body)), **headers}
    await send(_start(status, "application/json", all_headers))
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_json(
    send: Send, status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> None:
    await _send_raw(send, status, json.dumps(payload).encode(), headers or {})


async def _send_body(send: Send, body: bytes, *, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": more})


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Dropped("client went away")
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


class MockLLMServer(NamedTuple):
    """What `serve_mock_llm` yields: `url` (no trailing slash) and the `control` app."""

    url: str
    control: MockLLM

    @property
    def base_url(self) -> str:
        """The API root both wire formats use (`{url}/v1`)."""
        return f"{self.url}/v1"


@asynccontextmanager
async def serve_mock_llm(
    mock: MockLLM | None = None, *, port: int = 0, shutdown_timeout: float = 5.0
) -> AsyncIterator[MockLLMServer]:
    """Serves a `MockLLM` with hypercorn on 127.0.0.1 for the block.

    Runs on the current backend (asyncio or trio). The port is bound before the block
    starts, so the URL is usable at once. Leaving the block ends hanging requests,
    stops the server gracefully and waits up to `shutdown_timeout` seconds for it.

    Args:
        mock: The app and control object; a fresh `MockLLM()` when omitted.
        port: The loopback port; 0 picks a free one.
        shutdown_timeout: Longest wait for the server to stop (then it is cancelled).

    Yields:
        `MockLLMServer(url, control)`.

    Raises:
        ImportError: hypercorn is not installed (extra `http`).
        OSError: The port cannot be bound.
    """
    from actors._serve import serve_asgi

    mock = MockLLM() if mock is None else mock
    mock.date_header = False  # hypercorn sends its own
    async with serve_asgi(
        mock, port=port, shutdown_timeout=shutdown_timeout, on_stop=mock.release_hangs
    ) as url:
        yield MockLLMServer(url, mock)
