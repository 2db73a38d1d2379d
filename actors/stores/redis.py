"""Limiter and circuit-breaker state shared by many replicas through Redis (extra `redis`).

::

    async with open_redis_stores(RedisOptions(url="redis://cache:6379/0", app="agent")) as stores:
        limiter = create_limiter(
            RateLimit.per_minute(500),
            name="openai",
            store=stores.limiter_store(FailurePolicy.fail_open(replicas=4)),
        )
        await stores.breaker_store.load("openai")          # join the shared state
        breaker = CircuitBreaker.create("openai", store=stores.breaker_store)

Limiters: every `decide` is one EVALSHA of an atomic Lua script that reads the server's
clock (`TIME`) and admits all the limits of a request or none. Each limit is one small
string key, expired once idle for the time to refill fully plus a margin.

Breakers: the `BreakerStateStore` protocol is synchronous (it is read on every
`acquire`), so the store answers from a local copy. A background task pushes local
transitions at once and pulls the others' every `sync_interval`: a transition made by
one replica is seen by every other within ``sync_interval`` plus four round trips. A
record is replaced only by one of a higher generation (first writer of a generation
wins), so a replica that joins adopts the existing state instead of resetting it.

When Redis cannot be reached (error or `op_timeout`), the stores emit
`store.unavailable` once, apply each limiter store's `FailurePolicy` without touching the
network, probe the server with exponential backoff, and emit `store.recovered` when it
answers again. Breakers keep working on their local copy during an outage and push it
back on recovery (to an empty, restarted server too).

The password (given apart or inside the URL) never appears in reprs, events or
exception messages.
"""

from __future__ import annotations

import math
import random
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, Literal

import anyio
import attrs
import coredis
from anyio.abc import ByteStream
from coredis.exceptions import NoScriptError, RedisError
from coredis.retry import NoRetryPolicy

from actors._errors import ConfigError
from actors._events import emit
from actors._validate import positive, positive_int
from actors.resilience._breaker import BreakerRecord, BreakerState
from actors.resilience._limit_algorithms import GCRA, LimitConfig, SlidingWindow, TokenBucket
from actors.resilience._limiter_store import LimitRequest, MemoryLimiterStore
from actors.stores._redis_lua import BREAKER_SCRIPT, EPOCH, LIMITER_SCRIPT

__all__ = [
    "FailurePolicy",
    "RedisBreakerStore",
    "RedisLimiterStore",
    "RedisOptions",
    "RedisStoreMetrics",
    "RedisStores",
    "open_redis_stores",
]

_STORE_ERRORS: Final = (
    RedisError,
    OSError,  # includes TimeoutError (our op_timeout) and refused connections
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)
"""What counts as "Redis is unavailable"; anything else is a bug and propagates."""

_STATES: Final = {state.value: state for state in BreakerState}


# --------------------------------------------------------------------------- options


def _redact(url: str) -> str:
    """`url` with the password of its user-info part replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _check_url(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise ConfigError(attr.name, None, "must be a redis:// or rediss:// URL string")
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port
        db = parts.path.lstrip("/")
    except ValueError:
        raise ConfigError(attr.name, _redact(value), "is not a valid URL") from None
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(attr.name, _redact(value), "must start with redis:// or rediss://")
    if not parts.hostname:
        raise ConfigError(attr.name, _redact(value), "must name a host")
    if port is not None and not 0 < port < 65536:
        raise ConfigError(attr.name, _redact(value), "has an invalid port")
    if db and not db.isdigit():
        raise ConfigError(attr.name, _redact(value), "path must be a database number")


def _check_password(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(attr.name, None, "must be a non-empty string or None")


def _check_app(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ConfigError(attr.name, value, "must be a non-empty string without spaces")


def _finite_positive(inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    positive(inst, attr, value)
    if math.isinf(value):  # type: ignore[arg-type]  # positive() checked it is a number
        raise ConfigError(attr.name, value, "must be finite")


def _backoff_max(inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    _finite_positive(inst, attr, value)
    if value < inst.reconnect_min:
        raise ConfigError(attr.name, value, f"must be >= reconnect_min ({inst.reconnect_min})")


def _redacted_password(value: str | None) -> str:
    return "None" if value is None else "'***'"


@attrs.frozen(kw_only=True)
class RedisOptions:
    """How to reach Redis and how patient to be with it (durations in seconds).

    Attributes:
        url: ``redis://[user[:password]@]host[:port][/db]``; ``rediss://`` means TLS.
        password: The password, if not in the URL (this one wins). Never shown.
        tls: Use TLS even with a ``redis://`` URL (the system's trusted CAs).
        app: Application name: every key starts with ``"<app>:"``, so applications
            can share one Redis (limiter keys then carry the limiter's own
            ``"<namespace>:<service>"``).
        op_timeout: Bound of waiting for one reply (and for a pooled connection); past
            it the store counts as unavailable. Opening a new connection is bounded by
            `connect_timeout`. An enclosing cancel scope (the caller's deadline) also
            bounds every round trip.
        connect_timeout: Bound of connecting (and loading the scripts) at start and in
            each reconnection probe.
        sync_interval: How often breaker records are pulled from Redis.
        reconnect_min: First delay between reconnection probes (doubles, with jitter).
        reconnect_max: Longest delay between reconnection probes.
        expiry_margin: Seconds a limiter key outlives the time it needs to refill fully.
        max_connections: Connection pool size (`None`: coredis's default).
    """

    url: str = attrs.field(default="redis://127.0.0.1:6379/0", validator=_check_url, repr=_redact)
    password: str | None = attrs.field(
        default=None, validator=_check_password, repr=_redacted_password
    )
    tls: bool = False
    app: str = attrs.field(default="actors", validator=_check_app)
    op_timeout: float = attrs.field(default=0.25, validator=_finite_positive)
    connect_timeout: float = attrs.field(default=1.0, validator=_finite_positive)
    sync_interval: float = attrs.field(default=0.5, validator=_finite_positive)
    reconnect_min: float = attrs.field(default=0.05, validator=_finite_positive)
    reconnect_max: float = attrs.field(default=2.0, validator=_backoff_max)
    expiry_margin: float = attrs.field(default=10.0, validator=_finite_positive)
    max_connections: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(positive_int)
    )

    @property
    def safe_url(self) -> str:
        """The URL with any password replaced by ``***`` (for logs)."""
        return _redact(self.url)


def _check_mode(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if value not in ("fail_open", "fail_closed"):
        raise ConfigError(attr.name, value, 'must be "fail_open" or "fail_closed"')


@attrs.frozen(kw_only=True)
class FailurePolicy:
    """What a limiter store does while Redis is unreachable.

    Attributes:
        mode: "fail_open": admit against a local limiter at `1 / replicas` of each limit
            (the replicas together stay near the limit); "fail_closed": admit nothing
            (`decide` refuses with a `retry_after` of the next reconnection probe, so a
            limiter raises `RateLimited` once that is past the caller's deadline).
        replicas: How many replicas share the limit (N in 1/N); 1 for fail-closed.
    """

    mode: Literal["fail_open", "fail_closed"] = attrs.field(
        default="fail_open", validator=_check_mode
    )
    replicas: int = attrs.field(default=1, validator=positive_int)

    @classmethod
    def fail_open(cls, *, replicas: int) -> FailurePolicy:
        """Local limiting at `1 / replicas` of each limit while Redis is down."""
        return cls(mode="fail_open", replicas=replicas)

    @classmethod
    def fail_closed(cls) -> FailurePolicy:
        """Admit nothing while Redis is down."""
        return cls(mode="fail_closed")


@attrs.frozen(kw_only=True)
class RedisStoreMetrics:
    """A snapshot of the Redis stores' counters.

    Attributes:
        available: Whether Redis is answering (as of the last operation or probe).
        errors: Failed operations and probes (each also counted in `timeouts` if it was one).
        timeouts: Operations that took longer than `op_timeout` (or `connect_timeout`).
        outages: Times the stores became unavailable.
        script_loads: Scripts (re)loaded after the server forgot them (NOSCRIPT).
        fallback_decisions: Limiter decisions taken locally (fail-open) during outages.
        closed_rejections: Limiter decisions refused because Redis was down (fail-closed).
        breaker_syncs: Successful breaker sync round trips.
        breaker_adoptions: Breaker records adopted from other replicas.
    """

    available: bool
    errors: int
    timeouts: int
    outages: int
    script_loads: int
    fallback_decisions: int
    closed_rejections: int
    breaker_syncs: int
    breaker_adoptions: int


# --------------------------------------------------------------------------- connection


_CONNECTION_BUFFERS: Final = (
    "_write_buffer_in",
    "_write_buffer_out",
    "_push_message_buffer_in",
    "_push_message_buffer_out",
    "_streamed_message_buffer_in",
    "_streamed_message_buffer_out",
)


class _TCPConnection(coredis.TCPConnection):
    """coredis's TCP connection, closing its internal buffers when connecting fails.

    coredis 6 creates memory streams in each connection's constructor and closes them
    only once connected, so every refused connection (a reconnection probe while Redis
    is down) would leave them to the garbage collector with a `ResourceWarning`.
    """

    async def _connect(self) -> ByteStream:
        try:
            return await super()._connect()
        except BaseException:
            for name in _CONNECTION_BUFFERS:
                stream = getattr(self, name, None)
                if stream is not None:
                    stream.close()
            raise


def _client(options: RedisOptions) -> coredis.Redis[bytes]:
    parts = urllib.parse.urlsplit(options.url)
    password = options.password
    if password is None and parts.password is not None:
        password = urllib.parse.unquote(parts.password)
    username = urllib.parse.unquote(parts.username) if parts.username else None
    db = parts.path.lstrip("/")
    client = coredis.Redis(
        host=parts.hostname,
        port=parts.port or 6379,
        db=int(db) if db else 0,
        username=username,
        password=password,
        ssl=options.tls or parts.scheme == "rediss",
        connect_timeout=options.connect_timeout,
        stream_timeout=options.op_timeout,
        pool_timeout=options.op_timeout,
        max_connections=options.max_connections,
        retry_policy=NoRetryPolicy(),  # one attempt: a script is not idempotent
    )
    client.connection_pool.connection_class = _TCPConnection
    return client


def _server_time(seconds: bytes | int, micros: bytes | int) -> float:
    return (int(seconds) - EPOCH) + int(micros) / 1e6


@attrs.define(eq=False)
class RedisStores:
    """The connection, health and shared stores; get it from `open_redis_stores`.

    Attributes:
        options: How Redis is reached (password redacted in the repr).
        breaker_store: The shared `BreakerStateStore` (one per `RedisStores`).
    """

    options: RedisOptions
    _client: coredis.Redis[bytes] = attrs.field(repr=False, alias="_client")
    breaker_store: RedisBreakerStore = attrs.field(init=False, repr=False)
    # Optimistic until the first connection attempt says otherwise (which then emits
    # `store.unavailable`, so an outage at start is reported like any other).
    _available: bool = attrs.field(default=True, init=False)
    _down_since: float = attrs.field(default=0.0, init=False, repr=False)
    _next_probe_at: float = attrs.field(default=0.0, init=False, repr=False)
    _went_down: anyio.Event = attrs.field(factory=anyio.Event, init=False, repr=False)
    _offset: float | None = attrs.field(default=None, init=False, repr=False)
    _limiter_sha: str = attrs.field(default="", init=False, repr=False)
    _breaker_sha: str = attrs.field(default="", init=False, repr=False)
    errors: int = attrs.field(default=0, init=False, repr=False)
    timeouts: int = attrs.field(default=0, init=False, repr=False)
    outages: int = attrs.field(default=0, init=False, repr=False)
    script_loads: int = attrs.field(default=0, init=False, repr=False)
    fallback_decisions: int = attrs.field(default=0, init=False, repr=False)
    closed_rejections: int = attrs.field(default=0, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.breaker_store = RedisBreakerStore(_stores=self)

    @property
    def available(self) -> bool:
        """Whether Redis answered the last operation (or probe)."""
        return self._available

    def limiter_store(self, policy: FailurePolicy | None = None) -> RedisLimiterStore:
        """A `LimiterStore` on this connection with its own failure policy.

        Create one per service (each service picks fail-open or fail-closed); they share
        the connection and health state. Defaults to fail-open with one replica.
        """
        return RedisLimiterStore(_stores=self, policy=policy or FailurePolicy())

    def metrics(self) -> RedisStoreMetrics:
        """A snapshot of the counters; never a checkpoint."""
        return RedisStoreMetrics(
            available=self._available,
            errors=self.errors,
            timeouts=self.timeouts,
            outages=self.outages,
            script_loads=self.script_loads,
            fallback_decisions=self.fallback_decisions,
            closed_rejections=self.closed_rejections,
            breaker_syncs=self.breaker_store.syncs,
            breaker_adoptions=self.breaker_store.adoptions,
        )

    # ----------------------------------------------------------------- internals

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        secrets = [self.options.password, urllib.parse.urlsplit(self.options.url).password]
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
                text = text.replace(urllib.parse.unquote(secret), "***")
        return text

    def _failed(self, exc: BaseException) -> None:
        """Counts a failed operation; the first of an outage emits `store.unavailable`."""
        self.errors += 1
        if isinstance(exc, TimeoutError):
            self.timeouts += 1
        if not self._available:
            return
        self._available = False
        self.outages += 1
        now = anyio.current_time()
        self._down_since = now
        self._next_probe_at = now + self.options.reconnect_min
        emit(
            "store.unavailable",
            level="warning",
            store="redis",
            url=self.options.safe_url,
            error=self._describe(exc),
        )
        self._went_down.set()

    def _retry_after(self) -> float:
        """Seconds until the next reconnection probe (at least `reconnect_min`)."""
        wait = self._next_probe_at - anyio.current_time()
        return max(wait, self.options.reconnect_min)

    async def _connect(self) -> None:
        """Loads both scripts and measures the clock offset (three round trips)."""
        client = self._client
        self._limiter_sha = (await client.script_load(LIMITER_SCRIPT)).decode()
        self._breaker_sha = (await client.script_load(BREAKER_SCRIPT)).decode()
        before = anyio.current_time()
        reply = await client.evalsha(self._breaker_sha, keys=(), args=())
        after = anyio.current_time()
        self._offset = _server_time(reply[0], reply[1]) - (before + after) / 2  # type: ignore[index, arg-type]

    async def _try_connect(self) -> bool:
        try:
            with anyio.fail_after(self.options.connect_timeout):
                await self._connect()
        except _STORE_ERRORS as exc:
            self._failed(exc)
            return False
        if not self._available:
            self._available = True
            emit(
                "store.recovered",
                level="info",
                store="redis",
                url=self.options.safe_url,
                downtime=anyio.current_time() - self._down_since,
            )
            self.breaker_store._reseed()
        return True

    async def _probe_loop(self) -> None:
        """Reconnects with jittered exponential backoff whenever the stores go down."""
        options = self.options
        while True:
            await self._went_down.wait()
            self._went_down = anyio.Event()
            delay = options.reconnect_min
            while not self._available:
                await anyio.sleep_until(self._next_probe_at)
                if await self._try_connect():
                    break
                delay = min(delay * 2, options.reconnect_max)
                self._next_probe_at = anyio.current_time() + delay * (0.5 + random.random() / 2)

    async def _eval(
        self, sha_name: str, script: str, keys: Sequence[str], args: Sequence[str]
    ) -> Any:
        """One EVALSHA, its reply bounded by `op_timeout`; reloads the script on NOSCRIPT.

        A checkpoint. Raises the store errors (`_STORE_ERRORS`) for the caller to
        handle; cancellation propagates (the server may or may not have run it).
        """
        client = self._client
        # No cancel scope of our own here (it would cost more than the rest of this
        # method): the client bounds every reply by `stream_timeout` and every wait for
        # a pooled connection by `pool_timeout`, both set to `op_timeout`.
        try:
            return await client.evalsha(getattr(self, sha_name), keys=keys, args=args)
        except NoScriptError:
            self.script_loads += 1
            sha = (await client.script_load(script)).decode()
            setattr(self, sha_name, sha)
            emit("store.script_loaded", level="info", store="redis", sha=sha)
            return await client.evalsha(sha, keys=keys, args=args)


# --------------------------------------------------------------------------- limiter


def _params(config: LimitConfig) -> tuple[str, str, str]:
    """The script's kind and two parameters for `config`."""
    if isinstance(config, TokenBucket):
        return "t", repr(float(config.max_cost)), repr(config.mean_rate)
    if isinstance(config, GCRA):
        return "g", repr(config.emission_interval), repr(config.burst_tolerance)
    if isinstance(config, SlidingWindow):
        return "s", repr(float(config.limit)), repr(float(config.window))
    raise TypeError(
        f"the Redis limiter store supports TokenBucket, GCRA and SlidingWindow, "
        f"not {type(config).__name__}"
    )


@attrs.define(eq=False)
class RedisLimiterStore:
    """A `LimiterStore` in Redis, with a failure policy; get it from `RedisStores.limiter_store`.

    Every method is one atomic script on the server's clock (the `now` argument is used
    only by the local fallback, and to turn a hold's end into a duration). Keys are
    ``"<app>:limiter:{<group>}<rest of the limiter key>"``: the group is a hash tag, so
    all the keys of one limiter (and its hold, ``"...{<group>}#hold"``) live in one
    cluster slot.

    Attributes:
        policy: What to do while Redis is unreachable.
    """

    _stores: RedisStores = attrs.field(alias="_stores", repr=False)
    policy: FailurePolicy
    _local: MemoryLimiterStore = attrs.field(factory=MemoryLimiterStore, init=False, repr=False)
    _param_cache: dict[LimitConfig, tuple[str, str, str]] = attrs.field(
        factory=dict, init=False, repr=False
    )
    _scaled_cache: dict[LimitConfig, LimitConfig] = attrs.field(
        factory=dict, init=False, repr=False
    )
    _prefix: str = attrs.field(init=False, repr=False)
    _margin: str = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        options = self._stores.options
        self._prefix = f"{options.app}:limiter:"
        self._margin = repr(options.expiry_margin)

    def redis_key(self, group: str, key: str) -> str:
        """The Redis key holding the state of limiter key `key` of `group`."""
        if not key.startswith(group):
            raise ValueError(f"key {key!r} is not in group {group!r}")
        return f"{self._prefix}{{{group}}}{key[len(group) :]}"

    def hold_key(self, group: str) -> str:
        """The Redis key holding `group`'s hold."""
        return f"{self._prefix}{{{group}}}#hold"

    async def _run(
        self, op: str, group: str, requests: Sequence[LimitRequest], extra: str = ""
    ) -> tuple[bool, float] | None:
        """Runs the script; `None` when Redis is unavailable (or just failed)."""
        stores = self._stores
        if not stores._available:
            return None
        cache = self._param_cache
        keys = [self.hold_key(group)]
        args = [op, self._margin]
        if extra:
            args.append(extra)
        for key, config, cost in requests:
            keys.append(self.redis_key(group, key))
            params = cache.get(config)
            if params is None:
                params = cache[config] = _params(config)
            args.extend(params)
            args.append(repr(float(cost)))
        try:
            reply = await stores._eval("_limiter_sha", LIMITER_SCRIPT, keys, args)
        except _STORE_ERRORS as exc:
            stores._failed(exc)
            return None
        return reply[0] == 1, float(reply[1])

    def _scale(self, config: LimitConfig) -> LimitConfig:
        scaled = self._scaled_cache.get(config)
        if scaled is None:
            _params(config)  # TypeError for anything but the three configs
            replicas = self.policy.replicas
            scaled = config if replicas == 1 else config.scaled(1.0 / replicas)
            self._scaled_cache[config] = scaled
        return scaled

    def _fallback_decide(
        self, group: str, requests: Sequence[LimitRequest], now: float
    ) -> tuple[bool, float]:
        stores = self._stores
        if self.policy.mode == "fail_closed":
            stores.closed_rejections += 1
            return False, stores._retry_after()
        stores.fallback_decisions += 1
        local = []
        excess = []
        for key, config, cost in requests:
            scaled = self._scale(config)
            # A cost above the scaled capacity waits for a full local limit, then goes
            # into debt (it could never be admitted otherwise).
            fits = min(cost, scaled.max_cost)
            local.append((key, scaled, fits))
            excess.append(cost - fits)
        admitted, retry_after = self._local.decide_nowait(group, local, now)
        if admitted:
            for (key, scaled, _), extra in zip(local, excess, strict=True):
                if extra > 0:
                    self._local.charge_nowait(key, scaled, extra, now)
        return admitted, retry_after

    async def decide(
        self, group: str, requests: Sequence[LimitRequest], *, now: float
    ) -> tuple[bool, float]:
        """Admits every `(key, config, cost)` or none, atomically on the server.

        A checkpoint while Redis is available (one round trip, bounded by `op_timeout`
        and the enclosing cancel scopes); while it is not, answers at once by the
        policy (the limiter's `acquire` is the checkpoint then). Cancellation during the
        round trip propagates; the server may have admitted the request (those units are
        lost, erring on the safe side).

        Raises:
            TypeError: A config other than TokenBucket, GCRA or SlidingWindow.
        """
        result = await self._run("d", group, requests)
        if result is not None:
            return result
        return self._fallback_decide(group, requests, now)

    async def charge(
        self, group: str, key: str, config: LimitConfig, cost: float, *, now: float
    ) -> None:
        """Consumes (refunds when negative) `cost`; locally when fail-open and Redis is down.

        Fail-closed drops a charge made while Redis is down (nothing was admitted then).
        """
        result = await self._run("c", group, ((key, config, cost),))
        if result is None and self.policy.mode == "fail_open":
            self._local.charge_nowait(key, self._scale(config), cost, now)

    async def wait_time(
        self, group: str, key: str, config: LimitConfig, cost: float, *, now: float
    ) -> float:
        """Seconds until `cost` could be admitted (by the policy while Redis is down)."""
        result = await self._run("w", group, ((key, config, cost),))
        if result is not None:
            return result[1]
        if self.policy.mode == "fail_closed":
            return self._stores._retry_after()
        scaled = self._scale(config)
        return self._local.wait_time_nowait(group, key, scaled, min(cost, scaled.max_cost), now)

    async def available(self, group: str, key: str, config: LimitConfig, *, now: float) -> float:
        """Units available now (0 while Redis is down and the policy is fail-closed)."""
        result = await self._run("a", group, ((key, config, 0.0),))
        if result is not None:
            return result[1]
        if self.policy.mode == "fail_closed":
            return 0.0
        return self._local.available_nowait(key, self._scale(config), now)

    async def resync(
        self, group: str, key: str, config: LimitConfig, remaining: float, *, now: float
    ) -> None:
        """Lowers the key's availability to at most `remaining` (1/N of it locally)."""
        result = await self._run("r", group, ((key, config, remaining),))
        if result is None and self.policy.mode == "fail_open":
            share = remaining / self.policy.replicas
            self._local.resync_nowait(key, self._scale(config), share, now)

    async def hold(self, group: str, until: float, *, now: float) -> None:
        """Holds `group` for `until - now` seconds on the server's clock (for every
        replica); also locally, so the hold outlasts an outage."""
        self._local.hold_nowait(group, until)
        await self._run("h", group, (), repr(max(0.0, until - now)))


# --------------------------------------------------------------------------- breaker


@attrs.define(eq=False)
class RedisBreakerStore:
    """A `BreakerStateStore` shared through Redis; get it from `RedisStores.breaker_store`.

    `get` and `set` never block: they read and write a local copy. A background task
    (run by `open_redis_stores`) pushes each `set` at once and pulls every record every
    `sync_interval`. Timestamps are translated between this process's clock and the
    server's (`TIME`), measured at every sync. Keys are ``"<app>:breaker:<name>"``.
    """

    _stores: RedisStores = attrs.field(alias="_stores", repr=False)
    _records: dict[str, BreakerRecord] = attrs.field(factory=dict, init=False, repr=False)
    _wanted: set[str] = attrs.field(factory=set, init=False, repr=False)
    _dirty: set[str] = attrs.field(factory=set, init=False, repr=False)
    _wake: anyio.Event = attrs.field(factory=anyio.Event, init=False, repr=False)
    syncs: int = attrs.field(default=0, init=False, repr=False)
    adoptions: int = attrs.field(default=0, init=False, repr=False)

    def get(self, name: str) -> BreakerRecord | None:
        """The local copy of breaker `name`'s record (`None`: not known yet)."""
        record = self._records.get(name)
        if record is None:
            self._wanted.add(name)
        return record

    def set(self, name: str, record: BreakerRecord) -> None:
        """Stores `record` locally and schedules its push (not a checkpoint)."""
        self._records[name] = record
        self._dirty.add(name)
        self._wake.set()

    async def load(self, *names: str) -> None:
        """Reads the shared records of `names` now (one round trip), before creating breakers.

        A checkpoint. If Redis is unavailable the names are pulled at the next sync
        after recovery; it never raises for a store error.
        """
        self._wanted.update(names)
        await self.sync()

    async def sync(self) -> None:
        """Pushes local transitions and pulls the others' (one round trip).

        A checkpoint; does nothing while Redis is unavailable. Cancellation leaves the
        pushed records marked for the next sync.
        """
        stores = self._stores
        names = list(self._records.keys() | self._wanted)
        offset = stores._offset
        if not names or not stores._available or offset is None:
            return
        prefix = f"{stores.options.app}:breaker:"
        dirty, self._dirty = self._dirty, set()
        before = {name: self._records.get(name) for name in names}
        args = [
            self._dump(record, offset) if name in dirty and record is not None else ""
            for name, record in before.items()
        ]
        start = anyio.current_time()
        try:
            reply = await stores._eval(
                "_breaker_sha", BREAKER_SCRIPT, [prefix + name for name in names], args
            )
        except _STORE_ERRORS as exc:
            self._dirty |= dirty
            stores._failed(exc)
            return
        except BaseException:
            self._dirty |= dirty
            raise
        end = anyio.current_time()
        offset = stores._offset = _server_time(reply[0], reply[1]) - (start + end) / 2
        self.syncs += 1
        self._wanted.difference_update(names)
        for name, pushed, raw in zip(names, args, reply[2:], strict=True):
            text = raw.decode()
            if not text:  # never stored, or the server lost it: re-seed from our copy
                if self._records.get(name) is not None:
                    self._dirty.add(name)
                    self._wake.set()
                continue
            if text == pushed:
                continue
            try:
                remote = self._load(text, offset)
            except (ValueError, KeyError):
                emit("store.bad_record", level="warning", store="redis", breaker=name)
                continue
            current = self._records.get(name)
            if (
                current is None
                or remote.generation > current.generation
                or (
                    remote.generation == current.generation
                    and current is before[name]
                    and remote.state is not current.state
                )
            ):
                self._records[name] = remote
                self.adoptions += 1

    def _reseed(self) -> None:
        """Schedules a push of every local record (after an outage: the server may be new)."""
        self._dirty.update(self._records)
        self._wake.set()

    async def _sync_loop(self) -> None:
        interval = self._stores.options.sync_interval
        while True:
            with anyio.move_on_after(interval):
                await self._wake.wait()
            self._wake = anyio.Event()
            await self.sync()

    @staticmethod
    def _dump(record: BreakerRecord, offset: float) -> str:
        since = "" if record.since is None else repr(record.since + offset)
        return (
            f"{record.generation}|{record.state.value}|{since}|"
            f"{record.open_duration!r}|{record.open_base!r}"
        )

    @staticmethod
    def _load(text: str, offset: float) -> BreakerRecord:
        generation, state, since, duration, base = text.split("|")
        return BreakerRecord(
            state=_STATES[state],
            generation=int(generation),
            since=float(since) - offset if since else None,
            open_duration=float(duration),
            open_base=float(base),
        )


# --------------------------------------------------------------------------- opening


@asynccontextmanager
async def open_redis_stores(
    options: RedisOptions | None = None, /, **overrides: Any
) -> AsyncIterator[RedisStores]:
    """Connects to Redis and runs the background tasks (reconnection, breaker sync).

    Starting never fails because Redis is down: the stores start unavailable (event
    `store.unavailable`), apply their failure policies and reconnect in the background.
    Entering waits at most `connect_timeout` (a checkpoint). Leaving the block pushes
    breaker transitions not yet pushed (shielded, at most `op_timeout`), cancels the
    background tasks and closes the connections; an exception raised in the block
    propagates as itself (not wrapped in an exception group).

    Args:
        options: Defaults to `RedisOptions()`.
        **overrides: Fields of `RedisOptions` to set (`url=...`, `password=...`).

    Raises:
        ConfigError: An invalid option (a password is never shown).
    """
    if options is None:
        options = RedisOptions(**overrides)
    elif overrides:
        options = attrs.evolve(options, **overrides)
    client = _client(options)
    body_error: Exception | None = None
    async with client, anyio.create_task_group() as group:
        stores = RedisStores(options, _client=client)
        await stores._try_connect()
        group.start_soon(stores._probe_loop)
        group.start_soon(stores.breaker_store._sync_loop)
        try:
            yield stores
        except Exception as exc:  # re-raised below, outside the task groups (unwrapped)
            body_error = exc
        finally:
            if stores.breaker_store._dirty:  # push the last transitions (time-limited)
                with anyio.move_on_after(options.op_timeout, shield=True):
                    await stores.breaker_store.sync()
            group.cancel_scope.cancel()
    if body_error is not None:
        raise body_error
