"""A service group: three deployments of one model behind one ref, against local mocks.

Run: python examples/service_group.py [--backend asyncio|trio]

Starts three mock LLM servers on 127.0.0.1 (no API key, no network): "east" and
"west" speak the OpenAI format, "backup" the Anthropic one. The group routes by quota
headroom, hedges slow requests, and continues broken streams on another member. It
shows:

1. routing: requests spread by the room left in each member's token quota;
2. failover: a member answering 503 is skipped for that request, at once;
3. hedging: a request stuck on a slow member is sent to a second one, which answers
   first; the slow request is cancelled and its reserved tokens released;
4. stream recovery: a stream cut after three chunks continues on another member, and
   the caller reads one continuous text;
5. the group as a router's primary, with a canned answer when every member is down;
6. the tree, with the group's subtree and its members.
"""

from __future__ import annotations

import argparse
from contextlib import AsyncExitStack
from typing import Any

import anyio

import supervisor as sv
from actors import Secret, ServiceConfig
from actors.services import ChatRequest, ChatResponse
from actors.services.anthropic import AnthropicClient
from actors.services.llm import LLMClient
from actors.testing import Behaviour, MockLLM, Quota, serve_mock_llm
from supervisor.fallback import canned_answer, route
from supervisor.groups import (
    GroupConfig,
    GroupMember,
    HedgePolicy,
    RecoveredResponse,
    ServiceGroup,
    StreamRecovery,
    member,
)

QUOTAS = {"east": 40_000, "west": 20_000, "backup": 10_000}  # tokens per minute


def llm_member(name: str, base_url: str) -> GroupMember[ChatRequest, ChatResponse]:
    """One deployment: its own client, quota-sized limits, breaker and health."""

    def client() -> LLMClient | AnthropicClient:
        key = Secret(f"sk-{name}")
        if name == "backup":
            return AnthropicClient(name, base_url, model="mock-claude", api_key=key)
        return LLMClient(name, base_url, model="mock-gpt", api_key=key)

    return member(name, client, ServiceConfig.for_llm(tokens_per_minute=QUOTAS[name]))


async def main() -> None:
    async with AsyncExitStack() as stack:
        servers = {}
        for name, quota in QUOTAS.items():
            mock = MockLLM(latency=0.05, quota=Quota(tokens_per_minute=quota))
            servers[name] = await stack.enter_async_context(serve_mock_llm(mock))
        config = GroupConfig(
            routing="quota_headroom",
            hedge=HedgePolicy(delay=0.3, budget=0.2),
            stream_recovery=StreamRecovery(),
        )
        group = ServiceGroup(
            "llm", [llm_member(name, server.base_url) for name, server in servers.items()], config
        )
        tree = sv.SupervisorSpec(id="agent", children=[group.spec()])
        sup = await stack.enter_async_context(sv.start(tree))
        controls = {name: server.control for name, server in servers.items()}
        await show_routing(group, controls)
        await show_failover(group, controls)
        await show_hedging(group, controls)
        await show_stream_recovery(group, controls)
        await show_router(group, controls)
        print("\n6. the tree")
        print(sup.dump())


async def show_routing(group: ServiceGroup, controls: dict[str, MockLLM]) -> None:
    print("1. routing by quota headroom (quotas: east 40k, west 20k, backup 10k tokens/min)")
    prompt = " ".join(["word"] * 300)
    for _ in range(12):
        await group.call(ChatRequest.user(prompt, max_tokens=50), timeout=10)
    for row in group.members():
        print(f"  {row.id:7} answered {row.served:2}  latency {row.latency or 0:.3f}s")


async def show_failover(group: ServiceGroup, controls: dict[str, MockLLM]) -> None:
    print("2. failover: every member's next answer would be a 503 but one")
    before = group.stats.failovers
    for name in ("east", "west"):
        controls[name].script(Behaviour.error(503))
    reply = await group.call(ChatRequest.user("are you there?"), timeout=10)
    print(f"  answered: {reply.content!r} after {group.stats.failovers - before} failover(s)")
    for name in ("east", "west"):
        controls[name].reset()
        controls[name].latency = 0.05
        controls[name].quota = Quota(tokens_per_minute=QUOTAS[name])


async def show_hedging(group: ServiceGroup, controls: dict[str, MockLLM]) -> None:
    print("3. hedging: the first member takes 5 s; after 0.3 s a second one is asked")
    for control in controls.values():
        control.latency = 5.0  # a bad moment for whichever member is picked...

    async def recover() -> None:
        await anyio.sleep(0.1)
        for control in controls.values():
            control.latency = 0.05  # ...over by the time the hedge goes out

    async with anyio.create_task_group() as tg:
        tg.start_soon(recover)
        start = anyio.current_time()
        reply = await group.call(ChatRequest.user("quick, please"), timeout=10)
    stats = group.stats
    print(
        f"  answered {reply.content!r} in {anyio.current_time() - start:.2f}s"
        f" (hedges sent {stats.hedges}, won {stats.hedge_wins}; the slow one was cancelled)"
    )


async def show_stream_recovery(group: ServiceGroup, controls: dict[str, MockLLM]) -> None:
    print("4. stream recovery: the stream breaks after three chunks; another member goes on")
    for control in controls.values():
        control.script(Behaviour.stream_error(content="Once upon a time", cut_after=3))
    seen: list[str] = []

    def on_chunk(text: str) -> None:
        if not seen:  # the members that did not take the stream will continue it
            for control in controls.values():
                if control.scripted:
                    control.reset()
                    control.script(Behaviour.ok(content=" time, there was a group."))
        seen.append(text)

    request = ChatRequest.user("tell me a story", stream=True, on_chunk=on_chunk)
    reply = await group.call(request, timeout=10)
    print(f"  the caller read {''.join(seen)!r} in {len(seen)} chunks")
    if isinstance(reply, RecoveredResponse):
        broken = reply.breaks[0]
        print(f"  {broken.member} broke after {broken.chunks} chunks ({broken.error});")
        print(f"  the answer came from {' then '.join(reply.answered_by)}")
    for name, control in controls.items():
        control.reset()
        control.latency = 0.05
        control.quota = Quota(tokens_per_minute=QUOTAS[name])


async def show_router(group: ServiceGroup, controls: dict[str, MockLLM]) -> None:
    print("5. the group as a router's primary; every member down: the canned answer")
    router = route(group.ref, canned_answer("Sorry, try again later."))
    for control in controls.values():
        control.down = True
    routed: Any = await router.call(ChatRequest.user("hello?"), timeout=10)
    print(f"  {routed.source}: {routed.value!r}")
    for control in controls.values():
        control.down = False


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, backend=args.backend)
