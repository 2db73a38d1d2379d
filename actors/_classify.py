"""Error classification: is a failure worth retrying, final, or not the service's fault?

Every resilience primitive asks one question about a failed call: *what kind of
failure was it?* A `Classifier` answers with an `ErrorClass`:

- `RETRYABLE`: a transient failure of the service (timeout, dropped connection, 429,
  5xx, deadlock). A retry may succeed; a breaker counts it.
- `PERMANENT`: the service failed in a way a retry will not fix (401, syntax error,
  tool error). Not retried; a breaker counts it.
- `IGNORED`: not a failure of the service at all (the caller's cancellation, our own
  `CircuitOpen` / `RateLimited` / `BulkheadFull` refusals, a `ConfigError`). Not
  retried and never counted by a breaker.

Anything that is not an `Exception` (cancellation, `KeyboardInterrupt`, `SystemExit`)
is always `IGNORED`: cancellation is never a failure and never retried.

The optional client libraries (httpx, openai, psycopg, mcp) are never imported here.
The classifiers read *duck-typed attributes* that those libraries, and our own
service clients, put on their exceptions:

========================  ==========================================================
attribute                 meaning
========================  ==========================================================
``status_code``           HTTP status (also ``status``, or ``response.status_code``)
``headers``               response headers (or ``response.headers``); used for
                          ``x-should-retry`` and server-requested delays
``code`` / ``type``       provider error code, e.g. ``"insufficient_quota"``
                          (also ``body["error"]["code"]``)
``is_timeout``            ``True`` marks a timeout that is not a `TimeoutError`
``sqlstate`` / ``pgcode`` the SQLSTATE of a database error (psycopg 3 / psycopg2)
``sqlite_errorname``      set by `sqlite3` (``"SQLITE_BUSY"``, ``"SQLITE_LOCKED"``)
``is_tool_error``         ``True`` marks an MCP tool's own error (never retried)
``error.code``            a JSON-RPC error code (``mcp.McpError``)
========================  ==========================================================

Classifiers are frozen attrs records, composable with user rules: ``custom`` (a
function consulted first; returning ``None`` falls through), then ``overrides`` (a
mapping of exception types to classes, the most specific type in the MRO wins), then
the service defaults.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Final, Protocol, runtime_checkable

import anyio
import attrs
import structlog

from actors._errors import ConfigError, ResilienceError
from actors._events import emit

__all__ = [
    "Classifier",
    "DatabaseClassifier",
    "ErrorClass",
    "ErrorClassifier",
    "ErrorMetrics",
    "LLMClassifier",
    "MCPClassifier",
    "classifier_for",
    "correlation_fields",
    "error_codes_of",
    "headers_of",
    "report_error",
    "short_message",
    "status_of",
]


class ErrorClass(enum.Enum):
    """What kind of failure an exception (or a failed response) is."""

    RETRYABLE = "retryable"
    """A transient failure of the service; a retry may succeed. Counted by breakers."""
    PERMANENT = "permanent"
    """A failure of the service that a retry will not fix. Counted by breakers."""
    IGNORED = "ignored"
    """Not a failure of the service (cancellation, a local refusal). Never retried or counted."""

    @property
    def is_failure(self) -> bool:
        """Whether a breaker counts it: `RETRYABLE` and `PERMANENT` do, `IGNORED` does not."""
        return self is not ErrorClass.IGNORED


@runtime_checkable
class Classifier(Protocol):
    """Maps a failure to an `ErrorClass`.

    Implementations must be cheap, pure and must not raise. They must return
    `ErrorClass.IGNORED` for every `BaseException` that is not an `Exception`.
    """

    def classify(self, exc: BaseException) -> ErrorClass:
        """Returns the class of `exc`."""
        ...


# ---------------------------------------------------------------------------
# Duck-typed readers for the neutral error shapes.


def _attr(holder: object, name: str) -> Any:
    """`getattr(holder, name, None)` that also survives properties raising anything."""
    try:
        return getattr(holder, name, None)
    except Exception:  # e.g. httpx raises RuntimeError for an unset `.request`
        return None


def status_of(exc: BaseException) -> int | None:
    """Returns the HTTP status an exception carries, if any.

    Reads ``exc.status_code``, ``exc.status``, then ``exc.response.status_code``
    (httpx's `HTTPStatusError`, openai's `APIStatusError`).
    """
    for holder in (exc, _attr(exc, "response")):
        if holder is None:
            continue
        for name in ("status_code", "status"):
            value = _attr(holder, name)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def headers_of(exc: BaseException) -> dict[str, str] | None:
    """Returns the response headers an exception carries, with lower-case names.

    Reads ``exc.headers`` then ``exc.response.headers``; any mapping (or object with
    ``items()``) of strings works, e.g. `httpx.Headers`.
    """
    for holder in (exc, _attr(exc, "response")):
        if holder is None:
            continue
        headers = _attr(holder, "headers")
        items = _attr(headers, "items")
        if callable(items):
            try:
                return {str(k).lower(): str(v) for k, v in items()}
            except Exception:  # a hostile mapping must not break classification
                return None
    return None


def error_codes_of(exc: BaseException) -> frozenset[str]:
    """Returns the provider error codes an exception carries, lower-cased.

    Collects the strings in ``exc.code``, ``exc.type`` and, when ``exc.body`` is a
    dict, ``body["code"]``, ``body["type"]``, ``body["error"]["code"]`` and
    ``body["error"]["type"]`` (the OpenAI and Anthropic error bodies).
    """
    found: set[str] = set()

    def add(source: object) -> None:
        for name in ("code", "type"):
            value = source.get(name) if isinstance(source, Mapping) else _attr(source, name)
            if isinstance(value, str):
                found.add(value.lower())

    add(exc)
    body = _attr(exc, "body")
    if isinstance(body, Mapping):
        add(body)
        error = body.get("error")
        if isinstance(error, Mapping):
            add(error)
    return frozenset(found)


def _mro_names(exc: BaseException) -> Iterable[str]:
    return (cls.__name__ for cls in type(exc).__mro__)


_TIMEOUT_SUFFIXES: Final = ("Timeout", "TimeoutError", "TimeoutException")


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError) or _attr(exc, "is_timeout") is True:
        return True
    return any(name.endswith(_TIMEOUT_SUFFIXES) for name in _mro_names(exc))


# httpx's NetworkError covers ConnectError/ReadError/WriteError/CloseError; openai's
# APIConnectionError wraps them. Matched by name so neither library is imported.
_HTTP_TRANSPORT_NAMES: Final = frozenset(
    {"NetworkError", "RemoteProtocolError", "APIConnectionError"}
)


def _is_http_transport(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError):
        return True
    return any(name in _HTTP_TRANSPORT_NAMES for name in _mro_names(exc))


# ---------------------------------------------------------------------------
# Classifiers.


def _convert_overrides(
    value: Mapping[type[Any], ErrorClass] | Iterable[tuple[type[BaseException], ErrorClass]],
) -> tuple[tuple[type[BaseException], ErrorClass], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(items)


def _check_overrides(
    _inst: object,
    _attr: attrs.Attribute[Any],
    value: tuple[tuple[type[BaseException], ErrorClass], ...],
) -> None:
    for key, cls in value:
        if not (isinstance(key, type) and issubclass(key, BaseException)):
            raise ConfigError("overrides", key, "keys must be exception classes")
        if not isinstance(cls, ErrorClass):
            raise ConfigError("overrides", cls, "values must be ErrorClass members")


def _check_custom(_inst: object, _attr: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not callable(value):
        raise ConfigError("custom", value, "must be a callable or None")


@attrs.frozen(kw_only=True)
class ErrorClassifier:
    """The generic classifier, and the base of the per-service ones.

    Defaults: `TimeoutError` (or anything flagged ``is_timeout``) and `ConnectionError`
    are retryable; our own refusals (`ResilienceError`) and `ConfigError` are ignored;
    every other `Exception` is permanent (retries are opt-in, like stamina's ``on=``).

    Attributes:
        overrides: Exception type -> class; the most specific type in the exception's
            MRO wins. Consulted after `custom`, before the defaults.
        custom: A function consulted first; it returns a class, or ``None`` to fall
            through. It only ever sees `Exception` instances.
    """

    service: ClassVar[str] = "generic"

    overrides: tuple[tuple[type[BaseException], ErrorClass], ...] = attrs.field(
        default=(), converter=_convert_overrides, validator=_check_overrides
    )
    custom: Callable[[Exception], ErrorClass | None] | None = attrs.field(
        default=None, validator=_check_custom
    )

    def classify(self, exc: BaseException) -> ErrorClass:
        """Returns the class of `exc`; never raises.

        Non-`Exception` exceptions (cancellation included) are always `IGNORED`.
        """
        if not isinstance(exc, Exception):
            return ErrorClass.IGNORED
        if self.custom is not None:
            decided = self.custom(exc)
            if decided is not None:
                return decided
        if self.overrides:
            for cls in type(exc).__mro__:
                for key, value in self.overrides:
                    if key is cls:
                        return value
        if isinstance(exc, ResilienceError | ConfigError):
            return ErrorClass.IGNORED
        return self._default(exc)

    def _default(self, exc: Exception) -> ErrorClass:
        if _is_timeout(exc) or isinstance(exc, ConnectionError):
            return ErrorClass.RETRYABLE
        return ErrorClass.PERMANENT


_DEFAULT_QUOTA_CODES: Final = frozenset(
    {
        "insufficient_quota",
        "quota_exceeded",
        "billing_hard_limit_reached",
        "billing_not_active",
        "spend_limit_exceeded",
        "credit_balance_too_low",
    }
)


def _http_status_class(status: int) -> ErrorClass | None:
    """The shared HTTP rule: 408, 409, 429 and 5xx are retryable, other 4xx permanent."""
    if status < 400:
        return None
    if status in (408, 409, 429) or status >= 500:
        return ErrorClass.RETRYABLE
    return ErrorClass.PERMANENT


def _should_retry(headers: Mapping[str, str] | None) -> ErrorClass | None:
    """What an ``x-should-retry: true|false`` header (lower-case names) decides, if any."""
    if headers:
        should_retry = headers.get("x-should-retry", "").strip().lower()
        if should_retry == "true":
            return ErrorClass.RETRYABLE
        if should_retry == "false":
            return ErrorClass.PERMANENT
    return None


def _lower_codes(codes: Iterable[str]) -> frozenset[str]:
    return frozenset(str(code).lower() for code in codes)


@attrs.frozen(kw_only=True)
class LLMClassifier(ErrorClassifier):
    """Defaults for LLM HTTP APIs (OpenAI-compatible, Anthropic).

    In order: an ``x-should-retry: true|false`` header decides; a 429 whose error
    code is in `quota_codes` is permanent (quota and spend limits do not reset in
    seconds); statuses 408, 409, 429, 5xx (including 529 "overloaded") are
    retryable; other 4xx (400, 401, 403, 404, 422, ...) are permanent; connect and
    read timeouts and dropped connections (`TimeoutError`, ``is_timeout``, httpx's
    ``NetworkError``/``RemoteProtocolError``, openai's ``APIConnectionError``,
    `ConnectionError`) are retryable; everything else is permanent.

    Attributes:
        quota_codes: Lower-case provider error codes that mark a 429 as a quota or
            spend limit rather than a rate limit.
    """

    service: ClassVar[str] = "llm"

    quota_codes: frozenset[str] = attrs.field(default=_DEFAULT_QUOTA_CODES, converter=_lower_codes)

    def classify_status(
        self,
        status: int,
        headers: Mapping[str, str] | None = None,
        codes: Iterable[str] = (),
    ) -> ErrorClass | None:
        """Classifies a response by status, for clients that inspect results.

        Args:
            status: The HTTP status.
            headers: The response headers (any case).
            codes: Provider error codes from the body (e.g. ``"insufficient_quota"``).

        Returns:
            The class, or ``None`` when the response is not a failure (status < 400
            and no ``x-should-retry: true``).
        """
        lowered = {k.lower(): v for k, v in headers.items()} if headers else None
        return self._status_rule(status, lowered, frozenset(c.lower() for c in codes))

    def _status_rule(
        self, status: int, headers: Mapping[str, str] | None, codes: frozenset[str]
    ) -> ErrorClass | None:
        decided = _should_retry(headers)
        if decided is not None:
            return decided
        if status == 429 and codes & self.quota_codes:
            return ErrorClass.PERMANENT
        return _http_status_class(status)

    def _default(self, exc: Exception) -> ErrorClass:
        status = status_of(exc)
        if status is not None:
            decided = self._status_rule(status, headers_of(exc), error_codes_of(exc))
        else:
            decided = _should_retry(headers_of(exc))
        if decided is not None:
            return decided
        if _is_timeout(exc) or _is_http_transport(exc):
            return ErrorClass.RETRYABLE
        return ErrorClass.PERMANENT


# SQLSTATEs worth retrying: the whole 08 class (connection exceptions), plus these.
_RETRYABLE_SQLSTATES: Final = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available
        "53300",  # too_many_connections
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now
    }
)
_SQLITE_LOCKED_MESSAGES: Final = ("database is locked", "database table is locked")


def _sqlstate_of(exc: BaseException) -> str | None:
    for name in ("sqlstate", "pgcode"):
        value = _attr(exc, name)
        if isinstance(value, str) and value:
            return value.upper()
    return None


@attrs.frozen(kw_only=True)
class DatabaseClassifier(ErrorClassifier):
    """Defaults for SQL databases (PostgreSQL through psycopg, SQLite).

    Retryable: SQLSTATE class 08 (connection exception), 40001 serialization
    failure, 40P01 deadlock, 55P03 lock not available, 53300 too many connections,
    57P01-57P03 server shutdown/starting; an ``OperationalError`` with no SQLSTATE
    (psycopg's "connection lost"; psycopg-pool's ``PoolTimeout`` is one);
    SQLite ``SQLITE_BUSY`` / ``SQLITE_LOCKED`` ("database is locked"); timeouts and
    `ConnectionError`. Everything else (syntax 42xxx, constraint 23xxx, data 22xxx,
    query canceled 57014, other SQLite errors) is permanent.
    """

    service: ClassVar[str] = "database"

    def _default(self, exc: Exception) -> ErrorClass:
        sqlstate = _sqlstate_of(exc)
        if sqlstate is not None:
            if sqlstate.startswith("08") or sqlstate in _RETRYABLE_SQLSTATES:
                return ErrorClass.RETRYABLE
            return ErrorClass.PERMANENT
        sqlite_name = _attr(exc, "sqlite_errorname")
        if isinstance(sqlite_name, str):
            if sqlite_name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
                return ErrorClass.RETRYABLE
            return ErrorClass.PERMANENT
        names = set(_mro_names(exc))
        if "OperationalError" in names:
            message = short_message(exc).lower()
            if type(exc).__module__.startswith("sqlite3"):
                locked = any(m in message for m in _SQLITE_LOCKED_MESSAGES)
                return ErrorClass.RETRYABLE if locked else ErrorClass.PERMANENT
            return ErrorClass.RETRYABLE
        if _is_timeout(exc) or isinstance(exc, ConnectionError):
            return ErrorClass.RETRYABLE
        return ErrorClass.PERMANENT


# JSON-RPC codes the MCP SDK uses for transport trouble: CONNECTION_CLOSED (-32000),
# a request timeout (-32001 in the TypeScript SDK, HTTP 408 in the Python SDK).
_MCP_RETRYABLE_CODES: Final = frozenset({-32000, -32001, 408})
_MCP_TRANSPORT_TYPES: Final = (
    ConnectionError,  # BrokenPipeError, ConnectionResetError, ...
    EOFError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)


def _jsonrpc_code(exc: BaseException) -> int | None:
    for holder in (_attr(exc, "error"), exc):
        value = _attr(holder, "code")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


@attrs.frozen(kw_only=True)
class MCPClassifier(ErrorClassifier):
    """Defaults for MCP tool servers.

    A tool's own error (``is_tool_error`` true, or a class named ``ToolError``) is
    permanent: the tool ran and said no. Transport trouble is retryable: closed or
    broken streams (`ConnectionError`, `EOFError`, anyio's ``BrokenResourceError``,
    ``ClosedResourceError``, ``EndOfStream``), timeouts, httpx transport errors,
    JSON-RPC codes -32000 (connection closed), -32001 and 408 (request timeout),
    and HTTP 408/409/429/5xx from the streamable-HTTP transport. Other JSON-RPC
    errors (invalid params, method not found, ...) and everything else are permanent.
    """

    service: ClassVar[str] = "mcp"

    def _default(self, exc: Exception) -> ErrorClass:
        if _attr(exc, "is_tool_error") is True or "ToolError" in _mro_names(exc):
            return ErrorClass.PERMANENT
        if isinstance(exc, _MCP_TRANSPORT_TYPES) or _is_timeout(exc) or _is_http_transport(exc):
            return ErrorClass.RETRYABLE
        status = status_of(exc)
        if status is not None:
            return _http_status_class(status) or ErrorClass.PERMANENT
        code = _jsonrpc_code(exc)
        if code is not None and code in _MCP_RETRYABLE_CODES:
            return ErrorClass.RETRYABLE
        return ErrorClass.PERMANENT


_BY_SERVICE: Final[dict[str, type[ErrorClassifier]]] = {
    "generic": ErrorClassifier,
    "llm": LLMClassifier,
    "database": DatabaseClassifier,
    "mcp": MCPClassifier,
}


def classifier_for(service: str) -> ErrorClassifier:
    """Returns the default classifier of a service type, for configuration files.

    Args:
        service: ``"generic"``, ``"llm"``, ``"database"`` or ``"mcp"``.

    Raises:
        ConfigError: For any other name (field ``classifier``).
    """
    try:
        return _BY_SERVICE[service]()
    except (KeyError, TypeError):
        raise ConfigError(
            "classifier", service, f"must be one of {', '.join(sorted(_BY_SERVICE))}"
        ) from None


# ---------------------------------------------------------------------------
# Metrics and logging.


@attrs.define(eq=False)
class ErrorMetrics:
    """Counts classified failures per ``(service, class)``.

    Cancellation and other non-`Exception` exceptions are never counted. Not
    thread-safe; it lives in one event loop like the actor that owns it.
    """

    _counts: dict[tuple[str, ErrorClass], int] = attrs.field(factory=dict, init=False)

    def record(self, service: str, error_class: ErrorClass) -> None:
        """Adds one failure of `error_class` for `service`."""
        key = (service, error_class)
        self._counts[key] = self._counts.get(key, 0) + 1

    def count(self, service: str, error_class: ErrorClass) -> int:
        """Returns how many failures of `error_class` were recorded for `service`."""
        return self._counts.get((service, error_class), 0)

    def snapshot(self) -> dict[tuple[str, ErrorClass], int]:
        """Returns a copy of every non-zero counter."""
        return dict(self._counts)


_SECRET_PATTERNS: Final = re.compile(
    r"(?i)(bearer\s+|api[_-]?key[=:]\s*|token[=:]\s*|password[=:]\s*|sk-)[^\s&'\"]+"
)
_URL_QUERY: Final = re.compile(r"(https?://[^\s?]+)\?\S*")
_MESSAGE_LIMIT: Final = 200


def short_message(exc: BaseException) -> str:
    """Returns the first line of `exc`'s message, redacted and truncated.

    Query strings, bearer tokens, ``api_key=``/``token=``/``password=`` values and
    ``sk-`` keys are replaced by ``<redacted>``; the result is at most 200 characters.
    """
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not break error reporting
        return "<unprintable>"
    first = text.splitlines()[0] if text else ""
    first = _URL_QUERY.sub(r"\1?<redacted>", first)
    first = _SECRET_PATTERNS.sub(r"\1<redacted>", first)
    if len(first) > _MESSAGE_LIMIT:
        first = first[: _MESSAGE_LIMIT - 3] + "..."
    return first


def correlation_fields() -> dict[str, Any]:
    """Returns ``{"correlation_id": ...}`` when one is bound in structlog's contextvars."""
    correlation_id = structlog.contextvars.get_contextvars().get("correlation_id")
    return {} if correlation_id is None else {"correlation_id": correlation_id}


def report_error(
    exc: BaseException,
    *,
    classifier: Classifier,
    service: str,
    metrics: ErrorMetrics | None = None,
) -> ErrorClass:
    """Classifies a failure, counts it and logs it as an ``error.classified`` event.

    The event (level warning) carries ``service``, ``error_class``, ``error`` (the
    exception's type name), ``message`` (see `short_message`; never headers or
    bodies) and the ``correlation_id`` bound in structlog's contextvars, read
    explicitly so it is present even where the application's logging does not merge
    contextvars. Call it in the caller's context (task).

    Cancellation and other non-`Exception` exceptions are returned as `IGNORED`
    without being counted or logged.

    Returns:
        The class of `exc`.
    """
    error_class = classifier.classify(exc)
    if not isinstance(exc, Exception):
        return ErrorClass.IGNORED
    if metrics is not None:
        metrics.record(service, error_class)
    emit(
        "error.classified",
        level="warning",
        service=service,
        error_class=error_class.value,
        error=type(exc).__name__,
        message=short_message(exc),
        **correlation_fields(),
    )
    return error_class
