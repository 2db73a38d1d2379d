"""The coredis client the Redis stores talk through: one server or a cluster, TLS.

Built from `RedisOptions` with coredis's public constructors (`coredis.Redis`,
`coredis.RedisCluster`), one attempt per command (a script is not idempotent, and the
stores have their own outage handling), whose connection failures are still reported
to the client (through the public `RetryPolicy` extension point). In a cluster, coredis
follows MOVED and ASK redirections and learns a failover's new masters by itself; a
failover's errors reach the stores, which apply their failure policy until a probe
answers again.
"""

from __future__ import annotations

import ssl
import urllib.parse
from typing import Any, Final, TypeAlias

import anyio
import coredis
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from coredis.exceptions import ClusterDownError, RedisError
from coredis.exceptions import ConnectionError as RedisConnectionError
from coredis.retry import RetryPolicy

from actors._errors import ConfigError
from actors.stores._redis_lua import EPOCH
from actors.stores._redis_options import RedisOptions

__all__ = [
    "STORE_ERRORS",
    "Client",
    "close_leftovers",
    "make_client",
    "server_time",
    "tls_context",
]

Client: TypeAlias = "coredis.Redis[bytes] | coredis.RedisCluster[bytes]"

STORE_ERRORS: Final = (
    RedisError,  # includes cluster errors (CLUSTERDOWN, exhausted redirections)
    OSError,  # includes TimeoutError (our op_timeout) and refused connections
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)
"""What counts as "Redis is unavailable"; anything else is a bug and propagates."""


class _OneAttempt(RetryPolicy):
    """One attempt per command (a script is not idempotent), whose failure is still
    reported to the client: a cluster client refreshes its layout from reported
    connection errors (that is how it finds a failover's new master)."""

    def __init__(self) -> None:
        super().__init__(
            retryable_exceptions=(RedisConnectionError, ClusterDownError, TimeoutError),
            retries=0,
            deadline=0,
        )

    def delay(self, attempt_number: int) -> float:
        return 0.0

    async def call_with_retries(
        self, func: Any, before_hook: Any = None, failure_hook: Any = None
    ) -> Any:
        if before_hook is not None and (pending := before_hook()) is not None:
            await pending
        try:
            return await func()
        except Exception as exc:
            if callable(failure_hook) and self.will_retry(exc):
                pending = failure_hook(exc)
                if pending is not None:
                    await pending
            raise


def _close_streams(owner: object) -> None:
    """Closes the anyio memory streams among `owner`'s attributes, alone or in a pair
    (idempotent)."""
    for value in list(vars(owner).values()):
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, MemoryObjectSendStream | MemoryObjectReceiveStream):
                item.close()


class _ClosesItsBuffers:
    """Closes the memory streams a coredis connection made, however its `run` ends.

    coredis 6 creates them in the constructor and closes them only once connected, so
    every refused connection (a reconnection probe while Redis is down) would leave
    them to the garbage collector with a `ResourceWarning`. coredis has no hook for
    this; the override uses only its public `run` (closing is idempotent).
    """

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            await super().run(task_status=task_status)  # type: ignore[misc]
        finally:
            _close_streams(self)


def close_leftovers(client: Client) -> None:
    """Closes what a closed client leaves open: coredis 6's cluster layout never closes
    its error stream (one per `RedisCluster`), which would warn when collected."""
    if isinstance(client, coredis.RedisCluster):
        _close_streams(client.connection_pool.cluster_layout)


class _TCPConnection(_ClosesItsBuffers, coredis.TCPConnection):
    pass


class _ClusterConnection(_ClosesItsBuffers, coredis.ClusterConnection):
    pass


def tls_context(options: RedisOptions) -> ssl.SSLContext | None:
    """The TLS context for `options` (None without TLS); verifies the server always.

    Raises:
        ConfigError: A CA, certificate or key file that cannot be loaded.
    """
    if not options.uses_tls:
        return None
    context = ssl.create_default_context()
    if options.tls_ca_file is not None:
        try:
            context.load_verify_locations(cafile=options.tls_ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                "tls_ca_file", options.tls_ca_file, f"cannot be loaded ({type(exc).__name__})"
            ) from None
    if options.tls_cert_file is not None:
        try:
            context.load_cert_chain(options.tls_cert_file, options.tls_key_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                "tls_cert_file",
                options.tls_cert_file,
                f"cannot be loaded with its key ({type(exc).__name__})",
            ) from None
    context.check_hostname = options.tls_check_hostname
    return context


def make_client(options: RedisOptions) -> Client:
    """A client for one server, or for a cluster when `options.cluster`.

    Raises:
        ConfigError: A TLS file that cannot be loaded.
    """
    parts = urllib.parse.urlsplit(options.url)
    password = options.password
    if password is None and parts.password is not None:
        password = urllib.parse.unquote(parts.password)
    username = urllib.parse.unquote(parts.username) if parts.username else None
    context = tls_context(options)
    common: dict[str, Any] = {
        "host": parts.hostname,
        "port": parts.port or 6379,
        "username": username,
        "password": password,
        "ssl": context is not None,
        "ssl_context": context,
        "connect_timeout": options.connect_timeout,
        "stream_timeout": options.op_timeout,
        "pool_timeout": options.op_timeout,
        "retry_policy": _OneAttempt(),
    }
    if options.max_connections is not None:
        common["max_connections"] = options.max_connections
    if options.cluster:
        cluster: coredis.RedisCluster[bytes] = coredis.RedisCluster(**common)
        cluster.connection_pool.connection_class = _ClusterConnection
        return cluster
    db = parts.path.lstrip("/")
    client: coredis.Redis[bytes] = coredis.Redis(db=int(db) if db else 0, **common)
    client.connection_pool.connection_class = _TCPConnection
    return client


def server_time(seconds: bytes | int, micros: bytes | int) -> float:
    """A `TIME` reply as seconds since `EPOCH`."""
    return (int(seconds) - EPOCH) + int(micros) / 1e6
