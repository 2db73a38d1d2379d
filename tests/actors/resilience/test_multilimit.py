"""Multi-limits: requests/min AND tokens/min, reserve-then-reconcile, header resync."""

from __future__ import annotations

import anyio
import pytest

from actors import ConfigError, RateLimited
from actors.resilience import (
    GCRA,
    HeaderLimits,
    MemoryLimiterStore,
    MultiLimit,
    SlidingWindow,
    TokenBucket,
    create_multi_limit,
)
from actors.testing import capture_events
from tests.actors.resilience.test_limiter import RemoteLikeStore

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


def llm_limit(store: MemoryLimiterStore | None = None, name: str = "openai") -> MultiLimit:
    """10 requests/s and 1000 tokens/s."""
    return create_multi_limit(
        {"requests": TokenBucket.per_second(10), "tokens": TokenBucket.per_second(1000)},
        name=name,
        store=store,
    )


def available(multi: MultiLimit) -> dict[str, float]:
    return {name: round(value, 6) for name, value in multi.metrics().available.items()}


async def until_queued(multi: MultiLimit, count: int) -> None:
    while multi.metrics().queued < count:
        await anyio.lowlevel.checkpoint()


# --- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        ({}, "limits"),
        ({"not an identifier": TokenBucket.per_second(1)}, "limits"),
        ({"deadline": TokenBucket.per_second(1)}, "limits"),
        ({"tokens": "1000/min"}, "limits.tokens"),
    ],
)
def test_bad_limits_raise_config_error(limits: dict[str, object], field: str) -> None:
    """Empty limits, non-identifier or reserved names and non-configs are ConfigErrors."""
    with pytest.raises(ConfigError) as info:
        create_multi_limit(limits, name="svc")  # type: ignore[arg-type]
    assert info.value.field == field


async def test_unknown_limit_name_is_a_value_error() -> None:
    """A cost for a limit that does not exist raises ValueError naming it."""
    multi = llm_limit()
    with pytest.raises(ValueError, match="'images' is not a limit"):
        await multi.acquire(images=1)


async def test_cost_above_a_capacity_is_a_value_error() -> None:
    """A token cost above the tokens capacity can never be admitted."""
    multi = llm_limit()
    with pytest.raises(ValueError, match="cost=1001"):
        await multi.acquire(requests=1, tokens=1001)


# --- all or nothing ------------------------------------------------------------------


async def test_rejection_by_one_limit_consumes_none() -> None:
    """When tokens refuse, the requests limit is not consumed either."""
    multi = llm_limit()
    await multi.acquire(requests=1, tokens=900)
    assert available(multi) == {"requests": 9, "tokens": 100}
    assert multi.try_acquire(requests=1, tokens=200) is False
    assert available(multi) == {"requests": 9, "tokens": 100}
    assert multi.try_acquire(requests=1, tokens=100) is True
    assert available(multi) == {"requests": 8, "tokens": 0}


async def test_acquire_waits_for_the_slowest_limit() -> None:
    """Admission waits until every limit has room: here 0.3 s for 300 tokens."""
    multi = llm_limit()
    await multi.acquire(requests=1, tokens=1000)
    start = anyio.current_time()
    await multi.acquire(requests=1, tokens=300)
    assert anyio.current_time() - start == pytest.approx(0.3, abs=1e-9)


async def test_deadline_rejection_reports_longest_wait() -> None:
    """A hopeless deadline raises RateLimited at once with the longest limit's wait."""
    multi = llm_limit()
    await multi.acquire(requests=10, tokens=1000)
    start = anyio.current_time()
    with capture_events() as events, pytest.raises(RateLimited) as info:
        await multi.acquire(requests=1, tokens=500, deadline=start + 0.1)
    assert info.value.retry_after == pytest.approx(0.5, abs=1e-9)
    assert events[0]["cost"] == {"requests": 1, "tokens": 500}
    assert anyio.current_time() == start
    assert multi.metrics().rejected == 1


async def test_cancelled_waiter_consumes_nothing() -> None:
    """A multi-limit waiter cancelled while waiting leaves every limit untouched."""
    multi = llm_limit()
    await multi.acquire(requests=10, tokens=1000)
    scope = anyio.CancelScope()

    async def waiter() -> None:
        with scope:
            await multi.acquire(requests=1, tokens=500)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await until_queued(multi, 1)
        await anyio.sleep(0.2)
        scope.cancel()
    assert available(multi) == {"requests": 2, "tokens": 200}
    assert multi.metrics().queued == 0


async def test_mixed_algorithms_admit_together() -> None:
    """A sliding window and a GCRA can be combined in one multi-limit."""
    multi = create_multi_limit(
        {"requests": SlidingWindow.per_second(2), "tokens": GCRA.per_second(100, burst=100)},
        name="svc",
    )
    start = anyio.current_time()
    await anyio.sleep(-start % 1.0)
    start = anyio.current_time()
    await multi.acquire(requests=1, tokens=100)
    await multi.acquire(requests=1, tokens=50)
    assert anyio.current_time() - start == pytest.approx(0.5, abs=1e-9)


async def test_large_token_request_is_not_starved() -> None:
    """Small requests arriving after a large waiter queue behind it."""
    multi = llm_limit()
    await multi.acquire(requests=1, tokens=1000)
    start = anyio.current_time()
    order: list[tuple[str, float]] = []

    async def call(label: str, tokens: int) -> None:
        await multi.acquire(requests=1, tokens=tokens)
        order.append((label, anyio.current_time() - start))

    async with anyio.create_task_group() as tg:
        tg.start_soon(call, "big", 1000)
        await until_queued(multi, 1)
        for index in range(3):
            tg.start_soon(call, f"small{index}", 10)
            await until_queued(multi, index + 2)
    assert [label for label, _ in order] == ["big", "small0", "small1", "small2"]
    assert [at for _, at in order] == pytest.approx([1.0, 1.01, 1.02, 1.03], abs=1e-9)


async def test_remote_store_reserve_reconcile_and_resync() -> None:
    """Reservation, reconciliation and header resync work through an async-only store."""
    store = RemoteLikeStore()
    multi = create_multi_limit(
        {"requests": TokenBucket.per_second(10), "tokens": TokenBucket.per_second(1000)},
        name="openai",
        store=store,
    )
    reservation = await multi.reserve(requests=1, tokens=900)
    await reservation.reconcile(tokens=100)
    await multi.sync_from_headers({"x-ratelimit-remaining-requests": "3"})
    now = anyio.current_time()
    assert store.inner.available_nowait("actors:openai:tokens", multi.limits["tokens"], now) == (
        pytest.approx(900)
    )
    assert store.inner.available_nowait(
        "actors:openai:requests", multi.limits["requests"], now
    ) == pytest.approx(3)
    assert multi.metrics().available == {}
    with pytest.raises(TypeError):
        multi.try_acquire(requests=1)


# --- reserve and reconcile -----------------------------------------------------------


async def test_reconcile_down_refunds_the_difference() -> None:
    """Reconciling 400 actual tokens against a 900 estimate returns 500 tokens."""
    multi = llm_limit()
    reservation = await multi.reserve(requests=1, tokens=900)
    assert available(multi)["tokens"] == 100
    await reservation.reconcile(tokens=400)
    assert available(multi) == {"requests": 9, "tokens": 600}
    assert reservation.costs == {"requests": 1, "tokens": 400}


async def test_reconcile_up_charges_into_debt() -> None:
    """Usage above the estimate is charged even past zero; later requests wait it off."""
    multi = llm_limit()
    reservation = await multi.reserve(requests=1, tokens=800)
    await reservation.reconcile(tokens=1500)
    assert available(multi)["tokens"] == 0
    start = anyio.current_time()
    await multi.acquire(requests=1, tokens=100)
    assert anyio.current_time() - start == pytest.approx(0.6, abs=1e-9)


async def test_reconcile_again_adjusts_from_the_last_figure() -> None:
    """A second reconcile corrects relative to the first, not to the estimate."""
    multi = llm_limit()
    reservation = await multi.reserve(requests=1, tokens=500)
    await reservation.reconcile(tokens=300)
    await reservation.reconcile(tokens=350)
    assert available(multi)["tokens"] == 650


async def test_release_refunds_everything_once() -> None:
    """Releasing a reservation (request never sent) returns all its units, only once."""
    multi = llm_limit()
    await multi.acquire(requests=1, tokens=100)
    reservation = await multi.reserve(requests=2, tokens=500)
    await reservation.release()
    await reservation.release()
    assert available(multi) == {"requests": 9, "tokens": 900}
    with pytest.raises(RuntimeError, match="released"):
        await reservation.reconcile(tokens=10)


@pytest.mark.parametrize("usage", [-1, float("nan"), float("inf"), True, "812"])
async def test_reconcile_ignores_a_usage_that_is_not_a_count(usage: object) -> None:
    """A usage that is not a finite number >= 0 is ignored with a warning event."""
    multi = llm_limit()
    reservation = await multi.reserve(requests=1, tokens=500)
    with capture_events() as events:
        await reservation.reconcile(tokens=usage)  # type: ignore[arg-type]
    assert available(multi)["tokens"] == 500
    assert reservation.costs["tokens"] == 500
    assert [(e["event"], e["log_level"], e["limit"]) for e in events] == [
        ("limiter.usage_rejected", "warning", "tokens")
    ]


async def test_reconcile_rejects_an_unknown_limit() -> None:
    """A usage for a limit that does not exist is the caller's bug: ValueError."""
    multi = llm_limit()
    reservation = await multi.reserve(requests=1, tokens=500)
    with pytest.raises(ValueError, match="'images'"):
        await reservation.reconcile(images=3)
    assert available(multi)["tokens"] == 500


async def test_absurd_usage_is_clamped_to_one_capacity_of_debt() -> None:
    """A usage of 10**12 tokens charges at most the capacity above the reservation."""
    multi = llm_limit()
    reservation = await multi.reserve(requests=1, tokens=100)
    with capture_events() as events:
        await reservation.reconcile(tokens=10**12)
    assert reservation.costs["tokens"] == 1100
    assert [(e["event"], e["charged"]) for e in events] == [("limiter.usage_clamped", 1100)]
    start = anyio.current_time()
    await multi.acquire(requests=1, tokens=1)
    assert anyio.current_time() - start == pytest.approx(0.101, abs=1e-9)  # 100 of debt


async def test_refund_lets_a_waiter_in_at_once() -> None:
    """A reconcile refund wakes the waiting request immediately."""
    multi = llm_limit()
    reservation = await multi.reserve(requests=1, tokens=1000)
    start = anyio.current_time()
    admitted_at: list[float] = []

    async def waiter() -> None:
        await multi.acquire(requests=1, tokens=800)
        admitted_at.append(anyio.current_time() - start)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await until_queued(multi, 1)
        await anyio.sleep(0.1)
        await reservation.reconcile(tokens=200)
    assert admitted_at == [pytest.approx(0.1, abs=1e-9)]


# --- headers -------------------------------------------------------------------------


async def test_headers_lower_remaining_capacity() -> None:
    """x-ratelimit-remaining-* lowers each limit to what the provider reports."""
    multi = llm_limit()
    seen = await multi.sync_from_headers(
        {
            "X-RateLimit-Limit-Requests": "10",
            "X-RateLimit-Remaining-Requests": "4",
            "X-RateLimit-Reset-Requests": "600ms",
            "x-ratelimit-limit-tokens": "1000",
            "x-ratelimit-remaining-tokens": "250",
            "x-ratelimit-reset-tokens": "1m0s",
        }
    )
    assert available(multi) == {"requests": 4, "tokens": 250}
    assert seen == {
        "requests": HeaderLimits(limit=10, remaining=4, reset_after=0.6),
        "tokens": HeaderLimits(limit=1000, remaining=250, reset_after=60.0),
    }


async def test_headers_never_raise_local_capacity() -> None:
    """A provider reporting more remaining than local accounting leaves local state alone."""
    multi = llm_limit()
    await multi.acquire(requests=5, tokens=600)
    await multi.sync_from_headers({"x-ratelimit-remaining-requests": "9"})
    assert available(multi) == {"requests": 5, "tokens": 400}


async def test_malformed_headers_are_ignored_with_events() -> None:
    """Garbage header values change nothing, raise nothing and are reported."""
    multi = llm_limit()
    with capture_events() as events:
        seen = await multi.sync_from_headers(
            {"x-ratelimit-remaining-tokens": "lots", "x-ratelimit-reset-tokens": "soon"}
        )
    assert available(multi) == {"requests": 10, "tokens": 1000}
    assert seen == {}
    assert [(e["event"], e["header"]) for e in events] == [
        ("limiter.header_rejected", "x-ratelimit-remaining-tokens"),
        ("limiter.header_rejected", "x-ratelimit-reset-tokens"),
    ]


async def test_remaining_above_capacity_is_clamped() -> None:
    """A remaining figure above the capacity is clamped to it and reported."""
    multi = llm_limit()
    with capture_events() as events:
        seen = await multi.sync_from_headers({"x-ratelimit-remaining-tokens": "1e15"})
    assert seen["tokens"].remaining == 1000
    assert available(multi)["tokens"] == 1000
    assert [e["event"] for e in events] == ["limiter.header_clamped"]


async def test_a_reset_months_away_is_ignored() -> None:
    """A reset 69 days away is not believed: reported, and left out of the figures."""
    multi = llm_limit()
    with capture_events() as events:
        seen = await multi.sync_from_headers(
            {"x-ratelimit-remaining-tokens": "500", "x-ratelimit-reset-tokens": "1656h"}
        )
    assert seen["tokens"] == HeaderLimits(limit=None, remaining=500, reset_after=None)
    assert [(e["event"], e["reason"]) for e in events] == [
        ("limiter.header_rejected", "implausibly far away")
    ]


async def test_anthropic_headers_resync_each_limit() -> None:
    """anthropic-ratelimit-* headers map onto requests, tokens, input and output tokens."""
    multi = create_multi_limit(
        {
            "requests": TokenBucket.per_minute(50),
            "tokens": TokenBucket.per_minute(100_000),
            "input_tokens": TokenBucket.per_minute(80_000),
            "output_tokens": TokenBucket.per_minute(20_000),
        },
        name="anthropic",
    )
    seen = await multi.sync_from_headers(
        {
            "date": "Mon, 01 Dec 2025 10:00:00 GMT",
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-requests-reset": "2025-12-01T10:00:01Z",
            "anthropic-ratelimit-tokens-remaining": "90000",
            "anthropic-ratelimit-input-tokens-remaining": "70000",
            "anthropic-ratelimit-input-tokens-reset": "2025-12-01T10:00:30+00:00",
            "anthropic-ratelimit-output-tokens-remaining": "15000",
        }
    )
    assert seen["requests"] == HeaderLimits(limit=50, remaining=49, reset_after=1.0)
    assert seen["input_tokens"].reset_after == 30.0
    assert available(multi) == {
        "requests": 49,
        "tokens": 90_000,
        "input_tokens": 70_000,
        "output_tokens": 15_000,
    }


async def test_an_anthropic_reset_without_date_is_unknown() -> None:
    """Without the response's date header an RFC 3339 reset cannot become seconds."""
    multi = create_multi_limit({"requests": TokenBucket.per_minute(50)}, name="anthropic")
    with capture_events():
        seen = await multi.sync_from_headers(
            {
                "anthropic-ratelimit-requests-remaining": "10",
                "anthropic-ratelimit-requests-reset": "2025-12-01T10:00:01Z",
            }
        )
    assert seen["requests"] == HeaderLimits(limit=None, remaining=10, reset_after=None)


async def test_header_limit_mismatch_emits_warning() -> None:
    """A provider limit different from the configured capacity is reported as an event."""
    multi = llm_limit()
    with capture_events() as events:
        await multi.sync_from_headers({"x-ratelimit-limit-tokens": "2000"})
    assert [(e["event"], e["log_level"], e["limit"], e["header"]) for e in events] == [
        ("limiter.header_mismatch", "warning", "tokens", 2000.0)
    ]


# --- keys and metrics ----------------------------------------------------------------


async def test_keys_are_namespaced_per_service() -> None:
    """Two services on one store have separate limits; the same service shares them."""
    store = MemoryLimiterStore()
    first = llm_limit(store, name="openai")
    await first.acquire(requests=10)
    assert llm_limit(store, name="anthropic").try_acquire(requests=1) is True
    assert llm_limit(store, name="openai").try_acquire(requests=1) is False


async def test_metrics_count_admissions_and_waits() -> None:
    """Metrics report admissions, admitted cost per limit, waits and wait time."""
    multi = llm_limit()
    await multi.acquire(requests=1, tokens=1000)
    await multi.acquire(requests=1, tokens=500)
    metrics = multi.metrics()
    assert (metrics.admitted, metrics.waited, metrics.rejected) == (2, 1, 0)
    assert metrics.admitted_cost == {"requests": 2, "tokens": 1500}
    assert metrics.total_wait_time == pytest.approx(0.5, abs=1e-9)
