"""Ready-made SDK clients whose every request goes through a service actor.

`openai_client(ref)` and `anthropic_client(ref)` return the official SDK's async
client on an `ActorTransport`, with the SDK's own retries off (the actor retries,
within its rate limits and its breaker: two layers retrying would multiply the
attempts and defeat both), the SDK's timeout left to the actor (its call timeout)
unless given, and a base URL that resolves nowhere (`VIRTUAL_ORIGIN`): the service
actor holds the provider's URL and API key. Pass the result to a framework that takes
an SDK client (pydantic-ai's ``OpenAIProvider(openai_client=...)``, the OpenAI Agents
SDK's ``OpenAIChatCompletionsModel(openai_client=...)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import httpx2

from actors._errors import ConfigError
from actors.integrations._client import VIRTUAL_ORIGIN
from actors.integrations._transport import ActorTransport, _Ref

if TYPE_CHECKING:
    import anthropic
    import openai

__all__ = ["anthropic_client", "http_client", "openai_client"]

PLACEHOLDER_KEY: Final = "held-by-the-service-actor"
"""The API key the SDK is given: the service's chat client sends the real one (a
service without a key sends this, which a local server ignores)."""
_OWNED: Final = ("base_url", "http_client", "max_retries")
_WHY: Final = {
    "base_url": "is the service's: its chat client holds the provider's URL",
    "http_client": "is made here: it sends through the actor",
    "max_retries": "must be 0: the actor retries (one layer only)",
}


def http_client(ref: _Ref, *, timeout: float | None = None) -> httpx2.AsyncClient:
    """An `httpx2.AsyncClient` sending every request through `ref` (see `ActorTransport`)."""
    return httpx2.AsyncClient(transport=ActorTransport(ref, timeout=timeout))


def _options(ref: _Ref, options: dict[str, Any]) -> dict[str, Any]:
    """The SDK client's arguments: the caller's, with ours for what we own."""
    for name in _OWNED:
        if name in options and not (name == "max_retries" and options[name] == 0):
            raise ConfigError(name, None if name == "http_client" else options[name], _WHY[name])
    options.setdefault("api_key", PLACEHOLDER_KEY)
    options.setdefault("timeout", None)  # the actor's call timeout
    return {
        **options,
        "base_url": VIRTUAL_ORIGIN,
        "http_client": http_client(ref),
        "max_retries": 0,
    }


def openai_client(ref: _Ref, **options: Any) -> openai.AsyncOpenAI:
    """An `openai.AsyncOpenAI` whose requests go through `ref`.

    The service's client must be an `SDKClient` around an `LLMClient`.

    Args:
        ref: The service actor's ref.
        **options: Other `AsyncOpenAI` arguments (``timeout``, ``default_headers``,
            ``organization``, ...). ``timeout`` bounds each request until its answer's
            headers (default: the actor's call timeout).

    Raises:
        ConfigError: ``base_url``, ``http_client``, or ``max_retries`` other than 0.
        ImportError: The `openai` extra is not installed.
    """
    import openai

    return openai.AsyncOpenAI(**_options(ref, options))


def anthropic_client(ref: _Ref, **options: Any) -> anthropic.AsyncAnthropic:
    """An `anthropic.AsyncAnthropic` whose requests go through `ref` (the service's
    client an `SDKClient` around an `AnthropicClient`); arguments as `openai_client`.

    Raises:
        ConfigError: ``base_url``, ``http_client``, or ``max_retries`` other than 0.
        ImportError: The `anthropic` extra is not installed.
    """
    import anthropic

    return anthropic.AsyncAnthropic(**_options(ref, options))
