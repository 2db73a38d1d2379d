"""Kinds of service: each one's classifier and resilience presets, defined once.

A `ServiceKind` is the one record that says how a kind of external service fails and
how calls to it are made resilient by default. Every preset in the library reads this
table: `RetryPolicy.for_llm()`, `BreakerConfig.for_database()`, `ServiceConfig.for_mcp()`,
`@resilient.llm()`, the TOML ``preset = "llm"`` and ``classifier = "llm"`` keys, and
the default configuration of a `Service` whose client declares its ``kind``.

The timeouts of each kind nest so that detection can fire: slow-call threshold <
attempt timeout (where there is one) < call timeout. A slow service is seen by the
breaker's slow-call rate; a hung one by its attempt timeout (a failure the breaker
counts), or, for the HTTP kinds, which have none (a cancel scope per attempt would
cost more than the rest of the call), by the slow-call rate again: an attempt
abandoned after running past the slow-call threshold counts as a slow call. The
caller's own deadline (a cancellation, never a failure) comes last.

==========  ============  ==========================  =========================  ==========
kind        retries       breaker                     timeouts (slow/attempt/     pool
                                                      call)
==========  ============  ==========================  =========================  ==========
llm         4, 0.5-30 s   50 % over 60 s, min 20,     60 s / none / 120 s         16
                          slow 80 %, open 30 s (x2)
http        3, 0.2-10 s   50 % over 60 s, min 20,     10 s / none / 60 s          16
                          slow 80 %, open 15 s (x2)
database    3, 50 ms-2 s  5 in a row or 50 % of 20,   2 s / 5 s / 10 s            5
                          slow 80 %, open 5 s (x2)
mcp         3, 0.2-5 s    50 % of 20, slow 80 %,      10 s / 20 s / 30 s          1 session,
                          open 10 s (x2)                                          8 at once
custom      3, 0.1-10 s   50 % of 100 (min 20),       60 s / none / 5 s           10
                          open 30 s (x2)
==========  ============  ==========================  =========================  ==========

The LLM kind also starts its rate limits cold (`cold_start`): until the provider's
first rate-limit headers arrive, only one request is in flight, so an actor started
against a provider that is already at its limit does not burst a pool-full of
requests into 429s.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import attrs

from actors._classify import (
    Classifier,
    DatabaseClassifier,
    ErrorClassifier,
    HTTPClassifier,
    LLMClassifier,
    MCPClassifier,
)
from actors._errors import ConfigError
from actors._options import ActorConfig
from actors._pool_config import PoolConfig
from actors._validate import instance_of, name, optional, positive_int
from actors.resilience._breaker import BreakerConfig
from actors.resilience._limit_queue import ColdStart
from actors.resilience._retry import RetryPolicy

__all__ = ["CUSTOM", "DATABASE", "HTTP", "KINDS", "LLM", "MCP", "ServiceKind", "kind_named"]


@attrs.frozen(kw_only=True)
class ServiceKind:
    """How one kind of external service fails, and its resilience presets.

    Attributes:
        name: The kind's name ("llm", "http", "database", "mcp", "custom").
        classifier: Judges every attempt's outcome.
        retry: The retry preset.
        breaker: The circuit-breaker preset.
        pool: The connection-pool preset of its service actors.
        actor: The address settings of its service actors (call timeout, ...).
        max_concurrency: Requests a service actor handles at once (None: the pool size).
        cold_start: How its rate limits learn the provider's real room before opening
            the tap (None: they start open).
    """

    name: str = attrs.field(validator=name)
    classifier: Classifier = attrs.field(validator=instance_of(Classifier))
    retry: RetryPolicy = attrs.field(validator=instance_of(RetryPolicy))
    breaker: BreakerConfig = attrs.field(validator=instance_of(BreakerConfig))
    pool: PoolConfig = attrs.field(validator=instance_of(PoolConfig))
    actor: ActorConfig = attrs.field(validator=instance_of(ActorConfig))
    max_concurrency: int | None = attrs.field(default=None, validator=optional(positive_int))
    cold_start: ColdStart | None = attrs.field(
        default=None, validator=optional(instance_of(ColdStart))
    )


_BREAKER_COMMON: Final[dict[str, Any]] = {
    "failure_rate_threshold": 0.5,
    "slow_call_rate_threshold": 0.8,
    "minimum_calls": 20,
    "open_backoff_multiplier": 2.0,
    "open_jitter": 0.1,
}

LLM: Final = ServiceKind(
    name="llm",
    classifier=LLMClassifier(),
    retry=RetryPolicy(
        attempts=4,
        backoff_initial=0.5,
        backoff_max=30.0,
        max_server_delay=60.0,
    ),
    breaker=BreakerConfig(
        **_BREAKER_COMMON,
        window="time",
        window_size=60,
        slow_call_duration=60.0,
        open_duration=30.0,
        max_open_duration=300.0,
        half_open_permits=3,
        half_open_max_wait=180.0,
    ),
    pool=PoolConfig(max_size=16, acquire_timeout=30.0),
    actor=ActorConfig(call_timeout=120.0),
    cold_start=ColdStart(),
)
"""LLM HTTP APIs (OpenAI-compatible, Anthropic)."""

HTTP: Final = ServiceKind(
    name="http",
    classifier=HTTPClassifier(),
    retry=RetryPolicy(
        attempts=3,
        backoff_initial=0.2,
        backoff_max=10.0,
        max_server_delay=30.0,
    ),
    breaker=BreakerConfig(
        **_BREAKER_COMMON,
        window="time",
        window_size=60,
        slow_call_duration=10.0,
        open_duration=15.0,
        max_open_duration=120.0,
        half_open_permits=2,
        half_open_max_wait=60.0,
    ),
    pool=PoolConfig(max_size=16, acquire_timeout=10.0),
    actor=ActorConfig(call_timeout=60.0),
)
"""Other HTTP APIs: statuses 408/409/429/5xx are retried and counted, 4xx are the caller's."""

DATABASE: Final = ServiceKind(
    name="database",
    classifier=DatabaseClassifier(),
    retry=RetryPolicy(attempts=3, backoff_initial=0.05, backoff_max=2.0, attempt_timeout=5.0),
    breaker=BreakerConfig(
        **_BREAKER_COMMON,
        window="count",
        window_size=20,
        slow_call_duration=2.0,
        consecutive_failures=5,
        open_duration=5.0,
        max_open_duration=60.0,
        half_open_permits=1,
        half_open_max_wait=30.0,
    ),
    pool=PoolConfig(max_size=5, acquire_timeout=5.0, validate_on_borrow=False),
    actor=ActorConfig(call_timeout=10.0),
)
"""SQL databases (SQLite, PostgreSQL)."""

MCP: Final = ServiceKind(
    name="mcp",
    classifier=MCPClassifier(),
    retry=RetryPolicy(attempts=3, backoff_initial=0.2, backoff_max=5.0, attempt_timeout=20.0),
    breaker=BreakerConfig(
        **_BREAKER_COMMON,
        window="count",
        window_size=20,
        slow_call_duration=10.0,
        open_duration=10.0,
        max_open_duration=120.0,
        half_open_permits=1,
        half_open_max_wait=60.0,
    ),
    # Requests multiplex over one session; a cancelled call leaves it usable.
    pool=PoolConfig(max_size=1, acquire_timeout=10.0, close_on_cancel=False),
    actor=ActorConfig(call_timeout=30.0),
    max_concurrency=8,
)
"""MCP tool servers (stdio or streamable HTTP)."""

CUSTOM: Final = ServiceKind(
    name="custom",
    classifier=ErrorClassifier(),
    retry=RetryPolicy(),
    breaker=BreakerConfig(),
    pool=PoolConfig(),
    actor=ActorConfig(),
)
"""Anything else: the library's own errors are judged by their fields, the rest is permanent."""

KINDS: Final[Mapping[str, ServiceKind]] = MappingProxyType(
    {kind.name: kind for kind in (LLM, HTTP, DATABASE, MCP, CUSTOM)}
)
"""Every kind by name."""


def kind_named(value: object, *, field: str = "kind") -> ServiceKind:
    """The kind called `value` (a `ServiceKind` is returned as is).

    Raises:
        ConfigError: An unknown name (naming `field`).
    """
    if isinstance(value, ServiceKind):
        return value
    kind = KINDS.get(value) if isinstance(value, str) else None
    if kind is None:
        raise ConfigError(field, value, f"must be one of {', '.join(sorted(KINDS))}")
    return kind
