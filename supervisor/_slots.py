"""A supervisor's bookkeeping: its children in start order, indexed by id and by state,
and the restart groups waiting to start.

Every step of a restart costs the same among 10 or 100,000 siblings: finding a child
by id is a dict lookup, the children form a linked list (so removing one, or walking
"the ones after it" for rest_for_one, touches only those), the counts by state are
kept as they change, and pending (re)starts wait in a heap of groups keyed by their due
time. Introspection walks the list once.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import anyio

    from actors.lowlevel import Cell, Incarnation
    from supervisor._spec import Child
    from supervisor._supervisor import Supervisor

__all__ = ["ChildState", "Children", "Group", "Slot"]


class ChildState(enum.Enum):
    """Where a child slot is."""

    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    """Stopped by a failure (its own or a sibling's) and waiting to start again."""
    STOPPED = "stopped"
    """Not running and not coming back by itself (terminated, or exited for good)."""


class Slot:
    """One child of a supervisor: its spec, its address, and where it is. A worker's
    incarnations report to it (`actors.lowlevel.Owner`), and it to its supervisor."""

    __slots__ = (
        "attempt",
        "cell",
        "delay",
        "done",
        "dynamic",
        "expected",
        "final",
        "group",
        "incarnation",
        "next",
        "prepared",
        "prev",
        "restarts",
        "running",
        "running_since",
        "scope",
        "spec",
        "state",
        "sub",
        "supervisor",
        "token",
    )

    def __init__(self, spec: Child, dynamic: bool, supervisor: Supervisor) -> None:
        self.spec = spec
        self.dynamic = dynamic
        self.supervisor = supervisor
        self.cell: Cell | None = None
        self.sub: Supervisor | None = None
        self.incarnation: Incarnation | None = None
        # The first incarnation, made when the tree was validated (or the factory's
        # failure, which is then the first start's failure).
        self.prepared: Incarnation | Exception | None = None
        self.scope: anyio.CancelScope | None = None
        self.done: anyio.Event | None = None
        self.state = ChildState.STARTING
        self.running = False  # only Children.set_running changes it (it keeps counts)
        self.expected = False  # the supervisor itself is stopping this run
        self.final = True  # ... for good (else for a restart)
        self.restarts = 0
        self.attempt = 0  # consecutive restarts, for backoff
        self.delay = 0.0  # the backoff before the pending restart
        self.running_since: float | None = None
        self.group: Group | None = None  # the pending start this slot waits in
        self.token = 0
        self.prev: Slot | None = None
        self.next: Slot | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    def exited(self, reason: BaseException | None) -> None:
        self.supervisor._child_exited(self, reason)

    def crashed(self, reason: BaseException) -> None:
        self.supervisor._child_crashed(self, reason)


class Group:
    """Slots (re)started together: in slot order, each once the one before it is up.

    Members leave lazily: a slot whose `group` is no longer this one (it started, was
    terminated, or moved to a newer group) is skipped when it reaches the head.
    """

    __slots__ = ("due", "members", "seq")

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.due = math.inf
        self.members: deque[Slot] = deque()

    def head(self) -> Slot | None:
        """The first member still waiting in this group."""
        members = self.members
        while members and members[0].group is not self:
            members.popleft()
        return members[0] if members else None


class Children:
    """The children of one supervisor in start order, by id, counted by state."""

    __slots__ = (
        "_by_id",
        "_first",
        "_heap",
        "_last",
        "_seq",
        "active",
        "pending",
        "significant_live",
        "supervisors",
    )

    def __init__(self) -> None:
        self._by_id: dict[str, Slot] = {}
        self._first: Slot | None = None
        self._last: Slot | None = None
        self._heap: list[tuple[float, int, Group]] = []
        self._seq = itertools.count()
        self.active = 0  # running slots
        self.pending = 0  # slots waiting in a group
        self.supervisors = 0  # slots that are nested supervisors
        self.significant_live = 0  # significant slots running or waiting to start

    # -- order and lookup -----------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, child_id: str) -> bool:
        return child_id in self._by_id

    def get(self, child_id: str) -> Slot | None:
        return self._by_id.get(child_id)

    def __iter__(self) -> Iterator[Slot]:
        return self.from_slot(self._first)

    def from_slot(self, slot: Slot | None) -> Iterator[Slot]:
        """`slot` and every slot after it, in start order."""
        while slot is not None:
            following = slot.next  # read first: the caller may remove `slot`
            yield slot
            slot = following

    def reversed(self) -> Iterator[Slot]:
        """Every slot, last started first."""
        slot = self._last
        while slot is not None:
            preceding = slot.prev
            yield slot
            slot = preceding

    def append(self, slot: Slot) -> None:
        self._by_id[slot.id] = slot
        slot.prev, slot.next = self._last, None
        if self._last is None:
            self._first = slot
        else:
            self._last.next = slot
        self._last = slot
        if slot.sub is not None:
            self.supervisors += 1

    def remove(self, slot: Slot) -> None:
        if self._by_id.get(slot.id) is not slot:
            return
        self.set_running(slot, False)
        self.leave(slot)
        del self._by_id[slot.id]
        if slot.prev is None:
            self._first = slot.next
        else:
            slot.prev.next = slot.next
        if slot.next is None:
            self._last = slot.prev
        else:
            slot.next.prev = slot.prev
        slot.prev = slot.next = None
        if slot.sub is not None:
            self.supervisors -= 1

    # -- state counts ---------------------------------------------------------------

    def set_running(self, slot: Slot, running: bool) -> None:
        if slot.running is running:
            return
        slot.running = running
        step = 1 if running else -1
        self.active += step
        if slot.spec.significant:
            self.significant_live += step

    # -- pending starts -------------------------------------------------------------

    def new_group(self) -> Group:
        return Group(next(self._seq))

    def join(self, group: Group, slot: Slot) -> None:
        """Queues `slot` at the end of `group` (leaving any group it waited in)."""
        self.leave(slot)
        slot.group = group
        group.members.append(slot)
        self.pending += 1
        if slot.spec.significant:
            self.significant_live += 1

    def leave(self, slot: Slot) -> None:
        """`slot` no longer waits to start (it started, or will not)."""
        if slot.group is None:
            return
        slot.group = None  # its deque entry is skipped when it reaches the head
        self.pending -= 1
        if slot.spec.significant:
            self.significant_live -= 1

    def schedule(self, group: Group, due: float) -> None:
        """Makes `group` due at `due` (an earlier schedule of it is superseded)."""
        group.due = due
        heapq.heappush(self._heap, (due, group.seq, group))

    def _top(self) -> Group | None:
        heap = self._heap
        while heap:
            due, _, group = heap[0]
            if due == group.due and group.head() is not None:
                return group
            heapq.heappop(heap)  # superseded, or nobody left in it
        return None

    def next_due(self, now: float) -> Slot | None:
        """The next slot to start now, or None if no group is due yet."""
        group = self._top()
        if group is None or group.due > now:
            return None
        return group.head()

    def next_time(self) -> float:
        """When the earliest pending group is due (inf if none)."""
        group = self._top()
        return math.inf if group is None else group.due

    def clear_schedule(self) -> None:
        """Nothing waits to start any more."""
        for _, _, group in self._heap:
            for slot in group.members:
                if slot.group is group:
                    self.leave(slot)
        self._heap.clear()
