"""`Service` (what outlives restarts) and `ServiceActor` (one incarnation serving it).

A `Service` is made once per external service. It holds the state that describes the
*remote service*: its circuit breaker, its rate limits and its retry budget. A
supervisor restarting the actor (a crash loop, say) therefore never resets a rate limit
or closes an open breaker. Each `ServiceActor` incarnation gets a fresh client and a
fresh connection pool.

The path of one request through the actor::

    caller ── mailbox ──▶ handler (up to max_concurrency at once)
                            └─ retry (within the caller's deadline)
                                 └─ each attempt: limits ─▶ breaker ─▶ pool ─▶ client

Retries are outermost so that every attempt is a real request: it takes a rate-limit
reservation, is seen by the breaker (an open breaker ends the retries at once: its
`CircuitOpen` is never retried), and borrows a connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Generic, TypeVar

import anyio
import attrs

from actors._actor import Actor
from actors._classify import ErrorClass
from actors._envelope import current_deadline
from actors._errors import ActorError, ConfigError, ServiceError, ServiceTimeout
from actors._options import ActorConfig
from actors._pool import Pool, PoolConfig, open_pool
from actors.resilience._breaker import (
    BreakerConfig,
    BreakerStateStore,
    CircuitBreaker,
    _every_exception,
)
from actors.resilience._limiter import GCRA, LimitConfig, SlidingWindow, TokenBucket
from actors.resilience._limiter_store import LimiterStore
from actors.resilience._multilimit import MultiLimit, create_multi_limit
from actors.resilience._retry import Retrier, RetryPolicy, create_retrier
from actors.services._base import ServiceClient

__all__ = ["Service", "ServiceActor", "ServiceConfig", "ServiceStats"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def _limits(value: Mapping[str, LimitConfig] | tuple[tuple[str, LimitConfig], ...]) -> Any:
    items = tuple(value.items()) if isinstance(value, Mapping) else tuple(value)
    for name, config in items:
        if not isinstance(config, TokenBucket | SlidingWindow | GCRA):
            raise ConfigError(
                f"limits.{name}", config, "must be a TokenBucket, SlidingWindow or GCRA"
            )
    return items


@attrs.frozen(kw_only=True)
class ServiceConfig:
    """Everything a service actor applies to its requests.

    Attributes:
        retry: The retry policy (None: no retries).
        breaker: The circuit breaker (None: none). Only failures the client's classifier
            calls RETRYABLE (transient service trouble) count against it.
        limits: Rate limits by name, e.g. `{"requests": TokenBucket.per_minute(500),
            "tokens": TokenBucket.per_minute(30_000)}`; the names are the keys of the
            client's `costs()`.
        pool: The connection pool.
        max_concurrency: Requests handled at once (default: the pool's max_size).
        actor: The address's settings (mailbox size, call timeout, ...).
    """

    retry: RetryPolicy | None = attrs.field(factory=RetryPolicy)
    breaker: BreakerConfig | None = attrs.field(factory=BreakerConfig)
    limits: tuple[tuple[str, LimitConfig], ...] = attrs.field(default=(), converter=_limits)
    pool: PoolConfig = attrs.field(factory=PoolConfig)
    max_concurrency: int | None = attrs.field(default=None)
    actor: ActorConfig = attrs.field(factory=ActorConfig)

    @max_concurrency.validator
    def _check_concurrency(self, attr: attrs.Attribute[Any], value: int | None) -> None:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ConfigError("max_concurrency", value, "must be an integer >= 1")

    @classmethod
    def from_resilience(cls, resilience: Any, **changes: Any) -> ServiceConfig:
        """A service config from a loaded `ResilienceConfig` (its retry, breaker and limits;
        a single `limiter` becomes the "requests" limit), with `changes` applied."""
        limits: dict[str, LimitConfig] = dict(resilience.limits or {})
        if resilience.limiter is not None:
            limits["requests"] = resilience.limiter
        base = cls(retry=resilience.retry, breaker=resilience.breaker, limits=limits)
        return attrs.evolve(base, **changes)

    @classmethod
    def for_llm(
        cls,
        *,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        **changes: Any,
    ) -> ServiceConfig:
        """LLM HTTP API defaults: LLM retry and breaker presets, 30 s calls, pool of 16."""
        limits: dict[str, LimitConfig] = {}
        if requests_per_minute is not None:
            limits["requests"] = TokenBucket.per_minute(requests_per_minute)
        if tokens_per_minute is not None:
            limits["tokens"] = TokenBucket.per_minute(tokens_per_minute)
        base = cls(
            retry=RetryPolicy.for_llm(),
            breaker=BreakerConfig.for_llm(),
            limits=limits,
            pool=PoolConfig(max_size=16, acquire_timeout=30.0),
            actor=ActorConfig(call_timeout=60.0),
        )
        return attrs.evolve(base, **changes)

    @classmethod
    def for_database(cls, **changes: Any) -> ServiceConfig:
        """Database defaults: database retry and breaker presets, pool of 5."""
        base = cls(
            retry=RetryPolicy.for_database(),
            breaker=BreakerConfig.for_database(),
            pool=PoolConfig(max_size=5, acquire_timeout=5.0, validate_on_borrow=False),
            actor=ActorConfig(call_timeout=10.0),
        )
        return attrs.evolve(base, **changes)

    @classmethod
    def for_mcp(cls, *, requests_per_second: float | None = None, **changes: Any) -> ServiceConfig:
        """MCP tool server defaults: MCP retry and breaker presets, one session, 8 at once."""
        limits: dict[str, LimitConfig] = {}
        if requests_per_second is not None:
            limits["requests"] = TokenBucket.per_second(requests_per_second)
        base = cls(
            retry=RetryPolicy.for_mcp(),
            breaker=BreakerConfig.for_mcp(),
            limits=limits,
            # Requests multiplex over one session; a cancelled call leaves it usable.
            pool=PoolConfig(max_size=1, acquire_timeout=10.0, close_on_cancel=False),
            max_concurrency=8,
            actor=ActorConfig(call_timeout=30.0),
        )
        return attrs.evolve(base, **changes)


@attrs.define
class ServiceStats:
    """Counters of one service across incarnations."""

    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    attempts: int = 0
    incarnations: int = 0
    failures_by_class: dict[str, int] = attrs.field(factory=dict)


class Service(Generic[Req, Resp]):
    """One external service: its breaker, limits and retry budget, made once.

    Build actors for it with `actor()` (a fresh client and pool each time), e.g. as a
    supervisor child: `ChildSpec(id="llm", factory=svc.actor, config=svc.config.actor)`.
    """

    def __init__(
        self,
        name: str,
        client: Callable[[], ServiceClient[Any, Req, Resp]],
        config: ServiceConfig | None = None,
        *,
        limiter_store: LimiterStore | None = None,
        breaker_store: BreakerStateStore | None = None,
    ) -> None:
        """Makes the service's lasting state.

        Args:
            name: The service's name (events, errors, limiter and breaker keys).
            client: Builds a fresh client for each incarnation.
            config: Defaults to `ServiceConfig()`.
            limiter_store: Where rate-limit state lives (in memory by default; Redis to
                share it between replicas).
            breaker_store: Where breaker state lives (same).

        Raises:
            ConfigError: Invalid name, client factory or config.
        """
        if not isinstance(name, str) or not name:
            raise ConfigError("name", name, "must be a non-empty string")
        if not callable(client):
            raise ConfigError(
                "client", type(client).__name__, "must be a callable building a ServiceClient"
            )
        config = ServiceConfig() if config is None else config
        if not isinstance(config, ServiceConfig):
            raise ConfigError("config", type(config).__name__, "must be a ServiceConfig")
        self.name = name
        self.config = config
        self.client_factory = client
        self.stats = ServiceStats()
        self.breaker: CircuitBreaker | None = None
        self._breaker_store = breaker_store
        self.limits: MultiLimit | None = (
            create_multi_limit(dict(config.limits), name=name, store=limiter_store)
            if config.limits
            else None
        )
        self.retrier: Retrier | None = None
        self._classifier: Any = None

    def actor(self) -> ServiceActor[Req, Resp]:
        """A fresh incarnation: new client and pool, this service's breaker and limits."""
        client = self.client_factory()
        if not isinstance(client, ServiceClient):
            raise ConfigError("client", type(client).__name__, "must return a ServiceClient")
        if self._classifier is None:
            self._bind(client)
        return ServiceActor(self, client)

    def _bind(self, client: ServiceClient[Any, Req, Resp]) -> None:
        """Builds the breaker and retrier once, with the client type's classifier."""
        classifier = client.classifier()
        self._classifier = classifier
        config = self.config
        if config.breaker is not None:
            breaker_config = config.breaker
            if breaker_config.record_exception is _every_exception:
                breaker_config = attrs.evolve(
                    breaker_config,
                    record_exception=lambda exc: classifier.classify(exc) is ErrorClass.RETRYABLE,
                )
            if breaker_config.ignore is None:
                breaker_config = attrs.evolve(
                    breaker_config,
                    ignore=lambda exc: classifier.classify(exc) is ErrorClass.IGNORED,
                )
            self.breaker = CircuitBreaker.create(
                self.name, breaker_config, store=self._breaker_store
            )
        if config.retry is not None:
            policy = config.retry
            if type(policy.classifier).__name__ == "ErrorClassifier":
                policy = attrs.evolve(policy, classifier=classifier)
            self.retrier = create_retrier(policy, service=self.name)

    def __repr__(self) -> str:
        return f"<Service {self.name!r}>"


class _Connections:
    """Adapts a client to the pool's connection factory protocol."""

    __slots__ = ("_client",)

    def __init__(self, client: ServiceClient[Any, Any, Any]) -> None:
        self._client = client

    async def open(self) -> Any:
        return await self._client.connect()

    async def close(self, conn: Any) -> None:
        await self._client.close(conn)

    async def validate(self, conn: Any) -> bool:
        return await self._client.validate(conn)


class ServiceActor(Actor[Req, Resp]):
    """Serves one `Service`: handles requests concurrently through limits, breaker,
    pool and client, with retries inside each caller's deadline."""

    def __init__(self, service: Service[Req, Resp], client: ServiceClient[Any, Req, Resp]) -> None:
        self.service = service
        self.client = client
        config = service.config
        self.max_concurrency = config.max_concurrency or config.pool.max_size
        self.pool: Pool[Any] | None = None

    def crashes_on(self, exc: Exception) -> bool:
        """Documented failures (service errors, refusals, timeouts: every `ActorError`) go
        to the caller and the actor carries on; anything else is a bug and crashes it,
        so that its supervisor restarts it with a fresh client and pool."""
        return not isinstance(exc, ActorError)

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Holds the client's resources and the connection pool while the actor runs."""
        service = self.service
        service.stats.incarnations += 1
        pool_config = service.config.pool
        if pool_config.broken_on is None:
            pool_config = attrs.evolve(pool_config, broken_on=self.client.connection_broken)
        async with (
            self.client.lifespan(),
            open_pool(_Connections(self.client), pool_config, name=service.name) as pool,
        ):
            self.pool = pool
            try:
                yield
            finally:
                self.pool = None

    async def handle(self, msg: Req) -> Resp:
        """Performs one request: retries (if configured) around `attempt`."""
        stats = self.service.stats
        stats.requests += 1
        retrier = self.service.retrier
        try:
            if retrier is None:
                result = await self.attempt(msg)
            else:
                result = await retrier.call(self.attempt, msg)
        except Exception as exc:
            stats.failed += 1
            kind = self.service._classifier.classify(exc).value
            stats.failures_by_class[kind] = stats.failures_by_class.get(kind, 0) + 1
            raise
        stats.succeeded += 1
        return result

    async def attempt(self, request: Req) -> Resp:
        """One attempt: reserve rate limits, pass the breaker, borrow a connection, send."""
        service = self.service
        service.stats.attempts += 1
        limits = service.limits
        deadline = current_deadline()
        reservation = None
        if limits is not None:
            names = limits.limits
            costs = {key: cost for key, cost in self.client.costs(request).items() if key in names}
            reservation = await limits.reserve(deadline=deadline, **costs)
        try:
            breaker = service.breaker
            if breaker is None:
                result = await self._send(request, deadline)
            else:
                result = await breaker.call(self._send, request, deadline)
        except Exception as exc:
            if limits is not None and reservation is not None:
                headers = self.client.rate_headers(exc)
                if headers:
                    await limits.sync_from_headers(headers)
                if not isinstance(exc, ServiceError):
                    await reservation.release()  # refused before reaching the service
            raise
        if limits is not None and reservation is not None:
            usage = {
                key: used for key, used in self.client.usage(result).items() if key in limits.limits
            }
            if usage:
                await reservation.reconcile(**usage)
            headers = self.client.rate_headers(result)
            if headers:
                await limits.sync_from_headers(headers)
        return result

    async def _send(self, request: Req, deadline: float) -> Resp:
        pool = self.pool
        if pool is None:
            raise ServiceTimeout(self.service.name, "the actor is not serving")
        entry = pool.take_idle()
        if entry is None:  # wait for (or open) a connection
            async with pool.connection(deadline=deadline) as conn:
                return await self.client.request(conn, request)
        try:
            result = await self.client.request(entry.conn, request)
        except BaseException as exc:
            await pool.release(entry, discard=pool.breaks(exc))
            raise
        if not pool.return_idle(entry):
            await pool.release(entry, discard=False)
        return result

    async def probe(self) -> None:
        """Borrows a connection and runs the client's probe (the breaker is bypassed, so
        a probe can see a recovered service while the breaker is still open)."""
        pool = self.pool
        if pool is None:
            raise ServiceTimeout(self.service.name, "the actor is not serving")
        async with pool.connection(
            deadline=anyio.current_time() + pool.config.acquire_timeout
        ) as conn:
            await self.client.probe(conn)
