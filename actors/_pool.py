"""Connection pool: bounded, validated, expiring connections handed out in FIFO order.

A pool is generic over a connection type `C` and opens, checks and closes connections
through a `ConnectionFactory` (three async methods). Create it with `open_pool`, which
also runs the pool's maintenance task (keeps `min_size` warm, expires idle and old
connections, validates idle ones) and closes everything on exit::

    async with open_pool(factory, PoolConfig(max_size=5), name="db") as pool:
        async with pool.connection() as conn:
            ...

Accounting: every connection the factory opened is closed by the pool exactly once:
when broken, expired, failed validation, on return to a closing pool, or at close.
Connections still lent out when the pool closes are closed when their holder returns
them. A released connection is handed straight to the first waiter (nobody barges in);
a waiter cancelled at the moment it is handed a connection (or the right to open one)
passes it on: nothing leaks.

The success path (an idle connection and nobody waiting) takes no lock, starts no task
and enters no cancel scope: a pop, a clock read and a comparison.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel
import attrs

from actors._envelope import DEADLINE_VAR
from actors._errors import PoolClosed, PoolTimeout
from actors._events import emit
from actors._kernel import current_kernel
from actors._pool_config import PoolConfig, PoolStats
from actors._validate import check_instance, check_name

__all__ = [
    "ConnectionFactory",
    "Lease",
    "Pool",
    "PoolClosed",
    "PoolConfig",
    "PoolStats",
    "PoolTimeout",
    "open_pool",
]

C = TypeVar("C")


class ConnectionFactory(Protocol[C]):
    """Opens, checks and closes connections of one kind for a pool.

    The pool bounds every call with a timeout and may cancel `open` and `validate`;
    a cancelled `open` must not leave a connection behind. `close` runs shielded from
    cancellation and is abandoned after the pool's `close_timeout`.
    """

    async def open(self) -> C:
        """Opens a new connection; raises (an `Exception`) when it cannot."""
        ...

    async def close(self, conn: C) -> None:
        """Closes a connection; exceptions are logged and ignored."""
        ...

    async def validate(self, conn: C) -> bool:
        """True when the connection is usable; false or an exception closes it."""
        ...


@attrs.define(eq=False, slots=True)
class _Entry(Generic[C]):
    conn: C
    created: float
    returned: float
    validated: float


@attrs.define(eq=False, slots=True)
class _Waiter(Generic[C]):
    event: anyio.Event = attrs.field(factory=anyio.Event)
    entry: _Entry[C] | None = None
    may_open: bool = False


class Lease(Generic[C]):
    """`async with pool.connection() as conn`: one borrowed connection for the block.

    Leaving the block returns the connection, or closes it when `discard()` was called,
    when the block raised an exception the config's `broken_on` calls broken, or when
    the block was cancelled and `close_on_cancel` is set.
    """

    __slots__ = ("_deadline", "_discard", "_entry", "_pool")

    def __init__(self, pool: Pool[C], deadline: float | None) -> None:
        self._pool = pool
        self._deadline = deadline
        self._entry: _Entry[C] | None = None
        self._discard = False

    @property
    def connection(self) -> C:
        """The borrowed connection (only inside the block).

        Raises:
            RuntimeError: Outside the block.
        """
        if self._entry is None:
            raise RuntimeError("the lease holds no connection outside its block")
        return self._entry.conn

    def discard(self) -> None:
        """Marks the connection broken: it is closed instead of returned."""
        self._discard = True

    async def __aenter__(self) -> C:
        pool = self._pool
        entry = pool.take_idle()
        if entry is None:
            entry = await pool._acquire_slow(self._deadline)
        self._entry = entry
        return entry.conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entry = self._entry
        if entry is None:  # pragma: no cover - only if __aenter__ failed
            return
        self._entry = None
        pool = self._pool
        discard = self._discard or (exc is not None and pool.breaks(exc))
        if discard or not pool.return_idle(entry):  # no coroutine on the healthy path
            await pool._close_returned(entry, discard)


@attrs.define(eq=False)
class Pool(Generic[C]):
    """A pool of connections; create it with `open_pool`.

    Attributes:
        name: The pool's name (usually the service), used in errors and events.
        config: Its sizes and timeouts.
        factory: Opens, validates and closes its connections.
    """

    name: str
    config: PoolConfig
    factory: ConnectionFactory[C]
    _idle: deque[_Entry[C]] = attrs.field(factory=deque)
    _waiters: deque[_Waiter[C]] = attrs.field(factory=deque)
    _in_use: int = 0
    _busy: int = 0  # being opened, validated in the background or closed
    _closing: bool = False
    _wake: anyio.Event | None = None
    _wake_at: float = math.inf
    _created: int = 0
    _closed: int = 0
    _failed_opens: int = 0
    _failed_validations: int = 0
    _waits: int = 0
    _timeouts: int = 0
    _now: Callable[[], float] = anyio.current_time  # open_pool binds the backend's clock

    # -- public API ------------------------------------------------------------------

    def connection(self, *, deadline: float | None = None) -> Lease[C]:
        """An async context manager lending one connection for its block.

        Entering waits (FIFO) up to `acquire_timeout`, or until `deadline` when earlier.
        Not a checkpoint when an idle connection is ready and `validate_on_borrow` is
        off; otherwise a checkpoint. Cancellation while waiting leaves no connection
        taken and no place in the queue; cancellation while holding one returns it, or
        closes it when `close_on_cancel` is set.

        Args:
            deadline: Absolute `anyio.current_time()` limit; by default the deadline of
                the actor message being handled (`actors.current_deadline()`), if any.

        Raises:
            PoolTimeout: No connection within the time allowed.
            PoolClosed: The pool is closed or closes while waiting.
            Exception: Whatever the factory's `open` raised for a new connection.
        """
        return Lease(self, deadline)

    @property
    def closed(self) -> bool:
        """True once the pool closes (it lends nothing more)."""
        return self._closing

    def stats(self) -> PoolStats:
        """A snapshot of the gauges and counters (never a checkpoint)."""
        return PoolStats(
            name=self.name,
            size=self._size(),
            in_use=self._in_use,
            idle=len(self._idle),
            waiting=len(self._waiters),
            created=self._created,
            closed=self._closed,
            failed_opens=self._failed_opens,
            failed_validations=self._failed_validations,
            waits=self._waits,
            timeouts=self._timeouts,
        )

    async def aclose(self) -> None:
        """Closes the pool: refuses new borrowers, wakes waiters, closes idle connections.

        Shielded from cancellation; each close is bounded by `close_timeout` and they
        run concurrently. Connections in use are closed when returned. Idempotent.
        """
        with anyio.CancelScope(shield=True):
            if self._closing:
                return
            self._closing = True
            while self._waiters:
                self._waiters.popleft().event.set()
            self._poke()
            idle = list(self._idle)
            self._idle.clear()
            self._busy += len(idle)
            async with anyio.create_task_group() as tg:
                for entry in idle:
                    tg.start_soon(self._close_busy, entry, "pool_closed")
            emit("pool.closed", level="debug", pool=self.name, in_use=self._in_use)

    # -- borrowing -------------------------------------------------------------------

    def _size(self) -> int:
        return len(self._idle) + self._in_use + self._busy

    def _too_old(self, entry: _Entry[C], now: float) -> bool:
        lifetime = self.config.max_lifetime
        return lifetime is not None and now - entry.created >= lifetime

    # -- the owner's fast path (no lease object, no coroutine) -----------------------

    def take_idle(self) -> _Entry[C] | None:
        """Lends an idle connection at once, or returns None (then use `connection()`).

        For owners on a hot path: hand the entry back with `return_idle`, or
        `await release(entry, discard=...)` when that returns False or the work failed.
        Not a checkpoint.
        """
        if self._idle and not self.config.validate_on_borrow:
            entry = self._idle.pop()
            lifetime = self.config.max_lifetime
            if lifetime is None or self._now() - entry.created < lifetime:
                self._in_use += 1
                return entry
            self._idle.append(entry)
        return None

    def return_idle(self, entry: _Entry[C]) -> bool:
        """Hands a healthy connection back without awaiting; False if it needs
        `await release(entry, discard=False)` (the pool is closing, or it is too old)."""
        if self._closing:
            return False
        now = self._now()
        lifetime = self.config.max_lifetime
        if lifetime is not None and now - entry.created >= lifetime:  # _too_old, inlined
            return False
        self._put_back(entry, now)
        return True

    async def release(self, entry: _Entry[C], *, discard: bool) -> None:
        """Returns (or, with `discard`, closes) a connection lent by `take_idle`."""
        if discard or not self.return_idle(entry):
            await self._close_returned(entry, discard)

    def breaks(self, exc: BaseException) -> bool:
        """Whether the connection must be closed after its holder ended with `exc`."""
        if isinstance(exc, Exception):
            predicate = self.config.broken_on
            return predicate is not None and bool(predicate(exc))
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            return self.config.close_on_cancel
        return True  # KeyboardInterrupt, SystemExit...: the connection's state is unknown

    async def _acquire_slow(self, deadline: float | None) -> _Entry[C]:
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._closing:
            raise PoolClosed(self.name)
        now = self._now()
        if deadline is None:
            deadline = DEADLINE_VAR.get()
        limit = min(deadline, now + self.config.acquire_timeout)
        budget = max(0.0, limit - now)
        entry: _Entry[C] | None = None
        reserved = False  # we hold room (counted in _busy) to open a connection
        while True:
            if reserved and self._idle:
                self._busy -= 1  # nobody waits while connections idle: reuse one instead
                reserved = False
            if entry is None and not reserved:
                if self._idle:
                    entry = self._idle.pop()
                    self._in_use += 1
                elif self._size() < self.config.max_size:
                    self._busy += 1
                    reserved = True
                else:
                    entry = await self._wait(limit, budget)
                    reserved = entry is None  # granted the room to open one
            fresh = False
            if entry is None:
                entry = await self._open_reserved(limit, budget)
                reserved = False
                fresh = True
            if self.closed:  # closed while we waited or opened
                await self._close_in_use(entry, "pool_closed")
                raise PoolClosed(self.name)
            if not fresh and self._too_old(entry, self._now()):
                await self._close_in_use(entry, "max_lifetime", keep_room=True)
                entry, reserved = None, True
                continue
            if (
                self.config.validate_on_borrow
                and not fresh  # a connection just opened needs no check
                and not await self._check_in_use(entry, limit)
            ):
                entry, reserved = None, True  # it was closed; its room is ours
                continue
            return entry

    async def _wait(self, limit: float, budget: float) -> _Entry[C] | None:
        """Queues for a connection; returns it, or None when granted room to open one."""
        if limit <= self._now():
            raise self._timeout(budget)
        waiter: _Waiter[C] = _Waiter()
        self._waiters.append(waiter)
        self._waits += 1
        try:
            with anyio.move_on_at(limit):
                await waiter.event.wait()
        except BaseException:
            await self._abandon(waiter)
            raise
        if waiter.entry is not None:
            return waiter.entry
        if waiter.may_open:
            return None
        if self._closing:  # aclose() emptied the queue
            raise PoolClosed(self.name)
        self._waiters.remove(waiter)
        raise self._timeout(budget)

    def _timeout(self, budget: float) -> PoolTimeout:
        self._timeouts += 1
        emit("pool.timeout", level="debug", pool=self.name, timeout=budget)
        return PoolTimeout(self.name, budget)

    async def _abandon(self, waiter: _Waiter[C]) -> None:
        """A cancelled waiter leaves the queue or passes on what it was handed."""
        if waiter.entry is not None:
            entry, waiter.entry = waiter.entry, None
            if self._closing:
                await self._close_in_use(entry, "pool_closed")
            else:
                self._put_back(entry)
        elif waiter.may_open:
            self._busy -= 1
            self._room_freed()
        elif not self._closing:  # else aclose() emptied the queue
            self._waiters.remove(waiter)

    async def _open_reserved(self, limit: float, budget: float) -> _Entry[C]:
        """Opens a connection in a slot already counted in `_busy`; returns it in use."""
        conn: Any = None
        opened = False
        try:
            with anyio.move_on_at(limit):
                conn = await self.factory.open()
                opened = True
        except BaseException as exc:
            self._busy -= 1
            if isinstance(exc, Exception):
                self._open_failed(exc)
            self._room_freed()
            raise
        if not opened:
            self._busy -= 1
            self._failed_opens += 1
            self._room_freed()
            raise self._timeout(budget)
        now = self._now()
        entry = _Entry(conn=conn, created=now, returned=now, validated=now)
        self._created += 1
        self._busy -= 1
        self._in_use += 1
        emit("pool.connection_opened", level="debug", pool=self.name)
        if self._closing:
            await self._close_in_use(entry, "pool_closed")
            raise PoolClosed(self.name)
        return entry

    def _open_failed(self, exc: Exception) -> None:
        self._failed_opens += 1
        emit(
            "pool.open_failed",
            level="warning",
            pool=self.name,
            error=type(exc).__name__,
            detail=str(exc),
        )

    async def _validates(self, entry: _Entry[C], limit: float) -> bool:
        """Runs the factory's `validate` until `limit`; raising or timing out is False.

        Cancellation propagates (the caller closes the connection).
        """
        with anyio.move_on_at(limit):
            try:
                return bool(await self.factory.validate(entry.conn))
            except Exception as exc:
                emit("pool.validate_error", level="debug", pool=self.name, error=type(exc).__name__)
        return False

    async def _check_in_use(self, entry: _Entry[C], limit: float) -> bool:
        """Validates a connection counted in use.

        Returns False after closing a bad one; the caller then holds its room (`_busy`).
        """
        try:
            ok = await self._validates(entry, limit)
        except BaseException:
            await self._close_in_use(entry, "cancelled")
            raise
        if ok:
            entry.validated = self._now()
            return True
        self._failed_validations += 1
        await self._close_in_use(entry, "validation_failed", keep_room=True)
        return False

    # -- returning -------------------------------------------------------------------

    async def _close_returned(self, entry: _Entry[C], discard: bool) -> None:
        """Closes a returned connection: discarded, or refused by `return_idle`."""
        reason = "pool_closed" if self._closing else "discarded" if discard else "max_lifetime"
        await self._close_in_use(entry, reason)

    def _put_back(self, entry: _Entry[C], now: float | None = None) -> None:
        """Hands a healthy in-use connection to the first waiter, or makes it idle."""
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.entry = entry
            waiter.event.set()
            return
        self._in_use -= 1
        if self._closing:  # pragma: no cover - callers close instead
            self._busy += 1
            raise RuntimeError("put back into a closed pool")
        entry.returned = self._now() if now is None else now
        self._idle.append(entry)
        if self._wake is not None and self._due(entry) < self._wake_at:
            self._poke()

    def _room_freed(self) -> None:
        """Room below max_size appeared: let the first waiter open a connection."""
        if self._waiters and self._size() < self.config.max_size:
            waiter = self._waiters.popleft()
            waiter.may_open = True
            self._busy += 1
            waiter.event.set()
        elif self._size() < self.config.min_size:
            self._poke()

    async def _close_in_use(
        self, entry: _Entry[C], reason: str, *, keep_room: bool = False
    ) -> None:
        self._in_use -= 1
        self._busy += 1
        await self._close_busy(entry, reason, keep_room=keep_room)

    async def _close_busy(self, entry: _Entry[C], reason: str, *, keep_room: bool = False) -> None:
        """Closes a connection counted in `_busy`; shielded and bounded by close_timeout.

        With `keep_room`, the slot stays counted in `_busy` for the caller to open a
        replacement (`_open_reserved`) instead of going to the first waiter.
        """
        try:
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(self.config.close_timeout) as scope:
                    await self.factory.close(entry.conn)
                if scope.cancelled_caught:
                    emit("pool.close_timeout", level="warning", pool=self.name)
        except Exception as exc:
            emit("pool.close_failed", level="warning", pool=self.name, error=type(exc).__name__)
        finally:
            self._closed += 1
            emit("pool.connection_closed", level="debug", pool=self.name, reason=reason)
            if not keep_room:
                self._busy -= 1
                if not self._closing:
                    self._room_freed()

    # -- maintenance -----------------------------------------------------------------

    def _due(self, entry: _Entry[C]) -> float:
        """When the maintenance task next has something to do with an idle entry."""
        cfg = self.config
        due = math.inf
        if cfg.max_lifetime is not None:
            due = entry.created + cfg.max_lifetime
        if cfg.max_idle is not None and self._size() > cfg.min_size:
            due = min(due, entry.returned + cfg.max_idle)
        if cfg.validation_interval is not None:
            due = min(due, entry.validated + cfg.validation_interval)
        return due

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _maintain(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Keeps min_size warm, expires and validates idle connections, until closed."""
        retry_at = -math.inf
        started = False
        while not self._closing:
            now = self._now()
            await self._expire_idle(now)
            await self._validate_idle(now)
            if now >= retry_at and not await self._fill():
                retry_at = self._now() + self.config.reconnect_delay
            if not started:
                task_status.started()
                started = True
            due = min((self._due(entry) for entry in self._idle), default=math.inf)
            if self._size() < self.config.min_size:
                due = min(due, retry_at)
            self._wake = anyio.Event()
            self._wake_at = due
            with anyio.move_on_at(due):
                await self._wake.wait()
            self._wake = None
            self._wake_at = math.inf

    async def _expire_idle(self, now: float) -> None:
        cfg = self.config
        for entry in list(self._idle):  # oldest returned first
            if self._closing:
                return
            reason = ""
            if self._too_old(entry, now):
                reason = "max_lifetime"
            elif (
                cfg.max_idle is not None
                and now - entry.returned >= cfg.max_idle
                and self._size() > cfg.min_size
            ):
                reason = "max_idle"
            if reason and entry in self._idle:
                self._idle.remove(entry)
                self._busy += 1
                await self._close_busy(entry, reason)

    async def _validate_idle(self, now: float) -> None:
        interval = self.config.validation_interval
        if interval is None:
            return
        for entry in [e for e in self._idle if now - e.validated >= interval]:
            if self._closing:
                return
            if entry not in self._idle:
                continue
            self._idle.remove(entry)
            self._busy += 1  # not lent: being checked
            try:
                ok = await self._validates(entry, self._now() + self.config.acquire_timeout)
            except BaseException:
                await self._close_busy(entry, "cancelled")
                raise
            if not ok or self.closed:
                self._failed_validations += not ok
                await self._close_busy(entry, "validation_failed" if not ok else "pool_closed")
                continue
            entry.validated = self._now()
            self._busy -= 1
            self._in_use += 1
            self._put_back(entry)

    async def _fill(self) -> bool:
        """Opens connections up to min_size; False if an open failed."""
        while not self._closing and self._size() < self.config.min_size:
            self._busy += 1
            limit = self._now() + self.config.acquire_timeout
            try:
                entry = await self._open_reserved(limit, self.config.acquire_timeout)
            except (PoolTimeout, PoolClosed):
                return False
            except Exception:
                return False  # logged by _open_reserved; retried after reconnect_delay
            self._put_back(entry)
        return True


@asynccontextmanager
async def open_pool(
    factory: ConnectionFactory[C], config: PoolConfig | None = None, *, name: str
) -> AsyncIterator[Pool[C]]:
    """Opens a pool and its maintenance task; closes both on exit.

    Entering opens `min_size` connections first (a failing open is logged and retried
    in the background every `reconnect_delay`; it does not fail the block). Leaving
    stops the maintenance task and closes the pool (see `Pool.aclose`), also when the
    block is cancelled.

    Args:
        factory: Opens, validates and closes connections.
        config: Sizes and timeouts; `PoolConfig()` when omitted.
        name: The pool's name, used in errors and events.

    Raises:
        ConfigError: `name` is empty or `config` is not a `PoolConfig`.
    """
    check_name("name", name)
    config = check_instance("config", PoolConfig() if config is None else config, PoolConfig)
    pool: Pool[C] = Pool(name=name, config=config, factory=factory)
    pool._now = current_kernel().now  # the backend's clock, without anyio's dispatch
    async with anyio.create_task_group() as tg:
        await tg.start(pool._maintain)
        try:
            yield pool
        finally:
            tg.cancel_scope.cancel()
            await pool.aclose()
