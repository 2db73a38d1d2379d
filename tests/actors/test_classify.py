"""Error classification: per-service defaults, overrides, metrics and logged errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog

from actors._classify import (
    Classifier,
    DatabaseClassifier,
    ErrorClass,
    ErrorClassifier,
    ErrorMetrics,
    LLMClassifier,
    MCPClassifier,
    classifier_for,
    error_codes_of,
    headers_of,
    report_error,
    short_message,
    status_of,
)
from actors._errors import BulkheadFull, CircuitOpen, ConfigError, RateLimited
from actors.testing import capture_events

R = ErrorClass.RETRYABLE
P = ErrorClass.PERMANENT
I = ErrorClass.IGNORED  # noqa: E741


# --- neutral error shapes, shaped like the libraries' own exceptions -----------------


class HeadersOnly(TimeoutError):
    """A timeout carrying response headers but no status (a transport error with headers)."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__("read timeout")
        self.headers = headers


class HTTPError(Exception):
    """An HTTP failure carrying status, headers and a body, like openai's APIStatusError."""

    def __init__(
        self,
        status_code: int,
        headers: dict[str, str] | None = None,
        *,
        code: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.headers = headers or {}
        self.code = code
        self.body = body


class Response:
    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.headers = headers or {}


class HTTPStatusError(Exception):
    """Shaped like httpx2.HTTPStatusError: the status lives on `.response`."""

    def __init__(self, response: Response) -> None:
        super().__init__("status error")
        self.response = response


# httpx's transport tree, by name.
class TransportError(Exception):
    pass


class TimeoutException(TransportError):
    pass


class ReadTimeout(TimeoutException):
    pass


class NetworkError(TransportError):
    pass


class ConnectError(NetworkError):
    pass


class RemoteProtocolError(TransportError):
    pass


class LocalProtocolError(TransportError):
    pass


class APIConnectionError(Exception):
    pass


class FlaggedTimeout(Exception):
    is_timeout = True


class PgError(Exception):
    """Shaped like psycopg.Error: a SQLSTATE on `.sqlstate`."""

    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(f"pg error {sqlstate}")
        self.sqlstate = sqlstate


class Psycopg2Error(Exception):
    def __init__(self, pgcode: str) -> None:
        super().__init__("pg2 error")
        self.pgcode = pgcode


class OperationalError(Exception):
    """Shaped like psycopg.OperationalError with no SQLSTATE (connection lost)."""

    sqlstate = None


class PoolTimeout(OperationalError):
    pass


class ErrorData:
    def __init__(self, code: int) -> None:
        self.code = code


class McpError(Exception):
    """Shaped like mcp.McpError: a JSON-RPC error on `.error`."""

    def __init__(self, code: int) -> None:
        super().__init__(f"mcp error {code}")
        self.error = ErrorData(code)


class ToolError(Exception):
    pass


class FlaggedToolError(Exception):
    is_tool_error = True


# --- tables ------------------------------------------------------------------------

LLM_TABLE = [
    pytest.param(TimeoutError(), R, id="builtin-timeout"),
    pytest.param(ReadTimeout(), R, id="httpx-read-timeout"),
    pytest.param(FlaggedTimeout(), R, id="is_timeout-attribute"),
    pytest.param(ConnectError(), R, id="httpx-connect-error"),
    pytest.param(RemoteProtocolError(), R, id="httpx-remote-protocol"),
    pytest.param(APIConnectionError(), R, id="openai-connection-error"),
    pytest.param(ConnectionResetError(), R, id="connection-reset"),
    pytest.param(LocalProtocolError(), P, id="httpx-local-protocol"),
    pytest.param(HTTPError(408), R, id="408"),
    pytest.param(HTTPError(409), R, id="409"),
    pytest.param(HTTPError(429), R, id="429-rate"),
    pytest.param(HTTPError(500), R, id="500"),
    pytest.param(HTTPError(502), R, id="502"),
    pytest.param(HTTPError(503), R, id="503"),
    pytest.param(HTTPError(529), R, id="529-overloaded"),
    pytest.param(HTTPError(400), P, id="400"),
    pytest.param(HTTPError(401), P, id="401"),
    pytest.param(HTTPError(403), P, id="403"),
    pytest.param(HTTPError(404), P, id="404"),
    pytest.param(HTTPError(422), P, id="422"),
    pytest.param(HTTPError(429, code="insufficient_quota"), P, id="429-quota-code"),
    pytest.param(
        HTTPError(429, body={"error": {"type": "insufficient_quota", "message": "quota"}}),
        P,
        id="429-quota-body",
    ),
    pytest.param(
        HTTPError(429, body={"error": {"code": "rate_limit_exceeded"}}), R, id="429-rate-body"
    ),
    pytest.param(HTTPError(500, {"x-should-retry": "false"}), P, id="should-retry-false"),
    pytest.param(HTTPError(400, {"X-Should-Retry": "true"}), R, id="should-retry-true"),
    pytest.param(
        HTTPError(429, {"x-should-retry": "true"}, code="insufficient_quota"),
        R,
        id="should-retry-beats-quota",
    ),
    pytest.param(HeadersOnly({"x-should-retry": "false"}), P, id="should-retry-false-no-status"),
    pytest.param(HeadersOnly({"X-Should-Retry": "true"}), R, id="should-retry-true-no-status"),
    pytest.param(HeadersOnly({"retry-after": "1"}), R, id="timeout-with-headers-no-status"),
    pytest.param(HTTPStatusError(Response(503)), R, id="status-on-response-503"),
    pytest.param(HTTPStatusError(Response(401)), P, id="status-on-response-401"),
    pytest.param(ValueError("bad"), P, id="unknown-exception"),
    pytest.param(CircuitOpen("llm", 1.0), I, id="circuit-open"),
    pytest.param(RateLimited("llm", 1.0), I, id="rate-limited"),
    pytest.param(BulkheadFull("llm"), I, id="bulkhead-full"),
    pytest.param(ConfigError("x", 1, "bad"), I, id="config-error"),
    pytest.param(KeyboardInterrupt(), I, id="keyboard-interrupt"),
]


@pytest.mark.parametrize(("exc", "expected"), LLM_TABLE)
def test_llm_defaults(exc: BaseException, expected: ErrorClass) -> None:
    """The LLM classifier follows the DESIGN.md defaults table."""
    assert LLMClassifier().classify(exc) is expected


DB_TABLE = [
    pytest.param(PgError("40001"), R, id="serialization-failure"),
    pytest.param(PgError("40P01"), R, id="deadlock"),
    pytest.param(PgError("40p01"), R, id="deadlock-lowercase"),
    pytest.param(PgError("08006"), R, id="connection-failure"),
    pytest.param(PgError("08001"), R, id="cannot-connect"),
    pytest.param(PgError("57P01"), R, id="admin-shutdown"),
    pytest.param(PgError("55P03"), R, id="lock-not-available"),
    pytest.param(PgError("53300"), R, id="too-many-connections"),
    pytest.param(Psycopg2Error("40001"), R, id="psycopg2-pgcode"),
    pytest.param(PgError("42601"), P, id="syntax-error"),
    pytest.param(PgError("23505"), P, id="unique-violation"),
    pytest.param(PgError("23503"), P, id="fk-violation"),
    pytest.param(PgError("22012"), P, id="division-by-zero"),
    pytest.param(PgError("57014"), P, id="query-canceled"),
    pytest.param(OperationalError("server closed the connection"), R, id="connection-lost"),
    pytest.param(PoolTimeout("no connection in 30s"), R, id="pool-timeout"),
    pytest.param(TimeoutError(), R, id="timeout"),
    pytest.param(BrokenPipeError(), R, id="broken-pipe"),
    pytest.param(sqlite3.OperationalError("database is locked"), R, id="sqlite-locked-msg"),
    pytest.param(sqlite3.OperationalError("no such table: t"), P, id="sqlite-no-table-msg"),
    pytest.param(sqlite3.IntegrityError("UNIQUE constraint failed"), P, id="sqlite-integrity"),
    pytest.param(ValueError(), P, id="unknown"),
    pytest.param(RateLimited("db", 1.0), I, id="rate-limited"),
]


@pytest.mark.parametrize(("exc", "expected"), DB_TABLE)
def test_database_defaults(exc: BaseException, expected: ErrorClass) -> None:
    """The database classifier follows the DESIGN.md defaults table."""
    assert DatabaseClassifier().classify(exc) is expected


def _sqlite_error(tmp_path: Path, statement: str) -> sqlite3.Error:
    path = tmp_path / "db.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        holder.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        holder.execute("INSERT INTO t VALUES (1)")
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(sqlite3.Error) as info:
            other.execute(statement)
        return info.value
    finally:
        holder.close()
        other.close()


def test_real_sqlite_busy_is_retryable(tmp_path: Path) -> None:
    """A real SQLITE_BUSY from a locked database file is retryable."""
    exc = _sqlite_error(tmp_path, "SELECT * FROM t")
    assert exc.sqlite_errorname.startswith("SQLITE_BUSY")
    assert DatabaseClassifier().classify(exc) is R


def test_real_sqlite_missing_table_is_permanent(tmp_path: Path) -> None:
    """A real "no such table" error from SQLite is permanent."""
    connection = sqlite3.connect(tmp_path / "other.sqlite")
    try:
        with pytest.raises(sqlite3.OperationalError) as info:
            connection.execute("SELECT * FROM missing")
    finally:
        connection.close()
    assert DatabaseClassifier().classify(info.value) is P


MCP_TABLE = [
    pytest.param(BrokenPipeError(), R, id="broken-pipe"),
    pytest.param(ConnectionResetError(), R, id="connection-reset"),
    pytest.param(EOFError(), R, id="eof"),
    pytest.param(anyio.BrokenResourceError(), R, id="anyio-broken"),
    pytest.param(anyio.ClosedResourceError(), R, id="anyio-closed"),
    pytest.param(anyio.EndOfStream(), R, id="anyio-end-of-stream"),
    pytest.param(TimeoutError(), R, id="timeout"),
    pytest.param(ConnectError(), R, id="httpx-connect"),
    pytest.param(McpError(-32000), R, id="jsonrpc-connection-closed"),
    pytest.param(McpError(408), R, id="sdk-request-timeout"),
    pytest.param(McpError(-32001), R, id="ts-request-timeout"),
    pytest.param(McpError(-32602), P, id="invalid-params"),
    pytest.param(McpError(-32601), P, id="method-not-found"),
    pytest.param(HTTPStatusError(Response(503)), R, id="http-503"),
    pytest.param(HTTPStatusError(Response(404)), P, id="http-404"),
    pytest.param(ToolError("tool failed"), P, id="tool-error-class"),
    pytest.param(FlaggedToolError(), P, id="tool-error-flag"),
    pytest.param(RuntimeError(), P, id="unknown"),
    pytest.param(CircuitOpen("mcp", 1.0), I, id="circuit-open"),
]


@pytest.mark.parametrize(("exc", "expected"), MCP_TABLE)
def test_mcp_defaults(exc: BaseException, expected: ErrorClass) -> None:
    """The MCP classifier retries transport trouble and never tool errors."""
    assert MCPClassifier().classify(exc) is expected


GENERIC_TABLE = [
    pytest.param(TimeoutError(), R, id="timeout"),
    pytest.param(ConnectionRefusedError(), R, id="connection"),
    pytest.param(HTTPError(503), P, id="http-not-known-generically"),
    pytest.param(ValueError(), P, id="unknown"),
    pytest.param(BulkheadFull("x"), I, id="bulkhead-full"),
]


@pytest.mark.parametrize(("exc", "expected"), GENERIC_TABLE)
def test_generic_defaults(exc: BaseException, expected: ErrorClass) -> None:
    """The generic classifier retries only timeouts and connection errors."""
    assert ErrorClassifier().classify(exc) is expected


@pytest.mark.parametrize(
    "classifier",
    [ErrorClassifier(), LLMClassifier(), DatabaseClassifier(), MCPClassifier()],
    ids=["generic", "llm", "database", "mcp"],
)
def test_every_classifier_satisfies_the_protocol(classifier: Classifier) -> None:
    """Every shipped classifier is a `Classifier`."""
    assert isinstance(classifier, Classifier)


@pytest.mark.anyio
async def test_cancellation_is_ignored() -> None:
    """The backend's cancellation exception is never retryable, whatever the overrides."""
    cancelled: BaseException | None = None
    with anyio.CancelScope() as scope:
        scope.cancel()
        try:
            await anyio.sleep(1)
        except anyio.get_cancelled_exc_class() as exc:
            cancelled = exc
            raise
    assert cancelled is not None
    classifier = LLMClassifier(overrides={BaseException: R}, custom=lambda _exc: R)
    assert classifier.classify(cancelled) is I


def test_only_ignored_is_not_a_failure() -> None:
    """Breakers count retryable and permanent failures, never ignored ones."""
    assert R.is_failure
    assert P.is_failure
    assert not I.is_failure


# --- composition ---------------------------------------------------------------------


def test_overrides_beat_defaults() -> None:
    """An override mapping replaces the default class of a type."""
    classifier = LLMClassifier(overrides={ValueError: R, TimeoutError: P})
    assert classifier.classify(ValueError()) is R
    assert classifier.classify(TimeoutError()) is P


def test_most_specific_override_wins() -> None:
    """The override for the most specific class in the MRO wins."""
    classifier = ErrorClassifier(overrides={OSError: P, ConnectionError: R})
    assert classifier.classify(ConnectionResetError()) is R
    assert classifier.classify(FileNotFoundError()) is P


def test_custom_function_is_consulted_first() -> None:
    """A custom function decides before overrides and defaults."""
    classifier = LLMClassifier(
        overrides={ValueError: R},
        custom=lambda exc: I if isinstance(exc, ValueError) else None,
    )
    assert classifier.classify(ValueError()) is I


def test_custom_function_none_falls_through() -> None:
    """A custom function returning None leaves the decision to the defaults."""
    classifier = LLMClassifier(custom=lambda _exc: None)
    assert classifier.classify(HTTPError(503)) is R


def test_overrides_accept_pairs() -> None:
    """Overrides may be given as (type, class) pairs."""
    assert ErrorClassifier(overrides=[(KeyError, R)]).classify(KeyError()) is R


def test_quota_codes_are_configurable() -> None:
    """A custom quota code list marks other 429 codes as permanent."""
    classifier = LLMClassifier(quota_codes={"Tokens_Exhausted"})
    assert classifier.classify(HTTPError(429, code="tokens_exhausted")) is P
    assert classifier.classify(HTTPError(429, code="insufficient_quota")) is R


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"overrides": {"ValueError": R}}, "overrides", id="key-not-a-type"),
        pytest.param({"overrides": {int: R}}, "overrides", id="key-not-an-exception"),
        pytest.param({"overrides": {ValueError: "retryable"}}, "overrides", id="value-str"),
        pytest.param({"custom": 42}, "custom", id="custom-not-callable"),
    ],
)
def test_bad_classifier_config(kwargs: dict[str, Any], field: str) -> None:
    """Bad classifier configuration raises ConfigError naming the field."""
    with pytest.raises(ConfigError) as info:
        ErrorClassifier(**kwargs)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("generic", ErrorClassifier),
        ("llm", LLMClassifier),
        ("database", DatabaseClassifier),
        ("mcp", MCPClassifier),
    ],
)
def test_classifier_for_service_names(name: str, expected: type) -> None:
    """Configuration files name a classifier by service type."""
    assert type(classifier_for(name)) is expected


def test_classifier_for_unknown_name() -> None:
    """An unknown classifier name raises ConfigError naming field and value."""
    with pytest.raises(ConfigError) as info:
        classifier_for("redis")
    assert (info.value.field, info.value.value) == ("classifier", "redis")


# --- result classification and readers -----------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "codes", "expected"),
    [
        pytest.param(200, None, (), None, id="ok"),
        pytest.param(200, {"x-should-retry": "true"}, (), R, id="ok-but-should-retry"),
        pytest.param(429, None, (), R, id="rate"),
        pytest.param(429, None, ("INSUFFICIENT_QUOTA",), P, id="quota"),
        pytest.param(529, None, (), R, id="overloaded"),
        pytest.param(401, None, (), P, id="unauthorized"),
        pytest.param(503, {"X-Should-Retry": "false"}, (), P, id="should-not-retry"),
    ],
)
def test_llm_classify_status(
    status: int, headers: dict[str, str] | None, codes: tuple[str, ...], expected: Any
) -> None:
    """Responses are classified by status, headers and body codes without an exception."""
    assert LLMClassifier().classify_status(status, headers, codes) is expected


def test_readers_find_nested_shapes() -> None:
    """Status and headers are read from `.response` when the exception lacks them."""
    exc = HTTPStatusError(Response(502, {"Retry-After": "3"}))
    assert status_of(exc) == 502
    assert headers_of(exc) == {"retry-after": "3"}


def test_hostile_attributes_do_not_break_classification() -> None:
    """Properties that raise while being read are treated as absent."""

    class Hostile(Exception):
        @property
        def response(self) -> Any:
            raise RuntimeError("no response")

        @property
        def status_code(self) -> Any:
            raise RuntimeError("no status")

    assert LLMClassifier().classify(Hostile()) is P
    assert MCPClassifier().classify(Hostile()) is P


def test_error_codes_are_collected_lowercase() -> None:
    """Error codes come from the attributes and the body, lower-cased."""
    exc = HTTPError(429, code="A", body={"type": "B", "error": {"code": "C", "type": "D"}})
    assert error_codes_of(exc) == {"a", "b", "c", "d"}


# --- metrics and logging ---------------------------------------------------------------


def test_error_metrics_count_per_service_and_class() -> None:
    """Error metrics keep one counter per (service, class)."""
    metrics = ErrorMetrics()
    metrics.record("llm", R)
    metrics.record("llm", R)
    metrics.record("db", P)
    assert metrics.count("llm", R) == 2
    assert metrics.count("db", P) == 1
    assert metrics.count("db", R) == 0
    assert metrics.snapshot() == {("llm", R): 2, ("db", P): 1}


def test_report_error_counts_and_logs_with_correlation_id() -> None:
    """A reported error is counted and logged with the bound correlation id."""
    metrics = ErrorMetrics()
    with (
        capture_events() as events,
        structlog.contextvars.bound_contextvars(correlation_id="c-1"),
    ):
        result = report_error(
            HTTPError(503), classifier=LLMClassifier(), service="llm", metrics=metrics
        )
    assert result is R
    assert metrics.count("llm", R) == 1
    assert events == [
        {
            "event": "error.classified",
            "log_level": "warning",
            "service": "llm",
            "error_class": "retryable",
            "error": "HTTPError",
            "message": "HTTP 503",
            "correlation_id": "c-1",
        }
    ]


def test_report_error_skips_non_exceptions() -> None:
    """Reporting a KeyboardInterrupt neither counts nor logs it."""
    metrics = ErrorMetrics()
    with capture_events() as events:
        result = report_error(
            KeyboardInterrupt(), classifier=ErrorClassifier(), service="x", metrics=metrics
        )
    assert result is I
    assert events == []
    assert metrics.snapshot() == {}


def test_logged_message_has_no_secrets() -> None:
    """The logged message redacts keys, tokens and query strings and is one short line."""
    exc = RuntimeError(
        "failed https://api.example.com/v1?key=abc123 with Bearer tok-999 and sk-live42\n"
        "second line with the body"
    )
    message = short_message(exc)
    for secret in ("abc123", "tok-999", "sk-live42", "second line"):
        assert secret not in message
    assert message.startswith("failed https://api.example.com/v1?<redacted>")


def test_logged_message_is_truncated() -> None:
    """A very long message is cut to 200 characters."""
    assert len(short_message(RuntimeError("x" * 1000))) == 200


# --- the real httpx exceptions (httpx is a test dependency) ----------------------------


def _httpx_status_error(status: int, headers: dict[str, str] | None = None) -> Exception:
    import httpx2

    request = httpx2.Request("POST", "https://api.example.com/v1/chat/completions")
    response = httpx2.Response(status, headers=headers, request=request)
    return httpx2.HTTPStatusError("failed", request=request, response=response)


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        pytest.param(429, None, R, id="429"),
        pytest.param(503, {"X-Should-Retry": "false"}, P, id="503-should-not-retry"),
        pytest.param(401, None, P, id="401"),
    ],
)
def test_real_httpx_status_errors(
    status: int, headers: dict[str, str] | None, expected: ErrorClass
) -> None:
    """httpx's HTTPStatusError is classified from its response's status and headers."""
    assert LLMClassifier().classify(_httpx_status_error(status, headers)) is expected


def test_real_httpx_transport_errors() -> None:
    """httpx's timeouts and network errors are retryable, its local protocol errors not."""
    import httpx2

    for exc in (httpx2.ReadTimeout("t"), httpx2.ConnectTimeout("t"), httpx2.PoolTimeout("t")):
        assert LLMClassifier().classify(exc) is R
        assert MCPClassifier().classify(exc) is R
    assert LLMClassifier().classify(httpx2.ConnectError("refused")) is R
    assert LLMClassifier().classify(httpx2.RemoteProtocolError("eof")) is R
    assert LLMClassifier().classify(httpx2.LocalProtocolError("bad")) is P


@pytest.mark.anyio
async def test_real_connection_refused_is_retryable() -> None:
    """A real refused connection through httpx is a retryable LLM failure."""
    import httpx2

    with anyio.fail_after(10):
        async with httpx2.AsyncClient() as client:
            with pytest.raises(httpx2.TransportError) as info:
                await client.get("http://127.0.0.1:1/")
    assert LLMClassifier().classify(info.value) is R
