"""An OpenAI-compatible chat-completions client on httpx2 (extra `http`).

One `httpx2.AsyncClient` per actor incarnation, its connection limits matching the
actor's pool, so the pool's size is the number of requests in flight. Plain JSON and
streamed (server-sent events) answers, with tool calls assembled from streamed
fragments; token usage (checked and bounded) reconciles the tokens-per-minute limit,
and `x-ratelimit-*` / `retry-after(-ms)` headers are handed to the limits and the
retry policy.

Errors are translated at this boundary: timeouts become `ServiceTimeout`, transport
failures `ServiceUnavailable`, error statuses `ServiceResponseError` (status, provider
code, the rate-limit headers), answers that do not parse or are not the documented
shape `MalformedResponse`, requests the client cannot send `InvalidRequest`. The API
key is a `Secret`: it is revealed only into the Authorization header and redacted from
any provider text we keep.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import httpx2

from actors._errors import ConfigError
from actors.services import _openai_wire
from actors.services._base import Secret
from actors.services._chat import ChatRequest
from actors.services._http import HTTPChatClient, Probe, WireFormat
from actors.services._wire import WireLimits

__all__ = ["LLMClient"]

_MAX_TOKENS_FIELDS: Final = ("max_tokens", "max_completion_tokens")


class LLMClient(HTTPChatClient):
    """Talks to an OpenAI-compatible ``/chat/completions`` endpoint.

    Messages are OpenAI's: every role (system, developer, user, assistant with
    ``tool_calls``, tool), content parts (text, image_url, input_audio, file).
    """

    service_type = "llm"
    wire_format = WireFormat(
        name="openai",
        parse=_openai_wire.parse_completion,
        parse_error=_openai_wire.parse_error,
        assembler=_openai_wire.StreamAssembler,
    )
    path = "chat/completions"
    kept_headers = (
        "retry-after",
        "retry-after-ms",
        "x-should-retry",
        "x-ratelimit-",
        "x-request-id",
        "date",
    )

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
        max_tokens_field: str = "max_tokens",
        wire_limits: WireLimits | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        """Configures the client (nothing is opened until the actor starts).

        Args:
            name: The service name.
            base_url: The API root, e.g. "https://api.example.com/v1".
            model: The default model.
            api_key: Sent as a bearer token; never logged, redacted from provider text.
            max_connections: httpx2 connection limit (match the actor's pool size).
            connect_timeout: Seconds to establish a connection.
            read_timeout: Seconds between bytes of the answer (the caller's deadline
                bounds the whole call anyway).
            default_headers: Extra headers on every request (not credentials: use
                api_key).
            probe: The health check: "auto" (GET models, or a one-token completion
                where the server has no models endpoint), "models", "chat",
                "connect", or an async callable given the `httpx2.AsyncClient`.
            max_tokens_field: The body field `ChatRequest.max_tokens` is sent as:
                "max_tokens", or "max_completion_tokens" (OpenAI's reasoning models).
            wire_limits: Size and depth bounds on answers.
            transport: An httpx2 transport to send through instead of the network
                (tests: ``httpx2.ASGITransport(app=mock)`` runs on virtual time).

        Raises:
            ConfigError: A bad URL, model, key, size, timeout, header or probe.
        """
        super().__init__(
            name,
            base_url,
            model=model,
            api_key=api_key,
            max_connections=max_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            default_headers=default_headers,
            probe=probe,
            wire_limits=wire_limits,
            transport=transport,
        )
        if max_tokens_field not in _MAX_TOKENS_FIELDS:
            raise ConfigError(
                "max_tokens_field", max_tokens_field, "must be max_tokens or max_completion_tokens"
            )
        self.max_tokens_field = max_tokens_field

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    def body(self, request: ChatRequest) -> dict[str, Any]:
        return _openai_wire.build_body(
            request, model=self.model, max_tokens_field=self.max_tokens_field
        )

    def probe_body(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": "ping"}],
            self.max_tokens_field: 1,
        }
