"""Connection pool: FIFO borrowing, validation, expiry, replacement and leak-free close."""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import ConfigError, Pool, PoolClosed, PoolConfig, PoolTimeout, open_pool
from actors.testing import capture_events, virtual_time_backend

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


@attrs.define(eq=False)
class Conn:
    number: int
    closed: bool = False
    users: int = 0


class Refused(Exception):
    """The fake server refuses a connection."""


class Broken(Exception):
    """The fake connection broke under its user."""


@attrs.define(eq=False)
class FakeFactory:
    """Counts opens and closes; programmable delays, failures and validity."""

    open_delay: float = 0.0
    close_delay: float = 0.0
    fail_opens: int = 0
    valid: bool = True
    opened: list[Conn] = attrs.field(factory=list)
    closed: list[Conn] = attrs.field(factory=list)
    validations: int = 0

    async def open(self) -> Conn:
        await anyio.sleep(self.open_delay)
        if self.fail_opens:
            self.fail_opens -= 1
            raise Refused("connection refused")
        conn = Conn(len(self.opened))
        self.opened.append(conn)
        return conn

    async def close(self, conn: Conn) -> None:
        assert not conn.closed, "closed twice"
        conn.closed = True
        self.closed.append(conn)
        await anyio.sleep(self.close_delay)

    async def validate(self, conn: Conn) -> bool:
        self.validations += 1
        await anyio.lowlevel.checkpoint()
        return self.valid


def is_closed(conn: Conn) -> bool:
    return conn.closed


def all_closed(factory: FakeFactory) -> bool:
    """Every opened connection was closed exactly once."""
    return sorted(c.number for c in factory.closed) == [c.number for c in factory.opened]


def config(**kwargs: Any) -> PoolConfig:
    base: dict[str, Any] = {"max_size": 2, "acquire_timeout": 10.0, "max_idle": None}
    base.update(kwargs)
    return PoolConfig(**base)


async def until(predicate: Any) -> None:
    """Yields (without time passing) until `predicate()` is true."""
    while not predicate():
        await anyio.lowlevel.checkpoint()


async def hold(pool: Pool[Conn], seconds: float, got: list[Conn] | None = None) -> None:
    async with pool.connection() as conn:
        if got is not None:
            got.append(conn)
        await anyio.sleep(seconds)


@asynccontextmanager
async def only_connection_held(pool: Pool[Conn]) -> AsyncIterator[None]:
    """Runs the block while another task holds the pool's only connection."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(hold, pool, 100.0)
        await until(lambda: pool.stats().in_use == 1)
        yield
        tg.cancel_scope.cancel()


# -- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_size": -1}, "min_size"),
        ({"max_size": 0}, "max_size"),
        ({"min_size": 3, "max_size": 2}, "min_size"),
        ({"acquire_timeout": 0}, "acquire_timeout"),
        ({"max_lifetime": -1.0}, "max_lifetime"),
        ({"max_idle": 0}, "max_idle"),
        ({"validate_on_borrow": 1}, "validate_on_borrow"),
        ({"validation_interval": 0}, "validation_interval"),
        ({"close_timeout": -1}, "close_timeout"),
        ({"close_on_cancel": "yes"}, "close_on_cancel"),
        ({"broken_on": 3}, "broken_on"),
        ({"reconnect_delay": 0}, "reconnect_delay"),
    ],
)
def test_bad_config_names_field(kwargs: dict[str, Any], field: str) -> None:
    """An invalid value raises ConfigError naming the field."""
    with pytest.raises(ConfigError) as info:
        PoolConfig(**kwargs)
    assert info.value.field == field


def test_defaults_close_on_cancel() -> None:
    """By default a pool holds up to 10 connections and closes one whose holder was cancelled."""
    cfg = PoolConfig()
    assert (cfg.min_size, cfg.max_size, cfg.close_on_cancel) == (0, 10, True)


async def test_open_pool_rejects_bad_arguments() -> None:
    """open_pool refuses an empty name or a config of the wrong type."""
    with pytest.raises(ConfigError):
        async with open_pool(FakeFactory(), name=""):
            pass
    with pytest.raises(ConfigError):
        async with open_pool(FakeFactory(), {"max_size": 1}, name="db"):  # type: ignore[arg-type]
            pass


# -- borrowing ---------------------------------------------------------------------------


async def test_connection_is_reused() -> None:
    """A returned connection is lent again instead of opening a new one."""
    factory = FakeFactory()
    async with open_pool(factory, config(), name="db") as pool:
        async with pool.connection() as first:
            pass
        async with pool.connection() as second:
            assert second is first
        assert pool.stats().created == 1
    assert all_closed(factory)


async def test_idle_connection_is_lent_without_time_passing() -> None:
    """Borrowing an idle connection takes no time."""
    factory = FakeFactory(open_delay=1.0)
    async with open_pool(factory, config(min_size=1), name="db") as pool:
        start = anyio.current_time()
        async with pool.connection():
            assert anyio.current_time() == start


async def test_waiters_are_served_fifo() -> None:
    """Beyond max_size, callers wait and get connections in arrival order."""
    factory = FakeFactory()
    order: list[int] = []

    async def borrower(index: int) -> None:
        async with pool.connection():
            order.append(index)
            await anyio.sleep(1)

    async with open_pool(factory, config(max_size=1), name="db") as pool:
        async with anyio.create_task_group() as tg:
            for index in range(4):
                tg.start_soon(borrower, index)
                await until(lambda n=index: pool.stats().waiting + pool.stats().in_use > n)
        assert order == [0, 1, 2, 3]
        assert pool.stats().waits == 3
    assert len(factory.opened) == 1


async def test_acquire_times_out_after_acquire_timeout() -> None:
    """A caller waits exactly acquire_timeout, then gets PoolTimeout."""
    async with open_pool(FakeFactory(), config(max_size=1, acquire_timeout=3.0), name="db") as pool:
        async with only_connection_held(pool):
            start = anyio.current_time()
            with pytest.raises(PoolTimeout) as info:
                async with pool.connection():
                    pass
            assert anyio.current_time() - start == pytest.approx(3.0, abs=1e-9)
            assert (info.value.name, info.value.timeout) == ("db", 3.0)
            assert isinstance(info.value, TimeoutError)
            assert pool.stats().timeouts == 1
            assert pool.stats().waiting == 0


async def test_earlier_deadline_wins() -> None:
    """A deadline before acquire_timeout ends the wait at the deadline."""
    async with open_pool(FakeFactory(), config(max_size=1), name="db") as pool:
        async with only_connection_held(pool):
            start = anyio.current_time()
            with pytest.raises(PoolTimeout):
                async with pool.connection(deadline=start + 1.5):
                    pass
            assert anyio.current_time() - start == pytest.approx(1.5, abs=1e-9)


async def test_actor_handler_wait_ends_with_the_call() -> None:
    """A handler waiting for a connection stops at the call's deadline; nothing leaks."""
    from actors import Actor, CallTimeout, current_deadline, open_actor

    factory = FakeFactory()
    seen: list[float] = []

    class UsesPool(Actor[str, str]):
        max_concurrency = 4

        async def handle(self, msg: str) -> str:
            seen.append(current_deadline())
            try:
                async with pool.connection() as conn:
                    await anyio.sleep(100 if msg == "hog" else 0)
                    return f"conn {conn.number}"
            except PoolTimeout:  # at the call's deadline: a reply nobody may wait for
                return "pool timeout"

    async with (
        open_pool(factory, config(max_size=1, acquire_timeout=60.0), name="db") as pool,
        open_actor(UsesPool()) as ref,
    ):
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(ref.call, "hog", timeout=50))
            await until(lambda: pool.stats().in_use == 1)
            start = anyio.current_time()
            try:
                reply = await ref.call("wait", timeout=2.0)
            except CallTimeout:
                reply = "call timeout"
            # Both end at the same instant; which one the caller sees is scheduling.
            assert reply in {"call timeout", "pool timeout"}
            assert anyio.current_time() - start == pytest.approx(2.0, abs=1e-9)
            assert seen[-1] == pytest.approx(start + 2.0, abs=1e-9)
            await anyio.lowlevel.checkpoint()
            assert pool.stats().waiting == 0
            tg.cancel_scope.cancel()
        await anyio.sleep(1)  # the actor cancels the abandoned "hog" handler
        assert pool.stats().in_use == 0
    assert all_closed(factory)


async def test_past_deadline_fails_at_once() -> None:
    """A caller whose deadline already passed gets PoolTimeout without waiting."""
    async with open_pool(FakeFactory(), config(max_size=1), name="db") as pool:
        async with only_connection_held(pool):
            start = anyio.current_time()
            with pytest.raises(PoolTimeout):
                async with pool.connection(deadline=start - 1):
                    pass
            assert anyio.current_time() == start


async def test_open_failure_reaches_the_borrower() -> None:
    """The factory's error from opening a connection propagates and frees the slot."""
    factory = FakeFactory(fail_opens=1)
    with capture_events() as events:
        async with open_pool(factory, config(max_size=1), name="db") as pool:
            with pytest.raises(Refused):
                async with pool.connection():
                    pass
            assert pool.stats().failed_opens == 1
            async with pool.connection() as conn:
                assert conn.number == 0
    assert any(e["event"] == "pool.open_failed" and e["pool"] == "db" for e in events)


async def test_slow_open_is_bounded_by_the_timeout() -> None:
    """An open slower than the acquire budget ends in PoolTimeout and leaks nothing."""
    factory = FakeFactory(open_delay=5.0)
    async with open_pool(factory, config(acquire_timeout=2.0), name="db") as pool:
        start = anyio.current_time()
        with pytest.raises(PoolTimeout):
            async with pool.connection():
                pass
        assert anyio.current_time() - start == pytest.approx(2.0, abs=1e-9)
        assert pool.stats().size == 0
    assert factory.opened == []


async def test_failed_open_lets_a_waiter_open() -> None:
    """When an open fails, the first waiter gets the freed room and opens its own."""
    factory = FakeFactory(open_delay=1.0, fail_opens=1)
    results: list[object] = []

    async def borrower() -> None:
        try:
            async with pool.connection() as conn:
                results.append(conn.number)
        except Refused as exc:
            results.append(exc)

    async with open_pool(factory, config(max_size=1), name="db") as pool:
        async with anyio.create_task_group() as tg:
            tg.start_soon(borrower)
            await until(lambda: pool.stats().size == 1)
            tg.start_soon(borrower)
        assert isinstance(results[0], Refused)
        assert results[1] == 0


# -- validation --------------------------------------------------------------------------


async def test_validate_on_borrow_replaces_bad_connection() -> None:
    """A connection failing validation on borrow is closed and a new one is lent."""
    factory = FakeFactory()
    async with open_pool(factory, config(validate_on_borrow=True), name="db") as pool:
        async with pool.connection():
            pass
        factory.valid = False
        async with pool.connection() as conn:
            assert conn.number == 1  # a fresh connection is lent without a check
        assert factory.opened[0].closed
        assert pool.stats().failed_validations == 1
    assert all_closed(factory)


async def test_borrower_keeps_its_turn_when_its_connection_fails_validation() -> None:
    """A waiter handed a connection that fails validation opens a replacement itself."""
    factory = FakeFactory()
    order: list[tuple[str, int]] = []

    async def borrower(name: str) -> None:
        async with pool.connection() as conn:
            order.append((name, conn.number))

    cfg = config(max_size=1, validate_on_borrow=True)
    async with open_pool(factory, cfg, name="db") as pool:
        lease = pool.connection()
        await lease.__aenter__()
        async with anyio.create_task_group() as tg:
            tg.start_soon(borrower, "first")
            await until(lambda: pool.stats().waiting == 1)
            tg.start_soon(borrower, "second")
            await until(lambda: pool.stats().waiting == 2)
            factory.valid = False
            await lease.__aexit__(None, None, None)
        # Each waiter, in turn, replaced the invalid connection it was handed.
        assert order == [("first", 1), ("second", 2)]
        assert pool.stats().failed_validations == 2


async def test_validation_exception_counts_as_invalid() -> None:
    """A validate that raises closes the connection like a false result."""

    class Raising(FakeFactory):
        async def validate(self, conn: Conn) -> bool:
            raise Broken("ping failed")

    factory = Raising()
    async with open_pool(factory, config(validate_on_borrow=True), name="db") as pool:
        async with pool.connection():
            pass
        async with pool.connection() as conn:
            assert conn.number == 1
        assert pool.stats().failed_validations == 1
    assert all_closed(factory)


async def test_idle_connections_are_validated_in_background() -> None:
    """With validation_interval, idle connections are checked and bad ones replaced."""
    factory = FakeFactory()
    cfg = config(min_size=1, validation_interval=10.0)
    async with open_pool(factory, cfg, name="db") as pool:
        await anyio.sleep(10.5)
        assert factory.validations == 1
        factory.valid = False
        await anyio.sleep(10.0)
        assert factory.opened[0].closed
        assert pool.stats().failed_validations >= 1
        factory.valid = True
        await anyio.sleep(20.0)
        assert pool.stats().idle == 1


# -- returning ---------------------------------------------------------------------------


async def test_discard_closes_instead_of_returning() -> None:
    """lease.discard() closes the connection when the block ends."""
    factory = FakeFactory()
    async with open_pool(factory, config(), name="db") as pool:
        lease = pool.connection()
        async with lease as conn:
            assert lease.connection is conn
            lease.discard()
        assert conn.closed
        assert pool.stats().idle == 0
        with pytest.raises(RuntimeError):
            _ = lease.connection


async def test_broken_on_predicate_closes_connection() -> None:
    """An exception the config calls broken closes the connection; others return it."""
    factory = FakeFactory()
    cfg = config(broken_on=lambda exc: isinstance(exc, Broken))
    async with open_pool(factory, cfg, name="db") as pool:
        with pytest.raises(ValueError, match="bad input"):
            async with pool.connection() as first:
                raise ValueError("bad input")
        assert not first.closed
        assert pool.stats().idle == 1
        with pytest.raises(Broken):
            async with pool.connection() as second:
                raise Broken
        assert second is first
        assert is_closed(first)
        assert pool.stats().idle == 0


async def test_cancelled_holder_closes_connection_by_default() -> None:
    """A holder cancelled mid-use closes its connection (it may be dirty)."""
    factory = FakeFactory()
    async with open_pool(factory, config(), name="db") as pool:
        with anyio.move_on_after(1.0):
            await hold(pool, 10.0)
        assert factory.opened[0].closed
        assert pool.stats().in_use == 0


async def test_cancelled_holder_returns_connection_if_configured() -> None:
    """With close_on_cancel=False a cancelled holder returns its connection."""
    factory = FakeFactory()
    async with open_pool(factory, config(close_on_cancel=False), name="db") as pool:
        with anyio.move_on_after(1.0):
            await hold(pool, 10.0)
        assert not factory.opened[0].closed
        assert pool.stats().idle == 1


async def test_cancelled_waiter_leaves_no_trace() -> None:
    """A waiter cancelled while queued takes nothing; the next borrower is served."""
    factory = FakeFactory()
    async with open_pool(factory, config(max_size=1), name="db") as pool:
        async with anyio.create_task_group() as tg:
            tg.start_soon(hold, pool, 5.0)
            await until(lambda: pool.stats().in_use == 1)
            with anyio.move_on_after(1.0):
                async with pool.connection():
                    pytest.fail("never lent")
            assert pool.stats().waiting == 0
        async with pool.connection() as conn:
            assert conn.number == 0
        assert pool.stats().in_use == 0


async def test_waiter_cancelled_when_handed_connection_passes_it_on() -> None:
    """A connection handed to a waiter that is cancelled at that moment goes to the next."""
    factory = FakeFactory()
    got: list[Conn] = []
    async with open_pool(factory, config(max_size=1, close_on_cancel=False), name="db") as pool:
        async with anyio.create_task_group() as tg:
            lease = pool.connection()
            await lease.__aenter__()
            victim = anyio.CancelScope()

            async def waiter() -> None:
                with victim:
                    await hold(pool, 0, got)

            tg.start_soon(waiter)
            await until(lambda: pool.stats().waiting == 1)
            tg.start_soon(hold, pool, 0, got)
            await until(lambda: pool.stats().waiting == 2)
            await lease.__aexit__(None, None, None)  # hands the connection to the victim
            victim.cancel()  # ...which is cancelled before it runs
        assert got[-1] is factory.opened[0]  # the second waiter got the only connection
        assert len(factory.opened) == 1
        assert pool.stats().in_use == 0
        assert pool.stats().idle == 1


# -- lifetime and idle expiry ------------------------------------------------------------


async def test_returned_connection_past_lifetime_is_closed() -> None:
    """A connection older than max_lifetime is closed when returned."""
    factory = FakeFactory()
    async with open_pool(factory, config(max_lifetime=5.0), name="db") as pool:
        async with pool.connection() as conn:
            await anyio.sleep(6.0)
        assert conn.closed
        async with pool.connection() as fresh:
            assert fresh is not conn


async def test_idle_connection_expires_at_max_lifetime() -> None:
    """An idle connection is closed exactly at max_lifetime and replaced up to min_size."""
    factory = FakeFactory()
    async with open_pool(factory, config(min_size=1, max_lifetime=30.0), name="db") as pool:
        start = anyio.current_time()
        await anyio.sleep(29.0)
        assert not factory.opened[0].closed
        await anyio.sleep(1.0)
        await until(lambda: len(factory.opened) == 2)
        assert is_closed(factory.opened[0])
        assert anyio.current_time() - start == pytest.approx(30.0, abs=1e-9)
        assert pool.stats().idle == 1


async def test_idle_expiry_keeps_min_size() -> None:
    """Idle connections beyond min_size close after max_idle; min_size stay warm."""
    factory = FakeFactory()
    async with open_pool(factory, config(min_size=1, max_size=3, max_idle=60.0), name="db") as pool:
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(hold, pool, 1.0)
        assert pool.stats().idle == 3
        await anyio.sleep(59.0)
        assert pool.stats().idle == 3
        await anyio.sleep(1.1)  # returned at t=1, so they expire at t=61
        assert pool.stats().idle == 1
        await anyio.sleep(600.0)
        assert pool.stats().idle == 1
        assert len(factory.closed) == 2


async def test_min_size_is_warm_at_start_and_refilled() -> None:
    """open_pool opens min_size connections; a discarded one is replaced in the background."""
    factory = FakeFactory(open_delay=0.5)
    async with open_pool(factory, config(min_size=2, max_size=3), name="db") as pool:
        assert pool.stats().idle == 2
        lease = pool.connection()
        async with lease:
            lease.discard()
        await anyio.sleep(0.5)
        await until(lambda: pool.stats().idle == 2)
        assert len(factory.opened) == 3


async def test_background_open_failure_retries_after_delay() -> None:
    """A failing warm-up open is retried after reconnect_delay, not in a tight loop."""
    factory = FakeFactory(fail_opens=2)
    cfg = config(min_size=1, reconnect_delay=2.0)
    with capture_events() as events:
        async with open_pool(factory, cfg, name="db") as pool:
            assert pool.stats().idle == 0
            await anyio.sleep(3.9)
            assert pool.stats().idle == 0
            assert pool.stats().failed_opens == 2
            await anyio.sleep(0.2)
            assert pool.stats().idle == 1
    assert sum(e["event"] == "pool.open_failed" for e in events) == 2


# -- closing -----------------------------------------------------------------------------


async def test_close_wakes_waiters_and_refuses_borrowers() -> None:
    """Closing the pool fails waiters and later borrowers with PoolClosed."""
    factory = FakeFactory()
    errors: list[BaseException] = []

    async def waiter() -> None:
        try:
            async with pool.connection():
                pass
        except PoolClosed as exc:
            errors.append(exc)

    async with open_pool(factory, config(max_size=1), name="db") as pool:
        lease = pool.connection()
        conn = await lease.__aenter__()
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await until(lambda: pool.stats().waiting == 1)
            await pool.aclose()
        assert len(errors) == 1
        assert pool.closed
        assert not conn.closed  # still in use...
        await lease.__aexit__(None, None, None)
        assert is_closed(conn)  # ...closed when returned
        with pytest.raises(PoolClosed):
            async with pool.connection():
                pass
    assert all_closed(factory)


async def test_close_is_time_limited() -> None:
    """A close that hangs is abandoned after close_timeout, and still counted."""
    factory = FakeFactory(close_delay=math.inf)
    with capture_events() as events:
        async with open_pool(factory, config(min_size=2, close_timeout=3.0), name="db") as pool:
            start = anyio.current_time()
        assert anyio.current_time() - start == pytest.approx(3.0, abs=1e-9)
    assert pool.stats().closed == 2
    assert sum(e["event"] == "pool.close_timeout" for e in events) == 2


async def test_close_runs_when_block_is_cancelled() -> None:
    """Cancelling the pool's block still closes every connection (shielded)."""
    factory = FakeFactory(close_delay=1.0)
    with anyio.move_on_after(5.0):
        async with open_pool(factory, config(min_size=2), name="db"):
            await anyio.sleep_forever()
    assert len(factory.opened) == 2
    assert all_closed(factory)


async def test_stats_snapshot() -> None:
    """stats() reports gauges and counters."""
    factory = FakeFactory()
    async with open_pool(factory, config(max_size=3, min_size=1), name="db") as pool:
        async with pool.connection(), pool.connection():
            stats = pool.stats()
            assert (stats.name, stats.size, stats.in_use, stats.idle) == ("db", 2, 2, 0)
            assert (stats.created, stats.closed, stats.waiting) == (2, 0, 0)
        assert pool.stats().idle == 2


# -- property: nothing leaks -------------------------------------------------------------


@attrs.frozen
class Op:
    at: float  # when the borrower starts
    hold: float  # how long it holds the connection
    end: str  # "return", "discard", "broken", "other_error"
    cancel_after: float | None  # the borrower's own cancellation
    deadline_after: float | None  # the borrower's acquire deadline


@attrs.define(eq=False)
class ScriptedFactory(FakeFactory):
    """A FakeFactory whose opens fail and validations pass according to scripts."""

    open_script: list[bool] = attrs.field(factory=list)  # False: that open fails
    valid_script: list[bool] = attrs.field(factory=list)
    peak: int = 0  # most connections open at once

    async def open(self) -> Conn:
        await anyio.sleep(self.open_delay)
        if self.open_script and not self.open_script.pop(0):
            raise Refused("scripted refusal")
        conn = Conn(len(self.opened))
        self.opened.append(conn)
        self.peak = max(self.peak, len(self.opened) - len(self.closed))
        return conn

    async def validate(self, conn: Conn) -> bool:
        assert not conn.closed
        await anyio.lowlevel.checkpoint()
        return self.valid_script.pop(0) if self.valid_script else True


quarters = st.integers(0, 16).map(lambda n: n / 4)
pool_ops = st.builds(
    Op,
    at=quarters,
    hold=quarters,
    end=st.sampled_from(["return", "return", "discard", "broken", "other_error"]),
    cancel_after=st.none() | quarters,
    deadline_after=st.none() | quarters,
)
pool_configs: st.SearchStrategy[dict[str, Any]] = st.builds(
    dict,
    min_size=st.integers(0, 2),
    max_size=st.integers(2, 3),
    acquire_timeout=st.sampled_from([0.5, 2.0, 10.0]),
    max_lifetime=st.sampled_from([None, 1.5, 5.0]),
    max_idle=st.sampled_from([None, 0.75, 3.0]),
    validate_on_borrow=st.booleans(),
    validation_interval=st.sampled_from([None, 1.0]),
    close_on_cancel=st.booleans(),
    close_timeout=st.sampled_from([0.0, 0.5, 5.0]),
    reconnect_delay=st.sampled_from([0.25, 1.0]),
)


async def _pool_scenario(
    script: list[Op], cfg: dict[str, Any], factory: ScriptedFactory, close_at: float | None
) -> Pool[Conn]:
    expected = (PoolTimeout, PoolClosed, Refused, Broken, ValueError)
    cfg = {**cfg, "broken_on": lambda exc: isinstance(exc, Broken)}

    async def borrower(op: Op) -> None:
        await anyio.sleep(op.at)
        now = anyio.current_time()
        deadline = None if op.deadline_after is None else now + op.deadline_after
        with anyio.CancelScope() as scope:
            if op.cancel_after is not None:
                scope.deadline = now + op.cancel_after
            try:
                lease = pool.connection(deadline=deadline)
                async with lease as conn:
                    assert not conn.closed, "lent a closed connection"
                    assert conn.users == 0, "lent a connection in use"
                    conn.users += 1
                    try:
                        await anyio.sleep(op.hold)
                    finally:
                        conn.users -= 1
                    if op.end == "discard":
                        lease.discard()
                    elif op.end == "broken":
                        raise Broken
                    elif op.end == "other_error":
                        raise ValueError("not the connection's fault")
            except expected:
                pass

    async def closer(at: float) -> None:
        await anyio.sleep(at)
        await pool.aclose()

    async with open_pool(factory, PoolConfig(**cfg), name="prop") as pool:
        async with anyio.create_task_group() as tg:
            for op in script:
                tg.start_soon(borrower, op)
            if close_at is not None:
                tg.start_soon(closer, close_at)
        stats = pool.stats()
        if not pool.closed:
            assert stats.in_use == 0
        assert stats.size <= pool.config.max_size
    return pool


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    script=st.lists(pool_ops, min_size=1, max_size=10),
    cfg=pool_configs,
    open_delay=st.sampled_from([0.0, 0.25, 1.0]),
    close_delay=st.sampled_from([0.0, 0.25]),
    open_script=st.lists(st.booleans(), max_size=6),
    valid_script=st.lists(st.booleans(), max_size=6),
    close_at=st.none() | quarters,
)
def test_every_opened_connection_is_closed(
    backend: str,
    script: list[Op],
    cfg: dict[str, Any],
    open_delay: float,
    close_delay: float,
    open_script: list[bool],
    valid_script: list[bool],
    close_at: float | None,
) -> None:
    """Any borrow/return/break/cancel mix: opened == closed, <= max_size open, never shared."""
    factory = ScriptedFactory(
        open_delay=open_delay,
        close_delay=close_delay,
        open_script=open_script,
        valid_script=valid_script,
    )
    name, options = virtual_time_backend(backend)

    async def main() -> Pool[Conn]:
        with anyio.fail_after(10_000):
            return await _pool_scenario(script, cfg, factory, close_at)

    pool = anyio.run(main, backend=name, backend_options=options)
    stats = pool.stats()
    assert all_closed(factory)
    assert factory.peak <= cfg["max_size"]
    assert (stats.size, stats.in_use, stats.idle, stats.waiting) == (0, 0, 0, 0)
    assert stats.created == stats.closed == len(factory.opened)
