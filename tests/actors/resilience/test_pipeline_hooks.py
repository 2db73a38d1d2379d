"""The pipeline's hooks for service groups: `retry_on` (which failures are retried,
judged with the call's arguments) and a cancelled attempt's reservation coming back."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from actors import DeadlineExceeded, ErrorClass, ErrorClassifier
from actors.resilience import (
    ColdStart,
    RetryPolicy,
    TokenBucket,
    create_multi_limit,
    create_retrier,
)
from actors.resilience._pipeline import Pipeline

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


class Permanent(Exception):
    """Judged PERMANENT by the default classifier (an unknown exception)."""


def retrier(attempts: int = 3, **changes: Any) -> Any:
    policy = RetryPolicy(attempts=attempts, backoff_initial=0.0, backoff_max=0.0, **changes)
    return create_retrier(policy, service="svc")


async def test_retry_on_retries_what_the_verdict_would_not() -> None:
    """A PERMANENT failure is retried when retry_on says so, seeing the call's arguments."""
    seen: list[tuple[type[Exception], ErrorClass, tuple[Any, ...]]] = []

    def retry_on(exc: Exception, verdict: ErrorClass, *args: Any) -> bool:
        seen.append((type(exc), verdict, args))
        return True

    calls = 0

    async def flaky(token: str) -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Permanent
        return token

    pipeline = Pipeline("svc", ErrorClassifier(), retrier=retrier(), retry_on=retry_on)
    assert await pipeline.run(flaky, "t") == "t"
    assert seen == [(Permanent, ErrorClass.PERMANENT, ("t",))] * 2


async def test_retry_on_can_refuse_what_the_verdict_would_retry() -> None:
    """A RETRYABLE failure is raised at once when retry_on says no (a not_retryable
    give-up)."""
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    r = retrier()
    pipeline = Pipeline("svc", ErrorClassifier(), retrier=r, retry_on=lambda *_: False)
    with pytest.raises(ConnectionError):
        await pipeline.run(down)
    assert calls == 1
    assert r.metrics.give_ups["not_retryable"] == 1


async def test_retry_on_is_not_asked_about_a_call_cut_by_its_timeout() -> None:
    """RetryPolicy.timeout ends the call with DeadlineExceeded whatever retry_on says."""
    asked: list[Exception] = []

    def retry_on(exc: Exception, verdict: ErrorClass, *args: Any) -> bool:
        asked.append(exc)
        return True

    pipeline = Pipeline("svc", ErrorClassifier(), retrier=retrier(timeout=1.0), retry_on=retry_on)
    with pytest.raises(DeadlineExceeded):
        await pipeline.run(anyio.sleep, 5)
    assert asked == []
    assert anyio.current_time() == pytest.approx(1.0)


async def test_a_cancelled_attempt_returns_its_reservation() -> None:
    """An attempt cancelled in flight gives its units back (a hedge that lost its race)."""
    limits = create_multi_limit({"tokens": TokenBucket(rate=100, period=60)}, name="svc")
    pipeline = Pipeline("svc", ErrorClassifier(), limits=limits, cost={"tokens": 40})
    with anyio.move_on_after(0.5):
        await pipeline.run(anyio.sleep, 10)
    assert limits.metrics().available["tokens"] == pytest.approx(100, abs=1)


async def test_a_cancelled_attempt_does_not_hold_a_cold_start_shut() -> None:
    """During a cold start, a cancelled request's reservation is settled, so the next
    request is admitted (it used to wait forever for an answer that never came)."""
    limits = create_multi_limit(
        {"requests": TokenBucket.per_second(100)}, name="svc", cold_start=ColdStart()
    )
    pipeline = Pipeline("svc", ErrorClassifier(), limits=limits, cost=1.0)
    with anyio.move_on_after(0.5):
        await pipeline.run(anyio.sleep, 10)

    async def answer() -> str:
        return "ok"

    with anyio.fail_after(1.0):
        assert await pipeline.run(answer, deadline=anyio.current_time() + 1.0) == "ok"
