"""Traces and metrics of an agent turn: a call to an agent actor that calls the LLM
service actor, whose first HTTP attempt the mock answers 503 and the retry succeeds
(real hypercorn on 127.0.0.1, both backends)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import SpanKind, StatusCode

from actors import Actor, ActorRef, Secret, Service, ServiceConfig, instrument, open_actor
from actors.resilience import RetryPolicy
from actors.services import ChatRequest, ChatResponse
from actors.services.anthropic import AnthropicClient
from actors.services.llm import LLMClient
from actors.testing import Behaviour, MockLLMServer, serve_mock_llm
from tests.actors.tracing.conftest import Telemetry, attributes, texts

pytestmark = pytest.mark.anyio

API_KEY = "sk-trace-0123456789-never-in-a-span"
PROMPT = "the launch code is tangerine-7731"
ANSWER = "noted: citrus"
FAST = RetryPolicy.for_llm(backoff_initial=0.01, backoff_max=0.02, budget_ratio=None)


class Agent(Actor[str, str]):
    """Asks the LLM actor and answers with its reply."""

    def __init__(self, llm: ActorRef[ChatRequest, ChatResponse]) -> None:
        self.llm = llm

    async def handle(self, msg: str) -> str:
        reply = await self.llm.call(ChatRequest.user(msg, max_tokens=50))
        return reply.content


@pytest.fixture
async def server() -> AsyncIterator[MockLLMServer]:
    async with serve_mock_llm() as running:
        yield running


def llm_service(server: MockLLMServer, **changes: Any) -> Service[ChatRequest, ChatResponse]:
    config = attrs.evolve(ServiceConfig.for_llm(retry=FAST), **changes)
    return Service(
        "llm",
        lambda: LLMClient("llm", server.base_url, model="mock-small", api_key=Secret(API_KEY)),
        config,
    )


async def agent_turn(server: MockLLMServer, svc: Service[ChatRequest, ChatResponse]) -> str:
    """One turn: agent -> llm, the first attempt answered 503, the retry answered."""
    async with (
        open_actor(svc.actor(), name="llm") as llm,
        open_actor(Agent(llm), name="agent") as agent,
    ):
        server.control.script(Behaviour.error(503), Behaviour.ok(ANSWER))
        return await agent.call(PROMPT, timeout=10)


def attempts(telemetry: Telemetry) -> list[ReadableSpan]:
    found = telemetry.named("chat mock-small")
    return sorted(found, key=lambda span: attributes(span)["actorvisor.attempt"])


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


async def test_one_trace_from_the_caller_through_both_actors_to_each_attempt(
    server: MockLLMServer, telemetry: Telemetry
) -> None:
    """The turn is one trace: call agent > call llm > one client span per HTTP attempt."""
    assert await agent_turn(server, llm_service(server)) == ANSWER
    (agent,) = telemetry.named("call agent")
    (llm,) = telemetry.named("call llm")
    first, second = attempts(telemetry)
    assert {span.context.trace_id for span in telemetry.spans()} == {agent.context.trace_id}
    assert len(telemetry.spans()) == 4
    assert agent.parent is None
    assert parent_id(llm) == agent.context.span_id
    assert parent_id(first) == parent_id(second) == llm.context.span_id
    assert (agent.kind, llm.kind, first.kind) == (SpanKind.INTERNAL,) * 2 + (SpanKind.CLIENT,)
    assert attributes(llm)["actorvisor.actor"] == "llm"
    assert attributes(llm)["actorvisor.message.type"] == "ChatRequest"


async def test_attempt_spans_follow_the_genai_conventions(
    server: MockLLMServer, telemetry: Telemetry
) -> None:
    """The failed attempt has error.type 503; the answered one the response's model,
    usage and finish reasons, beside the request's operation, provider and model."""
    await agent_turn(server, llm_service(server))
    first, second = attempts(telemetry)
    assert attributes(first)["error.type"] == "503"
    assert first.status.status_code is StatusCode.ERROR
    recorded = attributes(second)
    assert recorded["gen_ai.operation.name"] == "chat"
    assert recorded["gen_ai.provider.name"] == "openai"
    assert recorded["gen_ai.request.model"] == "mock-small"
    assert recorded["gen_ai.request.max_tokens"] == 50
    assert recorded["gen_ai.response.model"] == "mock-small"
    assert recorded["gen_ai.response.finish_reasons"] == ("stop",)
    assert recorded["gen_ai.usage.input_tokens"] > 0
    assert recorded["gen_ai.usage.output_tokens"] > 0
    assert recorded["server.address"] == "127.0.0.1"
    assert (recorded["actorvisor.service"], recorded["actorvisor.attempt"]) == ("llm", 2)
    assert "error.type" not in recorded
    assert second.status.status_code is StatusCode.UNSET


async def test_retry_is_an_event_on_the_call_span(
    server: MockLLMServer, telemetry: Telemetry
) -> None:
    """The scheduled retry is an event on the caller's span of the LLM call."""
    await agent_turn(server, llm_service(server))
    (llm,) = telemetry.named("call llm")
    (retry,) = [event for event in llm.events if event.name == "actorvisor.retry"]
    assert attributes(retry)["actorvisor.attempt"] == 1
    assert attributes(retry)["error.type"] == "503"
    assert 0 <= attributes(retry)["actorvisor.retry.delay"] <= 0.02


async def test_each_request_carries_its_attempts_traceparent(
    server: MockLLMServer, telemetry: Telemetry
) -> None:
    """The HTTP request of the answered attempt carried that attempt's W3C traceparent."""
    await agent_turn(server, llm_service(server))
    _, second = attempts(telemetry)
    context = second.context
    flags = int(context.trace_flags)
    assert flags & 1  # sampled
    expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}"
    assert server.control.last_headers["traceparent"] == expected


async def test_no_span_holds_the_key_or_the_conversation(
    server: MockLLMServer, telemetry: Telemetry
) -> None:
    """Neither the API key nor the prompt or answer appears in a name, attribute or event."""
    await agent_turn(server, llm_service(server))
    recorded = " ".join(texts(telemetry.spans()))
    assert "tangerine" not in recorded
    assert ANSWER not in recorded
    assert API_KEY not in recorded
    assert API_KEY[:12] not in recorded


async def test_captured_content_is_the_conversation_and_never_the_key(
    server: MockLLMServer, telemetry: Telemetry
) -> None:
    """With capture_content, the answered attempt holds the input and output messages in
    the conventions' shape; the key still appears nowhere."""
    await agent_turn(server, llm_service(server, capture_content=True))
    _, second = attempts(telemetry)
    assert attributes(second)["gen_ai.input.messages"] == (
        '[{"role":"user","parts":[{"type":"text","content":"' + PROMPT + '"}]}]'
    )
    assert attributes(second)["gen_ai.output.messages"] == (
        '[{"role":"assistant","parts":[{"type":"text","content":"'
        + ANSWER
        + '"}],"finish_reason":"stop"}]'
    )
    assert API_KEY not in " ".join(texts(telemetry.spans()))


async def test_llm_metrics_follow_the_genai_conventions(
    server: MockLLMServer, telemetry: Telemetry
) -> None:
    """Each attempt is a gen_ai.client.operation.duration point (the failed one with its
    error.type); the answer's tokens are gen_ai.client.token.usage, by token type."""
    await agent_turn(server, llm_service(server))
    metrics = telemetry.metrics()
    duration = metrics["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    by_error = {point.attributes.get("error.type"): point for point in duration.data.data_points}
    assert set(by_error) == {"503", None}
    assert by_error[None].count == by_error["503"].count == 1
    assert dict(by_error[None].attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "mock-small",
        "gen_ai.response.model": "mock-small",
        "server.address": "127.0.0.1",
        "server.port": int(server.base_url.rsplit(":", 1)[1].split("/")[0]),
    }
    tokens = metrics["gen_ai.client.token.usage"]
    assert tokens.unit == "{token}"
    by_type = {point.attributes["gen_ai.token.type"]: point for point in tokens.data.data_points}
    _, second = attempts(telemetry)
    assert by_type["input"].sum == attributes(second)["gen_ai.usage.input_tokens"]
    assert by_type["output"].sum == attributes(second)["gen_ai.usage.output_tokens"]
    assert "error.type" not in by_type["input"].attributes


async def test_anthropic_attempts_name_their_provider(
    server: MockLLMServer, telemetry: Telemetry
) -> None:
    """The Anthropic client's attempt is ``chat {model}`` with provider anthropic."""
    svc = Service(
        "claude",
        lambda: AnthropicClient(
            "claude", server.base_url, model="claude-mock", api_key=Secret(API_KEY)
        ),
        ServiceConfig.for_llm(retry=FAST),
    )
    async with open_actor(svc.actor()) as ref:
        await ref.call(ChatRequest.user("hi"), timeout=10)
    (attempt,) = telemetry.named("chat claude-mock")
    assert attributes(attempt)["gen_ai.provider.name"] == "anthropic"
    assert attributes(attempt)["gen_ai.usage.output_tokens"] > 0


async def test_an_unsampled_parent_makes_no_spans_but_its_context_travels(
    server: MockLLMServer,
) -> None:
    """Under a sampler that records nothing, no span is exported and the request still
    carries a traceparent, flagged not sampled."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument(tracer_provider=provider)
    try:
        assert await agent_turn(server, llm_service(server)) == ANSWER
    finally:
        instrument()
    assert exporter.get_finished_spans() == ()
    version, trace_id, _span_id, flags = server.control.last_headers["traceparent"].split("-")
    assert version == "00"
    assert not int(flags, 16) & 1  # not sampled
    assert int(trace_id, 16) != 0


async def test_tracing_off_sends_no_traceparent(server: MockLLMServer) -> None:
    """Without a tracer provider, requests carry no trace context."""
    assert await agent_turn(server, llm_service(server)) == ANSWER
    assert "traceparent" not in server.control.last_headers
