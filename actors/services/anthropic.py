"""A native Anthropic Messages client on httpx2 (extra `http`), with the same
resilience as the OpenAI-compatible `LLMClient` (it is the same service actor).

``x-api-key`` and ``anthropic-version`` on every request; ``system`` messages lifted
into the system prompt; content blocks, tool use (``tool_use`` / ``tool_result``) and
streamed events, including an ``error`` event mid-stream (``overloaded_error`` is
raised as a 529 `ServiceResponseError`, retried like the status). 529 and
``retry-after`` are classified and honoured like any LLM status; the
``anthropic-ratelimit-*`` headers are kept on answers and errors and handed to the
limits (limit names "requests", "tokens", "input_tokens" and "output_tokens"), which
read them. Usage counts cache writes
and reads (`Usage.cache_creation_tokens`, `Usage.cached_tokens`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import httpx2

from actors._validate import check_positive_int
from actors.services import _anthropic_wire
from actors.services._base import Secret
from actors.services._chat import ChatRequest
from actors.services._http import HTTPChatClient, Probe, WireFormat
from actors.services._wire import WireLimits

__all__ = ["ANTHROPIC_VERSION", "AnthropicClient"]

ANTHROPIC_VERSION: Final = "2023-06-01"
"""The ``anthropic-version`` header sent by default."""


class AnthropicClient(HTTPChatClient):
    """Talks to Anthropic's ``/v1/messages`` endpoint (or a compatible one).

    Messages are Anthropic's: ``user`` / ``assistant`` with a string or content blocks
    (text, image, document, tool_use, tool_result, thinking); ``system`` messages may
    be given in the conversation (lifted) or as ``extra={"system": ...}``.
    """

    service_type = "llm"
    wire_format = WireFormat(
        name="anthropic",
        parse=_anthropic_wire.parse_message,
        parse_error=_anthropic_wire.parse_error,
        assembler=_anthropic_wire.StreamAssembler,
    )
    path = "messages"
    kept_headers = (
        "retry-after",
        "x-should-retry",
        "anthropic-ratelimit-",
        "request-id",
        "date",
    )

    def __init__(
        self,
        name: str,
        base_url: str = "https://api.anthropic.com/v1",
        *,
        model: str,
        api_key: Secret | None = None,
        max_tokens: int = 1024,
        anthropic_version: str = ANTHROPIC_VERSION,
        max_connections: int = 16,
        connect_timeout: float = 5.0,
        read_timeout: float = 600.0,
        default_headers: Mapping[str, str] | None = None,
        probe: Probe = "auto",
        wire_limits: WireLimits | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        """Configures the client (nothing is opened until the actor starts).

        Args:
            name: The service name.
            base_url: The API root including ``/v1``.
            model: The default model.
            api_key: Sent as ``x-api-key``; never logged, redacted from provider text.
            max_tokens: The completion budget of requests that set none (the API
                requires one).
            anthropic_version: The ``anthropic-version`` header.
            max_connections: httpx2 connection limit (match the actor's pool size).
            connect_timeout: Seconds to establish a connection.
            read_timeout: Seconds between bytes of the answer.
            default_headers: Extra headers on every request (``anthropic-beta``, ...;
                not credentials: use api_key).
            probe: The health check, as for `LLMClient` ("auto": GET models, or a
                one-token message where the server has no models endpoint).
            wire_limits: Size and depth bounds on answers.
            transport: An httpx2 transport to send through instead of the network
                (tests: ``httpx2.ASGITransport(app=mock)`` runs on virtual time).

        Raises:
            ConfigError: A bad URL, model, key, size, timeout, header or probe.
        """
        headers = {"anthropic-version": anthropic_version, **(default_headers or {})}
        super().__init__(
            name,
            base_url,
            model=model,
            api_key=api_key,
            max_connections=max_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            default_headers=headers,
            probe=probe,
            wire_limits=wire_limits,
            transport=transport,
        )
        self.max_tokens = check_positive_int("max_tokens", max_tokens)

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"x-api-key": key}

    def default_max_tokens(self) -> int:
        return self.max_tokens

    def check_request(self, request: object) -> None:
        """Refuses a malformed request in the caller's task (see `check_chat_request`),
        and a system prompt given twice or a conversation of system messages only.

        Raises:
            InvalidRequest: Naming the offending field.
        """
        super().check_request(request)
        assert isinstance(request, ChatRequest)  # checked above
        _anthropic_wire.check_body_fields(self.name, request)

    def body(self, request: ChatRequest) -> dict[str, Any]:
        return _anthropic_wire.build_body(request, model=self.model, max_tokens=self.max_tokens)

    def probe_body(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": "ping"}],
            "max_tokens": 1,
        }
