"""A service group in a running tree (both backends, virtual time, the mock LLM in
process and fake services): routing, failover, cooldown, deadlines and cancellation,
membership at run time, health, and its place in fallback routes."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from actors import CallTimeout, ServiceResponseError
from actors.resilience import BreakerState, SlidingWindow
from actors.services import ChatRequest
from actors.testing import Behaviour, MockLLM, Quota
from supervisor.fallback import canned_answer, route
from supervisor.groups import GroupConfig, GroupUnavailable, ServiceGroup
from supervisor.health import HealthStatus
from tests.actors.services.fake import Backend, count_breaker, status
from tests.supervisor.groups.members import fake_member, mock_member, running

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


def mocks(*names: str, latency: float = 0.1) -> dict[str, MockLLM]:
    return {name: MockLLM(latency=latency) for name in names}


def llm_group(servers: dict[str, MockLLM], **config: Any) -> ServiceGroup:
    members = [mock_member(name, mock) for name, mock in servers.items()]
    return ServiceGroup("llm", members, GroupConfig(**config))


def served(servers: dict[str, MockLLM]) -> dict[str, int]:
    return {name: mock.chat_requests for name, mock in servers.items()}


async def test_requests_go_round_robin_over_the_members() -> None:
    """Six requests to three members: two each, in turn."""
    servers = mocks("a", "b", "c")
    group = llm_group(servers)
    async with running(group):
        for n in range(6):
            reply = await group.call(ChatRequest.user(f"hi {n}"))
            assert reply.content == f"echo: hi {n}"
    assert served(servers) == {"a": 2, "b": 2, "c": 2}
    assert group.stats.succeeded == 6


async def test_a_retry_never_returns_to_the_member_that_failed() -> None:
    """When every member answers 503, each is tried once and the last 503 is raised."""
    servers = mocks("a", "b", "c")
    for mock in servers.values():
        mock.default = Behaviour.error(503)
    group = llm_group(servers)
    async with running(group):
        with pytest.raises(ServiceResponseError) as info:
            await group.call(ChatRequest.user("hi"))
    assert info.value.status_code == 503
    assert served(servers) == {"a": 1, "b": 1, "c": 1}
    assert group.stats.failovers == 2
    assert group.stats.failed == 1


async def test_failover_goes_to_the_next_member_at_once() -> None:
    """A 503 from the first member is answered by the next, without a backoff sleep."""
    servers = mocks("a", "b")
    servers["a"].script(Behaviour.error(503))
    group = llm_group(servers)
    async with running(group):
        start = anyio.current_time()
        reply = await group.call(ChatRequest.user("hi"))
    assert reply.content == "echo: hi"
    assert anyio.current_time() - start == pytest.approx(0.2)  # two answers of 0.1 s
    assert served(servers) == {"a": 1, "b": 1}


async def test_a_callers_mistake_is_not_failed_over() -> None:
    """A 400 is the caller's: raised at once, no other member tried."""
    servers = mocks("a", "b")
    servers["a"].script(Behaviour.error(400, "bad request"))
    group = llm_group(servers)
    async with running(group):
        with pytest.raises(ServiceResponseError) as info:
            await group.call(ChatRequest.user("hi"))
    assert info.value.status_code == 400
    assert served(servers) == {"a": 1, "b": 0}


async def test_a_member_cools_down_while_its_breaker_is_open_and_recovers() -> None:
    """After its breaker opens, a member gets no requests until the open duration has
    passed; then a trial request closes it and it serves again."""
    a, b = Backend(outcomes=[status(503), status(503)]), Backend()
    breaker = count_breaker(2, open_duration=10.0)
    group = ServiceGroup(
        "g", [fake_member("a", a, breaker=breaker), fake_member("b", b, breaker=breaker)]
    )
    async with running(group):
        for _ in range(2):
            await group.call("x")  # a fails (the group fails over to b), twice
        member_a = group.members()[0]
        assert member_a.breaker == "open"
        assert not member_a.serving
        for _ in range(4):
            await group.call("x")
        assert a.requests == 2
        await anyio.sleep(10.0)
        for _ in range(4):
            assert (await group.call("x")).startswith("ok")
    assert a.requests == 4
    assert group.members()[0].breaker == "closed"


async def test_no_member_at_all_raises_group_unavailable_and_the_router_falls_back() -> None:
    """With every member's breaker open the group refuses at once; a router over it
    answers from its fallback."""
    group = ServiceGroup(
        "g",
        [
            fake_member("a", Backend(), breaker=count_breaker(2)),
            fake_member("b", Backend(), breaker=count_breaker(2)),
        ],
    )
    router = None
    async with running(group):
        for state in group._members:
            assert state.service.breaker is not None
            state.service.breaker.force(BreakerState.FORCED_OPEN)
        with pytest.raises(GroupUnavailable) as info:
            await group.call("x")
        assert info.value.reasons == {"a": "breaker open", "b": "breaker open"}
        router = route(group.ref, canned_answer("busy"))
        routed = await router.call("x", timeout=5)
    assert routed.value == "busy"
    assert routed.source == "fallback:canned"


async def test_a_group_is_a_fallback_target() -> None:
    """A router whose primary fails sends the request to the group, which answers."""

    async def primary(request: Any) -> Any:
        raise status(503)

    group = ServiceGroup("g", [fake_member("a", Backend())])
    async with running(group):
        router = route(sv_target(primary), group.ref, name="app")
        routed = await router.call("x", timeout=5)
    assert routed.value == "ok:x"
    assert routed.source == "fallback:app/g/group"


def sv_target(fn: Any) -> Any:
    from supervisor.fallback import target

    return target(fn, name="primary")


async def test_a_hung_member_gets_its_share_and_the_next_answers_in_time() -> None:
    """With 10 s to answer, a hung first member is given 6 s (share 0.6), then the next
    member answers well within the deadline."""
    servers = mocks("a", "b")
    servers["a"].script(Behaviour.hang())
    group = llm_group(servers)
    async with running(group):
        start = anyio.current_time()
        reply = await group.call(ChatRequest.user("hi"), timeout=10.0)
        took = anyio.current_time() - start
    assert reply.content == "echo: hi"
    assert took == pytest.approx(6.0 + 0.1)
    assert servers["a"].hanging == 0


async def test_the_callers_deadline_holds_when_every_member_hangs() -> None:
    """The caller gets CallTimeout at its deadline; the members' calls are cancelled."""
    servers = mocks("a", "b")
    for mock in servers.values():
        mock.default = Behaviour.hang()
    group = llm_group(servers)
    async with running(group):
        start = anyio.current_time()
        with pytest.raises(CallTimeout):
            await group.call(ChatRequest.user("hi"), timeout=3.0)
        assert anyio.current_time() - start == pytest.approx(3.0)
        await anyio.sleep(0.1)
        assert [m.in_flight for m in group.members()] == [0, 0]
        assert sum(m.hanging for m in servers.values()) == 0


async def test_a_cancelled_caller_cancels_the_member_call_and_counts_no_failure() -> None:
    """Cancelling the caller cancels the member's request; nothing counts as a failure."""
    servers = mocks("a", "b")
    servers["a"].default = Behaviour.hang()
    group = llm_group(servers)
    async with running(group):
        with anyio.move_on_after(1.0):
            await group.call(ChatRequest.user("hi"), timeout=10.0)
        await anyio.sleep(0.1)
        assert servers["a"].hanging == 0
        assert servers["b"].chat_requests == 0
        assert group.stats.failed == 0
        assert group.stats.in_flight == 0
        member = group._members[0].service.stats
        assert (member.failed, member.in_flight) == (0, 0)


async def test_members_join_and_leave_at_run_time() -> None:
    """A member added while running takes requests; a removed one gets no more."""
    a, b, c = Backend(), Backend(), Backend()
    group = ServiceGroup("g", [fake_member("a", a), fake_member("b", b)])
    async with running(group) as sup:
        await group.add_member(sup, fake_member("c", c))
        for _ in range(3):
            await group.call("x")
        assert (a.requests, b.requests, c.requests) == (1, 1, 1)
        await group.remove_member(sup, "a")
        for _ in range(4):
            await group.call("x")
        assert (a.requests, b.requests, c.requests) == (1, 3, 3)
        assert [m.id for m in group.members()] == ["b", "c"]
        assert "a [worker" not in sup.dump()
        await group.add_member(sup, fake_member("a", a))  # the id is free again
        assert [m.id for m in group.members()] == ["b", "c", "a"]


async def test_the_tree_dump_shows_the_group_and_its_members() -> None:
    """The group is a subtree: its members' supervisor and its own actor."""
    group = ServiceGroup("g", [fake_member("a", Backend()), fake_member("b", Backend())])
    async with running(group) as sup:
        dump = sup.dump()
        assert group.ref.name == "app/g/group"
    lines = dump.splitlines()
    assert any(line.strip("└├─│ ").startswith("g [supervisor") for line in lines)
    assert any(line.strip("└├─│ ").startswith("members [supervisor") for line in lines)
    assert any(line.strip("└├─│ ").startswith("a [worker") for line in lines)
    assert any(line.strip("└├─│ ").startswith("group [worker") for line in lines)


async def test_group_health_follows_how_many_members_can_serve() -> None:
    """Healthy with min_healthy members serving, degraded with fewer, unhealthy with
    none; the group's probe fails below min_healthy."""
    members = [fake_member(n, Backend(), breaker=count_breaker(2)) for n in ("a", "b")]
    group = ServiceGroup("g", members, GroupConfig(min_healthy=2))
    async with running(group):
        assert group.status() is HealthStatus.HEALTHY
        await group.ref.probe()
        breakers = [state.service.breaker for state in group._members]
        breakers[0].force(BreakerState.FORCED_OPEN)  # type: ignore[union-attr]
        assert group.status() is HealthStatus.DEGRADED
        with pytest.raises(GroupUnavailable):
            await group.ref.probe()
        breakers[1].force(BreakerState.FORCED_OPEN)  # type: ignore[union-attr]
        assert group.status() is HealthStatus.UNHEALTHY
        breakers[0].reset()  # type: ignore[union-attr]
        breakers[1].reset()  # type: ignore[union-attr]
        assert group.status() is HealthStatus.HEALTHY


async def test_unhealthy_members_are_held_back_and_tried_last() -> None:
    """A member its health source calls unhealthy gets nothing while others serve, and
    is still tried when they have all failed."""
    a, b = Backend(), Backend(default=status(503))
    health = {"app/g/members/a": HealthStatus.UNHEALTHY}
    group = ServiceGroup(
        "g",
        [fake_member("a", a), fake_member("b", b)],
        health=lambda name: health.get(name, HealthStatus.HEALTHY),
    )
    async with running(group):
        reply = await group.call("x")
    assert reply == "ok:x"
    assert (a.requests, b.requests) == (1, 1)
    assert [m.health for m in group.members()] == ["unhealthy", "healthy"]


async def test_a_throttled_member_is_held_back_until_its_retry_after() -> None:
    """A 429 with retry-after 5 s fails over, and that member rests for 5 s."""
    servers = mocks("a", "b")
    servers["a"].script(Behaviour.rate_limited(retry_after=5.0))
    group = llm_group(servers)
    async with running(group):
        for _ in range(4):
            await group.call(ChatRequest.user("hi"))
        assert served(servers) == {"a": 1, "b": 4}
        await anyio.sleep(5.0)
        for _ in range(2):
            await group.call(ChatRequest.user("hi"))
    assert served(servers) == {"a": 2, "b": 5}


async def test_quota_headroom_sends_each_request_where_the_quota_has_room() -> None:
    """Members with 1,000 and 4,000 tokens a minute: routed by room, the mock's quotas
    are never exceeded (no 429) and the big member takes most of the load."""
    quotas = {"small": 1000, "big": 4000}
    servers = {name: MockLLM(quota=Quota(tokens_per_minute=tpm)) for name, tpm in quotas.items()}
    members = [
        mock_member(name, servers[name], limits={"tokens": SlidingWindow.per_minute(quotas[name])})
        for name in quotas
    ]
    group = ServiceGroup("llm", members, GroupConfig(routing="quota_headroom"))
    prompt = " ".join(["word"] * 200)  # about 250 tokens with the answer's budget
    async with running(group):
        for _ in range(16):
            await group.call(ChatRequest.user(prompt, max_tokens=20), timeout=30)
    statuses = [s.status for mock in servers.values() for s in mock.served]
    assert statuses.count(429) == 0
    assert servers["big"].chat_requests > 2 * servers["small"].chat_requests


async def test_when_every_quota_would_wait_past_the_deadline_the_group_refuses_at_once() -> None:
    """Quota headroom never sends a request a member's limits would hold past its
    deadline: with every quota spent, GroupUnavailable comes at once."""
    servers = {"a": MockLLM(), "b": MockLLM()}
    members = [
        mock_member(name, mock, limits={"tokens": SlidingWindow.per_minute(1000)}, cold_start=None)
        for name, mock in servers.items()
    ]
    group = ServiceGroup("llm", members, GroupConfig(routing="quota_headroom"))
    async with running(group):
        for state in group._members:
            assert state.service.limits is not None
            assert state.service.limits.try_acquire(tokens=990)
        start = anyio.current_time()
        with pytest.raises(GroupUnavailable) as info:
            await group.call(ChatRequest.user("x" * 400, max_tokens=50), timeout=5)
    assert anyio.current_time() == start
    assert info.value.reasons == {
        "a": "would wait past the deadline",
        "b": "would wait past the deadline",
    }
    assert served(servers) == {"a": 0, "b": 0}
    assert group.stats.unavailable == 1
