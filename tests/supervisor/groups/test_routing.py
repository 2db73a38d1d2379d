"""Each routing strategy's choice, checked against a small reference model (hypothesis)."""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.resilience import TokenBucket
from actors.services import ChatRequest
from supervisor.groups import (
    ConsistentHash,
    LeastInFlight,
    MemberState,
    PowerOfTwoChoices,
    QuotaHeadroom,
    RoundRobin,
    WeightedRoundRobin,
)
from supervisor.groups._strategies import request_key
from tests.actors.services.fake import Backend
from tests.supervisor.groups.members import fake_member

pytestmark = pytest.mark.anyio

INF = math.inf


def states(weights: list[float], **member: Any) -> list[MemberState]:
    return [
        MemberState(fake_member(f"m{i}", Backend(), weight=w, **member), i + 1)
        for i, w in enumerate(weights)
    ]


# A scenario: per step, which members are candidates and their in-flight counts.
steps = st.lists(
    st.tuples(
        st.lists(st.booleans(), min_size=5, max_size=5),
        st.lists(st.integers(0, 4), min_size=5, max_size=5),
    ),
    min_size=1,
    max_size=40,
)


def candidates_of(members: list[MemberState], mask: list[bool], loads: list[int]) -> list[Any]:
    for state, load in zip(members, loads, strict=True):
        state.in_flight = load
    chosen = [m for m, keep in zip(members, mask, strict=True) if keep]
    return chosen or members[:1]


class RoundRobinModel:
    """A pointer over all members; the next candidate at or after it."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.position = 0

    def choose(self, ids: list[int]) -> int:
        for step in range(self.count):
            position = (self.position + step) % self.count
            if position in ids:
                self.position = position + 1
                return position
        raise AssertionError("no candidate")


@settings(max_examples=150, deadline=None)
@given(steps)
def test_round_robin_matches_a_rotating_pointer(scenario: list[Any]) -> None:
    """Round-robin picks the next candidate after the last pick, wrapping around."""
    members = states([1.0] * 5)
    strategy = RoundRobin()
    model = RoundRobinModel(5)
    for mask, loads in scenario:
        candidates = candidates_of(members, mask, loads)
        picked = strategy.choose(candidates, None, now=0.0, deadline=INF)
        assert picked is not None
        assert members.index(picked) == model.choose([members.index(c) for c in candidates])


class SmoothWeightedModel:
    """nginx's smooth weighted round-robin, written from its description."""

    def __init__(self) -> None:
        self.current: dict[int, float] = {}

    def choose(self, weights: dict[int, float]) -> int:
        for key, weight in weights.items():
            self.current[key] = self.current.get(key, 0.0) + weight
        best = max(weights, key=lambda key: (self.current[key], -key))
        self.current[best] -= sum(weights.values())
        return best


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=5, max_size=5), steps)
def test_weighted_matches_smooth_weighted_round_robin(
    weights: list[int], scenario: list[Any]
) -> None:
    """Weighted routing picks what smooth weighted round-robin picks, step by step."""
    members = states([float(w) for w in weights])
    strategy = WeightedRoundRobin()
    model = SmoothWeightedModel()
    for mask, loads in scenario:
        candidates = candidates_of(members, mask, loads)
        picked = strategy.choose(candidates, None, now=0.0, deadline=INF)
        expected = model.choose({members.index(c): c.weight for c in candidates})
        assert members.index(picked) == expected  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=2, max_size=5), st.integers(1, 4))
def test_weighted_shares_are_exact_over_whole_cycles(weights: list[int], cycles: int) -> None:
    """Over whole cycles each member gets exactly its weight's share."""
    members = states([float(w) for w in weights])
    strategy = WeightedRoundRobin()
    picks = [
        strategy.choose(members, None, now=0.0, deadline=INF) for _ in range(sum(weights) * cycles)
    ]
    assert [picks.count(m) for m in members] == [w * cycles for w in weights]


@settings(max_examples=150, deadline=None)
@given(steps)
def test_least_in_flight_picks_a_least_loaded_candidate_round_robin(scenario: list[Any]) -> None:
    """Least in flight picks among the least loaded, rotating among ties."""
    members = states([1.0] * 5)
    strategy = LeastInFlight()
    model = RoundRobinModel(5)
    for mask, loads in scenario:
        candidates = candidates_of(members, mask, loads)
        least = min(c.in_flight for c in candidates)
        tied = [members.index(c) for c in candidates if c.in_flight == least]
        picked = strategy.choose(candidates, None, now=0.0, deadline=INF)
        assert members.index(picked) == model.choose(tied)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 2**32),
    st.lists(
        st.tuples(st.integers(0, 4), st.floats(0.001, 5.0), st.booleans()), min_size=2, max_size=5
    ),
    st.floats(0.0, 30.0),
)
def test_p2c_picks_the_cheaper_of_two_random_candidates(
    seed: int, shape: list[tuple[int, float, bool]], now: float
) -> None:
    """Of the two members the seeded random source samples, P2C picks the one with the
    lower decayed peak-EWMA latency x (in flight + 1)."""
    members = states([1.0] * len(shape))
    for state, (load, latency, answered) in zip(members, shape, strict=True):
        state.in_flight = load
        if answered:
            state.observe(latency, 0.0)
    strategy = PowerOfTwoChoices(rng=random.Random(seed))
    picked = strategy.choose(members, None, now=now, deadline=INF)

    def cost(state: MemberState, latency: float, answered: bool) -> float:
        if not answered:
            return 1e6 * state.in_flight
        return latency * math.exp(-now / 10.0) * (state.in_flight + 1)

    first, second = random.Random(seed).sample(range(len(members)), 2)
    costs = {i: cost(members[i], shape[i][1], shape[i][2]) for i in (first, second)}
    expected = first if costs[first] <= costs[second] else second
    assert members.index(picked) == expected  # type: ignore[arg-type]


def test_peak_ewma_jumps_up_and_decays_down() -> None:
    """A slower answer takes the average up at once; faster ones and time take it down."""
    [state] = states([1.0])
    state.observe(0.1, 0.0)
    state.observe(1.0, 1.0)
    assert state.latency(1.0) == 1.0
    state.observe(0.1, 11.0)
    assert state.latency(11.0) == pytest.approx(math.exp(-1) + 0.1 * (1 - math.exp(-1)))
    assert state.latency(21.0) == pytest.approx(state.latency(11.0) * math.exp(-1))


@pytest.mark.virtual_time
@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1000), st.integers(0, 2000), st.floats(-5.0, 5.0)),
        min_size=1,
        max_size=4,
    ),
    st.integers(1, 900),
    st.floats(0.0, 60.0),
)
async def test_quota_headroom_picks_the_most_room_and_never_a_long_wait(
    shape: list[tuple[int, int, float]], cost: int, budget: float
) -> None:
    """Quota headroom picks the member with the most room left after the request (then
    the fewest in flight, then join order), among those whose limits would not make it
    wait past the deadline (a deficit refills at the limit's mean rate)."""
    rate = 1000.0  # tokens per minute per member
    members = []
    for index, (spent, pending, throttle) in enumerate(shape):
        limits = {"tokens": TokenBucket(rate=rate, period=60.0)}
        state = MemberState(fake_member(f"m{index}", Backend(estimate=cost), limits=limits), index)
        service_limits = state.service.limits
        assert service_limits is not None
        if spent:
            assert service_limits.try_acquire(tokens=float(spent))
        state.pending["tokens"] = float(pending)
        state.throttled_until = throttle
        members.append(state)
    now = 0.0
    deadline = now + budget
    picked = QuotaHeadroom().choose(members, "request", now=now, deadline=deadline)

    best = None
    best_key: tuple[float, int] | None = None
    for index, (spent, pending, throttle) in enumerate(shape):
        available = rate - spent
        room = min(1.0, (available - pending - cost) / rate)
        wait = max(0.0, throttle - now, (cost - available) / (rate / 60.0))
        if now + wait > deadline:
            continue
        key = (room, 0)
        if best_key is None or key > best_key:
            best, best_key = index, key
    assert (None if picked is None else members.index(picked)) == best


class BoundedRingModel:
    """Consistent hashing with bounded loads, by brute force over the ring."""

    def __init__(self, ids: list[str], replicas: int) -> None:
        self.points = sorted(
            (self.digest(f"{member}#{r}"), member) for member in ids for r in range(replicas)
        )

    @staticmethod
    def digest(text: str) -> int:
        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")

    def choose(self, key: str, loads: dict[str, int], factor: float) -> str:
        bound = math.ceil(factor * (sum(loads.values()) + 1) / len(loads))
        start = bisect.bisect_left([p for p, _ in self.points], self.digest(key))
        for step in range(len(self.points)):
            member = self.points[(start + step) % len(self.points)][1]
            if member in loads and loads[member] < bound:
                return member
        raise AssertionError("some member is always below the bound")


@settings(max_examples=150, deadline=None)
@given(steps, st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=40))
def test_consistent_hash_matches_a_bounded_load_ring(scenario: list[Any], keys: list[str]) -> None:
    """A key goes to its ring successor unless that member is at its load bound."""
    members = states([1.0] * 5)
    strategy = ConsistentHash(key=lambda request: request, load_factor=1.25, replicas=16)
    strategy.members_changed(members)
    model = BoundedRingModel([m.id for m in members], 16)
    for (mask, loads), key in zip(scenario, keys * 40, strict=False):
        candidates = candidates_of(members, mask, loads)
        picked = strategy.choose(candidates, key, now=0.0, deadline=INF)
        expected = model.choose(key, {c.id: c.in_flight for c in candidates}, 1.25)
        assert picked is not None
        assert picked.id == expected


def test_consistent_hash_keeps_a_conversation_on_one_member() -> None:
    """Chat requests with the same opening go to one member while it has room."""
    members = states([1.0] * 4)
    strategy = ConsistentHash(replicas=32)
    strategy.members_changed(members)
    opening = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    first = ChatRequest.create(opening)
    later = first.followed_by({"role": "assistant", "content": "hello"})
    picks = {strategy.choose(members, r, now=0.0, deadline=INF) for r in (first, later) * 5}
    assert len(picks) == 1


def test_consistent_hash_moves_only_the_leaving_members_keys() -> None:
    """When a member leaves, only the keys it owned move."""
    members = states([1.0] * 4)
    strategy = ConsistentHash(key=lambda request: request, replicas=32)
    strategy.members_changed(members)
    keys = [f"user-{n}" for n in range(200)]
    before = {k: strategy.choose(members, k, now=0.0, deadline=INF) for k in keys}
    remaining = members[:3]
    strategy.members_changed(remaining)
    after = {k: strategy.choose(remaining, k, now=0.0, deadline=INF) for k in keys}
    moved = [k for k in keys if before[k] is not after[k]]
    assert moved
    assert all(before[k] is members[3] for k in moved)


def test_a_request_key_is_read_from_a_dotted_path() -> None:
    """Routing(key="extra.user") reads request.extra["user"]; a missing one is no key."""
    read = request_key("extra.user")
    assert read(ChatRequest.user("x", user="alice")) == "alice"
    assert read(ChatRequest.user("x")) is None
    assert read(object()) is None
