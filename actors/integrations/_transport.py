"""`ActorTransport`: an `httpx2` async transport that sends every request through a
service actor, and the translation of our errors into the httpx2 ones SDKs understand.

The official SDKs turn what their HTTP client raises into their own errors: a
`httpx2.TimeoutException` into ``APITimeoutError``, any other `httpx2.RequestError`
into ``APIConnectionError``, an error status into ``RateLimitError``,
``InternalServerError``, ``BadRequestError``... So the transport returns the
provider's answer (after the actor's retries, the last one: a 429 the limiter could
not wait out reaches the SDK as its ``RateLimitError``) and raises our refusals and
failures as the httpx2 exception closest in meaning, with ours as its ``__cause__``:

==============================================  ==========================  ==================
ours                                            httpx2                      the SDKs raise
==============================================  ==========================  ==================
`CallTimeout`, `ServiceTimeout` (also           `ReadTimeout` (the          ``APITimeoutError``
`AttemptTimeout`), `DeadlineExceeded`           transport's own timeout
                                                type when it was one)
`RateLimited`, `MailboxFull`, `PoolTimeout`     `PoolTimeout`               ``APITimeoutError``
`CircuitOpen`, `BulkheadFull`, `ActorDown`,     `ConnectError` (the         ``APIConnectionError``
`ActorStopped`, `ActorRestarting`,              transport's own type when
`ServiceUnavailable`, and every other           it was one)
`ActorError`
`MalformedResponse`, `ServiceResponseError`     `RemoteProtocolError`       ``APIConnectionError``
`InvalidRequest`, `ConfigError`                 `LocalProtocolError`        ``APIConnectionError``
==============================================  ==========================  ==================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

import anyio
import httpx2

from actors._errors import (
    ActorError,
    CallTimeout,
    ConfigError,
    DeadlineExceeded,
    InvalidRequest,
    MailboxFull,
    MalformedResponse,
    PoolTimeout,
    RateLimited,
    ServiceResponseError,
    ServiceTimeout,
)
from actors._validate import check_finite_positive
from actors.integrations._client import close_replies, replies_of

__all__ = ["ActorTransport", "sdk_error"]


class _Ref(Protocol):
    async def call(self, msg: Any, /, *, timeout: float | None = None) -> Any: ...


def sdk_error(exc: ActorError, request: httpx2.Request | None = None) -> httpx2.TransportError:
    """The httpx2 exception standing for `exc` (see the module's table); raise it
    ``from exc``."""
    cause = exc.__cause__
    kind: type[httpx2.TransportError]
    if isinstance(cause, httpx2.TransportError) and not isinstance(exc, ServiceResponseError):
        kind = type(cause)  # the transport's own failure, seen through the actor
    elif isinstance(exc, CallTimeout | ServiceTimeout | DeadlineExceeded):
        kind = httpx2.ReadTimeout
    elif isinstance(exc, RateLimited | MailboxFull | PoolTimeout):
        kind = httpx2.PoolTimeout
    elif isinstance(exc, MalformedResponse | ServiceResponseError):
        kind = httpx2.RemoteProtocolError
    elif isinstance(exc, InvalidRequest | ConfigError):
        kind = httpx2.LocalProtocolError
    else:
        kind = httpx2.ConnectError
    return kind(str(exc), request=request)


def _budget(request: httpx2.Request, timeout: float | None) -> float | None:
    """The call's deadline in seconds: the transport's timeout, else the SDK's (its
    largest figure), within the enclosing cancel scopes; None: the actor's default."""
    budget = timeout
    if budget is None:
        figures = request.extensions.get("timeout")
        if isinstance(figures, Mapping):
            values = [
                value
                for value in figures.values()
                if isinstance(value, int | float) and 0 < value < math.inf
            ]
            budget = max(values) if values else None
    deadline = anyio.current_effective_deadline()
    if deadline < math.inf:
        remaining = max(deadline - anyio.current_time(), 1e-6)
        budget = remaining if budget is None else min(budget, remaining)
    return budget


class ActorTransport(httpx2.AsyncBaseTransport):
    """Sends each request through a service actor whose client is an `SDKClient`.

    ::

        http = httpx2.AsyncClient(transport=ActorTransport(sup.ref("gpt")))
        client = openai.AsyncOpenAI(base_url=..., http_client=http, max_retries=0)

    (`openai_client` and `anthropic_client` make such SDK clients.) Set the SDK's
    retries to 0: the actor retries, within its limits and its breaker.

    The deadline of each request (until the answer's headers) is `timeout` if given,
    else the SDK's own timeout for it (its largest figure), else the actor's call
    timeout, always within the caller's cancel scopes. A streamed body is read after
    that, under the SDK's read timeout and the caller's scopes; it holds its
    connection and its token reservation until it is closed.

    Cancellation: a cancelled request withdraws its message or cancels its attempt
    (the provider sees the connection go away); a reply made as its caller gave up is
    closed. Closing the transport leaves the actor running (it belongs to its
    supervisor).
    """

    def __init__(self, ref: _Ref, *, timeout: float | None = None) -> None:
        """Sends through `ref` (an `ActorRef` of a service whose client is an `SDKClient`).

        Args:
            ref: The service actor's ref.
            timeout: Seconds each request may take until its answer's headers
                (default: the SDK's timeout, else the actor's call timeout).

        Raises:
            ConfigError: `ref` has no ``call``, or `timeout` is not a positive number.
        """
        if not callable(getattr(ref, "call", None)):
            raise ConfigError("ref", type(ref).__name__, "must be an ActorRef")
        self.ref = ref
        self.timeout = None if timeout is None else check_finite_positive("timeout", timeout)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Sends `request` through the actor.

        Returns:
            The provider's answer (a streamed body still open: close it).

        Raises:
            httpx2.TransportError: Our refusal or failure (see the module's table),
                chained from it.
        """
        replies = replies_of(request)
        try:
            response: httpx2.Response = await self.ref.call(
                request, timeout=_budget(request, self.timeout)
            )
        except BaseException as exc:
            await close_replies(replies)
            if isinstance(exc, ActorError):
                raise sdk_error(exc, request) from exc
            raise
        return response

    async def aclose(self) -> None:
        """Nothing to close: the actor belongs to its supervisor."""
