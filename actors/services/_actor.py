"""`Service` (what outlives restarts) and `ServiceActor` (one incarnation serving it).

A `Service` is made once per external service. It holds the state that describes the
*remote service*: its resilience pipeline, with its circuit breaker, rate limits,
retry budget, metrics and latency. A supervisor restarting the actor (a crash loop,
say) therefore never resets a rate limit or closes an open breaker. Each
`ServiceActor` incarnation gets a fresh client and a fresh connection pool.

The path of one request through the actor::

    caller ── screen (check_request, cost) ── mailbox ──▶ handler (up to max_concurrency)
                                                           └─ the service's pipeline
                                                                └─ each attempt: pool ─▶ client

The pipeline (`actors.resilience._pipeline`) is the same one `@resilient` uses:
retries around breaker, limits, attempt timeout and the request, one verdict per
attempt judged by the client kind's classifier.

A reply whose body is still being read when the attempt returns (`Unsettled`: a
streamed HTTP answer) keeps its pooled connection until its reader closes it, so the
pool's size bounds the streams in flight too.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from functools import partial
from typing import Any, Generic, TypeVar

import anyio
import attrs

from actors._actor import Actor
from actors._clock import Clock, current_clock
from actors._errors import ActorError, ConfigError, ServiceUnavailable
from actors._kinds import ServiceKind, kind_named
from actors._latency import LatencyRecorder
from actors._options import ActorConfig
from actors._pool import Pool, PoolConfig, open_pool
from actors._tracing import AttributeValue, Operation
from actors._validate import check_name, instance_of, optional, positive_int
from actors.resilience._adaptive import AdaptiveConcurrency, AdaptiveLimit, create_adaptive_limit
from actors.resilience._breaker import (
    BreakerConfig,
    BreakerStateStore,
    CircuitBreaker,
    create_breaker,
)
from actors.resilience._limit_queue import ColdStart
from actors.resilience._limiter import GCRA, LimitConfig, SlidingWindow, TokenBucket
from actors.resilience._limiter_store import LimiterStore
from actors.resilience._multilimit import MultiLimit, create_multi_limit
from actors.resilience._pipeline import Pipeline, _check_costs
from actors.resilience._retry import Retrier, RetryPolicy, create_retrier
from actors.resilience._unsettled import Unsettled
from actors.services._base import ServiceClient

__all__ = ["Service", "ServiceActor", "ServiceConfig", "ServiceStats"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def _limits(value: object) -> tuple[tuple[str, LimitConfig], ...]:
    if isinstance(value, Mapping):
        items = tuple(value.items())
    elif isinstance(value, tuple | list):
        items = tuple(value)
    else:
        raise ConfigError("limits", value, "must be a mapping of limit names to limits")
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise ConfigError("limits", item, "must map limit names to limits")
        name, config = item
        if not name.isidentifier():
            raise ConfigError(f"limits.{name}", name, "limit names are identifiers")
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
        breaker: The circuit breaker (None: none).
        limits: Rate limits by name, e.g. `{"requests": TokenBucket.per_minute(500),
            "tokens": TokenBucket.per_minute(30_000)}`; the names are keys of the
            client's `costs()` (checked when the `Service` is made).
        cold_start: How the limits learn the provider's real room before opening the
            tap (None: they start open; the LLM preset turns it on).
        pool: The connection pool.
        max_concurrency: Requests handled at once (default: the pool's max_size).
        adaptive: A concurrency limit learned from latency and 429/503 answers, in the
            pipeline's bulkhead position (None: none; `max_concurrency` bounds it
            anyway). Its current value is `Service.concurrency.metrics().limit`.
        actor: The address's settings (mailbox size, call timeout, ...).
        capture_content: Record content on the attempts' spans: the prompt and the
            completion (LLM), query text (SQL), tool arguments and results (MCP). Off
            by default: they may hold personal data. Secrets are never recorded.
    """

    retry: RetryPolicy | None = attrs.field(
        factory=RetryPolicy, validator=optional(instance_of(RetryPolicy))
    )
    breaker: BreakerConfig | None = attrs.field(
        factory=BreakerConfig, validator=optional(instance_of(BreakerConfig))
    )
    limits: tuple[tuple[str, LimitConfig], ...] = attrs.field(default=(), converter=_limits)
    cold_start: ColdStart | None = attrs.field(
        default=None, validator=optional(instance_of(ColdStart))
    )
    pool: PoolConfig = attrs.field(factory=PoolConfig, validator=instance_of(PoolConfig))
    max_concurrency: int | None = attrs.field(default=None, validator=optional(positive_int))
    adaptive: AdaptiveConcurrency | None = attrs.field(
        default=None, validator=optional(instance_of(AdaptiveConcurrency))
    )
    actor: ActorConfig = attrs.field(factory=ActorConfig, validator=instance_of(ActorConfig))
    capture_content: bool = attrs.field(default=False, validator=instance_of(bool))

    @classmethod
    def of_kind(
        cls,
        kind: ServiceKind | str,
        *,
        requests_per_second: float | None = None,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        **changes: Any,
    ) -> ServiceConfig:
        """A kind's presets (`actors.KINDS`), with optional limits and `changes` applied.

        Args:
            kind: A `ServiceKind` or its name.
            requests_per_second: Adds a "requests" token bucket per second.
            requests_per_minute: Adds a "requests" sliding window of a minute.
            tokens_per_minute: Adds a "tokens" sliding window of a minute.
            **changes: Fields of this class replacing the presets.
        """
        preset = kind_named(kind)
        limits: dict[str, LimitConfig] = {}
        if requests_per_second is not None:
            limits["requests"] = TokenBucket.per_second(requests_per_second)
        # A provider's per-minute quota is a rolling window: a token bucket of a minute's
        # capacity could admit twice the quota within one minute; a sliding window
        # never admits more than it in an aligned window.
        if requests_per_minute is not None:
            limits["requests"] = SlidingWindow.per_minute(requests_per_minute)
        if tokens_per_minute is not None:
            limits["tokens"] = SlidingWindow.per_minute(tokens_per_minute)
        base = cls(
            retry=preset.retry,
            breaker=preset.breaker,
            limits=limits,
            pool=preset.pool,
            max_concurrency=preset.max_concurrency,
            actor=preset.actor,
        )
        config = attrs.evolve(base, **changes)
        if config.limits and "cold_start" not in changes:  # the kind's, once there are limits
            config = attrs.evolve(config, cold_start=preset.cold_start)
        return config

    @classmethod
    def for_llm(
        cls,
        *,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        **changes: Any,
    ) -> ServiceConfig:
        """LLM HTTP APIs: the LLM kind's presets (see `actors.KINDS`)."""
        return cls.of_kind(
            "llm",
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            **changes,
        )

    @classmethod
    def for_http(cls, *, requests_per_second: float | None = None, **changes: Any) -> ServiceConfig:
        """Other HTTP APIs: the HTTP kind's presets."""
        return cls.of_kind("http", requests_per_second=requests_per_second, **changes)

    @classmethod
    def for_database(cls, **changes: Any) -> ServiceConfig:
        """SQL databases: the database kind's presets (pool of 5)."""
        return cls.of_kind("database", **changes)

    @classmethod
    def for_mcp(cls, *, requests_per_second: float | None = None, **changes: Any) -> ServiceConfig:
        """MCP tool servers: the MCP kind's presets (one session, 8 requests at once)."""
        return cls.of_kind("mcp", requests_per_second=requests_per_second, **changes)

    @classmethod
    def from_resilience(cls, resilience: Any, **changes: Any) -> ServiceConfig:
        """A service config from a loaded `ResilienceConfig` (its retry, breaker, limits and
        adaptive concurrency; a single `limiter` becomes the "requests" limit), with
        `changes` applied."""
        limits: dict[str, LimitConfig] = dict(resilience.limits or {})
        if resilience.limiter is not None:
            limits["requests"] = resilience.limiter
        base = cls(
            retry=resilience.retry,
            breaker=resilience.breaker,
            limits=limits,
            adaptive=resilience.adaptive,
        )
        return attrs.evolve(base, **changes)


@attrs.frozen
class ServiceStats:
    """A snapshot of one service's counters, across incarnations.

    Attributes:
        requests: Requests handled (calls into the pipeline).
        succeeded: Requests answered with a success.
        failed: Requests that ended in a failure (cancellations are neither).
        attempts: Attempts made (each one a request to the service).
        in_flight: Requests being handled now.
        incarnations: Actor incarnations started.
        verdicts: Failed attempts by verdict ("retryable", "throttled", "permanent",
            "rejected", "ignored"); successes are `succeeded`.
    """

    requests: int
    succeeded: int
    failed: int
    attempts: int
    in_flight: int
    incarnations: int
    verdicts: Mapping[str, int]


class Service(Generic[Req, Resp]):
    """One external service: its pipeline (breaker, limits, retries), made once.

    Build actors for it with `actor()` (a fresh client and pool each time), e.g. as a
    supervisor child: `ChildSpec(id="llm", factory=svc.actor, config=svc.config.actor)`.

    Attributes:
        name: The service's name.
        kind: The client's `ServiceKind`.
        config: The configuration in force (the kind's presets when none was given).
        pipeline: The resilience pipeline every request runs through.
        latency: Recent latency of its attempts (percentiles and a series).
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
        """Makes the service's lasting state, checking the whole configuration now.

        The client factory is called once here (its client is used by the first
        actor): whatever the client's constructor checks fails here, before anything
        starts.

        Args:
            name: The service's name (events, errors, limiter and breaker keys).
            client: Builds a fresh client for each incarnation.
            config: Defaults to the client kind's presets (`ServiceConfig.of_kind`).
            limiter_store: Where rate-limit state lives (in memory by default; Redis to
                share it between replicas).
            breaker_store: Where breaker state lives (same).

        Raises:
            ConfigError: Invalid name, client factory, client or config, or a limit
                that no cost of the client is charged to.
        """
        check_name("name", name)
        if not callable(client):
            raise ConfigError(
                "client", type(client).__name__, "must be a callable building a ServiceClient"
            )
        self.name = name
        self.client_factory = client
        first = self._build_client()
        self.kind = first.kind
        config = ServiceConfig.of_kind(self.kind) if config is None else config
        if not isinstance(config, ServiceConfig):
            raise ConfigError("config", type(config).__name__, "must be a ServiceConfig")
        for limit_name, _ in config.limits:
            if limit_name not in first.cost_keys:
                raise ConfigError(
                    f"limits.{limit_name}",
                    limit_name,
                    f"is charged by no cost of {type(first).__name__} "
                    f"(its costs: {', '.join(sorted(first.cost_keys))})",
                )
        self.config = config
        self._client: ServiceClient[Any, Req, Resp] = first
        self._spare: ServiceClient[Any, Req, Resp] | None = first
        self.incarnations = 0
        classifier = first.classifier()
        breaker = (
            None
            if config.breaker is None
            else create_breaker(name, config.breaker, store=breaker_store, classifier=classifier)
        )
        limits = (
            create_multi_limit(
                dict(config.limits), name=name, store=limiter_store, cold_start=config.cold_start
            )
            if config.limits
            else None
        )
        retrier = (
            None
            if config.retry is None
            else create_retrier(config.retry, service=name, classifier=classifier)
        )
        self.latency = LatencyRecorder()
        self.pipeline = Pipeline(
            name,
            classifier,
            bulkhead=None
            if config.adaptive is None
            else create_adaptive_limit(config.adaptive, name=name),
            retrier=retrier,
            breaker=breaker,
            limits=limits,
            cost=self.costs,
            usage=self._usage,
            rate_headers=self._rate_headers,
            latency=self.latency,
            describe=_Described(self),
        )

    @property
    def breaker(self) -> CircuitBreaker | None:
        """The circuit breaker (None when configured off)."""
        return self.pipeline.breaker

    @property
    def limits(self) -> MultiLimit | None:
        """The rate limits (None when there are none)."""
        limits = self.pipeline.limits
        assert limits is None or isinstance(limits, MultiLimit)
        return limits

    @property
    def retrier(self) -> Retrier | None:
        """The retry layer (None when configured off)."""
        return self.pipeline.retrier

    @property
    def concurrency(self) -> AdaptiveLimit | None:
        """The adaptive concurrency limit (None unless `ServiceConfig.adaptive` is set)."""
        limit = self.pipeline.bulkhead
        assert limit is None or isinstance(limit, AdaptiveLimit)
        return limit

    @property
    def stats(self) -> ServiceStats:
        """A snapshot of the counters (never a checkpoint)."""
        metrics = self.pipeline.metrics
        return ServiceStats(
            requests=metrics.calls,
            succeeded=metrics.successes,
            failed=metrics.failures,
            attempts=metrics.attempts,
            in_flight=metrics.in_flight,
            incarnations=self.incarnations,
            verdicts=dict(metrics.verdicts),
        )

    def actor(self) -> ServiceActor[Req, Resp]:
        """A fresh incarnation: new client and pool, this service's pipeline."""
        client, self._spare = self._spare, None
        if client is None:
            client = self._build_client()
        self._client = client
        return ServiceActor(self, client)

    def check_request(self, request: Req) -> None:
        """Refuses, in the caller's task, a request that could never be served.

        Raises:
            InvalidRequest: The client's `check_request` refused it, or its cost can
                never be admitted by the limits.
        """
        self._client.check_request(request)
        limits = self.pipeline.limits
        if limits is not None:
            _check_costs(self.name, self.costs(request), limits)

    def _build_client(self) -> ServiceClient[Any, Req, Resp]:
        client = self.client_factory()
        if not isinstance(client, ServiceClient):
            raise ConfigError("client", type(client).__name__, "must return a ServiceClient")
        return client

    def costs(self, request: Req) -> Mapping[str, float]:
        """What `request` costs against each of the service's limits (by limit name)."""
        limits = self.config.limits
        costs = self._client.costs(request)
        return {name: costs.get(name, 0.0) for name, _ in limits}

    def _usage(self, response: Resp) -> Mapping[str, float]:
        names = dict(self.config.limits)
        return {key: used for key, used in self._client.usage(response).items() if key in names}

    def _rate_headers(self, outcome: object) -> Mapping[str, str] | None:
        return self._client.rate_headers(outcome)

    def __repr__(self) -> str:
        return f"<Service {self.name!r} {self.kind.name}>"


class _Described:
    """The pipeline's `Describer`: the service's current client, with its content setting."""

    __slots__ = ("_service",)

    def __init__(self, service: Service[Any, Any]) -> None:
        self._service = service

    def operation(self, request: Any) -> Operation:
        service = self._service
        return service._client.describe(request, content=service.config.capture_content)

    def outcome(self, result: Any) -> Mapping[str, AttributeValue]:
        service = self._service
        return service._client.describe_result(result, content=service.config.capture_content)

    def failure(self, exc: Exception) -> Mapping[str, AttributeValue]:
        return self._service._client.describe_error(exc)


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
    """Serves one `Service`: handles requests concurrently through the service's
    pipeline, each attempt on a pooled connection, within each caller's deadline."""

    def __init__(self, service: Service[Req, Resp], client: ServiceClient[Any, Req, Resp]) -> None:
        self.service = service
        self.client = client
        config = service.config
        self.max_concurrency = config.max_concurrency or config.pool.max_size
        self.pool: Pool[Any] | None = None
        self._call = service.pipeline.call
        self._clock: Clock | None = None  # the loop's, from the start on

    def crashes_on(self, exc: Exception) -> bool:
        """Documented failures (service errors, refusals, timeouts: every `ActorError`) go
        to the caller and the actor carries on; anything else is a bug and crashes it,
        so that its supervisor restarts it with a fresh client and pool."""
        return not isinstance(exc, ActorError)

    def screen(self, msg: Req) -> None:
        """Refuses a request that could never be served, before it is queued."""
        self.service.check_request(msg)

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Holds the client's resources and the connection pool while the actor runs."""
        service = self.service
        service.incarnations += 1
        self._clock = current_clock()  # (the pipeline would look it up per request)
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

    def handle(self, msg: Req) -> Coroutine[Any, Any, Resp]:
        """Performs one request through the service's pipeline. (Returns the pipeline's
        coroutine for the worker to await: one coroutine frame less per request.)"""
        return self._call(self._send, (msg,), {}, None, self._clock)

    async def _send(self, request: Req) -> Resp:
        """One attempt: borrow a connection, send (an `Unsettled` reply returns the
        connection when it is closed)."""
        pool = self.pool
        if pool is None:
            raise ServiceUnavailable(self.service.name, "the actor is not serving")
        entry = pool.take_idle()
        if entry is None:  # wait for (or open) a connection
            async with contextlib.AsyncExitStack() as stack:
                conn = await stack.enter_async_context(pool.connection())
                result = await self.client.request(conn, request)
                if isinstance(result, Unsettled):
                    await result.settle_later(stack.pop_all().aclose)
                return result
        try:
            result = await self.client.request(entry.conn, request)
        except BaseException as exc:
            await pool.release(entry, discard=pool.breaks(exc))
            raise
        if isinstance(result, Unsettled):
            await result.settle_later(partial(pool.release, entry, discard=False))
        elif not pool.return_idle(entry):
            await pool.release(entry, discard=False)
        return result

    async def probe(self) -> None:
        """Borrows a connection and runs the client's probe (the pipeline is bypassed,
        so a probe can see a recovered service while the breaker is still open)."""
        pool = self.pool
        if pool is None:
            raise ServiceUnavailable(self.service.name, "the actor is not serving")
        async with pool.connection(
            deadline=anyio.current_time() + pool.config.acquire_timeout
        ) as conn:
            await self.client.probe(conn)
