"""The one extension point for a new kind of external service: `ServiceClient`.

A client knows how to talk to one service: open and close a connection, perform a
request on a connection, probe health, and say what a request costs and what a
response used. Everything else — the pool, retries, the breaker, rate limits, deadlines,
cancellation, supervision — is the `ServiceActor`'s job, the same for every service.

Credentials are `Secret`s: their value shows in no repr, str, log line, exception
message or metric label.
"""

from __future__ import annotations

import abc
import contextlib
import os
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

from actors._classify import Classifier
from actors._errors import ConfigError, ServiceTimeout, ServiceUnavailable
from actors._kinds import CUSTOM, ServiceKind, kind_named
from actors._tracing import AttributeValue, Operation, error_type
from actors._validate import check_name

__all__ = ["Secret", "ServiceClient"]

Conn = TypeVar("Conn")
Req = TypeVar("Req")
Resp = TypeVar("Resp")


class Secret:
    """A credential whose value never shows in reprs, strings, logs or errors.

    `reveal()` is the only way to read it; call it at the last moment (building the
    request header), never when logging.
    """

    __slots__ = ("_value", "source")

    def __init__(self, value: str, *, source: str = "config") -> None:
        if not isinstance(value, str):
            raise ConfigError("secret", None, "must be a string")
        self._value = value
        self.source = source

    @classmethod
    def from_env(cls, variable: str, *, default: str | None = None) -> Secret:
        """Reads a secret from the environment.

        Raises:
            ConfigError: The variable is unset and there is no default (names the
                variable, never a value).
        """
        value = os.environ.get(variable, default)
        if value is None:
            raise ConfigError(variable, None, "environment variable is not set")
        return cls(value, source=f"env:{variable}")

    def reveal(self) -> str:
        """The secret value."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret(source={self.source!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("secrets are not picklable")


class ServiceClient(abc.ABC, Generic[Conn, Req, Resp]):
    """How to talk to one kind of service. Subclass it to add a service type.

    One client instance belongs to one `ServiceActor` incarnation: its `lifespan()` is
    held while the actor runs; connections come and go through the actor's pool inside
    it. Methods run concurrently (up to the pool size) and must not
    share per-request state on `self`.

    Class attributes:
        kind: The `ServiceKind` (LLM, HTTP, database, MCP, custom): its classifier
            judges every outcome, and its presets are the service's defaults.
        cost_keys: The names `costs()` can return; a `Service`'s limits must be named
            after them (a limit no cost is charged to would never apply).
    """

    kind: ClassVar[ServiceKind] = CUSTOM
    cost_keys: ClassVar[frozenset[str]] = frozenset({"requests"})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        legacy = cls.__dict__.get("service_type")
        if isinstance(legacy, str):  # accepted while clients move to `kind`
            cls.kind = kind_named("custom" if legacy == "generic" else legacy)

    def __init__(self, name: str) -> None:
        self.name = check_name("name", name)

    # -- lifecycle ----------------------------------------------------------------

    def lifespan(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Client-wide resources held while the actor runs (an HTTP client, a task group
        owning subprocess sessions...). Override with an `asynccontextmanager` method.

        Entered when the actor starts (before its pool opens) and exited, in the same
        task, when it stops (after the pool has closed).
        """
        return contextlib.nullcontext()

    # -- connections (through the actor's pool) --------------------------------------

    @abc.abstractmethod
    async def connect(self) -> Conn:
        """Opens one connection.

        Raises:
            ServiceUnavailable: The service cannot be reached (retryable).
        """

    async def close(self, conn: Conn) -> None:
        """Closes one connection (shielded and time-limited by the pool)."""

    async def validate(self, conn: Conn) -> bool:
        """True if a pooled connection is still usable (cheap check)."""
        return True

    def connection_broken(self, exc: Exception) -> bool:
        """True if `exc`, raised while using a connection, means the connection is bad."""
        return isinstance(exc, ServiceUnavailable | ServiceTimeout | ConnectionError | OSError)

    # -- requests ----------------------------------------------------------------------

    @abc.abstractmethod
    async def request(self, conn: Conn, request: Req) -> Resp:
        """Performs one request on `conn`.

        Runs under the caller's deadline (a cancel scope set by the actor); must stop
        the remote work when cancelled if the protocol allows it.

        Raises:
            ServiceError: A subclass saying what went wrong (classified for retries).
        """

    async def probe(self, conn: Conn) -> None:
        """Checks the service's health on `conn`; raise to report unhealthy.

        The default only needs the connection to exist.
        """

    def classifier(self) -> Classifier:
        """The classifier judging this service's outcomes; defaults to its kind's."""
        return self.kind.classifier

    def check_request(self, request: Req) -> None:
        """Checks a request in the caller's task, before it is queued.

        Raise `actors.InvalidRequest` for a request that is malformed: that caller gets
        it, and the actor never sees the request. Must be cheap and pure. The default
        accepts everything.
        """

    def costs(self, request: Req) -> Mapping[str, float]:
        """What `request` costs against the rate limits, by limit name.

        The default is one request. An LLM client adds an estimate of tokens; the actor
        reserves it before sending and reconciles it with `usage` afterwards.
        """
        return {"requests": 1.0}

    def usage(self, response: Resp) -> Mapping[str, float]:
        """What a response actually used, by limit name (e.g. tokens from `usage`)."""
        return {}

    def rate_headers(self, response_or_error: object) -> Mapping[str, str] | None:
        """Rate-limit headers (`x-ratelimit-*`) to resync the limits from, if any."""
        return None

    # -- telemetry (called only while traces or metrics are recorded) ------------------

    def describe(self, request: Req, *, content: bool) -> Operation:
        """One attempt of `request` as a span and a metric, on the OpenTelemetry semantic
        conventions for the service (GenAI, database, MCP...).

        Args:
            request: The request about to be sent.
            content: Whether the service captures content (`ServiceConfig.capture_content`):
                only then may attributes hold the prompt, query text or tool arguments.
                Secrets never.

        The default: a client span named after the service, with no metric.
        """
        return Operation(name=self.name)

    def describe_result(self, response: Resp, *, content: bool) -> Mapping[str, AttributeValue]:
        """Attributes a response adds to its attempt's span and metric (model, usage...)."""
        return {}

    def describe_error(self, exc: Exception) -> Mapping[str, AttributeValue]:
        """Attributes of a failed attempt: ``error.type`` (the status of an error answer,
        else the exception's class), low-cardinality and free of provider text."""
        return {"error.type": error_type(exc)}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
