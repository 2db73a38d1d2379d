"""Limiter and circuit-breaker state shared by many replicas through Redis (extra `redis`).

::

    async with open_redis_stores(RedisOptions(url="redis://cache:6379/0", app="agent")) as stores:
        limiter = create_limiter(
            RateLimit.per_minute(500),
            name="openai",
            store=stores.limiter_store(FailurePolicy.fail_open(replicas=4)),
        )
        await stores.breaker_store.load("openai")          # join the shared state
        breaker = create_breaker("openai", store=stores.breaker_store)

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

One server or a Redis Cluster (`RedisOptions.cluster`: a limiter's keys share a hash
tag, so one script sees them all; coredis follows MOVED/ASK and failovers), in clear or
over TLS (``rediss://``, a CA and a client certificate). The password (given apart or
inside the URL) never appears in reprs, events or exception messages.

This module holds the shared connection's health (`RedisStores`) and the opening; the
options live in `_redis_options`, the client in `_redis_client`, the two stores in
`_redis_limiter` and `_redis_breaker`, the scripts in `_redis_lua`.
"""

from __future__ import annotations

import hashlib
import random
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
from coredis.exceptions import NoScriptError

from actors._events import emit
from actors._public import publish as _publish
from actors._redact import redact
from actors.stores._redis_breaker import RedisBreakerStore, breaker_prefix
from actors.stores._redis_client import (
    STORE_ERRORS,
    Client,
    close_leftovers,
    make_client,
    server_time,
)
from actors.stores._redis_limiter import RedisLimiterStore
from actors.stores._redis_lua import BREAKER_SCRIPT, LIMITER_SCRIPT
from actors.stores._redis_options import FailurePolicy, RedisOptions, RedisStoreMetrics

__all__ = [
    "FailurePolicy",
    "RedisBreakerStore",
    "RedisLimiterStore",
    "RedisOptions",
    "RedisStoreMetrics",
    "RedisStores",
    "open_redis_stores",
]


def _sha(script: str) -> str:
    """The SHA1 under which Redis caches `script` (what SCRIPT LOAD would answer)."""
    return hashlib.sha1(script.encode()).hexdigest()


@attrs.define(eq=False)
class RedisStores:
    """The connection, health and shared stores; get it from `open_redis_stores`.

    Attributes:
        options: How Redis is reached (password redacted in the repr).
        breaker_store: The shared `BreakerStateStore` (one per `RedisStores`).
    """

    options: RedisOptions
    _client: Client = attrs.field(repr=False, alias="_client")
    breaker_store: RedisBreakerStore = attrs.field(init=False, repr=False)
    # Optimistic until the first connection attempt says otherwise (which then emits
    # `store.unavailable`, so an outage at start is reported like any other).
    _available: bool = attrs.field(default=True, init=False)
    _down_since: float = attrs.field(default=0.0, init=False, repr=False)
    _next_probe_at: float = attrs.field(default=0.0, init=False, repr=False)
    _went_down: anyio.Event = attrs.field(factory=anyio.Event, init=False, repr=False)
    _offset: float | None = attrs.field(default=None, init=False, repr=False)
    _limiter_sha: str = attrs.field(default=_sha(LIMITER_SCRIPT), init=False, repr=False)
    _breaker_sha: str = attrs.field(default=_sha(BREAKER_SCRIPT), init=False, repr=False)
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
        url_password = urllib.parse.urlsplit(self.options.url).password
        secrets = [self.options.password, url_password]
        if url_password:
            secrets.append(urllib.parse.unquote(url_password))
        return redact(text, secrets)

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
        """Loads the scripts (one server) and measures the clock offset.

        On a cluster the scripts are not loaded here (SCRIPT LOAD goes to every node, and
        fails while one is down): each node gets them at first use (NOSCRIPT, then EVAL).
        """
        client = self._client
        if not self.options.cluster:
            await client.script_load(LIMITER_SCRIPT)
            await client.script_load(BREAKER_SCRIPT)
        clock = [breaker_prefix(self.options.app) + "#clock"]  # the breakers' slot
        before = anyio.current_time()
        reply = await self._eval("_breaker_sha", BREAKER_SCRIPT, clock, [""], count=False)
        after = anyio.current_time()
        self._offset = server_time(reply[0], reply[1]) - (before + after) / 2

    async def _try_connect(self) -> bool:
        try:
            with anyio.fail_after(self.options.connect_timeout):
                await self._connect()
        except STORE_ERRORS as exc:
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
        self,
        sha_name: str,
        script: str,
        keys: Sequence[str],
        args: Sequence[str],
        *,
        count: bool = True,
    ) -> Any:
        """One EVALSHA, its reply bounded by `op_timeout`; on NOSCRIPT, one EVAL (which
        also caches the script on that server or cluster node).

        A checkpoint. Raises the store errors (`STORE_ERRORS`) for the caller to
        handle; cancellation propagates (the server may or may not have run it).
        """
        client = self._client
        # No cancel scope of our own here (it would cost more than the rest of this
        # method): the client bounds every reply by `stream_timeout` and every wait for
        # a pooled connection by `pool_timeout`, both set to `op_timeout`.
        try:
            return await client.evalsha(getattr(self, sha_name), keys=keys, args=args)
        except NoScriptError:
            if count:
                self.script_loads += 1
                emit(
                    "store.script_loaded", level="info", store="redis", sha=getattr(self, sha_name)
                )
            return await client.eval(script, keys=keys, args=args)


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
    client = make_client(options)
    body_error: Exception | None = None
    try:
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
    finally:
        close_leftovers(client)
    if body_error is not None:
        raise body_error


_publish(globals(), "actors.stores.redis")
