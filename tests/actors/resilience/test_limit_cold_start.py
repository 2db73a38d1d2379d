"""Cold start: a header-synced limit learns the provider's room before opening the tap."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from actors import ConfigError, RateLimited
from actors.resilience import (
    ColdStart,
    LimiterStore,
    MemoryLimiterStore,
    MultiLimit,
    Reservation,
    TokenBucket,
    create_limiter,
    create_multi_limit,
)
from actors.testing import capture_events

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


def cold_llm(cold_start: ColdStart | None = None) -> MultiLimit:
    """100 requests/s and 10,000 tokens/s, learning from the first answer."""
    return create_multi_limit(
        {"requests": TokenBucket.per_second(100), "tokens": TokenBucket.per_second(10_000)},
        name="llm",
        cold_start=cold_start or ColdStart(),
    )


async def until_queued(multi: MultiLimit, count: int) -> None:
    while multi.metrics().queued < count:
        await anyio.lowlevel.checkpoint()


async def test_one_reservation_is_out_until_the_first_answer() -> None:
    """While learning, a second reservation waits until the first answer's headers."""
    multi = cold_llm()
    start = anyio.current_time()
    first = await multi.reserve(requests=1, tokens=100)
    admitted_at: list[float] = []

    async def second() -> None:
        await multi.reserve(requests=1, tokens=100)
        admitted_at.append(anyio.current_time() - start)

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await until_queued(multi, 1)
        await anyio.sleep(1.5)  # the first request is in flight
        assert admitted_at == []
        await first.reconcile(tokens=80)
        await multi.sync_from_headers({"x-ratelimit-remaining-tokens": "5000"})
    assert admitted_at == [pytest.approx(1.5, abs=1e-9)]
    assert not multi.learning


async def test_the_learned_room_is_what_the_tap_opens_onto() -> None:
    """After the headers, reservations are admitted against the provider's figure."""
    multi = cold_llm()
    first = await multi.reserve(requests=1, tokens=100)
    await first.reconcile(tokens=100)
    await multi.sync_from_headers({"x-ratelimit-remaining-tokens": "250"})
    now = anyio.current_time()
    assert multi.reserve_nowait(now, requests=1, tokens=200) is not None
    assert multi.reserve_nowait(now, requests=1, tokens=200) is None


async def test_waiters_are_admitted_in_arrival_order() -> None:
    """Reservations held back by the cold start are admitted FIFO, one per settle."""
    multi = cold_llm()
    first = await multi.reserve(requests=1, tokens=10)
    order: list[str] = []
    held: list[Reservation] = []

    async def caller(label: str) -> None:
        held.append(await multi.reserve(requests=1, tokens=10))
        order.append(label)

    async with anyio.create_task_group() as tg:
        for index, label in enumerate("abc"):
            tg.start_soon(caller, label)
            await until_queued(multi, index + 1)
        await first.release()  # never reached the provider: still learning
        await anyio.sleep(0.1)
        assert order == ["a"]
        await held[0].reconcile(tokens=10)
        await anyio.sleep(0.1)
        assert order == ["a", "b"]
        await held[1].reconcile(tokens=10)
    assert order == ["a", "b", "c"]
    assert multi.learning  # two reconciles without headers, learn_after=3


async def test_learning_ends_after_reconciles_without_headers() -> None:
    """A provider that sends no headers ends the cold start after learn_after reconciles."""
    multi = cold_llm(ColdStart(outstanding=1, learn_after=2))
    for _ in range(2):
        reservation = await multi.reserve(requests=1, tokens=10)
        await reservation.reconcile(tokens=10)
    assert not multi.learning
    now = anyio.current_time()
    assert multi.reserve_nowait(now, requests=1) is not None
    assert multi.reserve_nowait(now, requests=1) is not None


async def test_a_held_back_reservation_is_refused_at_its_deadline() -> None:
    """A reservation still held back when its deadline comes raises RateLimited then."""
    multi = cold_llm()
    await multi.reserve(requests=1, tokens=10)
    start = anyio.current_time()
    with capture_events(), pytest.raises(RateLimited) as info:
        await multi.reserve(requests=1, tokens=10, deadline=start + 2.0)
    assert anyio.current_time() - start == pytest.approx(2.0, abs=1e-9)
    assert info.value.retry_after == 0
    assert multi.metrics().queued == 0


async def test_reserve_nowait_declines_while_held_back() -> None:
    """The fast path answers None (not a refusal) while the cold start holds it back."""
    multi = cold_llm(ColdStart(outstanding=2))
    now = anyio.current_time()
    assert multi.reserve_nowait(now, requests=1) is not None
    assert multi.reserve_nowait(now, requests=1) is not None
    assert multi.reserve_nowait(now, requests=1) is None
    assert multi.metrics().rejected == 0


async def test_plain_acquires_are_not_held_back() -> None:
    """acquire (no reservation to settle) is not subject to the cold start."""
    multi = cold_llm()
    await multi.reserve(requests=1)
    start = anyio.current_time()
    await multi.acquire(requests=1, tokens=10)
    assert anyio.current_time() - start == 0


async def test_a_single_limiter_can_start_cold_too() -> None:
    """create_limiter(cold_start=...) holds a second reservation back until the first settles."""
    limiter = create_limiter(TokenBucket.per_second(10), name="svc", cold_start=ColdStart())
    now = anyio.current_time()
    first = limiter.reserve_nowait(1, now)
    assert first is not None
    assert limiter.reserve_nowait(1, now) is None
    await first.reconcile(1)
    assert limiter.reserve_nowait(1, now) is not None


async def test_without_cold_start_the_tap_is_open() -> None:
    """By default a multi-limit admits a pool-full of reservations at once."""
    multi = create_multi_limit({"requests": TokenBucket.per_second(100)}, name="llm")
    now = anyio.current_time()
    assert all(multi.reserve_nowait(now, requests=1) is not None for _ in range(10))
    assert not multi.learning


@pytest.mark.parametrize(
    ("changes", "field"), [({"outstanding": 0}, "outstanding"), ({"learn_after": 0}, "learn_after")]
)
def test_bad_cold_start_names_the_field(changes: dict[str, int], field: str) -> None:
    """ColdStart validates its counts."""
    with pytest.raises(ConfigError) as info:
        ColdStart(**changes)
    assert info.value.field == field


def test_cold_start_must_be_a_cold_start() -> None:
    """create_multi_limit refuses something else as cold_start."""
    with pytest.raises(ConfigError) as info:
        create_multi_limit(
            {"requests": TokenBucket.per_second(1)},
            name="llm",
            cold_start=1,  # type: ignore[arg-type]
        )
    assert info.value.field == "cold_start"


class RemoteStore:
    """A store that answers after a round trip (as Redis does): not a SyncLimiterStore."""

    def __init__(self) -> None:
        self._local = MemoryLimiterStore()

    async def decide(self, group: str, requests: Any, *, now: float) -> tuple[bool, float]:
        await anyio.sleep(0.01)
        return await self._local.decide(group, requests, now=now)

    async def charge(self, group: str, key: str, config: Any, cost: float, *, now: float) -> None:
        await self._local.charge(group, key, config, cost, now=now)

    async def wait_time(
        self, group: str, key: str, config: Any, cost: float, *, now: float
    ) -> float:
        return await self._local.wait_time(group, key, config, cost, now=now)

    async def available(self, group: str, key: str, config: Any, *, now: float) -> float:
        return await self._local.available(group, key, config, now=now)

    async def resync(
        self, group: str, key: str, config: Any, remaining: float, *, now: float
    ) -> None:
        await self._local.resync(group, key, config, remaining, now=now)

    async def hold(self, group: str, until: float, *, now: float) -> None:
        await self._local.hold(group, until, now=now)


async def test_concurrent_reservations_through_a_remote_store_respect_the_cold_start() -> None:
    """With a store that answers after an await, ten callers reserving at once still get
    one reservation out while learning (each used to pass the check before any was
    counted, and all ten went to a provider whose window might be full)."""
    store: LimiterStore = RemoteStore()
    multi = create_multi_limit(
        {"requests": TokenBucket.per_second(100), "tokens": TokenBucket.per_second(10_000)},
        name="remote",
        store=store,
        cold_start=ColdStart(),
    )
    admitted: list[Reservation] = []

    async def reserve() -> None:
        admitted.append(await multi.reserve(requests=1, tokens=10))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(reserve)
        await anyio.sleep(1.0)
        assert len(admitted) == 1
        await admitted[0].reconcile(tokens=10)
        await multi.sync_from_headers({"x-ratelimit-remaining-tokens": "5000"})
    assert len(admitted) == 10
