"""An agent's LLM traffic through a service actor, on every surface: the official
`openai` and `anthropic` SDKs through `ActorTransport`, and our own `ChatRequest` on
both wire formats (both backends, the mock on 127.0.0.1 served by hypercorn, the test
MCP server as a subprocess)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import pytest

from actors import CircuitOpen, Service, ServiceConfig, open_actor
from actors.resilience import BreakerConfig
from actors.services import MCPToolbox
from actors.services.mcp import MCPClient, server_command
from actors.testing import Behaviour, MockLLM, MockLLMServer, ToolRule, serve_mock_llm
from supervisor.fallback import route

from .surfaces import API_KEY, SURFACES, TOKENS_PER_MINUTE, Surface, until

pytestmark = pytest.mark.anyio

ALL = pytest.mark.parametrize("surface", SURFACES, ids=lambda s: s.id)

# openai's AsyncStream stops at [DONE] and closes the response, but leaves its own
# chain of event generators (and the httpx2 one it reads from) unclosed; trio reports
# each when it is collected. Measured without our transport too: the SDK's, not ours.
SDK_LEAVES_ITS_GENERATORS = pytest.mark.filterwarnings(
    "ignore:Async generator .* was garbage collected:ResourceWarning"
)


@pytest.fixture
async def server() -> AsyncIterator[MockLLMServer]:
    async with serve_mock_llm() as running:
        yield running


@pytest.fixture
async def toolbox() -> AsyncIterator[MCPToolbox]:
    service = Service(
        "tools", lambda: MCPClient("tools", command=server_command()), ServiceConfig.for_mcp()
    )
    async with open_actor(service.actor()) as ref:
        yield await MCPToolbox.load(ref)


def available(service: Service[Any, Any]) -> dict[str, float]:
    assert service.limits is not None
    return {k: round(v, 3) for k, v in service.limits.metrics().available.items()}


def full() -> dict[str, float]:
    return {"requests": 600.0, "tokens": TOKENS_PER_MINUTE}


@ALL
async def test_plain_answer_reconciles_the_reservation(
    surface: Surface, server: MockLLMServer
) -> None:
    """A plain answer arrives, with our key, and the limits keep exactly its usage."""
    svc = surface.service(server.base_url)
    async with open_actor(svc.actor()) as ref, surface.asker(ref) as asker:
        assert await asker.ask("hello there") == "echo: hello there"
        (served,) = server.control.served
        assert available(svc) == {
            "requests": 599.0,
            "tokens": TOKENS_PER_MINUTE - served.total_tokens,
        }
    headers = server.control.last_headers
    assert API_KEY in (headers.get("authorization", "") + headers.get("x-api-key", ""))


@ALL
@SDK_LEAVES_ITS_GENERATORS
async def test_streamed_answer_reconciles_when_read(
    surface: Surface, server: MockLLMServer
) -> None:
    """A streamed answer arrives in pieces; once read, the limits keep its usage and
    its connection is back in the pool."""
    svc = surface.service(server.base_url)
    actor = svc.actor()
    async with open_actor(actor) as ref, surface.asker(ref) as asker:
        pieces: list[str] = []
        assert await asker.stream("one two three four", pieces) == "echo: one two three four"
        assert len(pieces) > 1
        (served,) = server.control.served
        assert available(svc)["tokens"] == TOKENS_PER_MINUTE - served.total_tokens
        assert actor.pool is not None
        assert actor.pool.stats().in_use == 0


@ALL
async def test_tool_round_trip_with_an_mcp_tool(
    surface: Surface, server: MockLLMServer, toolbox: MCPToolbox
) -> None:
    """The model calls an MCP tool offered from the MCP actor; the tool runs through
    that actor and the model's final answer uses its result."""
    server.control.tools = [ToolRule(when="echo", tool="echo", arguments={"text": "pong"})]
    svc = surface.service(server.base_url)
    async with open_actor(svc.actor()) as ref, surface.asker(ref) as asker:
        called, final = await asker.tool_turn(toolbox, "please echo for me")
    assert called == ["echo"]
    assert final == "echo returned: pong"


@ALL
async def test_a_529_is_retried(surface: Surface, server: MockLLMServer) -> None:
    """Two 529 overloaded answers are retried by the actor; the caller gets the answer."""
    server.control.script(Behaviour.overloaded(repeat=2))
    svc = surface.service(server.base_url)
    async with open_actor(svc.actor()) as ref, surface.asker(ref) as asker:
        assert await asker.ask("still there?") == "echo: still there?"
    assert [s.status for s in server.control.served] == [529, 529, 200]
    assert svc.stats.verdicts == {"retryable": 2}


@ALL
async def test_a_providers_400_is_the_callers_mistake(
    surface: Surface, server: MockLLMServer
) -> None:
    """A request the provider refuses with 400 is sent once, not retried, and counts
    as a breaker success (REJECTED)."""
    server.control.script(Behaviour.error(400, "messages.0.content: bad"))
    svc = surface.service(server.base_url)
    async with open_actor(svc.actor()) as ref, surface.asker(ref) as asker:
        with pytest.raises(Exception) as info:
            await asker.ask("anything")
    assert getattr(info.value, "status_code", None) == 400
    assert server.control.chat_requests == 1
    assert svc.stats.verdicts == {"rejected": 1}
    assert svc.breaker is not None
    assert svc.breaker.metrics().failures == 0


@ALL
@SDK_LEAVES_ITS_GENERATORS
async def test_a_caller_deadline_mid_stream_releases_everything(
    surface: Surface, server: MockLLMServer
) -> None:
    """A caller whose deadline passes in the middle of a stream closes it: the
    provider sees the connection go, the pooled connection and the reservation are
    released, and the next request is served at once."""
    server.control.script(Behaviour.stall())  # half the stream, then nothing
    svc = surface.service(server.base_url)
    actor = svc.actor()
    async with open_actor(actor) as ref, surface.asker(ref) as asker:
        pieces: list[str] = []
        with anyio.move_on_after(1.0) as scope:
            await asker.stream("a long story to tell", pieces)
        assert scope.cancelled_caught
        assert pieces  # the deadline came in the middle of the stream
        pool = actor.pool
        assert pool is not None
        # A ChatRequest's handler runs in the actor's task: cancelled as its caller
        # gives up, it lets go a moment later; an SDK stream is closed in the caller's.
        await until(lambda: pool.stats().in_use == 0 and available(svc) == full())
        await until(lambda: server.control.hanging == 0)
        with anyio.fail_after(1):
            assert await asker.ask("next") == "echo: next"


@ALL
async def test_an_outage_opens_the_breaker_and_a_fallback_answers(
    surface: Surface, server: MockLLMServer
) -> None:
    """While the provider is down the breaker opens; then the caller fails fast without
    a request, and a fallback route answers."""
    breaker = BreakerConfig(
        window="count",
        window_size=4,
        minimum_calls=4,
        failure_rate_threshold=0.5,
        open_duration=30.0,
        open_jitter=0.0,
    )
    svc = surface.service(server.base_url, retry=None, breaker=breaker)
    server.control.down = True
    async with open_actor(svc.actor()) as ref, surface.asker(ref) as asker:
        for _ in range(4):
            with pytest.raises(Exception) as info:
                await asker.ask("anyone?")
            assert getattr(info.value, "status_code", None) == 503
        seen = server.control.requests
        started = time.perf_counter()
        with pytest.raises(Exception) as info:
            await asker.ask("anyone?")
        assert time.perf_counter() - started < 0.1
        assert server.control.requests == seen
        cause = info.value.__cause__
        assert isinstance(info.value, CircuitOpen) or (
            cause is not None and isinstance(cause.__cause__, CircuitOpen)
        )

        async def backup(question: str) -> str:
            return f"backup: {question}"

        router = route(asker.ask, backup, breaker=svc.breaker, classifier="llm")
        routed = await router.call("anyone?")
    assert (routed.value, routed.source) == ("backup: anyone?", "fallback:backup")


@pytest.mark.virtual_time
@pytest.mark.parametrize("surface", SURFACES, ids=lambda s: s.id)
async def test_a_429_holds_every_caller_without_a_retry_storm(surface: Surface) -> None:
    """A 429 with retry-after: 2 holds the limits for every caller: four concurrent
    callers make five requests in all, the later ones exactly 2 s after the 429."""
    mock = MockLLM()
    mock.script(Behaviour.rate_limited(retry_after=2))
    svc = surface.service("http://mock/v1", transport=httpx2.ASGITransport(app=mock))
    answers: list[str] = []
    async with open_actor(svc.actor()) as ref, surface.asker(ref) as asker:

        async def one(i: int) -> None:
            answers.append(await asker.ask(f"q{i}", timeout=30))

        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(one, i)
    assert sorted(answers) == [f"echo: q{i}" for i in range(4)]
    limited, *answered = mock.served
    assert [s.status for s in mock.served] == [429, 200, 200, 200, 200]
    assert min(s.at for s in answered) - limited.at == pytest.approx(2.0, abs=0.01)
    assert svc.breaker is not None
    assert svc.breaker.metrics().failures == 0
