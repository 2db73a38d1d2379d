"""Classification: what kind of outcome a failure (or a returned value) is.

Every resilience layer acts on one verdict per attempt, made here, once. A
`Classifier` maps a failure to an `ErrorClass`; the table below is what each class
means to every layer, and it is the only such table (docs/resilience/classification.md
renders it)::

    class       what it is                                retried   breaker   fallback
    ----------  ----------------------------------------  --------  --------  --------
    RETRYABLE   transient service trouble: timeouts,      yes       failure   yes
                dropped connections, 5xx, 529, 408, 409,
                deadlocks, serialization failures
    THROTTLED   a rate-limit answer (429 that is not a    yes (1)   ignored   yes
                quota or spend limit)
    PERMANENT   a service failure a retry will not fix:   no        failure   yes
                401, 402, 403, quota or spend
    REJECTED    the caller's mistake, answered correctly  no        success   no
                by a healthy service: 400, 404, 422, a
                tool error, a constraint violation, a
                syntax error, invalid JSON-RPC params,
                an InvalidRequest
    IGNORED     not an outcome of the service: our own    no        ignored   (2)
                refusals (CircuitOpen, RateLimited,
                BulkheadFull, DeadlineExceeded), a
                ConfigError

(1) after the server's requested delay (``retry-after``), which also holds the
rate limits for every caller and resyncs them from the answer's headers; a delay
beyond the policy's cap fails fast instead. (2) our refusals pass the request on to
the next route; other ignored failures do not. A caller's cancellation is never a
failure: it is not classified at all.

Classifiers match on **types** and **structured fields**, never on class names:

========================  ==========================================================
field                     meaning
========================  ==========================================================
``status_code``           HTTP status (also ``status``, or ``response.status_code``)
``headers``               response headers (or ``response.headers``); used for
                          ``x-should-retry`` and server-requested delays
``code`` / ``type``       provider error code, e.g. ``"insufficient_quota"``
                          (also ``body["error"]["code"]``); a JSON-RPC ``code``
``sqlstate`` / ``pgcode`` the SQLSTATE of a database error
``sqlite_errorname``      set by `sqlite3` (``"SQLITE_BUSY"``, ``"SQLITE_LOCKED"``)
``is_tool_error``         ``True`` marks an MCP tool's own error
========================  ==========================================================

Types of optional libraries (httpx2's transport errors, the openai and anthropic
SDKs' connection errors, psycopg's ``OperationalError``, mcp's ``MCPError``) are
matched with `isinstance` once their module is imported by the application: nothing
here imports them.

A classifier is a frozen attrs record, composable with user rules: ``custom`` (a
function consulted first; returning ``None`` falls through), then ``overrides`` (a
mapping of exception types to classes, the most specific type in the MRO wins), then
the kind's defaults. ``results`` judges returned values (Polly's ``HandleResult``): a
value it classifies is treated as that failure, and once retries are exhausted the
caller gets the last value.
"""

from __future__ import annotations

import contextlib
import enum
import sqlite3
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Final, Protocol, runtime_checkable

import anyio
import attrs

from actors._errors import (
    CallCycle,
    CallError,
    ConfigError,
    InvalidRequest,
    MalformedResponse,
    PoolTimeout,
    ProtocolError,
    QueryError,
    ResilienceError,
    ServiceResponseError,
    ServiceTimeout,
    ServiceUnavailable,
    ToolError,
)

__all__ = [
    "Classifier",
    "DatabaseClassifier",
    "ErrorClass",
    "ErrorClassifier",
    "HTTPClassifier",
    "LLMClassifier",
    "MCPClassifier",
    "error_codes_of",
    "headers_of",
    "mark",
    "status_of",
    "verdict_of",
]


class ErrorClass(enum.Enum):
    """What kind of failure an outcome is (see the module's table)."""

    RETRYABLE = "retryable"
    """Transient service trouble; retried, counted as a breaker failure."""
    THROTTLED = "throttled"
    """A rate-limit answer; retried after the server's delay, never a breaker failure."""
    PERMANENT = "permanent"
    """A service failure a retry will not fix; not retried, counted as a breaker failure."""
    REJECTED = "rejected"
    """The caller's mistake, answered by a healthy service; a breaker success."""
    IGNORED = "ignored"
    """Not an outcome of the service (a local refusal, configuration); never counted."""

    @property
    def retried(self) -> bool:
        """Whether a retry policy retries it (RETRYABLE, THROTTLED)."""
        return self is ErrorClass.RETRYABLE or self is ErrorClass.THROTTLED

    @property
    def breaker_failure(self) -> bool:
        """Whether a breaker counts it as a failure (RETRYABLE, PERMANENT)."""
        return self is ErrorClass.RETRYABLE or self is ErrorClass.PERMANENT

    @property
    def breaker_outcome(self) -> str:
        """What a breaker records: "failure", "success" (REJECTED: a healthy service
        answered the caller's mistake) or "ignored"."""
        if self.breaker_failure:
            return "failure"
        return "success" if self is ErrorClass.REJECTED else "ignored"

    @property
    def routable(self) -> bool:
        """Whether a fallback router passes the request on (RETRYABLE, THROTTLED, PERMANENT)."""
        return self.retried or self is ErrorClass.PERMANENT


@runtime_checkable
class Classifier(Protocol):
    """Maps a failure to an `ErrorClass`.

    Implementations must be cheap and pure and must not raise. They are only ever
    given `Exception` instances (cancellation is never classified).
    """

    def classify(self, exc: Exception) -> ErrorClass:
        """Returns the class of `exc`."""
        ...


# ---------------------------------------------------------------------------------------
# Reading structured fields (duck-typed: any library's exception may carry them).


def _attr(holder: object, name: str) -> Any:
    """`getattr(holder, name, None)` that also survives properties raising anything."""
    try:
        return getattr(holder, name, None)
    except Exception:  # e.g. httpx2 raises RuntimeError for an unset `.request`
        return None


def status_of(outcome: object) -> int | None:
    """The HTTP status an exception or response carries, if any.

    Reads ``.status_code``, ``.status``, then ``.response.status_code``
    (httpx2's `HTTPStatusError`, the SDKs' `APIStatusError`).
    """
    for holder in (outcome, _attr(outcome, "response")):
        if holder is None:
            continue
        for name in ("status_code", "status"):
            value = _attr(holder, name)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def headers_of(outcome: object) -> dict[str, str] | None:
    """The response headers an exception or response carries, with lower-case names.

    Reads ``.headers`` then ``.response.headers``; any mapping (or object with
    ``items()``) of strings works, e.g. `httpx2.Headers`.
    """
    for holder in (outcome, _attr(outcome, "response")):
        if holder is None:
            continue
        items = _attr(_attr(holder, "headers"), "items")
        if callable(items):
            try:
                return {str(k).lower(): str(v) for k, v in items()}
            except Exception:  # a hostile mapping must not break classification
                return None
    return None


def error_codes_of(exc: object) -> frozenset[str]:
    """The provider error codes an exception carries, lower-cased.

    Collects the strings in ``.code``, ``.type``, ``.error_code`` and, when ``.body``
    is a mapping, its ``code`` and ``type``, those of ``body["error"]`` and
    ``body["error"]["details"]["error_code"]`` (the OpenAI and Anthropic error bodies;
    Anthropic names a spend limit only in ``details.error_code``).
    """
    found: set[str] = set()

    def add(source: object) -> None:
        for name in ("code", "type", "error_code"):
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
            details = error.get("details")
            if isinstance(details, Mapping):
                add(details)
    return frozenset(found)


def _sqlstate_of(exc: object) -> str | None:
    for name in ("sqlstate", "pgcode"):
        value = _attr(exc, name)
        if isinstance(value, str) and value:
            return value.upper()
    return None


def _int_code(exc: object) -> int | None:
    """A JSON-RPC error code: ``.code`` (ours, mcp's `MCPError`) or ``.error.code``."""
    for holder in (exc, _attr(exc, "error")):
        value = _attr(holder, "code")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


# ---------------------------------------------------------------------------------------
# Types of optional libraries, matched once the application has imported them.


class _OptionalTypes:
    """Exception types of libraries we never import, resolved from `sys.modules`."""

    __slots__ = ("_names", "_resolved")

    def __init__(self, *names: tuple[str, str]) -> None:
        self._names = names
        self._resolved: dict[tuple[str, str], type[BaseException]] = {}

    def matches(self, exc: BaseException) -> bool:
        if len(self._resolved) < len(self._names):
            for module_name, type_name in self._names:
                if (module_name, type_name) not in self._resolved:
                    module = sys.modules.get(module_name)
                    kind = getattr(module, type_name, None) if module is not None else None
                    if isinstance(kind, type) and issubclass(kind, BaseException):
                        self._resolved[module_name, type_name] = kind
        return any(isinstance(exc, kind) for kind in self._resolved.values())


_TIMEOUT_TYPES: Final = _OptionalTypes(
    ("httpx2", "TimeoutException"),
    ("openai", "APITimeoutError"),
    ("anthropic", "APITimeoutError"),
)
_TRANSPORT_TYPES: Final = _OptionalTypes(
    ("httpx2", "NetworkError"),
    ("httpx2", "RemoteProtocolError"),
    ("openai", "APIConnectionError"),
    ("anthropic", "APIConnectionError"),
)
_DB_CONNECTION_TYPES: Final = _OptionalTypes(
    ("psycopg", "OperationalError"),  # psycopg-pool's PoolTimeout is one too
)
_MCP_ERROR_TYPES: Final = _OptionalTypes(("mcp.shared.exceptions", "MCPError"))

_STREAM_TRANSPORT: Final = (
    ConnectionError,  # BrokenPipeError, ConnectionResetError, ...
    EOFError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or _TIMEOUT_TYPES.matches(exc)


def _is_transport(exc: BaseException) -> bool:
    return isinstance(exc, _STREAM_TRANSPORT) or _TRANSPORT_TYPES.matches(exc)


# ---------------------------------------------------------------------------------------
# The shared rules, by structured field.

_RETRYABLE = ErrorClass.RETRYABLE
_THROTTLED = ErrorClass.THROTTLED
_PERMANENT = ErrorClass.PERMANENT
_REJECTED = ErrorClass.REJECTED
_IGNORED = ErrorClass.IGNORED

DEFAULT_QUOTA_CODES: Final = frozenset(
    {
        "insufficient_quota",
        "quota_exceeded",
        "billing_hard_limit_reached",
        "billing_not_active",
        "spend_limit_exceeded",
        "credit_balance_too_low",
        "enforced_spend_limit_reached",  # Anthropic's, in error.details.error_code
        "contract_spend_limit_reached",
        "linked_organization_spend_limit_reached",
    }
)
_ACCOUNT_STATUSES: Final = (401, 402, 403)  # credentials, billing, permissions


def _http_rule(
    status: int,
    headers: Mapping[str, str] | None,
    codes: frozenset[str],
    quota_codes: frozenset[str],
) -> ErrorClass | None:
    """The HTTP rule; None when the status is not an error and nothing says to retry."""
    if headers:
        should_retry = headers.get("x-should-retry", "").strip().lower()
        if should_retry == "true":
            return _THROTTLED if status == 429 else _RETRYABLE
        if should_retry == "false" and status >= 400:
            # Not retried; a rate or quota limit and an account problem stay ours.
            if status < 500 and status != 429 and status not in _ACCOUNT_STATUSES:
                return _REJECTED
            return _PERMANENT
    if status < 400:
        return None
    if status == 429:
        return _PERMANENT if codes & quota_codes else _THROTTLED
    if status in (408, 409) or status >= 500:
        return _RETRYABLE
    if status in _ACCOUNT_STATUSES:
        return _PERMANENT  # credentials, billing or permissions: ours to fix, not the caller's
    return _REJECTED


# SQLSTATEs: the whole 08 class (connection exceptions) plus these are retryable;
# classes 22 (data), 23 (integrity), 42 (syntax; 42501 insufficient privilege and class
# 28 credentials are permanent, like a 403), 2B/2D/3D/3F (caller's
# transaction/schema mistakes) are the caller's; everything else is permanent.
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
_CALLER_SQLSTATE_CLASSES: Final = ("22", "23", "42", "2B", "2D", "3D", "3F", "0A")


def _sqlstate_rule(sqlstate: str) -> ErrorClass:
    if sqlstate.startswith("08") or sqlstate in _RETRYABLE_SQLSTATES:
        return _RETRYABLE
    if sqlstate in ("42501", "28000", "28P01"):  # privileges, credentials: like a 403
        return _PERMANENT
    if sqlstate.startswith(_CALLER_SQLSTATE_CLASSES):
        return _REJECTED
    return _PERMANENT


_SQLITE_CALLER: Final = ("SQLITE_CONSTRAINT", "SQLITE_MISMATCH", "SQLITE_RANGE", "SQLITE_ERROR")


def _sqlite_rule(exc: BaseException) -> ErrorClass | None:
    name = _attr(exc, "sqlite_errorname")
    if isinstance(name, str):
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return _RETRYABLE
        if name.startswith(_SQLITE_CALLER):
            return _REJECTED
        return _PERMANENT
    return None


# JSON-RPC codes: -32700 parse error, -32600 invalid request, -32601 method not found,
# -32602 invalid params are the caller's; -32000 (connection closed) and -32001 /
# 408 (request timeout) are transport trouble; the rest (-32603 internal...) permanent.
_JSONRPC_CALLER: Final = frozenset({-32700, -32600, -32601, -32602})
_JSONRPC_RETRYABLE: Final = frozenset({-32000, -32001, 408})


def _jsonrpc_rule(code: int) -> ErrorClass:
    if code in _JSONRPC_RETRYABLE:
        return _RETRYABLE
    if code in _JSONRPC_CALLER:
        return _REJECTED
    return _PERMANENT


def _convert_overrides(
    value: Mapping[type[Any], ErrorClass] | Iterable[tuple[type[BaseException], ErrorClass]],
) -> tuple[tuple[type[BaseException], ErrorClass], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(items)


def _check_overrides(
    _inst: object,
    _attribute: attrs.Attribute[Any],
    value: tuple[tuple[type[BaseException], ErrorClass], ...],
) -> None:
    for key, cls in value:
        if not (isinstance(key, type) and issubclass(key, BaseException)):
            raise ConfigError("overrides", key, "keys must be exception classes")
        if not isinstance(cls, ErrorClass):
            raise ConfigError("overrides", cls, "values must be ErrorClass members")


def _check_callable(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not callable(value):
        raise ConfigError(attribute.name, value, "must be a callable or None")


def _lower_codes(codes: Iterable[str]) -> frozenset[str]:
    if isinstance(codes, str):
        raise ConfigError("quota_codes", codes, "must be a collection of strings, not a string")
    return frozenset(str(code).lower() for code in codes)


@attrs.frozen(kw_only=True)
class ErrorClassifier:
    """The classifier of a custom service, and the base of the per-kind ones.

    Its defaults judge the library's own errors by their type and fields, whatever
    the kind: a `ServiceResponseError` by its HTTP status (see `HTTPClassifier`), a
    `QueryError` by its SQLSTATE or SQLite error name, a `ProtocolError` by its
    JSON-RPC code, a `ToolError` and an `InvalidRequest` as the caller's mistakes,
    `ServiceTimeout`, `ServiceUnavailable`, `MalformedResponse`, `PoolTimeout`,
    timeouts and broken transports as retryable, our refusals (`ResilienceError`) and
    `ConfigError` as ignored. A failed nested call (`CallError`, e.g. the other actor
    is restarting) is retryable, except `CallCycle` (a bug: permanent). Every other
    exception is permanent (retries are opt-in, like stamina's ``on=``).

    Attributes:
        overrides: Exception type -> class; the most specific type in the exception's
            MRO wins. Consulted after `custom`, before the defaults.
        custom: A function consulted first; it returns a class, or None to fall
            through.
        results: A function judging returned values: a class makes the value a
            failure of that class, None a success. None (the default): every
            returned value is a success.
    """

    kind: ClassVar[str] = "custom"

    overrides: tuple[tuple[type[BaseException], ErrorClass], ...] = attrs.field(
        default=(), converter=_convert_overrides, validator=_check_overrides
    )
    custom: Callable[[Exception], ErrorClass | None] | None = attrs.field(
        default=None, validator=_check_callable
    )
    results: Callable[[Any], ErrorClass | None] | None = attrs.field(
        default=None, validator=_check_callable
    )

    def classify(self, exc: Exception) -> ErrorClass:
        """Returns the class of `exc`; never raises."""
        if self.custom is not None:
            try:
                decided = self.custom(exc)
            except Exception:  # a broken user rule must not break the pipeline
                decided = None
            if decided is not None:
                return decided
        if self.overrides:
            for cls in type(exc).__mro__:
                for key, value in self.overrides:
                    if key is cls:
                        return value
        return self._default(exc)

    @property
    def judges_results(self) -> bool:
        """Whether `classify_result` can ever call a value a failure (else: skip it)."""
        return self.results is not None

    def classify_result(self, value: object) -> ErrorClass | None:
        """The class of a returned value that is a failure, or None for a success."""
        if self.results is None:
            return None
        try:
            return self.results(value)
        except Exception:
            return None

    def _default(self, exc: Exception) -> ErrorClass:
        decided = self._own(exc)
        return decided if decided is not None else _PERMANENT

    def _own(self, exc: Exception) -> ErrorClass | None:
        """The rules for the library's own errors and the neutral shapes."""
        if isinstance(exc, ResilienceError | ConfigError):
            return _IGNORED
        if isinstance(exc, InvalidRequest | ToolError) or _attr(exc, "is_tool_error") is True:
            return _REJECTED
        if isinstance(exc, ServiceResponseError):
            return self._status(exc, exc.status_code) or _PERMANENT
        if isinstance(exc, QueryError):
            sqlstate = _sqlstate_of(exc)
            if sqlstate is not None:
                return _sqlstate_rule(sqlstate)
            return _sqlite_rule(exc) or _PERMANENT
        if isinstance(exc, ProtocolError):
            return _jsonrpc_rule(exc.code)
        if isinstance(exc, CallCycle):
            return _PERMANENT
        if isinstance(
            exc, ServiceTimeout | ServiceUnavailable | MalformedResponse | PoolTimeout | CallError
        ):
            return _RETRYABLE
        if _is_timeout(exc) or _is_transport(exc):
            return _RETRYABLE
        return None

    def _status(self, exc: object, status: int) -> ErrorClass | None:
        return _http_rule(status, headers_of(exc), error_codes_of(exc), DEFAULT_QUOTA_CODES)


@attrs.frozen(kw_only=True)
class HTTPClassifier(ErrorClassifier):
    """Defaults for HTTP APIs: any exception (or returned response) carrying a status.

    ``x-should-retry: true|false`` decides first (OpenAI and Anthropic send it); a 429
    is THROTTLED unless its error code is in `quota_codes` (PERMANENT: quota and spend
    limits do not reset in seconds); 408, 409, 5xx (including 529 "overloaded") are
    RETRYABLE; 401, 402 and 403 PERMANENT; other 4xx (400, 404, 413, 422, ...) REJECTED.
    A returned value with an error status (e.g. an `httpx2.Response` with 503) is
    judged by the same rule. Then the base rules (timeouts, broken transports, ...).

    Attributes:
        quota_codes: Lower-case provider error codes that mark a 429 as a quota or
            spend limit rather than a rate limit.
    """

    kind: ClassVar[str] = "http"

    quota_codes: frozenset[str] = attrs.field(default=DEFAULT_QUOTA_CODES, converter=_lower_codes)

    @property
    def judges_results(self) -> bool:
        return True

    def classify_result(self, value: object) -> ErrorClass | None:
        if self.results is not None:
            return super().classify_result(value)
        status = status_of(value)
        return None if status is None else self._status(value, status)

    def _status(self, exc: object, status: int) -> ErrorClass | None:
        return _http_rule(status, headers_of(exc), error_codes_of(exc), self.quota_codes)

    def _default(self, exc: Exception) -> ErrorClass:
        if not isinstance(exc, ServiceResponseError):
            status = status_of(exc)
            if status is not None:
                decided = self._status(exc, status)
                if decided is not None:
                    return decided
        return super()._default(exc)


@attrs.frozen(kw_only=True)
class LLMClassifier(HTTPClassifier):
    """Defaults for LLM HTTP APIs (OpenAI-compatible, Anthropic): the HTTP rules, with
    the providers' quota and spend-limit codes, over the SDKs' own exception types.
    Returned values are judged only by a `results` function (LLM clients raise their
    failures)."""

    kind: ClassVar[str] = "llm"

    @property
    def judges_results(self) -> bool:
        # LLM clients raise their failures; their replies never carry an error status.
        return self.results is not None


@attrs.frozen(kw_only=True)
class DatabaseClassifier(ErrorClassifier):
    """Defaults for SQL databases (PostgreSQL through psycopg, SQLite).

    By SQLSTATE: class 08 (connection exception), 40001 serialization failure, 40P01
    deadlock, 55P03 lock not available, 53300 too many connections, 57P01-57P03
    server shutdown or starting are RETRYABLE; classes 22 (data), 23 (integrity
    constraint), 42 (syntax, undefined objects), 0A, 2B, 2D, 3D, 3F are REJECTED (the
    caller's statement); the rest PERMANENT. SQLite: ``SQLITE_BUSY``/``SQLITE_LOCKED``
    RETRYABLE, constraint/mismatch/range/generic SQL errors REJECTED. psycopg's
    ``OperationalError`` without a SQLSTATE (connection lost; psycopg-pool's
    ``PoolTimeout``) and a locked SQLite database are RETRYABLE.
    """

    kind: ClassVar[str] = "database"

    def _default(self, exc: Exception) -> ErrorClass:
        sqlstate = _sqlstate_of(exc)
        if sqlstate is not None:
            return _sqlstate_rule(sqlstate)
        decided = _sqlite_rule(exc)
        if decided is not None:
            return decided
        if isinstance(exc, sqlite3.OperationalError):
            return _RETRYABLE if "locked" in str(exc).lower() else _REJECTED
        if isinstance(exc, sqlite3.Error):
            return _REJECTED if isinstance(exc, sqlite3.IntegrityError) else _PERMANENT
        if _DB_CONNECTION_TYPES.matches(exc):
            return _RETRYABLE
        return super()._default(exc)


@attrs.frozen(kw_only=True)
class MCPClassifier(ErrorClassifier):
    """Defaults for MCP tool servers.

    A tool's own error (`ToolError`, ``is_tool_error``) is REJECTED: the tool ran and
    said no. JSON-RPC errors (`ProtocolError`, mcp's ``MCPError``) by code: -32000
    (connection closed), -32001 and 408 (request timeout) RETRYABLE; parse error,
    invalid request, method not found, invalid params REJECTED; others PERMANENT.
    Closed or broken streams, timeouts and HTTP transport errors are RETRYABLE, and
    HTTP statuses from the streamable-HTTP transport follow the HTTP rule.
    """

    kind: ClassVar[str] = "mcp"

    def _default(self, exc: Exception) -> ErrorClass:
        if _MCP_ERROR_TYPES.matches(exc):
            code = _int_code(exc)
            return _PERMANENT if code is None else _jsonrpc_rule(code)
        if not isinstance(exc, ServiceResponseError):
            status = status_of(exc)
            if status is not None:
                return self._status(exc, status) or _PERMANENT
        return super()._default(exc)


# ---------------------------------------------------------------------------------------
# One verdict per failure: the pipeline marks what it judged, later readers reuse it.

_MARK: Final = "_actors_error_class"


def mark(exc: BaseException, error_class: ErrorClass) -> None:
    """Records the verdict the pipeline gave `exc`, for every later reader (routers)."""
    with contextlib.suppress(AttributeError, TypeError):  # a type without a __dict__
        setattr(exc, _MARK, error_class)


def verdict_of(exc: Exception, classifier: Classifier) -> ErrorClass:
    """The verdict a pipeline already gave `exc`, or `classifier`'s if none did."""
    marked = getattr(exc, _MARK, None)
    if isinstance(marked, ErrorClass):
        return marked
    return classifier.classify(exc)
