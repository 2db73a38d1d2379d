"""Chaos injection: wrap any `ServiceClient` (or any `Actor`) to make it misbehave.

Faults are decided by a seeded random generator, so a chaos run is reproducible:

- `error_rate`: the request fails with `error()` (default: a retryable `ServiceUnavailable`);
- `latency` + `jitter`: extra delay before answering (uniform jitter, or exponential);
- `hang_rate`: the request never answers (until cancelled);
- `crash_every`: every N-th request raises `ChaosCrash`, which is not an `ActorError`: a
  service actor treats it as a bug and crashes (its supervisor restarts it);
- `flap_period`: the service alternates between healthy and failing periods of this many
  seconds (failing ones fail every request and every probe).

Time comes from `anyio.current_time()`, so flapping and latency follow virtual clocks.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Generic, TypeVar

import anyio
import attrs

from actors._actor import Actor
from actors._errors import ServiceUnavailable
from actors._validate import non_negative, optional, positive, positive_int
from actors.services._base import ServiceClient

__all__ = ["ChaosActor", "ChaosClient", "ChaosConfig", "ChaosCrash", "ChaosStats"]

Conn = TypeVar("Conn")
Req = TypeVar("Req")
Resp = TypeVar("Resp")


class ChaosCrash(RuntimeError):
    """An injected crash: deliberately *not* an `ActorError`, so actors treat it as a bug."""


def _rate(_inst: Any, attr: attrs.Attribute[float], value: float) -> None:
    from actors._errors import ConfigError

    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ConfigError(attr.name, value, "must be in [0, 1]")


@attrs.frozen(kw_only=True)
class ChaosConfig:
    """What to inject (all off by default). Durations in seconds.

    Attributes:
        error_rate: Fraction of requests that fail with `error(name)`.
        hang_rate: Fraction of requests that never answer.
        latency: Fixed extra delay per request.
        jitter: Extra random delay: uniform in [0, jitter], or exponential with this mean
            when `exponential` is set.
        exponential: Draw the jitter from an exponential distribution.
        crash_every: Every N-th request raises `ChaosCrash` (None: never).
        flap_period: Alternate healthy / failing periods of this length (None: never).
        seed: Seeds the random generator (None: unseeded).
        error: Builds the injected error from the service name.
    """

    error_rate: float = attrs.field(default=0.0, validator=_rate)
    hang_rate: float = attrs.field(default=0.0, validator=_rate)
    latency: float = attrs.field(default=0.0, validator=non_negative)
    jitter: float = attrs.field(default=0.0, validator=non_negative)
    exponential: bool = False
    crash_every: int | None = attrs.field(default=None, validator=optional(positive_int))
    flap_period: float | None = attrs.field(default=None, validator=optional(positive))
    seed: int | None = None
    error: Callable[[str], Exception] = attrs.field(
        default=lambda name: ServiceUnavailable(name, "injected fault"), eq=False, repr=False
    )


@attrs.define
class ChaosStats:
    """What was injected (counts), so tests can compare with what they observed."""

    requests: int = 0
    errors: int = 0
    hangs: int = 0
    crashes: int = 0
    delayed: int = 0
    flapping_failures: int = 0


class _Injector:
    """The shared decision logic of `ChaosClient` and `ChaosActor`."""

    def __init__(self, config: ChaosConfig, name: str) -> None:
        self.config = config
        self.name = name
        self.random = random.Random(config.seed)
        self.stats = ChaosStats()
        self.start: float | None = None
        self.enabled = True
        self.pending_crashes = 0

    def failing_period(self) -> bool:
        period = self.config.flap_period
        if period is None:
            return False
        now = anyio.current_time()
        if self.start is None:
            self.start = now
        return int((now - self.start) // period) % 2 == 1

    async def before(self) -> None:
        """Applies the faults for one request (raises, hangs or delays)."""
        if not self.enabled:
            return
        config = self.config
        stats = self.stats
        stats.requests += 1
        if self.pending_crashes:
            self.pending_crashes -= 1
            stats.crashes += 1
            raise ChaosCrash(f"{self.name}: injected crash (on demand)")
        if config.crash_every is not None and stats.requests % config.crash_every == 0:
            stats.crashes += 1
            raise ChaosCrash(f"{self.name}: injected crash (request {stats.requests})")
        if self.failing_period():
            stats.flapping_failures += 1
            raise config.error(self.name)
        draw = self.random.random()
        if draw < config.error_rate:
            stats.errors += 1
            raise config.error(self.name)
        if draw < config.error_rate + config.hang_rate:
            stats.hangs += 1
            await anyio.sleep(math.inf)
        delay = config.latency
        if config.jitter:
            if config.exponential:
                delay += self.random.expovariate(1 / config.jitter)
            else:
                delay += self.random.uniform(0, config.jitter)
        if delay > 0:
            stats.delayed += 1
            await anyio.sleep(delay)


class ChaosClient(ServiceClient[Conn, Req, Resp], Generic[Conn, Req, Resp]):
    """Wraps a `ServiceClient`: faults before each request and probe, the rest delegated.

    Share one injector across incarnations by building the `ChaosClient` around a fresh
    inner client with the same `stats`-holding `ChaosClient.injector`, or simply keep a
    reference to the wrapper's `stats`.
    """

    def __init__(
        self,
        inner: ServiceClient[Conn, Req, Resp],
        config: ChaosConfig,
        *,
        injector: _Injector | None = None,
    ) -> None:
        super().__init__(inner.name)
        self.inner = inner
        self.kind = inner.kind  # type: ignore[misc]  # the wrapped client's, per instance
        self.cost_keys = inner.cost_keys  # type: ignore[misc]
        self.injector = injector or _Injector(config, inner.name)

    @property
    def stats(self) -> ChaosStats:
        """What has been injected so far."""
        return self.injector.stats

    def crash_next(self) -> None:
        """Makes the next request raise `ChaosCrash` (crashing a service actor)."""
        self.injector.pending_crashes += 1

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        async with self.inner.lifespan():
            yield

    async def connect(self) -> Conn:
        return await self.inner.connect()

    async def close(self, conn: Conn) -> None:
        await self.inner.close(conn)

    async def validate(self, conn: Conn) -> bool:
        return await self.inner.validate(conn)

    def connection_broken(self, exc: Exception) -> bool:
        return self.inner.connection_broken(exc)

    async def request(self, conn: Conn, request: Req) -> Resp:
        await self.injector.before()
        return await self.inner.request(conn, request)

    async def probe(self, conn: Conn) -> None:
        if self.injector.enabled and self.injector.failing_period():
            raise self.injector.config.error(self.name)
        await self.inner.probe(conn)

    def classifier(self) -> Any:
        return self.inner.classifier()

    def check_request(self, request: Req) -> None:
        self.inner.check_request(request)

    def costs(self, request: Req) -> Mapping[str, float]:
        return self.inner.costs(request)

    def usage(self, response: Resp) -> Mapping[str, float]:
        return self.inner.usage(response)

    def rate_headers(self, response_or_error: object) -> Mapping[str, str] | None:
        return self.inner.rate_headers(response_or_error)


class ChaosActor(Actor[Req, Resp]):
    """Wraps an `Actor`: faults before each message; lifecycle and probes delegated."""

    def __init__(
        self, inner: Actor[Req, Resp], config: ChaosConfig, *, name: str = "actor"
    ) -> None:
        self.inner = inner
        self.max_concurrency = inner.max_concurrency
        self.crash_on_error = inner.crash_on_error
        self.injector = _Injector(config, name)

    @property
    def stats(self) -> ChaosStats:
        """What has been injected so far."""
        return self.injector.stats

    def crashes_on(self, exc: Exception) -> bool:
        return isinstance(exc, ChaosCrash) or self.inner.crashes_on(exc)

    async def on_start(self) -> None:
        self.inner._actor_cell = self._actor_cell
        await self.inner.on_start()

    def lifespan(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.inner.lifespan()

    async def handle(self, msg: Req) -> Resp:
        await self.injector.before()
        return await self.inner.handle(msg)

    async def probe(self) -> None:
        if self.injector.enabled and self.injector.failing_period():
            raise self.injector.config.error(self.injector.name)
        await self.inner.probe()

    async def on_stop(self, reason: BaseException | None) -> None:
        await self.inner.on_stop(reason)
