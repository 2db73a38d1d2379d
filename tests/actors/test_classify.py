"""Classification: one verdict per outcome, from exception types and structured fields.

The optional libraries' exceptions are the real ones (httpx2, openai, anthropic,
psycopg, psycopg-pool, sqlite3, mcp), built the way the libraries build them.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx2
import openai
import psycopg
import psycopg.errors
import psycopg_pool
import pytest
from mcp.shared.exceptions import MCPError

from actors import (
    KINDS,
    ActorDown,
    AttemptTimeout,
    BulkheadFull,
    CallCycle,
    CallTimeout,
    CircuitOpen,
    Classifier,
    ConfigError,
    DatabaseClassifier,
    DeadlineExceeded,
    ErrorClass,
    ErrorClassifier,
    HTTPClassifier,
    InvalidRequest,
    LLMClassifier,
    MalformedResponse,
    MCPClassifier,
    PoolTimeout,
    ProtocolError,
    QueryError,
    RateLimited,
    ServiceResponseError,
    ServiceTimeout,
    ServiceUnavailable,
    ToolError,
)
from actors._classify import error_codes_of, headers_of, mark, status_of, verdict_of
from actors.resilience import BreakerConfig, RetryPolicy, create_breaker, resilient

R = ErrorClass.RETRYABLE
T = ErrorClass.THROTTLED
P = ErrorClass.PERMANENT
J = ErrorClass.REJECTED
I = ErrorClass.IGNORED  # noqa: E741

HTTP_KINDS = [pytest.param(HTTPClassifier(), id="http"), pytest.param(LLMClassifier(), id="llm")]
CLASSIFIERS = [
    pytest.param(ErrorClassifier(), id="custom"),
    pytest.param(HTTPClassifier(), id="http"),
    pytest.param(LLMClassifier(), id="llm"),
    pytest.param(DatabaseClassifier(), id="database"),
    pytest.param(MCPClassifier(), id="mcp"),
]

# --- the real libraries' exceptions -------------------------------------------------------

REQUEST = httpx2.Request("POST", "https://api.example.com/v1/chat/completions")


def response(
    status: int, headers: dict[str, str] | None = None, body: object = None
) -> httpx2.Response:
    return httpx2.Response(status, headers=headers, json=body, request=REQUEST)


def status_error(status: int, headers: dict[str, str] | None = None) -> httpx2.HTTPStatusError:
    """What `httpx2.Response.raise_for_status()` raises."""
    return httpx2.HTTPStatusError("failed", request=REQUEST, response=response(status, headers))


OPENAI_BY_STATUS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


def openai_error(
    status: int, *, code: str | None = None, headers: dict[str, str] | None = None
) -> openai.APIStatusError:
    """As the openai SDK builds it: the class by status, ``body`` the inner error object."""
    error = {"message": "failed", "type": code, "code": code, "param": None}
    kind = OPENAI_BY_STATUS.get(status, openai.InternalServerError)
    return kind("failed", response=response(status, headers, {"error": error}), body=error)


def anthropic_error(
    kind: type[anthropic.APIStatusError],
    status: int,
    error_type: str,
    *,
    error_code: str | None = None,
) -> anthropic.APIStatusError:
    """As the anthropic SDK builds it: ``body`` the whole error document."""
    error: dict[str, Any] = {"type": error_type, "message": "failed"}
    if error_code is not None:
        error["details"] = {"error_code": error_code}
    body = {"type": "error", "error": error}
    return kind("failed", response=response(status, None, body), body=body)


# --- the verdict table, row by row --------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "retried", "breaker_failure", "routable"),
    [
        (R, True, True, True),
        (T, True, False, True),
        (P, False, True, True),
        (J, False, False, False),
        (I, False, False, False),
    ],
    ids=lambda value: value.name if isinstance(value, ErrorClass) else None,
)
def test_each_verdict_means_what_the_table_says(
    verdict: ErrorClass, retried: bool, breaker_failure: bool, routable: bool
) -> None:
    """Each verdict is retried, counted and routed as its row of the table says."""
    assert (verdict.retried, verdict.breaker_failure, verdict.routable) == (
        retried,
        breaker_failure,
        routable,
    )


@pytest.mark.parametrize(
    ("verdict", "counted"),
    [(R, "failures"), (T, "ignored"), (P, "failures"), (J, "successes"), (I, "ignored")],
    ids=lambda value: value.name if isinstance(value, ErrorClass) else None,
)
def test_the_breaker_records_each_verdict_as_its_row_says(
    verdict: ErrorClass, counted: str
) -> None:
    """`CircuitBreaker.record` counts a verdict as a failure, a success or neither."""
    breaker = create_breaker("svc", BreakerConfig())
    breaker.record(breaker.acquire(now=0.0), verdict, 0.0, now=0.0)
    metrics = breaker.metrics(now=0.0)
    counts = {
        "failures": metrics.failures,
        "successes": metrics.successes,
        "ignored": metrics.ignored,
    }
    assert counts == {key: int(key == counted) for key in counts}


@pytest.mark.anyio
@pytest.mark.parametrize("verdict", list(ErrorClass), ids=lambda value: value.name)
async def test_the_pipeline_retries_exactly_the_retried_verdicts(verdict: ErrorClass) -> None:
    """Under a 3-attempt policy a failure is attempted 3 times if its verdict is retried,
    else once."""
    attempts = 0

    @resilient(
        retry=RetryPolicy(attempts=3, backoff_initial=0, backoff_max=0, budget_ratio=None),
        classifier=ErrorClassifier(custom=lambda _exc: verdict),
    )
    async def fail() -> None:
        nonlocal attempts
        attempts += 1
        raise ValueError("scripted")

    with pytest.raises(ValueError, match="scripted"):
        await fail()
    assert attempts == (3 if verdict.retried else 1)


# --- the library's own errors: the same verdict from every kind ---------------------------

OWN_ERRORS = [
    pytest.param(lambda: ServiceResponseError("s", 500), R, id="response-500"),
    pytest.param(lambda: ServiceResponseError("s", 503), R, id="response-503"),
    pytest.param(lambda: ServiceResponseError("s", 529), R, id="response-529"),
    pytest.param(lambda: ServiceResponseError("s", 408), R, id="response-408"),
    pytest.param(lambda: ServiceResponseError("s", 409), R, id="response-409"),
    pytest.param(lambda: ServiceResponseError("s", 429), T, id="response-429"),
    pytest.param(
        lambda: ServiceResponseError("s", 429, code="insufficient_quota"), P, id="response-quota"
    ),
    pytest.param(lambda: ServiceResponseError("s", 401), P, id="response-401"),
    pytest.param(lambda: ServiceResponseError("s", 402), P, id="response-402"),
    pytest.param(lambda: ServiceResponseError("s", 403), P, id="response-403"),
    pytest.param(lambda: ServiceResponseError("s", 400), J, id="response-400"),
    pytest.param(lambda: ServiceResponseError("s", 404), J, id="response-404"),
    pytest.param(lambda: ServiceResponseError("s", 422), J, id="response-422"),
    pytest.param(
        lambda: ServiceResponseError("s", 503, headers={"x-should-retry": "false"}),
        P,
        id="response-503-should-not-retry",
    ),
    pytest.param(
        lambda: ServiceResponseError("s", 400, headers={"x-should-retry": "true"}),
        R,
        id="response-400-should-retry",
    ),
    pytest.param(lambda: QueryError("s", "m", sqlstate="40001"), R, id="query-serialization"),
    pytest.param(lambda: QueryError("s", "m", sqlstate="40p01"), R, id="query-deadlock-lower"),
    pytest.param(lambda: QueryError("s", "m", sqlstate="08006"), R, id="query-connection"),
    pytest.param(lambda: QueryError("s", "m", sqlstate="23505"), J, id="query-unique"),
    pytest.param(lambda: QueryError("s", "m", sqlstate="42601"), J, id="query-syntax"),
    pytest.param(lambda: QueryError("s", "m", sqlstate="57014"), P, id="query-canceled"),
    pytest.param(
        lambda: QueryError("s", "m", sqlite_errorname="SQLITE_BUSY_SNAPSHOT"), R, id="query-busy"
    ),
    pytest.param(
        lambda: QueryError("s", "m", sqlite_errorname="SQLITE_CONSTRAINT_UNIQUE"),
        J,
        id="query-constraint",
    ),
    pytest.param(
        lambda: QueryError("s", "m", sqlite_errorname="SQLITE_READONLY"), P, id="query-readonly"
    ),
    pytest.param(lambda: QueryError("s", "m"), P, id="query-no-code"),
    pytest.param(lambda: ProtocolError("s", -32602), J, id="jsonrpc-invalid-params"),
    pytest.param(lambda: ProtocolError("s", -32601), J, id="jsonrpc-method-not-found"),
    pytest.param(lambda: ProtocolError("s", -32000), R, id="jsonrpc-connection-closed"),
    pytest.param(lambda: ProtocolError("s", -32001), R, id="jsonrpc-request-timeout"),
    pytest.param(lambda: ProtocolError("s", -32603), P, id="jsonrpc-internal"),
    pytest.param(lambda: ToolError("s", "the tool said no"), J, id="tool-error"),
    pytest.param(lambda: InvalidRequest("s", "messages", "is empty"), J, id="invalid-request"),
    pytest.param(lambda: ServiceTimeout("s", "slow"), R, id="service-timeout"),
    pytest.param(lambda: AttemptTimeout("s", 1.0), R, id="attempt-timeout"),
    pytest.param(lambda: ServiceUnavailable("s", "reset"), R, id="service-unavailable"),
    pytest.param(lambda: MalformedResponse("s", "truncated"), R, id="malformed-response"),
    pytest.param(lambda: PoolTimeout("pool", 1.0), R, id="pool-timeout"),
    pytest.param(lambda: CallTimeout("other", 1.0), R, id="nested-call-timeout"),
    pytest.param(lambda: ActorDown("other", None), R, id="nested-actor-down"),
    pytest.param(lambda: CallCycle("self"), P, id="call-cycle"),
    pytest.param(lambda: CircuitOpen("s", 1.0), I, id="circuit-open"),
    pytest.param(lambda: RateLimited("s", 1.0), I, id="rate-limited"),
    pytest.param(lambda: BulkheadFull("s"), I, id="bulkhead-full"),
    pytest.param(lambda: DeadlineExceeded("s", 1.0), I, id="deadline-exceeded"),
    pytest.param(lambda: ConfigError("x", 1, "bad"), I, id="config-error"),
    pytest.param(TimeoutError, R, id="builtin-timeout"),
    pytest.param(ConnectionResetError, R, id="connection-reset"),
    pytest.param(BrokenPipeError, R, id="broken-pipe"),
    pytest.param(EOFError, R, id="eof"),
    pytest.param(anyio.BrokenResourceError, R, id="anyio-broken"),
    pytest.param(anyio.ClosedResourceError, R, id="anyio-closed"),
    pytest.param(anyio.EndOfStream, R, id="anyio-end-of-stream"),
    pytest.param(lambda: httpx2.ConnectError("refused"), R, id="httpx2-connect"),
    pytest.param(lambda: httpx2.ReadTimeout("slow"), R, id="httpx2-read-timeout"),
    pytest.param(lambda: openai.APIConnectionError(request=REQUEST), R, id="openai-connection"),
    pytest.param(lambda: ValueError("bug"), P, id="unknown"),
    pytest.param(lambda: KeyError("bug"), P, id="unknown-key-error"),
]


@pytest.mark.parametrize("classifier", CLASSIFIERS)
@pytest.mark.parametrize(("make", "expected"), OWN_ERRORS)
def test_own_errors_get_one_verdict_from_every_kind(
    classifier: Classifier, make: Callable[[], Exception], expected: ErrorClass
) -> None:
    """The library's own errors (and neutral shapes) are judged alike by every kind."""
    assert classifier.classify(make()) is expected


# --- HTTP and LLM APIs --------------------------------------------------------------------

HTTP_ERRORS = [
    pytest.param(lambda: status_error(408), R, id="httpx2-408"),
    pytest.param(lambda: status_error(409), R, id="httpx2-409"),
    pytest.param(lambda: status_error(429, {"retry-after": "2"}), T, id="httpx2-429"),
    pytest.param(lambda: status_error(500), R, id="httpx2-500"),
    pytest.param(lambda: status_error(502), R, id="httpx2-502"),
    pytest.param(lambda: status_error(503), R, id="httpx2-503"),
    pytest.param(lambda: status_error(529), R, id="httpx2-529"),
    pytest.param(lambda: status_error(400), J, id="httpx2-400"),
    pytest.param(lambda: status_error(401), P, id="httpx2-401"),
    pytest.param(lambda: status_error(402), P, id="httpx2-402"),
    pytest.param(lambda: status_error(403), P, id="httpx2-403"),
    pytest.param(lambda: status_error(404), J, id="httpx2-404"),
    pytest.param(lambda: status_error(413), J, id="httpx2-413"),
    pytest.param(lambda: status_error(422), J, id="httpx2-422"),
    pytest.param(
        lambda: status_error(503, {"X-Should-Retry": "false"}), P, id="httpx2-503-should-not"
    ),
    pytest.param(lambda: status_error(400, {"x-should-retry": "true"}), R, id="httpx2-400-should"),
    pytest.param(
        lambda: status_error(429, {"x-should-retry": "false"}), P, id="httpx2-429-should-not"
    ),
    pytest.param(lambda: openai_error(429, code="rate_limit_exceeded"), T, id="openai-rate"),
    pytest.param(lambda: openai_error(429, code="insufficient_quota"), P, id="openai-quota"),
    pytest.param(
        lambda: openai_error(429, code="insufficient_quota", headers={"x-should-retry": "false"}),
        P,
        id="openai-quota-should-not-retry",
    ),
    pytest.param(lambda: openai_error(401, code="invalid_api_key"), P, id="openai-401"),
    pytest.param(lambda: openai_error(403), P, id="openai-403"),
    pytest.param(lambda: openai_error(400, code="context_length_exceeded"), J, id="openai-400"),
    pytest.param(lambda: openai_error(404, code="model_not_found"), J, id="openai-404"),
    pytest.param(lambda: openai_error(409), R, id="openai-409"),
    pytest.param(lambda: openai_error(422), J, id="openai-422"),
    pytest.param(lambda: openai_error(500), R, id="openai-500"),
    pytest.param(lambda: openai_error(503), R, id="openai-503"),
    pytest.param(lambda: openai.APIConnectionError(request=REQUEST), R, id="openai-connection"),
    pytest.param(lambda: openai.APITimeoutError(request=REQUEST), R, id="openai-timeout"),
    pytest.param(
        lambda: anthropic_error(anthropic.RateLimitError, 429, "rate_limit_error"),
        T,
        id="anthropic-rate",
    ),
    pytest.param(
        lambda: anthropic_error(
            anthropic.EnforcedSpendLimitReachedError,
            429,
            "rate_limit_error",
            error_code="enforced_spend_limit_reached",
        ),
        P,
        id="anthropic-spend-limit",
    ),
    pytest.param(
        lambda: anthropic_error(anthropic.PaymentRequiredError, 402, "billing_error"),
        P,
        id="anthropic-billing",
    ),
    pytest.param(
        lambda: anthropic_error(anthropic.OverloadedError, 529, "overloaded_error"),
        R,
        id="anthropic-overloaded",
    ),
    pytest.param(
        lambda: anthropic_error(anthropic.AuthenticationError, 401, "authentication_error"),
        P,
        id="anthropic-401",
    ),
    pytest.param(
        lambda: anthropic_error(anthropic.BadRequestError, 400, "invalid_request_error"),
        J,
        id="anthropic-400",
    ),
    pytest.param(
        lambda: anthropic.APIConnectionError(request=REQUEST), R, id="anthropic-connection"
    ),
    pytest.param(lambda: anthropic.APITimeoutError(request=REQUEST), R, id="anthropic-timeout"),
    pytest.param(lambda: httpx2.ConnectTimeout("t"), R, id="httpx2-connect-timeout"),
    pytest.param(lambda: httpx2.WriteTimeout("t"), R, id="httpx2-write-timeout"),
    pytest.param(lambda: httpx2.PoolTimeout("t"), R, id="httpx2-pool-timeout"),
    pytest.param(lambda: httpx2.ReadError("reset"), R, id="httpx2-read-error"),
    pytest.param(lambda: httpx2.RemoteProtocolError("eof"), R, id="httpx2-remote-protocol"),
    pytest.param(lambda: httpx2.LocalProtocolError("bad"), P, id="httpx2-local-protocol"),
    pytest.param(lambda: httpx2.UnsupportedProtocol("ftp"), P, id="httpx2-unsupported"),
]


@pytest.mark.parametrize(
    "classifier",
    [pytest.param(HTTPClassifier(), id="http"), pytest.param(LLMClassifier(), id="llm")],
)
@pytest.mark.parametrize(("make", "expected"), HTTP_ERRORS)
def test_http_rule_over_the_real_sdk_errors(
    classifier: Classifier, make: Callable[[], Exception], expected: ErrorClass
) -> None:
    """HTTP and LLM APIs judge httpx2's and the SDKs' errors by status, headers and code."""
    assert classifier.classify(make()) is expected


def test_a_foreign_status_is_read_only_by_the_http_kinds() -> None:
    """An httpx2 503 is PERMANENT for a custom kind (it opts in to nothing it does not know)."""
    exc = status_error(503)
    assert ErrorClassifier().classify(exc) is P
    assert DatabaseClassifier().classify(exc) is P
    assert HTTPClassifier().classify(exc) is R


@pytest.mark.anyio
async def test_a_real_refused_connection_through_the_openai_sdk_is_retryable() -> None:
    """The openai SDK's error for a refused loopback connection is RETRYABLE."""
    client = openai.AsyncOpenAI(base_url="http://127.0.0.1:1/v1", api_key="k", max_retries=0)
    try:
        with anyio.fail_after(10), pytest.raises(openai.APIConnectionError) as info:
            await client.models.list()
    finally:
        await client.close()
    assert LLMClassifier().classify(info.value) is R


@pytest.mark.anyio
async def test_a_real_refused_connection_through_httpx2_is_retryable() -> None:
    """httpx2's error for a refused loopback connection is RETRYABLE for every kind."""
    with anyio.fail_after(10):
        async with httpx2.AsyncClient() as client:
            with pytest.raises(httpx2.TransportError) as info:
                await client.get("http://127.0.0.1:1/")
    for kind in KINDS.values():
        assert kind.classifier.classify(info.value) is R


# --- databases ----------------------------------------------------------------------------

DATABASE_ERRORS = [
    pytest.param(psycopg.errors.SerializationFailure, R, id="pg-serialization"),
    pytest.param(psycopg.errors.DeadlockDetected, R, id="pg-deadlock"),
    pytest.param(psycopg.errors.LockNotAvailable, R, id="pg-lock-not-available"),
    pytest.param(psycopg.errors.TooManyConnections, R, id="pg-too-many-connections"),
    pytest.param(psycopg.errors.AdminShutdown, R, id="pg-admin-shutdown"),
    pytest.param(psycopg.errors.CannotConnectNow, R, id="pg-cannot-connect-now"),
    pytest.param(psycopg.errors.ConnectionFailure, R, id="pg-connection-failure"),
    pytest.param(psycopg.errors.UniqueViolation, J, id="pg-unique"),
    pytest.param(psycopg.errors.ForeignKeyViolation, J, id="pg-foreign-key"),
    pytest.param(psycopg.errors.SyntaxError, J, id="pg-syntax"),
    pytest.param(psycopg.errors.UndefinedTable, J, id="pg-undefined-table"),
    pytest.param(psycopg.errors.DivisionByZero, J, id="pg-division-by-zero"),
    pytest.param(psycopg.errors.QueryCanceled, P, id="pg-query-canceled"),
    pytest.param(psycopg.errors.DiskFull, P, id="pg-disk-full"),
    pytest.param(lambda: psycopg.OperationalError("server closed the connection"), R, id="pg-lost"),
    pytest.param(lambda: psycopg_pool.PoolTimeout("no connection"), R, id="pg-pool-timeout"),
    pytest.param(lambda: sqlite3.OperationalError("database is locked"), R, id="sqlite-locked"),
    pytest.param(lambda: sqlite3.IntegrityError("UNIQUE"), J, id="sqlite-integrity-bare"),
    pytest.param(lambda: sqlite3.DatabaseError("file is not a database"), P, id="sqlite-bare"),
    pytest.param(lambda: ValueError("bug"), P, id="unknown"),
]


@pytest.mark.parametrize(("make", "expected"), DATABASE_ERRORS)
def test_database_rule_over_the_real_driver_errors(
    make: Callable[[], Exception], expected: ErrorClass
) -> None:
    """The database kind judges psycopg's and sqlite3's errors by SQLSTATE and type."""
    assert DatabaseClassifier().classify(make()) is expected


def test_a_real_refused_postgres_connection_is_retryable() -> None:
    """psycopg's OperationalError for a refused loopback connection is RETRYABLE."""
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect("host=127.0.0.1 port=1 connect_timeout=5")
    assert DatabaseClassifier().classify(info.value) is R


def _sqlite_failure(path: Path, statement: str, *, lock: bool = False) -> sqlite3.Error:
    holder = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        holder.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY)")
        holder.execute("INSERT OR IGNORE INTO t VALUES (1)")
        if lock:
            holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(sqlite3.Error) as info:
            other.execute(statement)
        return info.value
    finally:
        holder.close()
        other.close()


@pytest.mark.parametrize(
    ("statement", "lock", "name", "expected"),
    [
        pytest.param("SELECT * FROM t", True, "SQLITE_BUSY", R, id="busy"),
        pytest.param("INSERT INTO t VALUES (1)", False, "SQLITE_CONSTRAINT", J, id="constraint"),
        pytest.param("SELEC 1", False, "SQLITE_ERROR", J, id="syntax"),
        pytest.param("SELECT * FROM missing", False, "SQLITE_ERROR", J, id="missing-table"),
    ],
)
def test_real_sqlite_errors_by_their_error_name(
    tmp_path: Path, statement: str, lock: bool, name: str, expected: ErrorClass
) -> None:
    """A real SQLite failure is judged by its ``sqlite_errorname``."""
    exc = _sqlite_failure(tmp_path / "db.sqlite", statement, lock=lock)
    assert exc.sqlite_errorname.startswith(name)
    assert DatabaseClassifier().classify(exc) is expected


# --- MCP tool servers ---------------------------------------------------------------------


class FlaggedToolError(Exception):
    """A tool's own error marked only by ``is_tool_error``."""

    is_tool_error = True


MCP_ERRORS = [
    pytest.param(lambda: MCPError(-32000, "connection closed"), R, id="mcp-connection-closed"),
    pytest.param(lambda: MCPError(-32001, "request timeout"), R, id="mcp-request-timeout"),
    pytest.param(lambda: MCPError(408, "request timeout"), R, id="mcp-sdk-timeout"),
    pytest.param(lambda: MCPError(-32602, "invalid params"), J, id="mcp-invalid-params"),
    pytest.param(lambda: MCPError(-32601, "no such method"), J, id="mcp-method-not-found"),
    pytest.param(lambda: MCPError(-32700, "parse error"), J, id="mcp-parse-error"),
    pytest.param(lambda: MCPError(-32603, "internal"), P, id="mcp-internal"),
    pytest.param(lambda: status_error(503), R, id="http-503"),
    pytest.param(lambda: status_error(404), J, id="http-404"),
    pytest.param(lambda: status_error(401), P, id="http-401"),
    pytest.param(FlaggedToolError, J, id="is_tool_error-flag"),
    pytest.param(lambda: RuntimeError("bug"), P, id="unknown"),
]


@pytest.mark.parametrize(("make", "expected"), MCP_ERRORS)
def test_mcp_rule_over_the_sdk_errors(make: Callable[[], Exception], expected: ErrorClass) -> None:
    """The MCP kind judges mcp's MCPError by JSON-RPC code, HTTP statuses by the HTTP rule."""
    assert MCPClassifier().classify(make()) is expected


def test_mcp_errors_are_only_read_by_the_mcp_kind() -> None:
    """An MCPError carries no field the other kinds read: it is PERMANENT for them."""
    exc = MCPError(-32000, "connection closed")
    assert ErrorClassifier().classify(exc) is P
    assert LLMClassifier().classify(exc) is P


def test_optional_libraries_are_never_imported_by_classification() -> None:
    """Classifying with every kind imports none of the optional libraries."""
    code = (
        "import sys\n"
        "import actors\n"
        "for kind in actors.KINDS.values():\n"
        "    kind.classifier.classify(ValueError())\n"
        "    kind.classifier.classify(TimeoutError())\n"
        "optional = ('openai', 'anthropic', 'httpx2', 'psycopg', 'psycopg_pool', 'mcp')\n"
        "print(sorted(name for name in optional if name in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(("name", "classifier"), [(n, k.classifier) for n, k in KINDS.items()])
def test_each_kind_holds_its_classifier(name: str, classifier: Classifier) -> None:
    """Every kind's classifier is a `Classifier` of that kind."""
    assert isinstance(classifier, Classifier)
    assert type(classifier).kind == name  # type: ignore[attr-defined]


# --- composition with user rules ----------------------------------------------------------


def test_overrides_beat_defaults() -> None:
    """An override replaces the default verdict of a type."""
    classifier = LLMClassifier(overrides={ValueError: R, TimeoutError: P})
    assert classifier.classify(ValueError()) is R
    assert classifier.classify(TimeoutError()) is P


def test_most_specific_override_wins() -> None:
    """The override of the most specific type in the MRO wins."""
    classifier = ErrorClassifier(overrides={OSError: P, ConnectionError: R})
    assert classifier.classify(ConnectionResetError()) is R
    assert classifier.classify(FileNotFoundError()) is P


def test_overrides_accept_pairs() -> None:
    """Overrides may be given as (type, class) pairs."""
    assert ErrorClassifier(overrides=[(KeyError, R)]).classify(KeyError()) is R


def test_custom_function_is_consulted_first() -> None:
    """A custom function decides before overrides and defaults."""
    classifier = LLMClassifier(
        overrides={ValueError: R}, custom=lambda exc: I if isinstance(exc, ValueError) else None
    )
    assert classifier.classify(ValueError()) is I


def test_custom_function_none_falls_through() -> None:
    """A custom function returning None leaves the decision to the defaults."""
    assert LLMClassifier(custom=lambda _exc: None).classify(status_error(503)) is R


def test_a_raising_custom_function_falls_through() -> None:
    """A custom function that raises is ignored: the defaults decide."""

    def broken(_exc: Exception) -> ErrorClass:
        raise RuntimeError("broken rule")

    assert LLMClassifier(custom=broken).classify(status_error(429)) is T


def test_quota_codes_are_configurable() -> None:
    """Custom quota codes (any case) replace the default ones."""
    classifier = LLMClassifier(quota_codes={"Tokens_Exhausted"})
    assert classifier.classify(openai_error(429, code="tokens_exhausted")) is P
    assert classifier.classify(openai_error(429, code="insufficient_quota")) is T


@pytest.mark.parametrize(
    ("make", "field"),
    [
        pytest.param(
            lambda: ErrorClassifier(overrides={"ValueError": R}),  # type: ignore[arg-type]
            "overrides",
            id="str",
        ),
        pytest.param(lambda: ErrorClassifier(overrides={int: R}), "overrides", id="not-exc"),
        pytest.param(
            lambda: ErrorClassifier(overrides={ValueError: "retryable"}),  # type: ignore[arg-type]
            "overrides",
            id="value",
        ),
        pytest.param(lambda: ErrorClassifier(custom=42), "custom", id="custom"),  # type: ignore[arg-type]
        pytest.param(lambda: ErrorClassifier(results=42), "results", id="results"),  # type: ignore[arg-type]
        pytest.param(lambda: HTTPClassifier(quota_codes="quota"), "quota_codes", id="quota-str"),
    ],
)
def test_bad_classifier_config_names_the_field(make: Callable[[], object], field: str) -> None:
    """A bad classifier setting is a ConfigError naming the field."""
    with pytest.raises(ConfigError) as info:
        make()
    assert info.value.field == field


# --- one verdict per failure: mark and verdict_of -----------------------------------------


def test_a_marked_failure_keeps_its_verdict() -> None:
    """`verdict_of` returns the verdict `mark` recorded, whatever the classifier says."""
    exc = ValueError("judged once")
    mark(exc, R)
    assert verdict_of(exc, ErrorClassifier()) is R


def test_an_unmarked_failure_is_judged_by_the_classifier() -> None:
    """Without a mark, `verdict_of` asks the classifier."""
    assert verdict_of(status_error(429), LLMClassifier()) is T
    assert verdict_of(status_error(429), ErrorClassifier()) is P


@pytest.mark.anyio
async def test_the_pipeline_marks_each_failure_with_its_verdict() -> None:
    """A failure leaving `@resilient` carries the verdict its own classifier gave."""

    @resilient(classifier=ErrorClassifier(custom=lambda _exc: J))
    async def fail() -> None:
        raise ValueError("the caller's mistake")

    with pytest.raises(ValueError, match="mistake") as info:
        await fail()
    assert verdict_of(info.value, ErrorClassifier()) is J


@pytest.mark.anyio
@pytest.mark.virtual_time
async def test_cancellation_is_never_classified() -> None:
    """A caller's cancellation reaches no classifier and counts as no failure."""
    seen: list[BaseException] = []

    def record(exc: Exception) -> ErrorClass:
        seen.append(exc)
        return R

    breaker = create_breaker("svc", BreakerConfig())

    @resilient(breaker=breaker, classifier=ErrorClassifier(custom=record))
    async def hang() -> None:
        await anyio.sleep_forever()

    with anyio.move_on_after(1):
        await hang()
    assert seen == []
    metrics = breaker.metrics()
    assert (metrics.failures, metrics.cancelled) == (0, 1)


# --- returned values ----------------------------------------------------------------------


class Reply:
    """A returned value carrying an HTTP status, like a response object."""

    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.headers = headers or {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(Reply(200), None, id="200"),
        pytest.param(Reply(204), None, id="204"),
        pytest.param(Reply(503), R, id="503"),
        pytest.param(Reply(429), T, id="429"),
        pytest.param(Reply(401), P, id="401"),
        pytest.param(Reply(404), J, id="404"),
        pytest.param(Reply(500, {"x-should-retry": "false"}), P, id="500-should-not-retry"),
        pytest.param(response(503), R, id="httpx2-response-503"),
        pytest.param(response(200), None, id="httpx2-response-200"),
        pytest.param("a plain string", None, id="no-status"),
        pytest.param({"status_code": 503}, None, id="a-mapping-is-no-response"),
    ],
)
def test_the_http_kind_judges_returned_values_by_status(
    value: object, expected: ErrorClass | None
) -> None:
    """The HTTP kind judges a returned value with an error status by the HTTP rule."""
    classifier = HTTPClassifier()
    assert classifier.judges_results
    assert classifier.classify_result(value) is expected


@pytest.mark.parametrize(
    "classifier",
    [
        pytest.param(ErrorClassifier(), id="custom"),
        pytest.param(DatabaseClassifier(), id="database"),
        pytest.param(MCPClassifier(), id="mcp"),
    ],
)
def test_other_kinds_take_every_returned_value_as_a_success(classifier: ErrorClassifier) -> None:
    """Without a `results` rule, a non-HTTP kind never judges returned values."""
    assert not classifier.judges_results
    assert classifier.classify_result(Reply(503)) is None


def test_a_results_rule_judges_returned_values() -> None:
    """A `results` function decides which returned values are failures, and of what class."""
    classifier = ErrorClassifier(results=lambda value: R if value == "busy" else None)
    assert classifier.judges_results
    assert classifier.classify_result("busy") is R
    assert classifier.classify_result("done") is None


def test_a_results_rule_replaces_the_http_status_rule() -> None:
    """An HTTP kind given a `results` function uses it instead of the status."""
    classifier = HTTPClassifier(results=lambda value: J if value == "refused" else None)
    assert classifier.classify_result(Reply(503)) is None
    assert classifier.classify_result("refused") is J


def test_a_raising_results_rule_counts_the_value_as_a_success() -> None:
    """A `results` function that raises judges nothing: the value is a success."""

    def broken(_value: object) -> ErrorClass | None:
        raise ZeroDivisionError("a buggy rule")

    classifier = ErrorClassifier(results=broken)
    assert classifier.classify_result("anything") is None


# --- the field readers --------------------------------------------------------------------


def test_status_and_headers_are_read_from_the_response() -> None:
    """Status and headers are read from `.response` when the error lacks them."""
    exc = status_error(502, {"Retry-After": "3"})
    assert status_of(exc) == 502
    assert headers_of(exc) == {"retry-after": "3"}


def test_error_codes_are_collected_lower_case() -> None:
    """Error codes come from the attributes and the body (nested included), lower-cased."""
    exc = anthropic_error(
        anthropic.RateLimitError, 429, "Rate_Limit_Error", error_code="Enforced_Spend_Limit_Reached"
    )
    assert error_codes_of(exc) >= {"error", "rate_limit_error", "enforced_spend_limit_reached"}
    assert error_codes_of(openai_error(429, code="Insufficient_Quota")) == {"insufficient_quota"}


def test_hostile_attributes_do_not_break_classification() -> None:
    """Properties that raise while being read are treated as absent."""

    class Hostile(Exception):
        @property
        def response(self) -> Any:
            raise RuntimeError("no response")

        @property
        def status_code(self) -> Any:
            raise RuntimeError("no status")

        @property
        def headers(self) -> Any:
            raise RuntimeError("no headers")

    for kind in KINDS.values():
        assert kind.classifier.classify(Hostile()) is P


def test_a_hostile_header_mapping_reads_as_no_headers() -> None:
    """Headers whose items() raise are treated as absent."""

    class Headers:
        def items(self) -> Any:
            raise RuntimeError("hostile")

    exc = ServiceResponseError("s", 503)
    exc.headers = Headers()  # type: ignore[assignment]
    assert headers_of(exc) is None
    assert LLMClassifier().classify(exc) is R


@pytest.mark.parametrize("sqlstate", ["42501", "28000", "28P01"])
def test_privilege_and_credential_sqlstates_are_permanent(sqlstate: str) -> None:
    """Insufficient privilege and bad credentials are the service's setup, like a 403."""
    error = QueryError("db", "denied", sqlstate=sqlstate)
    assert DatabaseClassifier().classify(error) is ErrorClass.PERMANENT
