"""RetryPolicy and Retrier: exact backoff, server delays, timeouts, cancellation, events.

`Retrier.call` runs the one resilience pipeline with only its retry layer; the verdicts
come from the retrier's classifier (`ServiceResponseError` is judged alike by every kind).
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import (
    KINDS,
    AttemptTimeout,
    CircuitOpen,
    Classifier,
    ConfigError,
    DatabaseClassifier,
    DeadlineExceeded,
    ErrorClassifier,
    ServiceResponseError,
)
from actors.resilience import Retrier, RetryPolicy, create_retrier
from actors.resilience._retry_after import parse_duration, parse_server_delay, server_delay
from actors.testing import capture_events, retry_testing_mode

pytestmark = pytest.mark.anyio

virtual_time = pytest.mark.virtual_time


def HTTPError(
    status_code: int, headers: dict[str, str] | None = None, *, code: str | None = None
) -> ServiceResponseError:
    """An HTTP failure with status, headers and provider code, as a service client raises it."""
    return ServiceResponseError("svc", status_code, headers=headers, code=code)


class Flaky:
    """Fails with the given exceptions in turn, then returns "ok"; records attempt times."""

    def __init__(self, failures: Iterable[BaseException], *, duration: float = 0.0) -> None:
        self.failures = list(failures)
        self.duration = duration
        self.times: list[float] = []

    async def __call__(self) -> str:
        self.times.append(anyio.current_time())
        if self.duration:
            await anyio.sleep(self.duration)
        if self.failures:
            raise self.failures.pop(0)
        return "ok"

    def offsets(self) -> list[float]:
        return [t - self.times[0] for t in self.times]


def always(exc_factory: Callable[[], BaseException], count: int = 100) -> list[BaseException]:
    return [exc_factory() for _ in range(count)]


def retrier(
    policy: RetryPolicy | None = None,
    *,
    jitter: float = 1.0,
    classifier: Classifier | None = None,
    **kwargs: Any,
) -> Retrier:
    """A retrier whose jitter source always returns `jitter` (1.0 = the full cap)."""
    return create_retrier(
        policy or RetryPolicy(**kwargs),
        service="svc",
        classifier=classifier,
        random=lambda: jitter,
    )


def approx(values: list[float]) -> Any:
    return pytest.approx(values, abs=1e-9)


# --- success path and basic behaviour ------------------------------------------------


async def test_success_returns_the_value_in_one_attempt() -> None:
    """A successful first attempt returns its value and schedules nothing."""
    r = retrier()
    flaky = Flaky([])
    with capture_events() as events:
        assert await r.call(flaky) == "ok"
    assert len(flaky.times) == 1
    assert events == []
    assert r.metrics.calls == 1
    assert r.metrics.retries == 0


async def test_arguments_are_forwarded() -> None:
    """Positional arguments (and partial-bound keywords) reach the function."""

    async def add(a: int, b: int, *, scale: int) -> int:
        return (a + b) * scale

    assert await retrier().call(functools.partial(add, scale=10), 1, 2) == 30


async def test_success_path_never_touches_tenacity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Successful and permanently failing first attempts create no tenacity object."""
    import tenacity

    def forbidden(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("tenacity used")

    monkeypatch.setattr(tenacity, "Retrying", forbidden)
    r = retrier(RetryPolicy.for_llm())
    assert await r.call(Flaky([])) == "ok"
    with pytest.raises(ServiceResponseError):
        await r.call(Flaky([HTTPError(401)]))


async def test_single_attempt_policy_never_retries() -> None:
    """attempts=1 re-raises a retryable failure at once, as an "attempts" give-up."""
    r = retrier(attempts=1)
    flaky = Flaky([TimeoutError()])
    with pytest.raises(TimeoutError):
        await r.call(flaky)
    assert len(flaky.times) == 1
    assert r.metrics.give_ups["attempts"] == 1


@virtual_time
async def test_wrap_forwards_keywords_and_retries() -> None:
    """A wrapped function keeps its name, takes keyword arguments and is retried."""
    r = retrier(attempts=3, backoff_initial=1.0)
    failures = [TimeoutError()]
    times: list[float] = []

    async def scaled(value: int, *, scale: int) -> int:
        """Multiplies."""
        times.append(anyio.current_time())
        if failures:
            raise failures.pop()
        return value * scale

    wrapped = r.wrap(scaled)
    assert wrapped.__name__ == "scaled"
    assert wrapped.__doc__ == "Multiplies."
    assert await wrapped(3, scale=4) == 12
    assert [t - times[0] for t in times] == approx([0.0, 1.0])
    assert r.metrics.calls == 1
    assert r.metrics.retries == 1


@virtual_time
async def test_exact_backoff_sequence_at_full_cap() -> None:
    """With jitter at the cap, delays are initial * multiplier**n, capped at max."""
    r = retrier(attempts=6, backoff_initial=1.0, backoff_multiplier=2.0, backoff_max=5.0)
    flaky = Flaky(always(TimeoutError, 5))
    assert await r.call(flaky) == "ok"
    # delays 1, 2, 4, 5 (capped), 5
    assert flaky.offsets() == approx([0.0, 1.0, 3.0, 7.0, 12.0, 17.0])
    assert r.metrics.retries == 5


@virtual_time
async def test_exact_full_jitter_sequence_with_seeded_rng() -> None:
    """Each delay is uniform(0, cap) drawn from the injected random source."""
    policy = RetryPolicy(attempts=5, backoff_initial=0.5, backoff_max=30.0, budget_ratio=None)
    r = create_retrier(policy, service="svc", random=random.Random(42).random)
    flaky = Flaky(always(TimeoutError, 4))
    await r.call(flaky)
    draws = random.Random(42)
    expected = [0.0]
    for n in range(4):
        expected.append(expected[-1] + draws.random() * min(30.0, 0.5 * 2.0**n))
    assert flaky.offsets() == approx(expected)


@virtual_time
async def test_gives_up_after_attempts_with_last_error_unchanged() -> None:
    """After the last attempt the last failure is re-raised as is, not wrapped."""
    errors = [TimeoutError(f"t{i}") for i in range(3)]
    r = retrier(attempts=3, backoff_initial=0.1)
    flaky = Flaky(errors)
    with pytest.raises(TimeoutError) as info:
        await r.call(flaky)
    assert info.value is errors[2]
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    assert len(flaky.times) == 3
    assert r.metrics.give_ups["attempts"] == 1


async def test_permanent_error_is_not_retried() -> None:
    """A permanent failure is raised after one attempt and counted as a "not_retryable"
    give-up."""
    r = retrier(RetryPolicy.for_llm())
    error = HTTPError(401)
    flaky = Flaky([error])
    with pytest.raises(ServiceResponseError) as info:
        await r.call(flaky)
    assert info.value is error
    assert len(flaky.times) == 1
    assert r.metrics.give_ups["not_retryable"] == 1


@virtual_time
async def test_permanent_error_after_retries_stops() -> None:
    """A permanent failure on a later attempt ends the retries at once."""
    r = retrier(RetryPolicy.for_llm(), jitter=0.0)
    flaky = Flaky([HTTPError(503), HTTPError(400)])
    with pytest.raises(ServiceResponseError) as info:
        await r.call(flaky)
    assert info.value.status_code == 400
    assert len(flaky.times) == 2
    assert r.metrics.retries == 1
    assert r.metrics.give_ups["not_retryable"] == 1


async def test_ignored_error_is_not_retried_nor_a_give_up() -> None:
    """Our own refusals (CircuitOpen) are re-raised at once and not counted as give-ups."""
    r = retrier()
    flaky = Flaky([CircuitOpen("svc", 3.0)])
    with pytest.raises(CircuitOpen):
        await r.call(flaky)
    assert len(flaky.times) == 1
    assert sum(r.metrics.give_ups.values()) == 0


@virtual_time
async def test_quota_429_is_not_retried() -> None:
    """A 429 for an exhausted quota is permanent: one attempt."""
    r = retrier(RetryPolicy.for_llm())
    flaky = Flaky([HTTPError(429, code="insufficient_quota")])
    with pytest.raises(ServiceResponseError):
        await r.call(flaky)
    assert len(flaky.times) == 1


@virtual_time
async def test_x_should_retry_false_overrides_503() -> None:
    """x-should-retry: false makes a 503 final."""
    r = retrier(RetryPolicy.for_llm())
    flaky = Flaky([HTTPError(503, {"x-should-retry": "false"})])
    with pytest.raises(ServiceResponseError):
        await r.call(flaky)
    assert len(flaky.times) == 1


@virtual_time
async def test_x_should_retry_true_overrides_400() -> None:
    """x-should-retry: true makes a 400 retryable."""
    r = retrier(RetryPolicy.for_llm(), jitter=0.0)
    flaky = Flaky([HTTPError(400, {"x-should-retry": "true"})])
    assert await r.call(flaky) == "ok"
    assert len(flaky.times) == 2


@virtual_time
async def test_concurrent_calls_retry_independently() -> None:
    """Concurrent calls through one retrier keep their own attempts and delays."""
    r = retrier(attempts=3, backoff_initial=1.0)
    flakies = [Flaky([TimeoutError()] * (i % 3)) for i in range(30)]
    results: list[str] = []

    async def run(flaky: Flaky) -> None:
        results.append(await r.call(flaky))

    async with anyio.create_task_group() as tg:
        for flaky in flakies:
            tg.start_soon(run, flaky)
    assert results == ["ok"] * 30
    for i, flaky in enumerate(flakies):
        assert flaky.offsets() == approx([0.0, 1.0, 3.0][: i % 3 + 1])
    assert r.metrics.retries == sum(i % 3 for i in range(30))


async def test_real_sqlite_lock_is_retried(tmp_path: Path) -> None:
    """A real "database is locked" error is retried by the database preset and then succeeds."""
    import sqlite3

    path = tmp_path / "db.sqlite"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (v INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    writer = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    errors: list[BaseException] = []

    def insert() -> None:
        try:
            writer.execute("INSERT INTO t VALUES (1)")
        except sqlite3.OperationalError as exc:
            errors.append(exc)
            holder.execute("COMMIT")  # the other writer finishes meanwhile
            raise

    r = create_retrier(RetryPolicy.for_database(), service="db", classifier=DatabaseClassifier())
    try:
        with retry_testing_mode():
            await r.call(anyio.to_thread.run_sync, insert)
        count = holder.execute("SELECT count(*) FROM t").fetchone()[0]
    finally:
        writer.close()
        holder.close()
    assert count == 1
    assert len(errors) == 1
    assert "locked" in str(errors[0])
    assert r.metrics.retries == 1


# --- server-provided delays ----------------------------------------------------------


@virtual_time
@pytest.mark.parametrize(
    ("headers", "delay"),
    [
        pytest.param({"retry-after-ms": "1500"}, 1.5, id="retry-after-ms"),
        pytest.param({"Retry-After": "7"}, 7.0, id="retry-after-seconds"),
        pytest.param(
            {
                "retry-after": "Wed, 21 Oct 2015 07:28:30 GMT",
                "date": "Wed, 21 Oct 2015 07:28:00 GMT",
            },
            30.0,
            id="retry-after-http-date",
        ),
        pytest.param(
            {"x-ratelimit-reset-requests": "2s", "x-ratelimit-remaining-requests": "0"},
            2.0,
            id="ratelimit-reset-requests",
        ),
        pytest.param({"x-ratelimit-reset-tokens": "1m0.5s"}, 60.5, id="ratelimit-reset-tokens"),
    ],
)
async def test_server_delay_is_honoured(headers: dict[str, str], delay: float) -> None:
    """The next attempt waits for the server-requested delay."""
    r = retrier(RetryPolicy.for_llm(max_server_delay=61.0), jitter=0.0)
    flaky = Flaky([HTTPError(429, headers)])
    assert await r.call(flaky) == "ok"
    assert flaky.offsets() == approx([0.0, delay])


@virtual_time
async def test_backoff_wins_when_longer_than_server_delay() -> None:
    """The delay is max(backoff, server delay)."""
    r = retrier(RetryPolicy.for_llm(backoff_initial=4.0), jitter=1.0)
    flaky = Flaky([HTTPError(429, {"retry-after": "1"})])
    await r.call(flaky)
    assert flaky.offsets() == approx([0.0, 4.0])


@virtual_time
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"retry-after": "120"}, id="retry-after"),
        pytest.param({"retry-after-ms": "90000"}, id="retry-after-ms"),
        pytest.param({"x-ratelimit-reset-tokens": "6m0s"}, id="ratelimit-reset"),
    ],
)
async def test_server_delay_beyond_cap_fails_fast(headers: dict[str, str]) -> None:
    """A server delay above max_server_delay re-raises at once, without sleeping."""
    r = retrier(RetryPolicy.for_llm(max_server_delay=60.0))
    error = HTTPError(429, headers)
    start = anyio.current_time()
    with pytest.raises(ServiceResponseError) as info:
        await r.call(Flaky([error]))
    assert info.value is error
    assert anyio.current_time() - start == pytest.approx(0.0, abs=1e-9)
    assert r.metrics.give_ups["delay_cap"] == 1
    assert r.metrics.retries == 0


@virtual_time
async def test_http_date_without_date_header_falls_back_to_backoff() -> None:
    """A retry-after HTTP date is ignored when the response has no date header."""
    r = retrier(RetryPolicy.for_llm(), jitter=1.0)
    flaky = Flaky([HTTPError(503, {"retry-after": "Wed, 21 Oct 2099 07:28:00 GMT"})])
    await r.call(flaky)
    assert flaky.offsets() == approx([0.0, 0.5])


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("0.5", 0.5),
        ("", None),
        ("abc", None),
        ("5x", None),
        ("-1s", None),
        ("1s junk", None),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    """Go-style rate-limit reset durations parse to seconds; junk gives None."""
    assert parse_duration(text) == (None if seconds is None else pytest.approx(seconds))


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        pytest.param({"retry-after-ms": "250", "retry-after": "9"}, 0.25, id="ms-first"),
        pytest.param({"retry-after": "-3"}, None, id="negative"),
        pytest.param({"retry-after": "nan"}, None, id="nan"),
        pytest.param({"retry-after": "inf"}, None, id="inf"),
        pytest.param({"retry-after": "soon", "date": "x"}, None, id="junk-date"),
        pytest.param(
            {
                "retry-after": "Wed, 21 Oct 2015 07:28:00 GMT",
                "date": "Wed, 21 Oct 2015 07:29:00 GMT",
            },
            0.0,
            id="date-in-past",
        ),
        pytest.param(
            {"x-ratelimit-reset-requests": "3s", "x-ratelimit-remaining-requests": "12"},
            None,
            id="reset-with-remaining",
        ),
        pytest.param(
            {"x-ratelimit-reset-requests": "3s", "x-ratelimit-reset-tokens": "5s"},
            5.0,
            id="largest-reset",
        ),
        pytest.param({}, None, id="none"),
    ],
)
def test_parse_server_delay(headers: dict[str, str], seconds: float | None) -> None:
    """Server delay headers are read in precedence order; bad values are ignored."""
    assert parse_server_delay(headers) == seconds


_DELAY_HEADERS = [
    "retry-after",
    "retry-after-ms",
    "date",
    "x-ratelimit-reset-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-tokens",
    "x-ratelimit-remaining-tokens",
]
_DELAY_VALUES = st.one_of(
    st.text(max_size=30),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**400), 10**400).map(str),
    st.sampled_from(["0", "1e400", "-1", "6m0s", "1h2m3.5s", ".5ms", "1..s", "9" * 400 + "h"]),
    st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")),
    st.just("Mon, 01 Dec 2025 10:00:00 GMT"),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_DELAY_HEADERS) | st.text(max_size=10), _DELAY_VALUES))
def test_any_headers_give_a_sane_server_delay_or_none(headers: dict[str, str]) -> None:
    """Whatever the headers say, the delay is None or a finite number of seconds >= 0."""
    delay = parse_server_delay(headers)
    assert delay is None or (math.isfinite(delay) and delay >= 0)
    for text in headers.values():
        duration = parse_duration(text)
        assert duration is None or (math.isfinite(duration) and duration >= 0)


def test_server_delay_reads_retry_after_attribute() -> None:
    """A numeric retry_after attribute is a server delay when no header says otherwise."""
    assert server_delay(CircuitOpen("x", 2.5)) == 2.5


def test_server_delay_reads_real_httpx_response_headers() -> None:
    """The delay is read from an httpx HTTPStatusError's response headers."""
    request = httpx2.Request("GET", "https://api.example.com/")
    response = httpx2.Response(429, headers={"Retry-After-Ms": "2500"}, request=request)
    exc = httpx2.HTTPStatusError("429", request=request, response=response)
    assert server_delay(exc) == 2.5


@settings(max_examples=100, deadline=None)
@given(
    initial=st.floats(0, 100),
    extra=st.floats(0, 100),
    multiplier=st.floats(1, 10),
    retry=st.integers(0, 5000),
)
def test_backoff_cap_is_bounded_and_non_decreasing(
    initial: float, extra: float, multiplier: float, retry: int
) -> None:
    """The jitter cap never exceeds backoff_max and never shrinks from one retry to the next."""
    policy = RetryPolicy(
        backoff_initial=initial, backoff_max=initial + extra, backoff_multiplier=multiplier
    )
    assert 0 <= policy.backoff_cap(retry) <= policy.backoff_max
    assert policy.backoff_cap(retry) <= policy.backoff_cap(retry + 1)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=40, deadline=None)
@given(
    attempts=st.integers(1, 6),
    initial=st.sampled_from([0.0, 0.1, 1.0]),
    maximum=st.sampled_from([1.0, 5.0]),
    deadline=st.none() | st.sampled_from([0.5, 2.0, 7.5]),
    server=st.lists(st.none() | st.sampled_from([0.0, 0.3, 3.0, 100.0]), min_size=6, max_size=6),
    failures=st.integers(0, 6),
    seed=st.integers(0, 2**16),
)
def test_retry_invariants(
    backend: str,
    attempts: int,
    initial: float,
    maximum: float,
    deadline: float | None,
    server: list[float | None],
    failures: int,
    seed: int,
) -> None:
    """Attempts, delays and deadline stay within the policy; giving up re-raises the last error."""
    from actors.testing import virtual_time_backend

    policy = RetryPolicy.for_llm(
        attempts=attempts, backoff_initial=initial, backoff_max=maximum, max_server_delay=10.0
    )
    errors = [
        HTTPError(503, {} if delay is None else {"retry-after": str(delay)}) for delay in server
    ][:failures]
    outcome: dict[str, Any] = {}

    async def main() -> None:
        r = create_retrier(policy, service="svc", random=random.Random(seed).random)
        flaky = Flaky(list(errors))
        start = anyio.current_time()
        limit = None if deadline is None else start + deadline
        try:
            outcome["result"] = await r.call(flaky, deadline=limit)
        except ServiceResponseError as exc:
            outcome["error"] = exc
        outcome["times"] = flaky.offsets()
        outcome["elapsed"] = anyio.current_time() - start

    name, options = virtual_time_backend(backend)
    anyio.run(main, backend=name, backend_options=options)
    times: list[float] = outcome["times"]
    assert 1 <= len(times) <= attempts
    if deadline is not None:
        assert outcome["elapsed"] < deadline + 1e-9 or len(times) == 1
    for n, (before, after) in enumerate(itertools.pairwise(times)):
        requested = server[n] or 0.0
        assert requested <= 10.0
        assert after - before <= max(policy.backoff_cap(n), requested) + 1e-9
        assert after - before >= requested - 1e-9
    if "error" in outcome:
        assert outcome["error"] is errors[len(times) - 1]
    else:
        assert len(times) == failures + 1


# --- deadlines ---------------------------------------------------------------------


@virtual_time
async def test_no_sleep_past_the_callers_deadline() -> None:
    """When the next delay would end past the caller's deadline, the last error is raised."""
    r = retrier(attempts=10, backoff_initial=0.5)
    flaky = Flaky(always(TimeoutError))
    start = anyio.current_time()
    with pytest.raises(TimeoutError):
        await r.call(flaky, deadline=start + 2.0)
    # delays 0.5 and 1.0 fit (t=1.5); the next (2.0) would end at 3.5 > 2.0.
    assert flaky.offsets() == approx([0.0, 0.5, 1.5])
    assert anyio.current_time() - start == pytest.approx(1.5, abs=1e-9)
    assert r.metrics.give_ups["deadline"] == 1


@virtual_time
async def test_policy_timeout_counts_from_the_call_start() -> None:
    """The policy's overall timeout limits retries like a caller's deadline."""
    r = retrier(attempts=10, backoff_initial=1.0, timeout=5.0)
    flaky = Flaky(always(TimeoutError))
    start = anyio.current_time()
    with pytest.raises(TimeoutError):
        await r.call(flaky)
    # delays 1, 2 fit (t=3); 4 would end at 7 > 5.
    assert flaky.offsets() == approx([0.0, 1.0, 3.0])
    assert anyio.current_time() - start == pytest.approx(3.0, abs=1e-9)
    assert r.metrics.give_ups["deadline"] == 1


@virtual_time
async def test_earlier_of_the_two_deadlines_wins() -> None:
    """The caller's deadline applies when it is earlier than the policy's timeout."""
    r = retrier(attempts=10, backoff_initial=1.0, timeout=100.0)
    flaky = Flaky(always(TimeoutError))
    with pytest.raises(TimeoutError):
        await r.call(flaky, deadline=anyio.current_time() + 1.5)
    assert flaky.offsets() == approx([0.0, 1.0])


@virtual_time
async def test_handled_messages_deadline_applies_without_argument() -> None:
    """Inside an actor handler the envelope's deadline limits retries by itself."""
    from actors import Actor, open_actor

    r = retrier(attempts=10, backoff_initial=1.0)
    flaky = Flaky(always(TimeoutError))

    class Retries(Actor[None, str]):
        async def handle(self, msg: None) -> str:
            try:
                await r.call(flaky)
            except TimeoutError:
                return "gave up"
            return "answered"

    async with open_actor(Retries()) as ref:
        assert await ref.call(None, timeout=1.5) == "gave up"
    assert flaky.offsets() == approx([0.0, 1.0])


@virtual_time
async def test_no_retry_after_the_deadline_has_passed() -> None:
    """An attempt that ends after the deadline is not retried, even with zero delay."""
    r = retrier(attempts=5, backoff_initial=0.0, backoff_max=0.0)
    flaky = Flaky(always(TimeoutError), duration=3.0)
    start = anyio.current_time()
    with pytest.raises(TimeoutError):
        await r.call(flaky, deadline=start + 2.0)
    assert len(flaky.times) == 1
    assert anyio.current_time() - start == pytest.approx(3.0, abs=1e-9)


async def hang() -> None:
    await anyio.sleep_forever()


@virtual_time
async def test_attempt_timeout_bounds_each_attempt() -> None:
    """A per-attempt timeout turns a hang into a retried `AttemptTimeout`."""
    r = retrier(attempts=3, attempt_timeout=1.0, backoff_initial=0.0, backoff_max=0.0)
    start = anyio.current_time()
    with pytest.raises(AttemptTimeout) as info:
        await r.call(hang)
    assert anyio.current_time() - start == pytest.approx(3.0, abs=1e-9)
    assert r.metrics.retries == 2
    assert r.metrics.give_ups["attempts"] == 1
    assert (info.value.service, info.value.timeout) == ("svc", 1.0)


@virtual_time
async def test_policy_timeout_cuts_the_attempt_in_flight() -> None:
    """`timeout=1.0, attempt_timeout=0.8` against a hang ends at exactly 1.0 s with
    `DeadlineExceeded`, chained from the first attempt's `AttemptTimeout`."""
    r = retrier(attempts=5, timeout=1.0, attempt_timeout=0.8, backoff_initial=0.0, backoff_max=0.0)
    start = anyio.current_time()
    with pytest.raises(DeadlineExceeded) as info:
        await r.call(hang)
    assert anyio.current_time() - start == pytest.approx(1.0, abs=1e-9)
    assert isinstance(info.value.__cause__, AttemptTimeout)
    assert (info.value.name, info.value.timeout) == ("svc", 1.0)
    assert r.metrics.retries == 1
    assert r.metrics.give_ups["deadline"] == 1


@virtual_time
async def test_policy_timeout_cuts_a_single_slow_attempt() -> None:
    """A first attempt still running at the policy's timeout is cancelled there."""
    r = retrier(attempts=3, timeout=2.0)
    flaky = Flaky([], duration=3.0)
    start = anyio.current_time()
    with pytest.raises(DeadlineExceeded) as info:
        await r.call(flaky)
    assert anyio.current_time() - start == pytest.approx(2.0, abs=1e-9)
    assert info.value.__cause__ is None
    assert r.metrics.retries == 0
    assert r.metrics.give_ups["deadline"] == 1


@virtual_time
async def test_no_sleep_into_an_enclosing_cancel_scope_deadline() -> None:
    """Under `anyio.fail_after`, a retry whose sleep would outlast it gives up at once
    with the last failure instead of sleeping into the cancellation."""
    r = retrier(attempts=10, backoff_initial=1.0)
    errors = [TimeoutError(f"t{i}") for i in range(10)]
    flaky = Flaky(errors)
    start = anyio.current_time()
    with anyio.fail_after(1.5), pytest.raises(TimeoutError) as info:
        await r.call(flaky)
    # the 1 s delay fits (t=1); the next, 2 s, would end at 3 > 1.5.
    assert info.value is errors[1]
    assert anyio.current_time() - start == pytest.approx(1.0, abs=1e-9)
    assert r.metrics.give_ups["deadline"] == 1


# --- cancellation ------------------------------------------------------------------


@virtual_time
async def test_cancellation_during_an_attempt_is_not_retried() -> None:
    """A caller's cancellation ends the call after one attempt and counts nothing."""
    r = retrier()
    attempts: list[float] = []

    async def hang() -> None:
        attempts.append(anyio.current_time())
        await anyio.sleep_forever()

    with capture_events() as events, anyio.move_on_after(1.0) as scope:
        await r.call(hang)
    assert scope.cancelled_caught
    assert len(attempts) == 1
    assert r.metrics.retries == 0
    assert sum(r.metrics.give_ups.values()) == 0
    assert events == []


@virtual_time
async def test_cancellation_during_a_retry_sleep_stops_retrying() -> None:
    """Cancelling while the retrier sleeps propagates at once; no further attempt runs."""
    r = retrier(attempts=5, backoff_initial=10.0, backoff_max=10.0)
    flaky = Flaky(always(TimeoutError))
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:  # cancelled by hand: no deadline to foresee
        tg.start_soon(r.call, flaky)
        await anyio.sleep(2.0)
        tg.cancel_scope.cancel()
    assert len(flaky.times) == 1
    assert anyio.current_time() - start == pytest.approx(2.0, abs=1e-9)
    assert r.metrics.retries == 1
    assert sum(r.metrics.give_ups.values()) == 0


async def test_cancellation_raised_by_the_function_is_not_retried() -> None:
    """A cancel scope cancelled from inside the function ends the call after one attempt."""
    r = retrier()
    calls = 0
    with anyio.CancelScope() as scope:

        async def cancel_self() -> None:
            nonlocal calls
            calls += 1
            scope.cancel()
            await anyio.sleep(1)

        await r.call(cancel_self)
    assert scope.cancelled_caught
    assert calls == 1
    assert r.metrics.retries == 0
    assert sum(r.metrics.give_ups.values()) == 0


# --- events ------------------------------------------------------------------------


@virtual_time
async def test_retry_events_carry_the_correlation_id() -> None:
    """Each retry is a retry.scheduled event; giving up is retry.gave_up; both correlated."""
    r = retrier(attempts=3, backoff_initial=1.0)
    flaky = Flaky(always(TimeoutError))
    with (
        capture_events() as events,
        structlog.contextvars.bound_contextvars(correlation_id="c-1"),
        pytest.raises(TimeoutError),
    ):
        await r.call(flaky)
    assert events == [
        {
            "event": "retry.scheduled",
            "log_level": "warning",
            "service": "svc",
            "attempt": 1,
            "delay": 1.0,
            "error": "TimeoutError",
            "correlation_id": "c-1",
        },
        {
            "event": "retry.scheduled",
            "log_level": "warning",
            "service": "svc",
            "attempt": 2,
            "delay": 2.0,
            "error": "TimeoutError",
            "correlation_id": "c-1",
        },
        {
            "event": "retry.gave_up",
            "log_level": "warning",
            "service": "svc",
            "reason": "attempts",
            "attempts": 3,
            "error": "TimeoutError",
            "correlation_id": "c-1",
        },
    ]


@virtual_time
async def test_retry_event_reports_server_delay() -> None:
    """A retry that honours a server delay says so in its event."""
    r = retrier(RetryPolicy.for_llm(), jitter=0.0)
    with capture_events() as events:
        await r.call(Flaky([HTTPError(429, {"retry-after": "3"})]))
    assert events[0]["server_delay"] == 3.0
    assert events[0]["delay"] == 3.0


# --- testing mode ------------------------------------------------------------------


@virtual_time
async def test_testing_mode_removes_delays() -> None:
    """In retry testing mode retries happen without sleeping."""
    r = retrier(RetryPolicy.for_llm())
    flaky = Flaky([HTTPError(503), HTTPError(429, {"retry-after": "30"})])
    with retry_testing_mode():
        assert await r.call(flaky) == "ok"
    assert flaky.offsets() == approx([0.0, 0.0, 0.0])


@virtual_time
async def test_testing_mode_can_cap_attempts() -> None:
    """Retry testing mode can cap the number of attempts."""
    r = retrier(RetryPolicy.for_llm())
    flaky = Flaky(always(TimeoutError))
    with retry_testing_mode(attempts=2), pytest.raises(TimeoutError):
        await r.call(flaky)
    assert len(flaky.times) == 2


@virtual_time
async def test_testing_mode_restores_the_previous_mode() -> None:
    """Leaving (nested) retry testing mode restores the previous mode."""
    r = retrier(attempts=3, backoff_initial=1.0)
    with retry_testing_mode(attempts=1):
        with retry_testing_mode():
            inner = Flaky([TimeoutError()])
            await r.call(inner)
        outer = Flaky([TimeoutError()])
        with pytest.raises(TimeoutError):
            await r.call(outer)
    after = Flaky([TimeoutError()])
    await r.call(after)
    assert inner.offsets() == approx([0.0, 0.0])
    assert len(outer.times) == 1
    assert after.offsets() == approx([0.0, 1.0])


# --- configuration -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "factory", "attempts", "initial", "maximum"),
    [
        ("llm", RetryPolicy.for_llm, 4, 0.5, 30.0),
        ("http", RetryPolicy.for_http, 3, 0.2, 10.0),
        ("database", RetryPolicy.for_database, 3, 0.05, 2.0),
        ("mcp", RetryPolicy.for_mcp, 3, 0.2, 5.0),
    ],
    ids=["llm", "http", "database", "mcp"],
)
def test_presets(
    kind: str, factory: Callable[..., RetryPolicy], attempts: int, initial: float, maximum: float
) -> None:
    """Each preset is its kind's retry policy (`actors.KINDS`), as DESIGN.md tabulates it."""
    policy = factory()
    assert policy == KINDS[kind].retry
    assert (policy.attempts, policy.backoff_initial, policy.backoff_max) == (
        attempts,
        initial,
        maximum,
    )


@pytest.mark.parametrize("kind", ["llm", "http", "database", "mcp"])
def test_preset_timeouts_nest_so_detection_fires(kind: str) -> None:
    """Each kind's slow-call threshold < attempt timeout (where it has one) < call timeout."""
    preset = KINDS[kind]
    attempt_timeout = preset.retry.attempt_timeout
    call_timeout = preset.actor.call_timeout
    assert call_timeout is not None
    assert preset.breaker.slow_call_duration < (attempt_timeout or call_timeout)
    assert (attempt_timeout or 0.0) < call_timeout


def test_the_retrier_alone_judges_with_its_classifier() -> None:
    """`create_retrier` defaults to the custom kind's classifier."""
    assert isinstance(create_retrier(RetryPolicy()).classifier, ErrorClassifier)
    db = DatabaseClassifier()
    assert create_retrier(RetryPolicy(), classifier=db).classifier is db


def test_preset_accepts_changes() -> None:
    """A preset takes keyword changes on top of its defaults."""
    policy = RetryPolicy.for_llm(attempts=6)
    assert policy.attempts == 6
    assert policy.backoff_max == 30.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("attempts", 0),
        ("attempts", -1),
        ("attempts", 2.5),
        ("attempts", True),
        ("timeout", 0),
        ("timeout", -1.0),
        ("timeout", float("inf")),
        ("attempt_timeout", -0.1),
        ("backoff_initial", -1.0),
        ("backoff_max", -1.0),
        ("backoff_max", 0.01),
        ("backoff_multiplier", 0.5),
        ("max_server_delay", -5.0),
        ("budget_ratio", 1.5),
        ("budget_ratio", -0.1),
        ("budget_ratio", float("nan")),
        ("budget_min_per_second", -1.0),
        ("budget_ttl", 0.0),
        ("budget_ttl", float("inf")),
    ],
)
def test_bad_config_names_field_and_value(field: str, value: Any) -> None:
    """Invalid policy values raise ConfigError naming the field and the value."""
    with pytest.raises(ConfigError) as info:
        RetryPolicy(**{field: value})
    assert info.value.field == field
    assert info.value.value is value


def test_bad_testing_mode_attempts() -> None:
    """Testing mode rejects zero attempts."""
    with pytest.raises(ConfigError), retry_testing_mode(attempts=0):
        pass
