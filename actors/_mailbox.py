"""A bounded mailbox: a deque plus direct wake-ups, no per-message task or lock.

The mailbox belongs to an actor's address (its supervised child slot), not to one
incarnation, so messages can outlive a restart. It counts *live* envelopes: a caller
that gives up while its message is queued frees its place at once (the dead envelope is
skipped, and compacted away when dead ones pile up), so a cancelled caller never leaks
capacity. Callers waiting for room are served first-in first-out: while any is waiting,
a newcomer queues behind it even if a place is free. A push wakes a parked worker, or
the dispatcher of a concurrent actor whose workers are all busy, or the hibernated
incarnation itself (`sleeper`), which starts a task to handle it.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from actors._envelope import ABANDONED, DONE, QUEUED, RUNNING, Envelope
from actors._kernel import Kernel

__all__ = ["Mailbox"]

_COMPACT_MIN = 64


class _RoomWaiter:
    __slots__ = ("granted", "slot")

    def __init__(self, slot: Any) -> None:
        self.slot = slot
        self.granted = False


class Mailbox:
    """Envelopes waiting for an actor, with room accounting and idle-worker wake-ups."""

    __slots__ = (
        "_dead",
        "_queue",
        "_reserved",
        "_room_waiters",
        "capacity",
        "dispatcher",
        "idle",
        "live",
        "sleeper",
    )

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.live = 0
        self.idle: list[Any] | None = None  # slots of parked workers (made by the first)
        self.dispatcher: Any = None  # slot of a parked dispatcher (concurrent actors)
        self.sleeper: Any = None  # the hibernated incarnation (see `actors._actor`)
        self._queue: deque[Envelope] | None = None  # made by the first push (idle actors are many)
        self._dead = 0
        self._reserved = 0
        self._room_waiters: deque[_RoomWaiter] | None = None  # made when first needed

    def has_room(self) -> bool:
        """True when a new message may be pushed without waiting."""
        if self.live + self._reserved >= self.capacity:
            return False
        waiters = self._room_waiters
        while waiters and waiters[0].slot.done():
            waiters.popleft()  # gave up waiting
        return not waiters

    def push(self, env: Envelope, checked: bool = True) -> bool:
        """Appends `env` and wakes one parked worker, or else the dispatcher that starts
        workers, or else the hibernated incarnation.

        With `checked` (the default) the caller has checked or reserved room; with
        `checked` False, `push` checks first (`has_room`: one call on the hot path
        instead of two) and returns False, pushing nothing, when there is none.
        """
        if not checked and (
            self.live + self._reserved >= self.capacity
            or (self._room_waiters and not self.has_room())
        ):
            return False
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append(env)
        self.live += 1
        idle = self.idle
        while idle:
            slot = idle.pop()
            if not slot.done():
                slot.set_result(None)
                return True
        slot = self.dispatcher
        if slot is not None:
            self.dispatcher = None
            if not slot.done():
                slot.set_result(None)
        elif self.sleeper is not None:
            self.sleeper.wake()
        return True

    def pop(self) -> Envelope | None:
        """Takes the oldest live envelope (now RUNNING), or None when there is none."""
        queue = self._queue
        while queue:
            env = queue.popleft()
            if env.state == QUEUED:
                env.state = RUNNING
                self.live -= 1
                if self._room_waiters:
                    self._grant_room()
                return env
            self._dead -= 1
        return None

    def abandon(self, env: Envelope) -> None:
        """Marks a queued envelope whose caller gave up; its place is freed at once."""
        env.state = ABANDONED
        self.live -= 1
        self._dead += 1
        if self._room_waiters:
            self._grant_room()
        if self._dead > _COMPACT_MIN and self._dead > self.live:
            self._queue = deque(e for e in self._queue or () if e.state == QUEUED)
            self._dead = 0

    def drain(self) -> list[Envelope]:
        """Removes and returns every live envelope (oldest first)."""
        envs = [env for env in self._queue or () if env.state == QUEUED]
        for env in envs:
            env.state = DONE
        self._queue = None
        self._dead = 0
        self.live = 0
        return envs

    def wake_all_idle(self) -> None:
        """Wakes every parked worker and the dispatcher (so they notice a stop request)."""
        idle = self.idle
        while idle:
            slot = idle.pop()
            if not slot.done():
                slot.set_result(None)
        slot, self.dispatcher = self.dispatcher, None
        if slot is not None and not slot.done():
            slot.set_result(None)

    def _grant_room(self) -> None:
        waiters = self._room_waiters
        while waiters and self.live + self._reserved < self.capacity:
            waiter = waiters.popleft()
            if not waiter.slot.done():
                waiter.granted = True
                self._reserved += 1
                waiter.slot.set_result(None)

    def _release(self) -> None:
        self._reserved -= 1
        self._grant_room()

    async def wait_for_room(self, kernel: Kernel, deadline: float) -> bool:
        """Waits, first-in first-out, until a place is reserved for the caller.

        A checkpoint. On True the place is held for the caller, who must `push` next
        without awaiting anything else. On cancellation a place already granted is
        handed to the next waiter.

        Returns:
            True when a place was reserved; False when the deadline passed first or the
            waiters were released because the address closed.
        """
        waiter = _RoomWaiter(kernel.new_slot())
        if self._room_waiters is None:
            self._room_waiters = deque()
        self._room_waiters.append(waiter)
        self._grant_room()
        try:
            await kernel.wait(waiter.slot, deadline)
        except BaseException:
            if waiter.granted:
                self._release()
            raise
        if not waiter.granted:
            return False
        self._reserved -= 1
        return True

    def release_waiters(self) -> None:
        """Wakes every caller waiting for room without granting it (the address closed)."""
        waiters = self._room_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.slot.done():
                waiter.slot.set_result(None)

    def __len__(self) -> int:
        return self.live
