"""A mock OpenAI-compatible chat-completions server with programmable misbehaviour.

`MockLLM` is a pure ASGI application (no framework) and its own control object::

    async with serve_mock_llm() as (url, mock):
        mock.script(Behaviour.rate_limited(retry_after=1.0, repeat=3), Behaviour.ok())
        ...  # POST {url}/v1/chat/completions with any HTTP client

Endpoints:

- `POST /v1/chat/completions`: a JSON completion, or server-sent events when the request
  says `"stream": true` (content deltas, a final chunk with `usage`, then `[DONE]`);
- `GET /v1/models`, `GET /health`;
- `POST /_control` with a JSON object, so a test in another process can drive it:
  `{"script": [behaviour, ...], "default": behaviour, "latency": s, "jitter": s,
  "down": true, "reset": true}` (each behaviour is a dict of `Behaviour` fields); `GET /_control`
  returns the counters.

Each chat request takes the next scripted `Behaviour` (or the default one) and plays it:
a completion, an HTTP error status with OpenAI-style error body and headers (429 with
`retry-after` / `retry-after-ms` / `x-ratelimit-*`, `insufficient_quota`, 500, 503,
529), a malformed or truncated JSON body, a hang (never answers until the client goes
away or the server stops), a stall (headers, or half a stream, then nothing), or a
dropped connection. ASGI cannot close a connection before the status line, so a drop
sends the status line and headers, then closes before the body: clients see the peer
close the connection (httpx2: `RemoteProtocolError`). `served` logs every answer with
its time, status and token usage.

`serve_mock_llm` serves the app with hypercorn on 127.0.0.1 only, on asyncio or trio
(whichever is running). For in-process tests without a socket, hand the app to
`httpx2.ASGITransport(app=mock)` (hangs and drops then surface differently: use the
real server for those).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import asynccontextmanager
from typing import Any, Final, NamedTuple

import anyio
import attrs

__all__ = ["Behaviour", "MockLLM", "MockLLMServer", "Served", "serve_mock_llm"]

KINDS: Final = ("ok", "status", "malformed", "truncated", "hang", "stall", "drop")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _Dropped(Exception):
    """Raised inside the app to make the server cut the connection."""


def _check_kind(_inst: Any, _attr: attrs.Attribute[str], value: object) -> None:
    if value not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {value!r}")


def _error_body(kind: str, code: str | None, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _as_dict(value: Mapping[str, str]) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()}


@attrs.frozen(kw_only=True)
class Behaviour:
    """What the server does with one chat-completions request.

    Attributes:
        kind: "ok" (a completion), "status" (an error response with `status`),
            "malformed" (200 with a body that is not JSON), "truncated" (200 with JSON
            cut in half; in a stream, some chunks then a dropped connection), "hang"
            (never respond), "stall" (send the headers, and half the chunks of a
            stream, then hang: a read timeout mid-response), "drop" (close the
            connection before the body). A released hang or stall drops the connection.
        status: HTTP status of a "status" response.
        headers: Extra response headers (e.g. `x-ratelimit-remaining-tokens`).
        body: JSON body of a "status" response (an OpenAI-style error by default).
        latency: Seconds before responding; `None` uses the server-wide latency.
        content: The assistant's reply for "ok" (default: echoes the last user message).
        prompt_tokens: Usage reported; default: about one token per 4 request characters.
        completion_tokens: Usage reported; default: one per word of `content`.
        repeat: How many consecutive requests this behaviour serves when scripted.
    """

    kind: str = attrs.field(default="ok", validator=_check_kind)
    status: int = 200
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_as_dict)
    body: Any = None
    latency: float | None = None
    content: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    repeat: int = 1

    @classmethod
    def ok(cls, content: str | None = None, **kwargs: Any) -> Behaviour:
        """A successful completion."""
        return cls(kind="ok", content=content, **kwargs)

    @classmethod
    def error(cls, status: int, message: str = "mock failure", **kwargs: Any) -> Behaviour:
        """An error status with an OpenAI-style body (500, 503, 408, 400, ...)."""
        types = {
            500: "server_error",
            503: "service_unavailable",
            529: "overloaded_error",
            408: "timeout",
            409: "conflict",
        }
        kind = types.get(status, "invalid_request_error")
        body = kwargs.pop("body", _error_body(kind, None, message))
        return cls(kind="status", status=status, body=body, **kwargs)

    @classmethod
    def overloaded(cls, **kwargs: Any) -> Behaviour:
        """529, as Anthropic-style APIs say when overloaded."""
        return cls.error(529, "Overloaded", **kwargs)

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
        body = _error_body("requests", "rate_limit_exceeded", "Rate limit reached; slow down.")
        return cls(kind="status", status=429, headers=headers, body=body, **kwargs)

    @classmethod
    def quota_exceeded(cls, **kwargs: Any) -> Behaviour:
        """429 insufficient_quota: retrying does not help."""
        body = _error_body(
            "insufficient_quota", "insufficient_quota", "You exceeded your current quota."
        )
        return cls(kind="status", status=429, body=body, **kwargs)

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


@attrs.frozen
class Served:
    """One answered chat request: when (`anyio.current_time()`), status and usage."""

    at: float
    status: int
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@attrs.define(eq=False)
class MockLLM:
    """The ASGI app and its control panel (counters, script, latency).

    Attributes:
        latency: Seconds every response waits unless its behaviour says otherwise.
        jitter: Extra random latency, uniform in [0, jitter] seconds.
        default: What a request gets when the script is empty.
        model: The model name reported.
        seed: Seeds the latency jitter.
        requests: Requests seen, all paths.
        chat_requests: Chat-completions requests seen.
        by_path: Requests per path.
        by_kind: Chat requests per behaviour kind served.
        hanging: Requests hanging right now.
        down: An outage: every API path (models, health, chat) answers 503 until cleared.
        last_request: The last chat request's JSON body.
        served: One `Served` record per chat request answered with a completion or an
            error status (time on `anyio.current_time()`, status, tokens), for checking
            rates and token budgets over windows.
    """

    latency: float = 0.0
    jitter: float = 0.0
    default: Behaviour = attrs.field(factory=Behaviour)
    model: str = "mock-gpt"
    seed: int | None = None
    requests: int = 0
    chat_requests: int = 0
    by_path: Counter[str] = attrs.field(factory=Counter)
    by_kind: Counter[str] = attrs.field(factory=Counter)
    hanging: int = 0
    down: bool = False
    last_request: Any = None
    served: list[Served] = attrs.field(factory=list)
    _script: deque[Behaviour] = attrs.field(factory=deque)
    _random: random.Random = attrs.field(init=False)
    _release: anyio.Event | None = attrs.field(default=None, init=False)
    _created: int = attrs.field(factory=lambda: int(time.time()), init=False)

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
        """Clears the script and counters, restores the defaults (latency 0, ok)."""
        self._script.clear()
        self.latency = 0.0
        self.jitter = 0.0
        self.default = Behaviour()
        self.requests = self.chat_requests = 0
        self.by_path.clear()
        self.by_kind.clear()
        self.last_request = None
        self.served.clear()
        self.down = False

    def counters(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict (what `GET /_control` returns)."""
        return {
            "requests": self.requests,
            "chat_requests": self.chat_requests,
            "by_path": dict(self.by_path),
            "by_kind": dict(self.by_kind),
            "hanging": self.hanging,
            "scripted": self.scripted,
        }

    def control(self, command: Mapping[str, Any]) -> None:
        """Applies a JSON control command (see the module docstring).

        Raises:
            ValueError: An unknown key or a bad behaviour.
        """
        unknown = set(command) - {"reset", "script", "default", "latency", "jitter", "down"}
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

    def release_hangs(self) -> None:
        """Ends every hanging request (their connections are dropped)."""
        if self._release is not None:
            self._release.set()
            self._release = None

    def _next(self) -> Behaviour:
        return self._script.popleft() if self._script else self.default

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
        if self.down and path != "/_control":
            error = _error_body("service_unavailable", None, "outage")
            await _send_json(send, 503, error)
        elif path == "/health" and method == "GET":
            await _send_json(send, 200, {"status": "ok"})
        elif path == "/v1/models" and method == "GET":
            data = [{"id": self.model, "object": "model", "created": 0, "owned_by": "mock"}]
            await _send_json(send, 200, {"object": "list", "data": data})
        elif path == "/_control" and method == "GET":
            await _send_json(send, 200, self.counters())
        elif path == "/_control" and method == "POST":
            try:
                self.control(json.loads(body or b"{}"))
            except (ValueError, TypeError) as exc:
                await _send_json(send, 400, {"error": str(exc)})
            else:
                await _send_json(send, 200, self.counters())
        elif path == "/v1/chat/completions" and method == "POST":
            await self._chat(body, receive, send)
        else:
            await _send_json(send, 404, _error_body("invalid_request_error", None, "not found"))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _chat(self, raw: bytes, receive: Receive, send: Send) -> None:
        self.chat_requests += 1
        try:
            request = json.loads(raw)
            if not isinstance(request, dict):
                raise TypeError("the body must be a JSON object")
        except (ValueError, TypeError) as exc:
            body = _error_body("invalid_request_error", None, f"bad JSON: {exc}")
            await _send_json(send, 400, body)
            return
        self.last_request = request
        behaviour = self._next()
        self.by_kind[behaviour.kind] += 1
        latency = self.latency if behaviour.latency is None else behaviour.latency
        if self.jitter:
            latency += self._random.uniform(0, self.jitter)
        if latency > 0:
            await anyio.sleep(latency)
        headers = dict(behaviour.headers)
        if behaviour.kind == "hang":
            await self._hang(receive)
        if behaviour.kind == "stall" and not request.get("stream"):
            await send(_start(200, "application/json", {"content-length": "100", **headers}))
            await self._hang(receive)
            raise _Dropped("stalled response released")
        if behaviour.kind in {"hang", "drop"}:
            # ASGI cannot close a connection without a status line: send headers that
            # promise a body, then fail; the server closes the connection mid-response.
            await send(_start(200, "application/json", {"content-length": "100", **headers}))
            raise _Dropped("connection dropped on purpose")
        if behaviour.kind == "status":
            body = behaviour.body
            if body is None:
                body = _error_body("server_error", None, "mock failure")
            self.served.append(Served(at=anyio.current_time(), status=behaviour.status))
            await _send_json(send, behaviour.status, body, headers)
            return
        if behaviour.kind == "malformed":
            await _send_raw(send, 200, b'{"id": "chatcmpl-mock", "choices": [', headers)
            return
        completion = self._completion(request, behaviour)
        usage = completion["usage"]
        self.served.append(
            Served(
                at=anyio.current_time(),
                status=200,
                prompt_tokens=usage["prompt_tokens"],
                completion_tokens=usage["completion_tokens"],
            )
        )
        if request.get("stream"):
            await self._stream(completion, behaviour, receive, send, headers)
            return
        payload = json.dumps(completion).encode()
        if behaviour.kind == "truncated":
            payload = payload[: len(payload) // 2]
        await _send_raw(send, 200, payload, headers)

    async def _hang(self, receive: Receive) -> None:
        if self._release is None:
            self._release = anyio.Event()
        release = self._release
        self.hanging += 1
        try:
            async with anyio.create_task_group() as tg:

                async def until_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(until_disconnect)
                await release.wait()
                tg.cancel_scope.cancel()
        finally:
            self.hanging -= 1

    def _completion(self, request: Mapping[str, Any], behaviour: Behaviour) -> dict[str, Any]:
        messages = request.get("messages") or []
        last = ""
        chars = 0
        for message in messages:
            text = message.get("content") if isinstance(message, Mapping) else None
            if isinstance(text, str):
                chars += len(text)
                if message.get("role") == "user":
                    last = text
        content = behaviour.content if behaviour.content is not None else f"echo: {last}"
        prompt = behaviour.prompt_tokens
        if prompt is None:
            prompt = max(1, chars // 4)
        completion = behaviour.completion_tokens
        if completion is None:
            completion = max(1, len(content.split()))
        self._created += 1
        return {
            "id": f"chatcmpl-mock-{self.chat_requests}",
            "object": "chat.completion",
            "created": self._created,
            "model": str(request.get("model") or self.model),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }

    async def _stream(
        self,
        completion: dict[str, Any],
        behaviour: Behaviour,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
    ) -> None:
        await send(_start(200, "text/event-stream", {"cache-control": "no-cache", **headers}))
        content: str = completion["choices"][0]["message"]["content"]
        words = content.split(" ")
        base = {
            "id": completion["id"],
            "object": "chat.completion.chunk",
            "created": completion["created"],
            "model": completion["model"],
        }
        chunks: list[dict[str, Any]] = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}
        ]
        for index, word in enumerate(words):
            text = word if index == 0 else f" {word}"
            chunks.append({**base, "choices": [{"index": 0, "delta": {"content": text}}]})
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        chunks.append({**base, "choices": [], "usage": completion["usage"]})
        if behaviour.kind in {"truncated", "stall"}:
            for chunk in chunks[: max(1, len(chunks) // 2)]:
                await _send_event(send, json.dumps(chunk))
            if behaviour.kind == "stall":
                await self._hang(receive)
            raise _Dropped("stream cut off on purpose")
        for chunk in chunks:
            await _send_event(send, json.dumps(chunk))
        await _send_event(send, "[DONE]", more=False)


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


async def _send_event(send: Send, data: str, *, more: bool = True) -> None:
    body = f"data: {data}\n\n".encode()
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
        """The OpenAI-style base URL (`{url}/v1`)."""
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
    async with serve_asgi(
        mock, port=port, shutdown_timeout=shutdown_timeout, on_stop=mock.release_hangs
    ) as url:
        yield MockLLMServer(url, mock)
