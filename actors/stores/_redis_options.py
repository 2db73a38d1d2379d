"""How to reach Redis (options) and what a limiter store does when it cannot (policy)."""

from __future__ import annotations

import os
import urllib.parse
from typing import Any, Literal

import attrs

from actors._errors import ConfigError
from actors._validate import finite_positive, positive_int

__all__ = ["FailurePolicy", "RedisOptions", "RedisStoreMetrics", "redact_url"]


def redact_url(url: str) -> str:
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
        raise ConfigError(attr.name, redact_url(value), "is not a valid URL") from None
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(attr.name, redact_url(value), "must start with redis:// or rediss://")
    if not parts.hostname:
        raise ConfigError(attr.name, redact_url(value), "must name a host")
    if port is not None and not 0 < port < 65536:
        raise ConfigError(attr.name, redact_url(value), "has an invalid port")
    if db and not db.isdigit():
        raise ConfigError(attr.name, redact_url(value), "path must be a database number")


def _check_password(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(attr.name, None, "must be a non-empty string or None")


def _check_app(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ConfigError(attr.name, value, "must be a non-empty string without spaces")


def _backoff_max(inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    finite_positive(inst, attr, value)
    if value < inst.reconnect_min:
        raise ConfigError(attr.name, value, f"must be >= reconnect_min ({inst.reconnect_min})")


def _check_file(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value:
        raise ConfigError(attr.name, value, "must be the path of a PEM file, or None")
    if not os.path.isfile(value):
        raise ConfigError(attr.name, value, "is not a readable file")


def _redacted_password(value: str | None) -> str:
    return "None" if value is None else "'***'"


@attrs.frozen(kw_only=True)
class RedisOptions:
    """How to reach Redis and how patient to be with it (durations in seconds).

    Attributes:
        url: ``redis://[user[:password]@]host[:port][/db]``; ``rediss://`` means TLS.
            With `cluster`, the host and port of any one node (database 0).
        password: The password, if not in the URL (this one wins). Never shown.
        tls: Use TLS even with a ``redis://`` URL.
        tls_ca_file: PEM file of the CA(s) that sign the server's certificate; `None`:
            the system's trusted CAs.
        tls_cert_file: PEM file of the client certificate, for servers that require
            one (``tls-auth-clients yes``); needs `tls_key_file`.
        tls_key_file: PEM file of the client certificate's private key.
        tls_check_hostname: Check that the server's certificate names the URL's host.
        cluster: The URL names a node of a Redis Cluster: the client discovers the
            others, follows MOVED/ASK redirections and a failover's new masters.
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

    url: str = attrs.field(
        default="redis://127.0.0.1:6379/0", validator=_check_url, repr=redact_url
    )
    password: str | None = attrs.field(
        default=None, validator=_check_password, repr=_redacted_password
    )
    tls: bool = False
    tls_ca_file: str | None = attrs.field(default=None, validator=_check_file)
    tls_cert_file: str | None = attrs.field(default=None, validator=_check_file)
    tls_key_file: str | None = attrs.field(default=None, validator=_check_file)
    tls_check_hostname: bool = True
    cluster: bool = False
    app: str = attrs.field(default="actors", validator=_check_app)
    op_timeout: float = attrs.field(default=0.25, validator=finite_positive)
    connect_timeout: float = attrs.field(default=1.0, validator=finite_positive)
    sync_interval: float = attrs.field(default=0.5, validator=finite_positive)
    reconnect_min: float = attrs.field(default=0.05, validator=finite_positive)
    reconnect_max: float = attrs.field(default=2.0, validator=_backoff_max)
    expiry_margin: float = attrs.field(default=10.0, validator=finite_positive)
    max_connections: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(positive_int)
    )

    def __attrs_post_init__(self) -> None:
        files = (self.tls_ca_file, self.tls_cert_file, self.tls_key_file)
        if any(files) and not self.uses_tls:
            raise ConfigError(
                "tls", self.tls, "must be true (or the URL rediss://) with tls_* files"
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConfigError(
                "tls_key_file", self.tls_key_file, "a client certificate needs its key (and back)"
            )
        if self.cluster and urllib.parse.urlsplit(self.url).path.lstrip("/") not in ("", "0"):
            raise ConfigError("url", self.safe_url, "a cluster has only database 0")

    @property
    def uses_tls(self) -> bool:
        """Whether connections use TLS (`tls`, or a ``rediss://`` URL)."""
        return self.tls or self.url.startswith("rediss://")

    @property
    def safe_url(self) -> str:
        """The URL with any password replaced by ``***`` (for logs)."""
        return redact_url(self.url)


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
