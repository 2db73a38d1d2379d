"""Hedged requests: after a delay, the same request to a second member; the first
success wins, the loser is cancelled and its reserved cost released; within a budget,
and only for idempotent requests (both backends, virtual time)."""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import CallTimeout
from actors.resilience import TokenBucket
from actors.services import ChatRequest
from actors.services.mcp import CallTool, ListTools
from actors.services.sql import Query, Transaction
from actors.testing import Behaviour, MockLLM
from supervisor.groups import GroupConfig, HedgePolicy, ServiceGroup, is_idempotent
from tests.actors.services.fake import Backend
from tests.supervisor.groups.members import fake_member, mock_member, running

pytestmark = pytest.mark.anyio


def hedged(servers: dict[str, MockLLM], **hedge: Any) -> ServiceGroup:
    members = [mock_member(name, mock) for name, mock in servers.items()]
    policy = HedgePolicy(**{"delay": 0.5, "budget": 1.0, **hedge})
    return ServiceGroup("llm", members, GroupConfig(hedge=policy))


@pytest.mark.virtual_time
async def test_a_slow_request_is_hedged_and_the_first_success_wins() -> None:
    """The first member takes 5 s; after 0.5 s the second is asked and answers first."""
    servers = {"a": MockLLM(latency=5.0), "b": MockLLM(latency=0.1)}
    group = hedged(servers)
    async with running(group):
        start = anyio.current_time()
        reply = await group.call(ChatRequest.user("hi"), timeout=30)
        took = anyio.current_time() - start
        await anyio.sleep(0.1)
        assert group._members[0].in_flight == 0
    assert reply.content == "echo: hi"
    assert took == pytest.approx(0.6)
    stats = group.stats
    assert (stats.hedges, stats.hedge_wins, stats.attempts) == (1, 1, 2)


@pytest.mark.virtual_time
async def test_a_fast_answer_is_not_hedged() -> None:
    """An answer before the hedge delay sends nothing more."""
    servers = {"a": MockLLM(latency=0.1), "b": MockLLM(latency=0.1)}
    group = hedged(servers)
    async with running(group):
        await group.call(ChatRequest.user("hi"))
    assert group.stats.hedges == 0
    assert servers["b"].chat_requests == 0


@pytest.mark.virtual_time
async def test_the_losing_hedge_is_cancelled_and_its_tokens_released() -> None:
    """The slow member's request is cancelled when the hedge wins: its limiter gets the
    reserved tokens back, and its breaker and stats count no failure."""
    limits = {
        "requests": TokenBucket(rate=100, period=60),
        "tokens": TokenBucket(rate=10_000, period=60),
    }
    servers = {"a": MockLLM(latency=5.0), "b": MockLLM(latency=0.1)}
    members = [
        mock_member(name, mock, limits=limits, cold_start=None) for name, mock in servers.items()
    ]
    group = ServiceGroup("llm", members, GroupConfig(hedge=HedgePolicy(delay=0.5, budget=1.0)))
    slow = members[0].service
    assert slow.limits is not None
    async with running(group):
        await group.call(ChatRequest.user("hi", max_tokens=500), timeout=30)
        await anyio.sleep(0.1)
        room = slow.limits.metrics().available
    assert room["tokens"] == pytest.approx(10_000, abs=20)
    assert room["requests"] == pytest.approx(100, abs=1)
    assert slow.stats.failed == 0
    assert slow.stats.in_flight == 0
    assert servers["a"].served == []  # it never answered


@pytest.mark.virtual_time
async def test_a_first_contender_failing_after_the_hedge_leaves_the_hedge_to_answer() -> None:
    """The first member fails at 1 s, after the hedge started at 0.5 s: the hedge's
    answer at 2.5 s is the reply."""
    servers = {"a": MockLLM(), "b": MockLLM()}
    servers["a"].script(Behaviour.error(503, latency=1.0))
    servers["b"].script(Behaviour.ok("late", latency=2.0))
    group = hedged(servers)
    async with running(group):
        start = anyio.current_time()
        reply = await group.call(ChatRequest.user("hi"), timeout=30)
        took = anyio.current_time() - start
    assert reply.content == "late"
    assert took == pytest.approx(2.5)


@pytest.mark.virtual_time
async def test_the_hedge_delay_follows_the_latency_quantile() -> None:
    """Once enough latencies are known, a request is hedged at their 0.9 quantile."""
    servers = {"a": MockLLM(latency=0.2), "b": MockLLM(latency=0.2)}
    group = hedged(servers, delay=3.0, quantile=0.9, min_samples=10)
    async with running(group):
        for _ in range(10):
            await group.call(ChatRequest.user("warm"))
        assert (servers["a"].chat_requests, servers["b"].chat_requests) == (5, 5)
        servers["a"].script(Behaviour.ok(latency=10.0))  # round-robin: "a" is next
        start = anyio.current_time()
        await group.call(ChatRequest.user("hi"), timeout=30)
        took = anyio.current_time() - start
    assert group.stats.hedges == 1
    assert took == pytest.approx(0.4, rel=0.05)  # hedged at ~0.2 s, answered 0.2 s later


@pytest.mark.virtual_time
@settings(max_examples=25, deadline=None)
@given(st.floats(0.0, 0.5), st.integers(1, 40), st.lists(st.booleans(), min_size=1, max_size=40))
async def test_hedging_never_exceeds_its_budget(
    ratio: float, requests: int, slow: list[bool]
) -> None:
    """Over any run, hedges stay within budget x requests (no floor configured)."""
    backends = {name: Backend() for name in ("a", "b", "c")}
    group = ServiceGroup(
        "g",
        [fake_member(name, backend) for name, backend in backends.items()],
        GroupConfig(hedge=HedgePolicy(delay=0.1, budget=ratio, budget_ttl=1000.0)),
    )
    async with running(group):
        for index in range(requests):
            for backend in backends.values():
                backend.latency = 1.0 if slow[index % len(slow)] else 0.01
            await group.call("x")
    stats = group.stats
    assert stats.hedges <= ratio * requests + 1e-9
    if ratio * requests < 1:
        assert stats.hedges == 0


@pytest.mark.virtual_time
@pytest.mark.parametrize(
    ("request_", "hedges"),
    [
        (Query("SELECT id FROM users"), 1),
        (Query("INSERT INTO users VALUES (1)", fetch="none"), 0),
        (Query("SELECT id FROM users FOR UPDATE"), 0),
        (Transaction([Query("SELECT 1")]), 0),
    ],
)
async def test_a_sql_write_is_never_hedged(request_: Any, hedges: int) -> None:
    """Against slow database members a read is hedged; a write, a locking read and a
    transaction are sent once, even with a policy calling everything idempotent."""
    backends = {name: Backend(latency=2.0) for name in ("a", "b")}
    policy = HedgePolicy(delay=0.1, budget=1.0, idempotent=lambda request: True)
    group = ServiceGroup(
        "db",
        [fake_member(name, backend, kind="database") for name, backend in backends.items()],
        GroupConfig(hedge=policy),
    )
    async with running(group):
        await group.call(request_, timeout=30)
    assert group.stats.hedges == hedges
    assert sum(backend.requests for backend in backends.values()) == 1 + hedges


@attrs.frozen
class Declared:
    idempotent: bool


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (ChatRequest.user("hi"), True),
        (ListTools(), True),
        (CallTool("delete_everything", {}), False),
        (Query("select 1"), True),
        (Query("  /* why */ WITH t AS (SELECT 1) SELECT * FROM t"), True),
        (Query("WITH t AS (DELETE FROM x RETURNING *) SELECT * FROM t"), False),
        (Query("SELECT nextval('ids')"), False),
        (Query("UPDATE t SET a = 1"), False),
        (Query("SELECT 1", fetch="none"), False),
        (Transaction([]), False),
        (Declared(idempotent=True), True),
        (Declared(idempotent=False), False),
        (object(), False),
    ],
)
def test_which_requests_are_idempotent(request_: Any, expected: bool) -> None:
    """Chat completions, tool listings and plain reads are; writes and tool calls not."""
    assert is_idempotent(request_) is expected


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(
        ["INSERT", "update", "Delete", "MERGE", "drop", "CREATE", "alter", "COPY", "call"]
    ),
    st.text(max_size=20),
    st.text(max_size=20),
)
def test_any_statement_naming_a_write_is_not_idempotent(word: str, before: str, after: str) -> None:
    """A statement naming a write keyword anywhere as a word is never idempotent."""
    query = Query(f"SELECT {before} \n{word}\n {after}")
    assert not is_idempotent(query)


@pytest.mark.virtual_time
async def test_the_callers_deadline_holds_during_a_hedged_race() -> None:
    """Both contenders slower than the caller's deadline: CallTimeout at the deadline,
    and both member calls are cancelled."""
    servers = {"a": MockLLM(latency=5.0), "b": MockLLM(latency=5.0)}
    group = hedged(servers, delay=0.2)
    async with running(group):
        start = anyio.current_time()
        with pytest.raises(CallTimeout):
            await group.call(ChatRequest.user("hi"), timeout=1.0)
        assert anyio.current_time() - start == pytest.approx(1.0)
        await anyio.sleep(0.1)
        assert [m.in_flight for m in group.members()] == [0, 0]
    assert group.stats.hedges == 1
    assert all(mock.served == [] for mock in servers.values())
