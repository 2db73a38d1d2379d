"""The one exception tree: everything raised on purpose derives from `ActorError`.

::

    ActorError
    ├── ConfigError                 invalid configuration (also a ValueError), raised before start
    ├── InvalidRequest              a caller's request is malformed or can never be admitted
    ├── CallError                   a call ended without the actor's reply
    │   ├── CallTimeout             the call's deadline passed (also a TimeoutError)
    │   ├── MailboxFull             the mailbox stayed full until the deadline, or policy fails fast
    │   ├── ActorDown               the actor crashed while the call was queued or running
    │   ├── ActorRestarting         the actor is restarting and the call will not wait for it
    │   ├── ActorStopped            the actor was stopped (you, or its owner, closed it)
    │   └── CallCycle               the call would wait on itself (a sequential actor calls itself)
    ├── PoolTimeout                 no pooled connection before the deadline (a TimeoutError)
    ├── PoolClosed                  the connection pool is closed
    ├── ResilienceError             a resilience primitive refused or gave up
    │   ├── CircuitOpen             the breaker is open; `retry_after` says when to try again
    │   ├── RateLimited             the limiter has no capacity within the deadline; `retry_after`
    │   ├── BulkheadFull            every concurrency slot and queue place is taken
    │   └── DeadlineExceeded        the pipeline's overall timeout passed (also a TimeoutError)
    └── ServiceError                an external service failed a request (`service`, ...)
        ├── ServiceUnavailable      could not reach it / the connection broke (a ConnectionError)
        ├── ServiceTimeout          it did not answer in time (a TimeoutError)
        │   └── AttemptTimeout      one attempt outlasted the policy's attempt_timeout
        ├── ServiceResponseError    it answered with an error status (`status_code`, `code`)
        ├── MalformedResponse       its answer did not parse (truncated or not the documented shape)
        ├── QueryError              the database rejected a statement (`sqlstate`)
        ├── ProtocolError           the peer answered with a protocol-level error (JSON-RPC `code`)
        └── ToolError               an MCP tool ran and reported an error (`is_tool_error`)

`ActorStopped` is "you closed it" (an orderly stop); `ActorDown` is "it broke under
you" (a crash, whose exception is `reason` and also the `__cause__`).

Retrying never wraps: when a retry policy gives up (attempts, budget, or a
server-requested delay beyond its cap) the last failure is re-raised as it was. Only
time ends differently: an attempt cut by its `attempt_timeout` is an `AttemptTimeout`
(a failure of the service, counted by its breaker), and a call cut by the policy's
overall `timeout` ends with `DeadlineExceeded`, chained from the last failure. No
timeout the pipeline produces is a bare `TimeoutError`.
"""

from __future__ import annotations

__all__ = [
    "ActorDown",
    "ActorError",
    "ActorRestarting",
    "ActorStopped",
    "AttemptTimeout",
    "BulkheadFull",
    "CallCycle",
    "CallError",
    "CallTimeout",
    "CircuitOpen",
    "ConfigError",
    "DeadlineExceeded",
    "InvalidRequest",
    "MailboxFull",
    "MalformedResponse",
    "PoolClosed",
    "PoolTimeout",
    "ProtocolError",
    "QueryError",
    "RateLimited",
    "ResilienceError",
    "ServiceError",
    "ServiceResponseError",
    "ServiceTimeout",
    "ServiceUnavailable",
    "ToolError",
]


class ActorError(Exception):
    """Root of every exception the library raises on purpose."""


class ConfigError(ActorError, ValueError):
    """A configuration value is invalid; raised before anything starts.

    Attributes:
        field: The offending field (dotted for nested configs).
        value: The rejected value (`None` when it must not be shown, e.g. secrets).
    """

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}={value!r}: {reason}")


class InvalidRequest(ActorError, ValueError):
    """A caller's request is malformed, or its cost could never be admitted.

    Raised to that one caller before the request reaches the actor's handler; the actor
    is never affected. Never carries the request's content (it may hold secrets).

    Attributes:
        service: The service (or actor) the request was addressed to.
        field: The offending field of the request (dotted for nested fields).
        reason: Why it was refused.
    """

    def __init__(self, service: str, field: str, reason: str) -> None:
        self.service = service
        self.field = field
        self.reason = reason
        super().__init__(f"{service}: invalid request: {field} {reason}")


class CallError(ActorError):
    """A call ended without a reply from the actor's handler.

    Attributes:
        actor: Name of the actor the call was addressed to.
    """

    def __init__(self, actor: str, message: str) -> None:
        self.actor = actor
        super().__init__(message)


class CallTimeout(CallError, TimeoutError):
    """The call's deadline passed before a reply arrived.

    Attributes:
        timeout: The budget the call had, in seconds.
    """

    def __init__(self, actor: str, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(actor, f"call to {actor!r} timed out after {timeout:g}s")


class MailboxFull(CallError):
    """The actor's mailbox had no room before the deadline (or the policy fails fast).

    Attributes:
        capacity: The mailbox size.
    """

    def __init__(self, actor: str, capacity: int) -> None:
        self.capacity = capacity
        super().__init__(actor, f"mailbox of {actor!r} is full ({capacity} messages)")


class ActorDown(CallError):
    """The actor crashed while the call was queued or being handled.

    Attributes:
        reason: The exception that crashed the actor (also the `__cause__`).
    """

    def __init__(self, actor: str, reason: BaseException | None) -> None:
        self.reason = reason
        detail = f": {type(reason).__name__}: {reason}" if reason is not None else ""
        super().__init__(actor, f"actor {actor!r} is down{detail}")
        self.__cause__ = reason


class ActorRestarting(CallError):
    """The actor is being restarted by its supervisor and the call does not wait."""

    def __init__(self, actor: str) -> None:
        super().__init__(actor, f"actor {actor!r} is restarting")


class ActorStopped(CallError):
    """The actor has been stopped in an orderly way (it does not accept messages)."""

    def __init__(self, actor: str) -> None:
        super().__init__(actor, f"actor {actor!r} is stopped")


class CallCycle(CallError):
    """A sequential actor (max_concurrency == 1) called itself and would deadlock."""

    def __init__(self, actor: str) -> None:
        super().__init__(
            actor,
            f"actor {actor!r} called itself from its handler; with max_concurrency=1 "
            "this would deadlock (use cast, or raise max_concurrency)",
        )


class ResilienceError(ActorError):
    """A resilience primitive refused a call or gave up on it."""


class CircuitOpen(ResilienceError):
    """The circuit breaker rejects calls for now.

    Attributes:
        name: The breaker's name (usually the service name).
        retry_after: Seconds until the breaker lets a trial call through.
    """

    def __init__(self, name: str, retry_after: float) -> None:
        self.name = name
        self.retry_after = retry_after
        super().__init__(f"circuit {name!r} is open; retry after {retry_after:.3f}s")


class RateLimited(ResilienceError):
    """The rate limiter cannot admit the request within its deadline.

    Attributes:
        name: The limiter's name.
        retry_after: Seconds until the requested cost could be admitted.
    """

    def __init__(self, name: str, retry_after: float) -> None:
        self.name = name
        self.retry_after = retry_after
        super().__init__(f"rate limit {name!r} exceeded; retry after {retry_after:.3f}s")


class BulkheadFull(ResilienceError):
    """Every concurrency slot and every queue place of the bulkhead is taken.

    Attributes:
        name: The bulkhead's name.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"bulkhead {name!r} is full")


class DeadlineExceeded(ResilienceError, TimeoutError):
    """The pipeline's overall timeout (`RetryPolicy.timeout`) passed before an answer.

    The attempt in flight was cancelled (not counted by the breaker: the time ran out
    on our side); the last failure, if any, is the `__cause__`.

    Attributes:
        name: The service (or pipeline) name.
        timeout: The overall budget, in seconds.
    """

    def __init__(self, name: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        super().__init__(f"{name}: no answer within the {timeout:g}s retry timeout")


class ServiceError(ActorError):
    """An external service failed a request. Never carries secrets or request bodies.

    Attributes:
        service: The service's name.
        correlation_id: The request's correlation id, when known.
        retry_after: Seconds the service asked us to wait, when it said so.
    """

    retry_after: float | None = None

    def __init__(
        self,
        service: str,
        message: str,
        *,
        correlation_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.service = service
        self.correlation_id = correlation_id
        if retry_after is not None:
            self.retry_after = retry_after
        suffix = f" [correlation_id={correlation_id}]" if correlation_id else ""
        super().__init__(f"{service}: {message}{suffix}")


class ServiceUnavailable(ServiceError, ConnectionError):
    """The service could not be reached, or the connection broke mid-request (retryable)."""


class ServiceTimeout(ServiceError, TimeoutError):
    """The service did not answer within the time allowed (retryable)."""


class AttemptTimeout(ServiceTimeout):
    """One attempt outlasted the retry policy's `attempt_timeout` and was cancelled.

    A failure of the service (RETRYABLE, counted by its breaker), unlike a caller's
    own timeout, which is a cancellation and never counts.

    Attributes:
        timeout: The attempt budget, in seconds.
    """

    def __init__(self, service: str, timeout: float, *, correlation_id: str | None = None) -> None:
        self.timeout = timeout
        super().__init__(
            service, f"an attempt took longer than {timeout:g}s", correlation_id=correlation_id
        )


class ServiceResponseError(ServiceError):
    """The service answered with an error status.

    Attributes:
        status_code: The HTTP status (or the protocol's equivalent).
        headers: Response headers that matter for retrying (rate limits, retry-after).
        code: The provider's error code (e.g. "insufficient_quota"), when given.
    """

    def __init__(
        self,
        service: str,
        status_code: int,
        *,
        headers: dict[str, str] | None = None,
        code: str | None = None,
        message: str = "",
        correlation_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.headers = headers or {}
        self.code = code
        detail = (
            f"HTTP {status_code}"
            + (f" {code}" if code else "")
            + (f": {message}" if message else "")
        )
        super().__init__(service, detail, correlation_id=correlation_id, retry_after=retry_after)


class MalformedResponse(ServiceError, ConnectionError):
    """The answer did not parse (truncated, or not the documented shape).

    A ConnectionError: truncated bodies come from broken connections and proxies, so it is
    retried like one.
    """


class QueryError(ServiceError):
    """The database rejected a statement.

    Attributes:
        sqlstate: The SQLSTATE code (PostgreSQL), when known.
        sqlite_errorname: SQLite's error name ("SQLITE_BUSY", ...), when known.
    """

    def __init__(
        self,
        service: str,
        message: str,
        *,
        sqlstate: str | None = None,
        sqlite_errorname: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        self.sqlstate = sqlstate
        self.sqlite_errorname = sqlite_errorname
        super().__init__(service, message, correlation_id=correlation_id)


class ProtocolError(ServiceError):
    """The peer answered with a protocol-level error (a JSON-RPC error object).

    Attributes:
        code: The protocol's error code (JSON-RPC: -32602 invalid params, -32601
            method not found, -32000 connection closed, ...).
    """

    def __init__(
        self,
        service: str,
        code: int,
        message: str = "",
        *,
        correlation_id: str | None = None,
    ) -> None:
        self.code = code
        detail = f"protocol error {code}" + (f": {message}" if message else "")
        super().__init__(service, detail, correlation_id=correlation_id)


class ToolError(ServiceError):
    """An MCP tool ran and reported an error; retrying will not help."""

    is_tool_error = True


class PoolTimeout(ActorError, TimeoutError):
    """No connection became available before the acquire timeout or the caller's deadline.

    Retryable for databases (DESIGN.md: "pool timeout").

    Attributes:
        name: The pool's name.
        timeout: The budget the acquisition had, in seconds.
    """

    def __init__(self, name: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        super().__init__(f"no connection from pool {name!r} within {timeout:g}s")


class PoolClosed(ActorError):
    """The pool is closed (or closing) and lends no more connections."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"pool {name!r} is closed")
