"""The circuit breaker: transitions, windows, half-open permits, cancellation, events."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import anyio
import pytest

from actors import (
    KINDS,
    CircuitOpen,
    ConfigError,
    ErrorClass,
    ErrorClassifier,
    LLMClassifier,
    ServiceResponseError,
)
from actors.resilience import (
    BreakerConfig,
    BreakerRecord,
    BreakerRegistry,
    BreakerState,
    BreakerTransition,
    CircuitBreaker,
    InMemoryBreakerStore,
    create_breaker,
)
from actors.testing import capture_events

pytestmark = pytest.mark.anyio

# A small count-window config: 10 calls, rates applied from 4 calls, open 10 s, 2 permits.
SMALL: dict[str, Any] = {
    "window_size": 10,
    "minimum_calls": 4,
    "failure_rate_threshold": 0.5,
    "slow_call_duration": 5.0,
    "slow_call_rate_threshold": 0.5,
    "open_duration": 10.0,
    "open_backoff_multiplier": 2.0,
    "max_open_duration": 35.0,
    "open_jitter": 0.0,
    "half_open_permits": 2,
    "half_open_max_wait": 100.0,
}


def state_of(breaker: CircuitBreaker) -> BreakerState:
    """The breaker's state (a function, so mypy does not narrow it between asserts)."""
    return breaker.state


def make(name: str = "svc", **overrides: Any) -> CircuitBreaker:
    """A breaker on SMALL (plus overrides), created at time 0."""
    return create_breaker(name, BreakerConfig(**(SMALL | overrides)), now=0.0)


def fail(breaker: CircuitBreaker, n: int, now: float = 0.0) -> None:
    for _ in range(n):
        breaker.on_failure(breaker.acquire(now), now=now)


def succeed(breaker: CircuitBreaker, n: int, now: float = 0.0, duration: float = 0.0) -> None:
    for _ in range(n):
        breaker.on_success(breaker.acquire(now), duration, now=now)


def tripped(**overrides: Any) -> CircuitBreaker:
    """A breaker that opened at time 0 (4 failures out of 4)."""
    breaker = make(**overrides)
    fail(breaker, 4)
    assert state_of(breaker) is BreakerState.OPEN
    return breaker


# --------------------------------------------------------------------- config


def test_default_config_is_valid() -> None:
    """The default config builds and uses a count window."""
    config = BreakerConfig()
    assert config.window == "count"
    assert config.minimum_calls <= config.window_size


def test_llm_preset_matches_design_table() -> None:
    """The LLM preset is 50 % over a 60 s window, min 20, slow > 60 s, open 30 s, 3 permits."""
    config = BreakerConfig.for_llm()
    assert (config.window, config.window_size) == ("time", 60)
    assert config.failure_rate_threshold == 0.5
    assert config.minimum_calls == 20
    assert config.slow_call_duration == 60.0
    assert config.open_duration == 30.0
    assert config.open_backoff_multiplier > 1
    assert config.half_open_permits == 3


def test_database_preset_matches_design_table() -> None:
    """The database preset opens on consecutive failures or the rate over 20 calls, for 5 s."""
    config = BreakerConfig.for_database()
    assert (config.window, config.window_size) == ("count", 20)
    assert config.consecutive_failures == 5
    assert config.open_duration == 5.0


def test_mcp_preset_matches_design_table() -> None:
    """The MCP preset opens on the rate over 20 calls, for 10 s."""
    config = BreakerConfig.for_mcp()
    assert (config.window, config.window_size) == ("count", 20)
    assert config.consecutive_failures is None
    assert config.open_duration == 10.0


def test_http_preset_matches_its_kind() -> None:
    """The HTTP preset is 50 % over a 60 s window, slow > 10 s, open 15 s."""
    config = BreakerConfig.for_http()
    assert (config.window, config.window_size) == ("time", 60)
    assert config.slow_call_duration == 10.0
    assert config.open_duration == 15.0


@pytest.mark.parametrize("kind", ["llm", "http", "database", "mcp"])
def test_presets_are_read_from_the_kinds_table(kind: str) -> None:
    """Every `BreakerConfig.for_<kind>()` is its kind's breaker (`actors.KINDS`)."""
    assert getattr(BreakerConfig, f"for_{kind}")() == KINDS[kind].breaker


@pytest.mark.parametrize("field", ["record_exception", "ignore"])
def test_outcome_predicates_are_gone_from_the_config(field: str) -> None:
    """Which outcomes count is the pipeline's classifier's decision, not a breaker field."""
    with pytest.raises(TypeError, match=field):
        BreakerConfig(**{field: lambda _exc: True})  # type: ignore[arg-type]


def test_preset_accepts_overrides() -> None:
    """A preset's fields can be overridden by keyword."""
    assert BreakerConfig.for_llm(half_open_permits=1).half_open_permits == 1


def test_preset_override_is_validated() -> None:
    """A bad override of a preset raises ConfigError too."""
    with pytest.raises(ConfigError) as info:
        BreakerConfig.for_mcp(open_duration=-1)
    assert info.value.field == "open_duration"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("window", "sliding"),
        ("window_size", 0),
        ("window_size", 2.5),
        ("failure_rate_threshold", 0),
        ("failure_rate_threshold", 1.5),
        ("failure_rate_threshold", -0.1),
        ("slow_call_rate_threshold", 0),
        ("slow_call_rate_threshold", 2),
        ("slow_call_duration", -1.0),
        ("slow_call_duration", 0),
        ("minimum_calls", 0),
        ("minimum_calls", 101),
        ("consecutive_failures", 0),
        ("open_duration", -5.0),
        ("open_duration", 0),
        ("open_duration", math.inf),
        ("open_duration", "30"),
        ("open_backoff_multiplier", 0.5),
        ("open_backoff_multiplier", math.inf),
        ("max_open_duration", 10.0),
        ("open_jitter", 1.0),
        ("open_jitter", -0.1),
        ("half_open_permits", 0),
        ("half_open_permits", -3),
        ("half_open_max_wait", 0),
        ("half_open_max_wait", -1),
    ],
)
def test_bad_config_names_field_and_value(field: str, value: object) -> None:
    """An invalid value raises ConfigError naming the field and the value."""
    with pytest.raises(ConfigError) as info:
        BreakerConfig(**cast("dict[str, Any]", {field: value}))
    assert info.value.field == field
    assert info.value.value == value
    assert field in str(info.value)
    assert repr(value) in str(info.value)


def test_nan_threshold_is_rejected() -> None:
    """A NaN threshold raises ConfigError naming the field."""
    with pytest.raises(ConfigError) as info:
        BreakerConfig(failure_rate_threshold=math.nan)
    assert info.value.field == "failure_rate_threshold"


def test_time_window_allows_minimum_above_window_size() -> None:
    """In a time window, minimum_calls is a call count and may exceed the seconds."""
    assert BreakerConfig(window="time", window_size=10, minimum_calls=50).minimum_calls == 50


# --------------------------------------------------------------------- closed → open


def test_closed_permits_calls() -> None:
    """A new breaker is closed and permits calls."""
    breaker = make()
    assert state_of(breaker) is BreakerState.CLOSED
    breaker.on_success(breaker.acquire(0.0), now=0.0)
    assert breaker.metrics(0.0).successes == 1


def test_failures_below_minimum_calls_do_not_open() -> None:
    """Failures below minimum_calls never open the breaker, even at a 100 % rate."""
    breaker = make()
    fail(breaker, 3)
    assert state_of(breaker) is BreakerState.CLOSED


def test_failure_rate_opens_once_minimum_reached() -> None:
    """The breaker opens on the call that reaches minimum_calls with the rate at threshold."""
    breaker = make()
    succeed(breaker, 2)
    fail(breaker, 1)
    assert state_of(breaker) is BreakerState.CLOSED
    fail(breaker, 1)  # 2 of 4 = 50 %
    assert state_of(breaker) is BreakerState.OPEN


def test_success_reaching_minimum_can_open() -> None:
    """A success that brings the window to minimum_calls still opens a failing breaker."""
    breaker = make()
    fail(breaker, 3)
    succeed(breaker, 1)  # 3 of 4 failed
    assert state_of(breaker) is BreakerState.OPEN


def test_rate_below_threshold_stays_closed() -> None:
    """A failure rate below the threshold keeps the breaker closed."""
    breaker = make()
    succeed(breaker, 6)
    fail(breaker, 4)  # 40 %
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.metrics(0.0).failure_rate == pytest.approx(0.4)


def test_count_window_forgets_old_calls() -> None:
    """Outcomes older than the last window_size calls no longer count."""
    breaker = make(failure_rate_threshold=0.6, minimum_calls=10)
    fail(breaker, 5)
    succeed(breaker, 5)  # 50 %, under 60 %
    succeed(breaker, 5)  # the 5 failures slid out
    metrics = breaker.metrics(0.0)
    assert (metrics.buffered_calls, metrics.buffered_failures) == (10, 0)


def test_slow_call_rate_opens() -> None:
    """Slow successes at the slow-call rate threshold open the breaker."""
    breaker = make()
    succeed(breaker, 2)
    succeed(breaker, 2, duration=6.0)
    assert state_of(breaker) is BreakerState.OPEN
    assert breaker.metrics(0.0).slow_successes == 2


def test_call_exactly_at_slow_duration_is_not_slow() -> None:
    """A call lasting exactly slow_call_duration is not slow (slow means longer)."""
    breaker = make()
    succeed(breaker, 4, duration=5.0)
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.metrics(0.0).slow_successes == 0


def test_consecutive_failures_open_before_minimum() -> None:
    """consecutive_failures opens the breaker even below minimum_calls."""
    breaker = make(window_size=20, minimum_calls=20, consecutive_failures=3)
    fail(breaker, 2)
    succeed(breaker, 1)
    fail(breaker, 2)
    assert state_of(breaker) is BreakerState.CLOSED
    fail(breaker, 1)
    assert state_of(breaker) is BreakerState.OPEN


def test_open_event_carries_rates() -> None:
    """Opening emits breaker.opened with the name, states and rates."""
    breaker = make()
    with capture_events() as events:
        fail(breaker, 4)
    (event,) = [e for e in events if e["event"] == "breaker.opened"]
    assert event["name"] == "svc"
    assert (event["from_state"], event["to_state"]) == ("closed", "open")
    assert event["failure_rate"] == 1.0
    assert event["slow_call_rate"] == 0.0
    assert event["reason"] == "failure_rate"
    assert event["open_duration"] == 10.0


def test_time_window_drops_old_buckets() -> None:
    """In a time window, failures older than window_size seconds no longer count."""
    breaker = make(window="time", window_size=10)
    fail(breaker, 3, now=0.5)
    fail(breaker, 1, now=10.2)  # bucket 0 slid out at t=10
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.metrics(10.2).buffered_calls == 1


def test_time_window_counts_calls_within_window() -> None:
    """In a time window, failures within window_size seconds add up."""
    breaker = make(window="time", window_size=10)
    fail(breaker, 3, now=0.5)
    fail(breaker, 1, now=9.9)
    assert state_of(breaker) is BreakerState.OPEN


def test_time_window_eviction_can_open_on_success() -> None:
    """A success that makes old successes slide out of a time window can open it."""
    breaker = make(window="time", window_size=10, minimum_calls=2)
    succeed(breaker, 3, now=0.5)
    fail(breaker, 1, now=5.0)  # 1 of 4
    assert state_of(breaker) is BreakerState.CLOSED
    succeed(breaker, 1, now=10.5)  # bucket 0 slid out: 1 of 2
    assert state_of(breaker) is BreakerState.OPEN


# --------------------------------------------------------------------- open


def test_open_rejects_with_remaining_time() -> None:
    """An open breaker rejects at once with retry_after = the time left open."""
    breaker = tripped()
    with pytest.raises(CircuitOpen) as info:
        breaker.acquire(3.0)
    assert info.value.name == "svc"
    assert info.value.retry_after == pytest.approx(7.0)
    assert breaker.metrics(3.0).not_permitted == 1


def test_open_metrics_report_retry_after() -> None:
    """The metrics of an open breaker say how long it stays open."""
    metrics = tripped().metrics(4.0)
    assert metrics.state is BreakerState.OPEN
    assert metrics.retry_after == pytest.approx(6.0)
    assert metrics.open_duration == 10.0
    assert metrics.time_in_state == pytest.approx(4.0)


def test_open_half_opens_after_open_duration() -> None:
    """The first acquire after the open duration half-opens the breaker."""
    breaker = tripped()
    with capture_events() as events:
        breaker.acquire(10.0)
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert [e["event"] for e in events] == ["breaker.half_opened"]


# --------------------------------------------------------------------- half-open


def test_half_open_admits_exactly_n_permits() -> None:
    """Half-open admits half_open_permits calls and rejects the next at once."""
    breaker = tripped()
    breaker.acquire(10.0)
    breaker.acquire(10.0)
    with pytest.raises(CircuitOpen) as info:
        breaker.acquire(10.0)
    assert 0 < info.value.retry_after <= 10.0


def test_half_open_rejection_retry_after_is_bounded_by_expiry() -> None:
    """A half-open rejection's retry_after is at most the time until permits expire."""
    breaker = tripped(half_open_max_wait=4.0)
    breaker.acquire(10.0)
    breaker.acquire(11.0)
    with pytest.raises(CircuitOpen) as info:
        breaker.acquire(12.0)
    assert info.value.retry_after == pytest.approx(3.0)


def test_half_open_closes_after_successful_trials() -> None:
    """N successful trial calls close the breaker and emit breaker.closed."""
    breaker = tripped()
    permits = [breaker.acquire(10.0), breaker.acquire(10.0)]
    breaker.on_success(permits[0], now=11.0)
    assert state_of(breaker) is BreakerState.HALF_OPEN
    with capture_events() as events:
        breaker.on_success(permits[1], now=11.0)
    assert breaker.metrics(11.0).state is BreakerState.CLOSED
    assert [e["event"] for e in events] == ["breaker.closed"]
    assert breaker.metrics(11.0).buffered_calls == 0


def test_half_open_reopens_on_trial_failures() -> None:
    """Trial failures at the threshold re-open the breaker."""
    breaker = tripped()
    permits = [breaker.acquire(10.0), breaker.acquire(10.0)]
    breaker.on_success(permits[0], now=11.0)
    breaker.on_failure(permits[1], now=11.0)  # 1 of 2 = 50 %
    assert state_of(breaker) is BreakerState.OPEN


def test_half_open_reopens_on_slow_trials() -> None:
    """Slow trial calls at the slow-call threshold re-open the breaker."""
    breaker = tripped()
    permits = [breaker.acquire(10.0), breaker.acquire(10.0)]
    breaker.on_success(permits[0], 6.0, now=16.0)
    breaker.on_success(permits[1], 1.0, now=16.0)
    assert state_of(breaker) is BreakerState.OPEN


def reopen(breaker: CircuitBreaker, now: float) -> float:
    """Fails one trial round at `now`; returns the new open duration."""
    permits = [breaker.acquire(now), breaker.acquire(now)]
    for permit in permits:
        breaker.on_failure(permit, now=now)
    assert state_of(breaker) is BreakerState.OPEN
    return breaker.metrics(now).open_duration


def test_open_duration_backs_off_to_max() -> None:
    """Each re-open from half-open doubles the open duration, up to the max."""
    breaker = tripped()
    now, durations = 0.0, []
    for _ in range(4):
        now += breaker.metrics(now).open_duration
        durations.append(reopen(breaker, now))
    assert durations == [20.0, 35.0, 35.0, 35.0]


def test_open_duration_resets_after_close() -> None:
    """After a successful close, the next opening uses the base open duration again."""
    breaker = tripped()
    assert reopen(breaker, 10.0) == 20.0
    permits = [breaker.acquire(30.0), breaker.acquire(30.0)]
    for permit in permits:
        breaker.on_success(permit, now=30.0)
    assert state_of(breaker) is BreakerState.CLOSED
    fail(breaker, 4, now=31.0)
    assert breaker.metrics(31.0).open_duration == 10.0


def constant(value: float) -> Callable[[], float]:
    return lambda: value


def test_jitter_shortens_open_duration_within_bounds() -> None:
    """With jitter j the open duration lies in [(1 - j) * d, d]."""
    for draw, expected in [(0.0, 10.0), (0.5, 9.0), (0.999999, 8.000002)]:
        breaker = create_breaker(
            "svc", BreakerConfig(**(SMALL | {"open_jitter": 0.2})), random=constant(draw)
        )
        fail(breaker, 4)
        assert breaker.metrics(0.0).open_duration == pytest.approx(expected)


def test_jitter_with_real_random_stays_in_bounds() -> None:
    """Open durations drawn with the default random stay within the jitter bounds."""
    for _ in range(50):
        breaker = make(open_jitter=0.3)
        fail(breaker, 4)
        assert 7.0 <= breaker.metrics(0.0).open_duration <= 10.0


def test_cancelled_trial_returns_its_permit() -> None:
    """A cancelled trial call returns its permit and counts nothing."""
    breaker = tripped()
    first = breaker.acquire(10.0)
    breaker.acquire(10.0)
    breaker.on_cancel(first)
    breaker.acquire(10.0)  # the returned permit
    metrics = breaker.metrics(10.0)
    assert metrics.state is BreakerState.HALF_OPEN
    assert (metrics.failures, metrics.cancelled, metrics.half_open_in_flight) == (4, 1, 2)


def test_ignored_trial_returns_its_permit() -> None:
    """An ignored trial outcome returns its permit and decides nothing."""
    breaker = tripped()
    first = breaker.acquire(10.0)
    breaker.acquire(10.0)
    breaker.on_ignored(first)
    breaker.acquire(10.0)
    assert breaker.metrics(10.0).ignored == 1


def test_stale_trial_permits_expire() -> None:
    """Trial permits unreported for half_open_max_wait expire and a new round starts."""
    breaker = tripped(half_open_max_wait=30.0)
    stale = breaker.acquire(10.0)
    breaker.acquire(10.0)
    with pytest.raises(CircuitOpen):
        breaker.acquire(39.9)
    with capture_events() as events:
        fresh = breaker.acquire(40.0)
    assert [e["event"] for e in events] == ["breaker.half_open_expired"]
    breaker.on_failure(stale, now=41.0)  # a late report from the lost round
    assert state_of(breaker) is BreakerState.HALF_OPEN
    breaker.on_success(fresh, now=41.0)
    breaker.on_success(breaker.acquire(41.0), now=41.0)
    assert breaker.metrics(41.0).state is BreakerState.CLOSED


def test_late_report_from_closed_phase_is_not_a_trial() -> None:
    """An outcome from a permit issued before the breaker opened is not a trial result."""
    breaker = make()
    early = breaker.acquire(0.0)
    fail(breaker, 4)
    trial = breaker.acquire(10.0)
    breaker.on_success(early, now=10.0)
    breaker.on_success(trial, now=10.0)
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert breaker.metrics(10.0).half_open_in_flight == 0


def test_double_report_is_ignored() -> None:
    """Reporting the same trial permit twice counts it once."""
    breaker = tripped()
    permit = breaker.acquire(10.0)
    breaker.on_failure(permit, now=10.0)
    breaker.on_failure(permit, now=10.0)
    assert state_of(breaker) is BreakerState.HALF_OPEN


# --------------------------------------------------------------------- verdicts


@pytest.mark.parametrize(
    ("verdict", "counted"),
    [
        (None, (1, 0, 0, 1)),
        (ErrorClass.RETRYABLE, (0, 1, 0, 1)),
        (ErrorClass.PERMANENT, (0, 1, 0, 1)),
        (ErrorClass.REJECTED, (1, 0, 0, 1)),
        (ErrorClass.THROTTLED, (0, 0, 1, 0)),
        (ErrorClass.IGNORED, (0, 0, 1, 0)),
    ],
    ids=["success", "retryable", "permanent", "rejected", "throttled", "ignored"],
)
def test_record_maps_each_verdict(
    verdict: ErrorClass | None, counted: tuple[int, int, int, int]
) -> None:
    """`record` counts (successes, failures, ignored, buffered calls) as the verdict table says."""
    breaker = make()
    breaker.record(breaker.acquire(0.0), verdict, 0.0, now=0.0)
    metrics = breaker.metrics(0.0)
    assert (
        metrics.successes,
        metrics.failures,
        metrics.ignored,
        metrics.buffered_calls,
    ) == counted


def test_rate_limit_answers_never_open_the_breaker() -> None:
    """However many THROTTLED answers arrive, the breaker stays closed."""
    breaker = make(consecutive_failures=2)
    for _ in range(50):
        breaker.record(breaker.acquire(0.0), ErrorClass.THROTTLED, 0.0, now=0.0)
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.metrics(0.0).buffered_calls == 0


def test_the_callers_mistakes_never_open_the_breaker() -> None:
    """REJECTED answers count as successes: they even dilute the failure rate."""
    breaker = make()
    fail(breaker, 1)
    for _ in range(9):
        breaker.record(breaker.acquire(0.0), ErrorClass.REJECTED, 0.0, now=0.0)
    metrics = breaker.metrics(0.0)
    assert metrics.state is BreakerState.CLOSED
    assert metrics.failure_rate == pytest.approx(0.1)


def test_a_slow_rejected_answer_is_a_slow_success() -> None:
    """A REJECTED answer that took longer than the threshold is a slow success."""
    breaker = make()
    breaker.record(breaker.acquire(0.0), ErrorClass.REJECTED, 6.0, now=0.0)
    metrics = breaker.metrics(0.0)
    assert (metrics.slow_successes, metrics.buffered_slow_calls) == (1, 1)


def test_a_throttled_trial_returns_its_permit() -> None:
    """A THROTTLED trial decides nothing and frees its half-open permit."""
    breaker = tripped()
    first = breaker.acquire(10.0)
    breaker.acquire(10.0)
    breaker.record(first, ErrorClass.THROTTLED, 0.0, now=10.0)
    assert breaker.metrics(10.0).half_open_in_flight == 1
    breaker.acquire(10.0)  # the freed permit is handed out again
    assert state_of(breaker) is BreakerState.HALF_OPEN


def test_rejected_trials_close_the_breaker() -> None:
    """Trials answered REJECTED are healthy answers: the breaker closes."""
    breaker = tripped()
    permits = [breaker.acquire(10.0) for _ in range(2)]
    for permit in permits:
        breaker.record(permit, ErrorClass.REJECTED, 0.0, now=10.0)
    assert state_of(breaker) is BreakerState.CLOSED


# ----------------------------------------------------------- call and guard judge with a classifier


async def test_call_judges_failures_with_its_classifier() -> None:
    """`call` asks the breaker's classifier: a 429 is ignored, a 400 a success, a 503 a failure."""
    breaker = create_breaker("svc", BreakerConfig(**SMALL), classifier=LLMClassifier())

    async def answer(status: int) -> None:
        raise ServiceResponseError("svc", status)

    for status in (429, 400, 503):
        with pytest.raises(ServiceResponseError):
            await breaker.call(answer, status)
    metrics = breaker.metrics()
    assert (metrics.ignored, metrics.successes, metrics.failures) == (1, 1, 1)


async def test_the_default_classifier_is_the_custom_kinds() -> None:
    """Without a classifier, `call` and `guard` judge like `ErrorClassifier()`."""
    breaker = create_breaker("svc", BreakerConfig(**SMALL))
    assert isinstance(breaker.classifier, ErrorClassifier)
    with pytest.raises(ServiceResponseError):
        async with breaker.guard():
            raise ServiceResponseError("svc", 404)
    assert breaker.metrics().successes == 1


async def test_guard_judges_failures_with_its_classifier() -> None:
    """`guard` classifies the block's exception like `call` does."""
    breaker = create_breaker(
        "svc",
        BreakerConfig(**SMALL),
        classifier=ErrorClassifier(overrides={KeyError: ErrorClass.IGNORED}),
    )
    with pytest.raises(KeyError):
        async with breaker.guard():
            raise KeyError("x")
    metrics = breaker.metrics()
    assert (metrics.failures, metrics.successes, metrics.ignored) == (0, 0, 1)


async def test_a_base_exception_leaving_guard_is_never_a_failure() -> None:
    """A BaseException that is not an Exception counts as a cancellation."""
    breaker = create_breaker("svc", BreakerConfig(**SMALL))
    guard = breaker.guard()
    await guard.__aenter__()
    await guard.__aexit__(KeyboardInterrupt, KeyboardInterrupt(), None)
    metrics = breaker.metrics()
    assert (metrics.failures, metrics.cancelled) == (0, 1)


# --------------------------------------------------------------------- manual states


def test_disabled_permits_and_records_totals_only() -> None:
    """DISABLED permits every call and never opens, counting totals only."""
    breaker = make()
    breaker.force(BreakerState.DISABLED, now=0.0)
    fail(breaker, 20)
    metrics = breaker.metrics(0.0)
    assert metrics.state is BreakerState.DISABLED
    assert (metrics.failures, metrics.buffered_calls) == (20, 0)


def test_forced_open_rejects_everyone() -> None:
    """FORCED_OPEN rejects every call with an infinite retry_after, forever."""
    breaker = make()
    breaker.force(BreakerState.FORCED_OPEN, now=0.0)
    with pytest.raises(CircuitOpen) as info:
        breaker.acquire(1e9)
    assert info.value.retry_after == math.inf


def test_metrics_only_records_but_never_opens() -> None:
    """METRICS_ONLY fills the window and reports rates but never opens."""
    breaker = make()
    breaker.force(BreakerState.METRICS_ONLY, now=0.0)
    fail(breaker, 10)
    metrics = breaker.metrics(0.0)
    assert metrics.state is BreakerState.METRICS_ONLY
    assert (metrics.failure_rate, metrics.buffered_calls) == (1.0, 10)


def test_force_emits_state_forced() -> None:
    """A manual transition emits breaker.state_forced with both states."""
    breaker = make()
    with capture_events() as events:
        breaker.force(BreakerState.FORCED_OPEN, now=0.0)
    (event,) = events
    assert event["event"] == "breaker.state_forced"
    assert (event["from_state"], event["to_state"]) == ("closed", "forced_open")


def test_reset_closes_and_forgets() -> None:
    """reset closes an open breaker and empties its window."""
    breaker = tripped()
    breaker.reset(now=1.0)
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.metrics(1.0).buffered_calls == 0
    breaker.acquire(1.0)


def test_force_open_opens_for_base_duration() -> None:
    """Forcing OPEN opens for the base open duration, then half-opens as usual."""
    breaker = make()
    breaker.force(BreakerState.OPEN, now=0.0)
    with pytest.raises(CircuitOpen):
        breaker.acquire(9.0)
    breaker.acquire(10.0)
    assert state_of(breaker) is BreakerState.HALF_OPEN


# --------------------------------------------------------------------- listeners, store


def test_listener_sees_transitions() -> None:
    """A listener receives every transition record."""
    seen: list[BreakerTransition] = []
    breaker = make()
    breaker.add_listener(seen.append)
    fail(breaker, 4)
    breaker.acquire(10.0)
    assert [(t.from_state, t.to_state) for t in seen] == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
    ]
    assert seen[0].reason == "failure_rate"


def test_failing_listener_does_not_break_the_breaker() -> None:
    """A listener that raises is reported as an event and the transition still happens."""

    def broken(_: BreakerTransition) -> None:
        raise RuntimeError("boom")

    breaker = make()
    breaker.add_listener(broken)
    with capture_events() as events:
        fail(breaker, 4)
    assert state_of(breaker) is BreakerState.OPEN
    assert "breaker.listener_failed" in [e["event"] for e in events]


def test_removed_listener_is_not_called() -> None:
    """remove_listener stops the calls."""
    seen: list[BreakerTransition] = []
    breaker = make()
    breaker.add_listener(seen.append)
    breaker.remove_listener(seen.append)
    fail(breaker, 4)
    assert seen == []


def test_shared_store_shares_transitions() -> None:
    """Two breakers on one store and name see each other's transitions."""
    store = InMemoryBreakerStore()
    config = BreakerConfig(**SMALL)
    one = create_breaker("svc", config, store=store, now=0.0)
    two = create_breaker("svc", config, store=store, now=0.0)
    fail(one, 4)
    assert state_of(two) is BreakerState.OPEN
    with pytest.raises(CircuitOpen):
        two.acquire(1.0)


def test_store_holds_the_record() -> None:
    """The store keeps the state, when it changed and the open duration."""
    store = InMemoryBreakerStore()
    breaker = create_breaker("svc", BreakerConfig(**SMALL), store=store, now=0.0)
    fail(breaker, 4, now=2.0)
    record = store.get("svc")
    assert isinstance(record, BreakerRecord)
    assert (record.state, record.since, record.open_duration) == (BreakerState.OPEN, 2.0, 10.0)
    assert record.open_until == 12.0


# --------------------------------------------------------------------- registry


def test_registry_returns_one_breaker_per_name() -> None:
    """get_or_create returns the same breaker for the same name."""
    registry = BreakerRegistry()
    one = registry.get_or_create("llm", BreakerConfig.for_llm(), now=0.0)
    assert registry.get_or_create("llm", now=0.0) is one
    assert registry.get("llm") is one
    assert "llm" in registry
    assert len(registry) == 1


def test_registry_rejects_conflicting_config() -> None:
    """Asking for an existing breaker with another config raises ConfigError."""
    registry = BreakerRegistry()
    registry.get_or_create("db", BreakerConfig.for_database(), now=0.0)
    with pytest.raises(ConfigError) as info:
        registry.get_or_create("db", BreakerConfig.for_mcp(), now=0.0)
    assert info.value.field == "config"


def test_registry_snapshot_reports_all() -> None:
    """snapshot reports every breaker's metrics by name."""
    registry = BreakerRegistry(default_config=BreakerConfig(**SMALL))
    fail(registry.get_or_create("a", now=0.0), 4)
    registry.get_or_create("b", now=0.0)
    snapshot = registry.snapshot(1.0)
    assert sorted(snapshot) == ["a", "b"]
    assert snapshot["a"].state is BreakerState.OPEN
    assert snapshot["b"].state is BreakerState.CLOSED
    assert [b.name for b in registry] == ["a", "b"]


def test_registry_listener_applies_to_all_breakers() -> None:
    """A registry listener sees transitions of existing and later breakers."""
    registry = BreakerRegistry(default_config=BreakerConfig(**SMALL))
    seen: list[str] = []
    early = registry.get_or_create("early", now=0.0)
    registry.add_listener(lambda t: seen.append(t.name))
    late = registry.get_or_create("late", now=0.0)
    fail(early, 4)
    fail(late, 4)
    assert seen == ["early", "late"]


# --------------------------------------------------------------------- async API


async def ok() -> str:
    return "ok"


async def boom() -> None:
    raise ValueError("boom")


async def test_call_returns_result_and_counts_success() -> None:
    """call returns fn's result and records a success."""
    breaker = create_breaker("svc", BreakerConfig(**SMALL))
    assert await breaker.call(ok) == "ok"
    assert breaker.metrics().successes == 1


async def test_call_reraises_and_counts_failure() -> None:
    """call re-raises fn's exception unchanged and records a failure."""
    breaker = create_breaker("svc", BreakerConfig(**SMALL))
    with pytest.raises(ValueError, match="boom"):
        await breaker.call(boom)
    assert breaker.metrics().failures == 1


async def test_call_rejected_does_not_run_fn() -> None:
    """An open breaker raises CircuitOpen without running fn."""
    breaker = create_breaker("svc", BreakerConfig(**SMALL))
    breaker.force(BreakerState.FORCED_OPEN)
    ran: list[int] = []

    async def service() -> None:
        ran.append(1)

    with pytest.raises(CircuitOpen):
        await breaker.call(service)
    assert ran == []


async def test_guard_counts_success_and_failure() -> None:
    """guard records the block's success and its Exception as a failure."""
    breaker = create_breaker("svc", BreakerConfig(**SMALL))
    async with breaker.guard():
        pass
    with pytest.raises(ValueError, match="boom"):
        async with breaker.guard():
            raise ValueError("boom")
    metrics = breaker.metrics()
    assert (metrics.successes, metrics.failures) == (1, 1)


async def test_guard_rejects_on_enter() -> None:
    """Entering guard on an open breaker raises CircuitOpen before the block runs."""
    breaker = create_breaker("svc", BreakerConfig(**SMALL))
    breaker.force(BreakerState.FORCED_OPEN)
    with pytest.raises(CircuitOpen):
        async with breaker.guard():
            pytest.fail("the block ran")


@pytest.mark.virtual_time
async def test_call_measures_slow_calls_in_virtual_time() -> None:
    """call times fn with anyio's clock: 6 s is slow, exactly 5 s is not."""
    breaker = create_breaker("svc", BreakerConfig(**SMALL))
    await breaker.call(anyio.sleep, 6)
    await breaker.call(anyio.sleep, 5)
    metrics = breaker.metrics()
    assert (metrics.slow_successes, metrics.successes) == (1, 1)


@pytest.mark.virtual_time
async def test_open_duration_elapses_in_virtual_time() -> None:
    """After opening, calls are rejected until exactly open_duration has passed."""
    breaker = create_breaker("svc", BreakerConfig(**SMALL))
    for _ in range(4):
        with pytest.raises(ValueError, match="boom"):
            await breaker.call(boom)
    opened = anyio.current_time()
    await anyio.sleep(9.5)
    with pytest.raises(CircuitOpen) as info:
        await breaker.call(ok)
    assert info.value.retry_after == pytest.approx(0.5, abs=1e-9)
    await anyio.sleep(info.value.retry_after)
    assert await breaker.call(ok) == "ok"
    assert anyio.current_time() - opened == pytest.approx(10.0, abs=1e-9)
    assert state_of(breaker) is BreakerState.HALF_OPEN


@pytest.mark.virtual_time
async def test_cancelled_caller_returns_half_open_permit() -> None:
    """A half-open caller cancelled by a cancel scope returns its permit, not a failure."""
    breaker = create_breaker("svc", BreakerConfig(**(SMALL | {"half_open_permits": 1})))
    breaker.force(BreakerState.HALF_OPEN)
    with anyio.move_on_after(1) as scope:
        await breaker.call(anyio.sleep, 100)
    assert scope.cancelled_caught
    metrics = breaker.metrics()
    assert (metrics.failures, metrics.slow_failures, metrics.cancelled) == (0, 0, 1)
    assert metrics.half_open_in_flight == 0
    assert await breaker.call(ok) == "ok"
    assert state_of(breaker) is BreakerState.CLOSED


@pytest.mark.virtual_time
async def test_cancelled_guard_block_is_not_a_failure() -> None:
    """A guard block cancelled by a timeout counts as cancelled, never as a failure."""
    breaker = create_breaker("svc", BreakerConfig(**SMALL))

    async def guarded() -> None:
        with anyio.fail_after(2):
            async with breaker.guard():
                await anyio.sleep(100)

    with pytest.raises(TimeoutError):
        await guarded()
    metrics = breaker.metrics()
    assert (metrics.failures, metrics.slow_failures, metrics.cancelled) == (0, 0, 1)
    assert metrics.buffered_calls == 0


@pytest.mark.virtual_time
async def test_cancellation_never_opens_the_breaker() -> None:
    """Many cancelled calls leave a closed breaker closed."""
    breaker = create_breaker("svc", BreakerConfig(**SMALL))
    for _ in range(20):
        with anyio.move_on_after(1):
            await breaker.call(anyio.sleep, 10)
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.metrics().cancelled == 20


@pytest.mark.virtual_time
async def test_half_open_stampede_admits_exactly_n() -> None:
    """1,000 concurrent callers when the breaker half-opens: exactly N reach the service."""
    permits = 3
    breaker = create_breaker("svc", BreakerConfig(**(SMALL | {"half_open_permits": permits})))
    breaker.force(BreakerState.OPEN)
    await anyio.sleep(10)
    reached = rejected = 0
    retry_afters: list[float] = []

    async def service() -> None:
        nonlocal reached
        reached += 1
        await anyio.sleep(1)

    async def caller() -> None:
        nonlocal rejected
        try:
            await breaker.call(service)
        except CircuitOpen as exc:
            rejected += 1
            retry_afters.append(exc.retry_after)

    async with anyio.create_task_group() as tg:
        for _ in range(1000):
            tg.start_soon(caller)
    assert (reached, rejected) == (permits, 1000 - permits)
    assert all(0 < r <= 10.0 for r in retry_afters)
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.metrics().not_permitted == 1000 - permits


@pytest.mark.virtual_time
async def test_transition_events_in_order() -> None:
    """A full cycle emits opened, half_opened and closed, in that order."""
    breaker = create_breaker("svc", BreakerConfig(**SMALL))
    with capture_events() as events:
        for _ in range(4):
            with pytest.raises(ValueError, match="boom"):
                await breaker.call(boom)
        await anyio.sleep(10)
        await breaker.call(ok)
        await breaker.call(ok)
    names = [e["event"] for e in events if e["event"].startswith("breaker.")]
    assert names == ["breaker.opened", "breaker.half_opened", "breaker.closed"]


@pytest.mark.virtual_time
async def test_fast_clock_matches_anyio_clock() -> None:
    """The library's clock reads exactly anyio.current_time() on both backends."""
    from actors._clock import now

    await anyio.sleep(12.25)
    assert now() == anyio.current_time()


def test_breaker_created_outside_event_loop() -> None:
    """A breaker created outside any event loop works and reports no time in state."""
    breaker = create_breaker("svc", BreakerConfig(**SMALL))
    assert breaker.metrics(5.0).time_in_state is None
    fail(breaker, 4, now=5.0)
    assert breaker.metrics(6.0).time_in_state == pytest.approx(1.0)


async def test_call_forwards_keyword_arguments() -> None:
    """call passes positional and keyword arguments through to fn."""
    breaker = create_breaker("svc", BreakerConfig(**SMALL))

    async def echo(a: int, *, b: int) -> tuple[int, int]:
        return a, b

    assert await breaker.call(echo, 1, b=2) == (1, 2)


@pytest.mark.virtual_time
async def test_slow_failure_is_counted_as_slow_failure() -> None:
    """A failure after a long wait counts as a slow failure."""
    breaker = create_breaker("svc", BreakerConfig(**SMALL))

    async def slow_boom() -> None:
        await anyio.sleep(7)
        raise ValueError("late")

    with pytest.raises(ValueError, match="late"):
        await breaker.call(slow_boom)
    metrics = breaker.metrics()
    assert (metrics.slow_failures, metrics.failures, metrics.buffered_slow_calls) == (1, 0, 1)


@pytest.mark.virtual_time
async def test_llm_preset_trips_over_time_window() -> None:
    """The LLM preset opens on the 20th call when half of them failed within 60 s."""
    breaker = create_breaker("llm", BreakerConfig.for_llm(open_jitter=0.0))
    for i in range(20):
        await anyio.sleep(2)
        if i % 2:
            with pytest.raises(ValueError, match="boom"):
                await breaker.call(boom)
        else:
            await breaker.call(ok)
        assert state_of(breaker) is (BreakerState.OPEN if i == 19 else BreakerState.CLOSED)
    with pytest.raises(CircuitOpen) as info:
        await breaker.call(ok)
    assert info.value.retry_after == pytest.approx(30.0, abs=1e-9)


@pytest.mark.virtual_time
async def test_llm_preset_forgets_failures_older_than_a_minute() -> None:
    """Under the LLM preset, failures spread over more than 60 s never add up to a trip."""
    breaker = create_breaker("llm", BreakerConfig.for_llm())
    for _ in range(40):
        await anyio.sleep(7)  # at most 9 calls in any 60 s window: below minimum_calls
        with pytest.raises(ValueError, match="boom"):
            await breaker.call(boom)
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.metrics().buffered_calls <= 9
