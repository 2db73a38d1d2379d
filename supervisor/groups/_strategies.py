"""Routing strategies: which member of a group gets a request.

A strategy is given the *candidates* (the members that may be tried now: not failed
for this request yet, breaker not cooling, healthy enough), in join order, and picks
one (or none). Each is a small deterministic function of the members' states and its
own state (a cursor, smooth weights, a hash ring, a seeded random source), so each is
checked against a reference model in the tests.

============================  ================================================  ==========
strategy                      picks                                             like
============================  ================================================  ==========
`RoundRobin`                  the next candidate after the last one picked      Akka round-robin
`WeightedRoundRobin`          smooth weighted round-robin (nginx): shares        LiteLLM weighted
                              exactly proportional to weights, interleaved       shuffle
`LeastInFlight`               fewest of the group's requests in progress         Akka smallest-
                              (round-robin among ties)                           mailbox, LiteLLM
                                                                                 least-busy
`PowerOfTwoChoices`           of two random candidates, the lower peak-EWMA      Finagle P2C
                              latency x (in flight + 1)                          PeakEwma
`QuotaHeadroom`               the most room left in its rate limits after this   LiteLLM usage-
                              request's cost; never one whose limits would       based routing
                              make it wait past its deadline
`ConsistentHash`              a request key's member on a hash ring, moving on   Akka consistent
                              to the next while that one is over its bounded     hashing, HAProxy
                              load (Mirrokni et al.)                             bounded load
============================  ================================================  ==========
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol, runtime_checkable

from actors import ConfigError
from actors.services import ChatRequest
from supervisor.groups._config import Routing
from supervisor.groups._member import MemberState

__all__ = [
    "ConsistentHash",
    "LeastInFlight",
    "PowerOfTwoChoices",
    "QuotaHeadroom",
    "RoundRobin",
    "RoutingStrategy",
    "WeightedRoundRobin",
    "headroom",
    "request_key",
    "strategy_for",
]

UNKNOWN_PENALTY: Final = 1e6
"""The cost P2C gives a member with no latency yet and a request in progress (it gets
one request at a time until its first answer)."""


@runtime_checkable
class RoutingStrategy(Protocol):
    """Picks the member for a request; implement it to route your own way."""

    def choose(
        self, candidates: Sequence[MemberState], request: Any, *, now: float, deadline: float
    ) -> MemberState | None:
        """Returns one of `candidates` (non-empty, in join order), or None when none fits.

        Args:
            candidates: The members that may be tried now.
            request: The request.
            now: The loop time.
            deadline: When the request must be answered (`inf`: no deadline).
        """
        ...

    def members_changed(self, members: Sequence[MemberState]) -> None:
        """Called with every member, in join order, when one joins or leaves."""
        ...


class RoundRobin:
    """The next candidate in join order after the last one picked (wrapping around)."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0  # the join number to start from

    def choose(
        self, candidates: Sequence[MemberState], request: Any, *, now: float, deadline: float
    ) -> MemberState | None:
        picked = next((m for m in candidates if m.index >= self._next), candidates[0])
        self._next = picked.index + 1
        return picked

    def members_changed(self, members: Sequence[MemberState]) -> None:
        """Nothing to do: the cursor is a join number."""


class WeightedRoundRobin:
    """Smooth weighted round-robin (nginx): each pick adds every candidate's weight to
    its running score and takes the highest (the first on a tie), which then gives
    back the candidates' total weight. Over any run with the same candidates, each
    gets its weight's share to within one pick, spread out rather than in bursts."""

    __slots__ = ("_scores",)

    def __init__(self) -> None:
        self._scores: dict[str, float] = {}

    def choose(
        self, candidates: Sequence[MemberState], request: Any, *, now: float, deadline: float
    ) -> MemberState | None:
        scores = self._scores
        total = 0.0
        best: MemberState | None = None
        best_score = -math.inf
        for candidate in candidates:
            score = scores.get(candidate.id, 0.0) + candidate.weight
            scores[candidate.id] = score
            total += candidate.weight
            if score > best_score:
                best, best_score = candidate, score
        assert best is not None
        scores[best.id] = best_score - total
        return best

    def members_changed(self, members: Sequence[MemberState]) -> None:
        present = {m.id for m in members}
        for key in [key for key in self._scores if key not in present]:
            del self._scores[key]


class LeastInFlight:
    """The candidate with the fewest of the group's requests in progress; round-robin
    among those tied."""

    __slots__ = ("_ties",)

    def __init__(self) -> None:
        self._ties = RoundRobin()

    def choose(
        self, candidates: Sequence[MemberState], request: Any, *, now: float, deadline: float
    ) -> MemberState | None:
        least = min(m.in_flight for m in candidates)
        tied = [m for m in candidates if m.in_flight == least]
        return self._ties.choose(tied, request, now=now, deadline=deadline)

    def members_changed(self, members: Sequence[MemberState]) -> None:
        """Nothing to do."""


class PowerOfTwoChoices:
    """Of two distinct random candidates, the one with the lower cost: its peak-EWMA
    latency times (its requests in flight + 1), as Finagle's P2C over PeakEwma. A
    member never answered yet costs 0 while idle (it is explored) and
    `UNKNOWN_PENALTY` per request while one is in progress.

    Args:
        rng: The random source (seed it for reproducible choices).
    """

    __slots__ = ("_rng",)

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random()

    def cost(self, member: MemberState, now: float) -> float:
        """The member's load-weighted latency."""
        if not member.samples:
            return UNKNOWN_PENALTY * member.in_flight
        return member.latency(now) * (member.in_flight + 1)

    def choose(
        self, candidates: Sequence[MemberState], request: Any, *, now: float, deadline: float
    ) -> MemberState | None:
        if len(candidates) == 1:
            return candidates[0]
        first, second = self._rng.sample(range(len(candidates)), 2)
        a, b = candidates[first], candidates[second]
        return a if self.cost(a, now) <= self.cost(b, now) else b

    def members_changed(self, members: Sequence[MemberState]) -> None:
        """Nothing to do."""


def headroom(member: MemberState, request: Any, now: float) -> tuple[float, float]:
    """A member's room for `request`: ``(room, wait)``.

    `room` is the least, over its limits, of what is left after this request and the
    group's requests still in progress on it, as a fraction of the limit's capacity
    (1.0 without limits; negative when over). `wait` estimates the seconds its limits
    would make this request wait: the time the missing units take to come back at the
    limit's mean rate (each request already waiting counted at this one's cost), and
    at least until the member's last ``retry-after``.
    """
    wait = max(0.0, member.throttled_until - now)
    limits = member.service.limits
    if limits is None:
        return 1.0, wait
    costs = member.service.costs(request)
    metrics = limits.metrics()
    room = 1.0
    for name, config in limits.limits.items():
        available = metrics.available.get(name)
        if available is None:  # a remote store: its room is not known here
            continue
        cost = costs.get(name, 0.0)
        capacity = config.max_cost
        left = available - member.pending.get(name, 0.0) - cost
        room = min(room, left / capacity)
        missing = cost * (1 + metrics.queued) - available
        if missing > 0:
            wait = max(wait, missing / config.mean_rate)
    return room, wait


class QuotaHeadroom:
    """The candidate with the most room left in its rate limits after this request
    (see `headroom`), never one whose limits would make the request wait past its
    deadline (None when every candidate would). Ties: fewer in flight, then join
    order."""

    __slots__ = ()

    def choose(
        self, candidates: Sequence[MemberState], request: Any, *, now: float, deadline: float
    ) -> MemberState | None:
        best: MemberState | None = None
        best_key = (-math.inf, 0)
        for candidate in candidates:
            room, wait = headroom(candidate, request, now)
            if now + wait > deadline:
                continue
            key = (room, -candidate.in_flight)
            if key > best_key:
                best, best_key = candidate, key
        return best

    def members_changed(self, members: Sequence[MemberState]) -> None:
        """Nothing to do."""


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def request_key(path: str | None) -> Callable[[Any], str | None]:
    """The key function of `Routing.key`: a dotted path read from the request (object
    attributes or mapping keys), or, for None, a chat request's first two messages."""

    def opening(request: Any) -> str | None:
        if isinstance(request, ChatRequest):
            return json.dumps(list(request.messages[:2]), sort_keys=True, default=str)
        return None

    if path is None:
        return opening
    parts = path.split(".")

    def read(request: Any) -> str | None:
        value: Any = request
        for part in parts:
            value = value.get(part) if isinstance(value, Mapping) else getattr(value, part, None)
            if value is None:
                return None
        if isinstance(value, str):
            return value
        return json.dumps(value, sort_keys=True, default=str)

    return read


class ConsistentHash:
    """Requests with the same key go to the same member (prompt-cache affinity), with
    bounded load: a member takes a request only while its requests in progress are
    below ``ceil(load_factor * (in flight + 1) / candidates)``; otherwise the key moves
    clockwise along the ring to the next member. Members joining or leaving move only
    the keys on their arcs. A request without a key goes to the least loaded member.

    Args:
        key: Returns a request's key (None: no key); see `request_key`.
        load_factor: Bound on a member's load relative to the mean (> 1).
        replicas: Points per member on the ring.
    """

    __slots__ = ("_fallback", "_hashes", "_key", "_owners", "load_factor", "replicas")

    def __init__(
        self,
        *,
        key: Callable[[Any], str | None] | None = None,
        load_factor: float = 1.25,
        replicas: int = 64,
    ) -> None:
        if not load_factor > 1:
            raise ConfigError("load_factor", load_factor, "must be a number > 1")
        self._key = key if key is not None else request_key(None)
        self.load_factor = load_factor
        self.replicas = replicas
        self._hashes: list[int] = []
        self._owners: list[str] = []
        self._fallback = LeastInFlight()

    def members_changed(self, members: Sequence[MemberState]) -> None:
        points = sorted(
            (_digest(f"{m.id}#{replica}"), m.id)
            for m in members
            for replica in range(self.replicas)
        )
        self._hashes = [point for point, _ in points]
        self._owners = [owner for _, owner in points]

    def choose(
        self, candidates: Sequence[MemberState], request: Any, *, now: float, deadline: float
    ) -> MemberState | None:
        key = self._key(request)
        if key is None or not self._hashes:
            return self._fallback.choose(candidates, request, now=now, deadline=deadline)
        by_id = {m.id: m for m in candidates}
        total = sum(m.in_flight for m in candidates)
        bound = math.ceil(self.load_factor * (total + 1) / len(candidates))
        start = bisect.bisect_left(self._hashes, _digest(key))
        owners = self._owners
        count = len(owners)
        for step in range(count):
            found = by_id.get(owners[(start + step) % count])
            if found is not None and found.in_flight < bound:
                return found
        return self._fallback.choose(candidates, request, now=now, deadline=deadline)


def strategy_for(routing: Routing, rng: random.Random | None = None) -> RoutingStrategy:
    """The strategy a `Routing` names."""
    kind = routing.kind
    if kind == "round_robin":
        return RoundRobin()
    if kind == "weighted":
        return WeightedRoundRobin()
    if kind == "least_in_flight":
        return LeastInFlight()
    if kind == "peak_ewma":
        return PowerOfTwoChoices(rng=rng)
    if kind == "quota_headroom":
        return QuotaHeadroom()
    return ConsistentHash(
        key=request_key(routing.key), load_factor=routing.load_factor, replicas=routing.replicas
    )
