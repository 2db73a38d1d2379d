"""The documented path, type-checked: what a user's `mypy --strict` infers from the public API.

The `check_*` functions are never run; `test_public_api_type_checks` runs mypy over this
file, so a public signature that loses its types (an `Any` creeping in) fails the suite.
"""

from __future__ import annotations

from typing import Any, assert_type

import httpx2
import openai

import supervisor as sv
from actors import Actor, ActorRef, Service, ServiceActor, ServiceConfig, open_actor
from actors.integrations import http_client, openai_client
from actors.resilience import (
    BreakerConfig,
    Limiter,
    Retrier,
    RetryPolicy,
    TokenBucket,
    create_breaker,
    create_limiter,
    create_retrier,
    resilient,
)
from actors.services import ChatRequest, ChatResponse
from actors.services.llm import LLMClient
from tests.typing._mypy import run_mypy


class Notes(Actor[str, int]):
    """Counts the notes it was sent."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    async def handle(self, msg: str) -> int:
        self.notes.append(msg)
        return len(self.notes)


async def check_open_actor() -> None:
    """open_actor yields a ref typed by the actor's request and reply."""
    async with open_actor(Notes(), name="notes") as ref:
        assert_type(ref, ActorRef[str, int])
        assert_type(await ref.call("first", timeout=1.0), int)
        assert_type(await ref.cast("second"), None)


def check_service(base_url: str) -> Service[ChatRequest, ChatResponse]:
    """A Service over an LLM client is typed by the client's request and reply."""
    llm = Service(
        "llm",
        lambda: LLMClient("llm", base_url, model="mock"),
        ServiceConfig.for_llm(requests_per_minute=600, tokens_per_minute=50_000),
    )
    assert_type(llm, Service[ChatRequest, ChatResponse])
    assert_type(llm.actor(), ServiceActor[ChatRequest, ChatResponse])
    return llm


async def check_tree(llm: Service[ChatRequest, ChatResponse]) -> None:
    """A tree of specs starts into a Supervisor whose children are reached by ref."""
    spec = sv.ChildSpec(id="llm", factory=llm.actor, config=llm.config.actor)
    assert_type(spec, sv.ChildSpec[ChatRequest, ChatResponse])
    tree = sv.SupervisorSpec(id="agent", children=[spec])
    assert_type(tree, sv.SupervisorSpec)
    async with sv.start(tree) as sup:
        assert_type(sup, sv.Supervisor)
        # The spec is a typed key: its ref is typed by the actor it runs.
        ref = sup.ref(spec)
        assert_type(ref, ActorRef[ChatRequest, ChatResponse])
        assert_type(await ref.call(ChatRequest.user("hi"), timeout=5.0), ChatResponse)
        assert_type(sup.ref("llm"), ActorRef[Any, Any])  # by path: for dynamic use
        assert_type(await sup.start_child(spec), ActorRef[ChatRequest, ChatResponse])
        assert_type(await sup.start_child(sv.SupervisorSpec(id="sub")), sv.Supervisor)
        async with openai_client(ref) as client:
            assert_type(client, openai.AsyncOpenAI)
        async with http_client(sup.ref("llm")) as http:
            assert_type(await http.get("/models"), httpx2.Response)


async def check_resilient() -> None:
    """@resilient keeps the decorated function's parameters and result."""

    @resilient(retry=RetryPolicy(attempts=3), limiter=TokenBucket.per_second(20))
    async def fetch(url: str, *, timeout: float = 5.0) -> bytes:
        return url.encode()

    assert_type(await fetch("https://example.com", timeout=1.0), bytes)

    @resilient.llm()
    async def ask(prompt: str) -> str:
        return prompt

    assert_type(await ask("hello"), str)


async def check_primitives() -> None:
    """The primitives' factories return their typed objects and keep the call's result."""
    retrier = create_retrier(RetryPolicy.for_llm(), service="openai")
    assert_type(retrier, Retrier)

    async def chat(prompt: str) -> str:
        return prompt

    assert_type(await retrier.call(chat, "hello"), str)
    limiter = create_limiter(TokenBucket.per_second(5), name="search")
    assert_type(limiter, Limiter)
    breaker = create_breaker("openai", BreakerConfig.for_llm())
    assert_type(await breaker.call(chat, "hello"), str)


def test_public_api_type_checks() -> None:
    """mypy --strict finds nothing to report in this file."""
    run_mypy([__file__])
