"""Members for group tests: fake services (scripted outcomes), and LLM services on the
mock server (in process on virtual time, or on loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx2

import supervisor as sv
from actors import ActorConfig, PoolConfig, Service, ServiceConfig
from actors.resilience import BreakerConfig, LimitConfig, RetryPolicy
from actors.services import ChatRequest, ChatResponse
from actors.services.anthropic import AnthropicClient
from actors.services.llm import LLMClient
from actors.testing import MockLLM
from supervisor.groups import GroupMember, ServiceGroup, member
from tests.actors.services.fake import Backend, client_factory

ONE_ATTEMPT = RetryPolicy(attempts=1, budget_ratio=None)


def fake_config(**changes: Any) -> ServiceConfig:
    """One attempt, no breaker, no limits, a pool of 8, a 30 s call timeout."""
    base = ServiceConfig(
        retry=ONE_ATTEMPT,
        breaker=None,
        pool=PoolConfig(max_size=8, acquire_timeout=30.0, max_idle=None, max_lifetime=None),
        actor=ActorConfig(call_timeout=30.0),
    )
    return attrs.evolve(base, **changes)


def fake_member(
    member_id: str,
    backend: Backend,
    *,
    weight: float = 1.0,
    kind: str = "llm",
    limits: Mapping[str, LimitConfig] | None = None,
    breaker: BreakerConfig | None = None,
) -> GroupMember[Any, Any]:
    """A member answering from a fake backend (see tests.actors.services.fake)."""
    config = fake_config(limits=dict(limits or {}), breaker=breaker)
    service = Service(member_id, client_factory(backend, kind=kind), config)
    return GroupMember(id=member_id, service=service, weight=weight)


def mock_member(
    member_id: str,
    mock: MockLLM,
    *,
    wire: str = "openai",
    base_url: str = "http://mock/v1",
    in_process: bool = True,
    **changes: Any,
) -> GroupMember[ChatRequest, ChatResponse]:
    """An LLM member talking to `mock` (in process through ASGI, or at `base_url`)."""
    transport = httpx2.ASGITransport(app=mock) if in_process else None
    config = ServiceConfig.for_llm(
        breaker=None, actor=ActorConfig(call_timeout=30.0, mailbox_size=1000)
    )
    config = attrs.evolve(config, **changes)

    def client() -> LLMClient | AnthropicClient:
        if wire == "anthropic":
            return AnthropicClient(member_id, base_url, model="m", transport=transport)
        return LLMClient(member_id, base_url, model="m", transport=transport)

    return member(member_id, client, config)


@asynccontextmanager
async def running(group: ServiceGroup) -> AsyncIterator[sv.Supervisor]:
    """Runs `group` as the only child of a root supervisor."""
    async with sv.start(sv.SupervisorSpec(id="app", children=[group.spec()])) as sup:
        yield sup
