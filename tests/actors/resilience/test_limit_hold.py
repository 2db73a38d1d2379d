"""A rate-limit answer holds a limit for everyone: `hold_until` on limiters and multi-limits."""

from __future__ import annotations

import anyio
import pytest

from actors import RateLimited
from actors.resilience import MemoryLimiterStore, TokenBucket, create_limiter, create_multi_limit
from actors.testing import capture_events
from tests.actors.resilience.test_limiter import RemoteLikeStore, elapsed_since, until_queued

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


async def test_nothing_is_admitted_before_the_hold_ends() -> None:
    """With units available, an acquire during a hold waits exactly until its end."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    start = anyio.current_time()
    await limiter.hold_until(start + 2.0)
    await limiter.acquire()
    assert elapsed_since(start) == pytest.approx(2.0, abs=1e-9)


async def test_a_caller_whose_deadline_is_before_the_end_is_refused_at_once() -> None:
    """An acquire with a deadline inside the hold raises RateLimited with the hold's rest."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    start = anyio.current_time()
    await limiter.hold_until(start + 2.0)
    await anyio.sleep(0.5)
    with capture_events(), pytest.raises(RateLimited) as info:
        await limiter.acquire(deadline=start + 1.0)
    assert info.value.retry_after == pytest.approx(1.5, abs=1e-9)
    assert elapsed_since(start) == pytest.approx(0.5, abs=1e-9)


async def test_waiters_are_refused_or_kept_by_their_deadlines() -> None:
    """A hold refuses queued waiters whose deadline is before its end, at once; the others
    are admitted when it ends."""
    limiter = create_limiter(TokenBucket.per_second(1, capacity=1), name="svc")
    await limiter.acquire()
    start = anyio.current_time()
    outcomes: dict[str, tuple[str, object]] = {}

    async def caller(label: str, deadline: float) -> None:
        try:
            await limiter.acquire(deadline=start + deadline)
        except RateLimited as exc:
            outcomes[label] = (f"refused {exc.retry_after:.2f}", elapsed_since(start))
        else:
            outcomes[label] = ("admitted", elapsed_since(start))

    with capture_events():
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller, "head", 10.0)
            await until_queued(limiter, 1)
            tg.start_soon(caller, "short", 2.0)
            await until_queued(limiter, 2)
            tg.start_soon(caller, "long", 10.0)
            await until_queued(limiter, 3)
            await anyio.sleep(0.25)
            await limiter.hold_until(start + 3.0)
    assert outcomes == {
        "short": ("refused 2.75", pytest.approx(0.25, abs=1e-9)),
        "head": ("admitted", pytest.approx(3.0, abs=1e-9)),
        "long": ("admitted", pytest.approx(4.0, abs=1e-9)),
    }


async def test_a_head_whose_deadline_is_before_the_end_is_refused_at_once() -> None:
    """The sleeping head of the queue is woken and refused when a hold outlasts its deadline."""
    limiter = create_limiter(TokenBucket.per_second(1, capacity=1), name="svc")
    await limiter.acquire()
    start = anyio.current_time()
    with capture_events():
        async with anyio.create_task_group() as tg:

            async def head() -> None:
                with pytest.raises(RateLimited) as info:
                    await limiter.acquire(deadline=start + 2.0)
                assert info.value.retry_after == pytest.approx(4.9, abs=1e-9)
                assert elapsed_since(start) == pytest.approx(0.1, abs=1e-9)

            tg.start_soon(head)
            await until_queued(limiter, 1)
            await anyio.sleep(0.1)
            await limiter.hold_until(start + 5.0)
    assert limiter.metrics().queued == 0


async def test_the_fast_paths_refuse_during_a_hold() -> None:
    """reserve_nowait answers None and try_acquire False until the hold ends."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    now = anyio.current_time()
    await limiter.hold_until(now + 1.0)
    assert limiter.reserve_nowait(1, now) is None
    assert limiter.try_acquire() is False
    assert limiter.reserve_nowait(1, now + 1.0) is not None


async def test_a_hold_is_shared_through_the_store() -> None:
    """Another limiter on the same store and name (a replica, a restart) holds too."""
    store = MemoryLimiterStore()
    first = create_limiter(TokenBucket.per_second(10), name="svc", store=store)
    second = create_limiter(TokenBucket.per_second(10), name="svc", store=store)
    start = anyio.current_time()
    await first.hold_until(start + 1.5)
    assert second.try_acquire() is False
    await second.acquire()
    assert elapsed_since(start) == pytest.approx(1.5, abs=1e-9)


async def test_a_remote_store_holds_every_limit_of_a_group() -> None:
    """A multi-limit on an async-only store holds all its limits until the end."""
    store = RemoteLikeStore()
    multi = create_multi_limit(
        {"requests": TokenBucket.per_second(10), "tokens": TokenBucket.per_second(1000)},
        name="llm",
        store=store,
    )
    other = create_multi_limit(
        {"requests": TokenBucket.per_second(10), "tokens": TokenBucket.per_second(1000)},
        name="llm",
        store=store,
    )
    start = anyio.current_time()
    await multi.hold_until(start + 0.75)
    reservation = await other.reserve(requests=1, tokens=10)
    assert elapsed_since(start) == pytest.approx(0.75, abs=1e-9)
    assert reservation.costs == {"requests": 1, "tokens": 10}


async def test_an_earlier_hold_never_shortens_a_later_one() -> None:
    """Holds extend, never shorten."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    start = anyio.current_time()
    await limiter.hold_until(start + 2.0)
    await limiter.hold_until(start + 1.0)
    await limiter.acquire()
    assert elapsed_since(start) == pytest.approx(2.0, abs=1e-9)


async def test_a_hold_is_reported_once() -> None:
    """A hold emits "limiter.held" with its length."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    with capture_events() as events:
        await limiter.hold_until(anyio.current_time() + 3.0)
    assert [(e["event"], e["seconds"]) for e in events] == [("limiter.held", 3.0)]


@pytest.mark.parametrize("when", [float("inf"), float("nan"), True, "soon"])
async def test_a_hold_needs_a_finite_time(when: object) -> None:
    """hold_until refuses a time that is not a finite number."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc")
    with pytest.raises(ValueError, match="finite"):
        await limiter.hold_until(when)  # type: ignore[arg-type]
