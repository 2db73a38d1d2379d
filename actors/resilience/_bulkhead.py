"""Bulkhead: a concurrency limit with a bounded FIFO wait queue.

At most `max_concurrent` callers hold a slot; up to `max_queued` more wait for one in
FIFO order; anyone beyond that is refused at once with `BulkheadFull`, so an overloaded
service sheds load instead of piling up waiting tasks. A released slot is handed
directly to the first waiter (nobody can barge in between), and a waiter cancelled at
the moment it is handed a slot passes the slot on: slots never leak.

The success path when a slot is free is an integer comparison and increment: no task,
lock, event or cancel scope.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType

import anyio
import anyio.lowlevel
import attrs

from actors._errors import BulkheadFull, ConfigError
from actors._events import emit
from actors._validate import check_instance, check_name, non_negative, positive_int

__all__ = ["Bulkhead", "BulkheadConfig", "BulkheadMetrics", "create_bulkhead"]


def _queue_size(inst: object, attr: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(attr.name, value, "must be an integer >= 0")
    non_negative(inst, attr, value)


@attrs.frozen(kw_only=True)
class BulkheadConfig:
    """How many calls may run at once, and how many may wait.

    Attributes:
        max_concurrent: Slots: calls running at once (integer >= 1).
        max_queued: Callers that may wait for a slot (integer >= 0); 0 means refuse at
            once whenever every slot is taken.
    """

    max_concurrent: int = attrs.field(default=10, validator=positive_int)
    max_queued: int = attrs.field(default=0, validator=_queue_size)


@attrs.frozen(kw_only=True)
class BulkheadMetrics:
    """A snapshot of a bulkhead's counters.

    Attributes:
        name: The bulkhead's name.
        active: Slots held now.
        queued: Callers waiting now.
        admitted: Slots granted so far (at once or after waiting).
        rejected: Callers refused with `BulkheadFull` (queue full, deadline, try_acquire).
        max_active: Most slots ever held at once.
        max_queued: Most callers ever waiting at once.
    """

    name: str
    active: int
    queued: int
    admitted: int
    rejected: int
    max_active: int
    max_queued: int


@attrs.define(eq=False)
class _Waiter:
    granted: bool = False
    event: anyio.Event = attrs.field(factory=anyio.Event)


@attrs.define(eq=False)
class _Slot:
    """`async with bulkhead.slot(...)`: acquires on entry, releases on exit."""

    _bulkhead: Bulkhead
    _deadline: float | None

    async def __aenter__(self) -> None:
        await self._bulkhead.acquire(deadline=self._deadline)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bulkhead.release()


@attrs.define(eq=False)
class Bulkhead:
    """A concurrency limit; create it with `create_bulkhead`.

    Attributes:
        name: The bulkhead's name (usually the service), used in errors and events.
        config: Its sizes.
    """

    name: str
    config: BulkheadConfig
    _active: int = attrs.field(default=0, init=False)
    _waiters: deque[_Waiter] = attrs.field(factory=deque, init=False)
    _admitted: int = attrs.field(default=0, init=False)
    _rejected: int = attrs.field(default=0, init=False)
    _max_active: int = attrs.field(default=0, init=False)
    _max_queued: int = attrs.field(default=0, init=False)

    def slot(self, *, deadline: float | None = None) -> _Slot:
        """An async context manager holding one slot for its body.

        Args:
            deadline: Absolute `anyio.current_time()` by which a slot must be granted.

        Entering behaves as `acquire`; leaving always releases.
        """
        return _Slot(self, deadline)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    async def acquire(self, *, deadline: float | None = None) -> None:
        """Takes a slot, waiting in FIFO order if every slot is taken.

        Not a checkpoint when a slot is free (the success path is an increment);
        otherwise a checkpoint. Cancellation while waiting leaves no slot taken and no
        place in the queue (a slot handed over at that moment is passed on).

        Args:
            deadline: Absolute `anyio.current_time()` by which a slot must be granted;
                `None` waits as long as the enclosing cancel scopes allow.

        Raises:
            BulkheadFull: Every slot and queue place is taken, or the deadline passed
                while waiting (also at once when the deadline has already passed).
        """
        if not self._enter():
            await self._wait(deadline)

    def try_acquire(self) -> bool:
        """Takes a slot if one is free and nobody waits; never a checkpoint."""
        if self._enter():
            return True
        self._rejected += 1
        return False

    def _enter(self) -> bool:
        """Takes a free slot if nobody waits (counting no refusal); the success path.

        Shared by `acquire`, `try_acquire` and `@resilient`, which calls it to avoid
        creating `acquire`'s coroutine when a slot is free.
        """
        active = self._active
        if active < self.config.max_concurrent and not self._waiters:
            self._active = active = active + 1
            self._admitted += 1
            self._max_active = max(self._max_active, active)
            return True
        return False

    def release(self) -> None:
        """Returns a slot, handing it to the first waiter if any; never a checkpoint.

        Raises:
            RuntimeError: No slot is held.
        """
        if self._active <= 0:
            raise RuntimeError(f"bulkhead {self.name!r}: release without acquire")
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.granted = True
            self._admitted += 1
            waiter.event.set()
            return
        self._active -= 1

    def _refuse(self, reason: str) -> BulkheadFull:
        self._rejected += 1
        emit("bulkhead.rejected", level="debug", bulkhead=self.name, reason=reason)
        return BulkheadFull(self.name)

    async def _wait(self, deadline: float | None) -> None:
        await anyio.lowlevel.checkpoint_if_cancelled()
        if len(self._waiters) >= self.config.max_queued:
            raise self._refuse("queue_full")
        if deadline is not None and deadline <= anyio.current_time():
            raise self._refuse("deadline")
        waiter = _Waiter()
        self._waiters.append(waiter)
        self._max_queued = max(self._max_queued, len(self._waiters))
        try:
            if deadline is None:
                await waiter.event.wait()
            else:
                with anyio.move_on_at(deadline):
                    await waiter.event.wait()
        except BaseException:
            # Cancelled while waiting: leave the queue, or pass on a slot handed to us.
            if waiter.granted:
                self.release()
            else:
                self._waiters.remove(waiter)
            raise
        if not waiter.granted:
            self._waiters.remove(waiter)
            raise self._refuse("deadline")

    def metrics(self) -> BulkheadMetrics:
        """A snapshot of the counters (never a checkpoint)."""
        return BulkheadMetrics(
            name=self.name,
            active=self._active,
            queued=len(self._waiters),
            admitted=self._admitted,
            rejected=self._rejected,
            max_active=self._max_active,
            max_queued=self._max_queued,
        )


def create_bulkhead(config: BulkheadConfig | None = None, *, name: str) -> Bulkhead:
    """Creates a bulkhead.

    Args:
        config: Its sizes; `BulkheadConfig()` (10 slots, no queue) when omitted.
        name: The bulkhead's name, used in errors and events.

    Raises:
        ConfigError: `name` is empty or `config` is not a `BulkheadConfig`.
    """
    check_name("name", name)
    config = check_instance(
        "config", BulkheadConfig() if config is None else config, BulkheadConfig
    )
    return Bulkhead(name=name, config=config)
