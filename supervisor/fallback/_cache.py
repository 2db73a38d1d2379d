"""`ResponseCache`: the fallback cache of a router (TTL, LRU bound, serve-stale-on-error).

An entry is *fresh* for `ttl` seconds after it was stored, then *stale* for
`stale_ttl` more seconds, then gone. A router stores its primary's replies and serves:

- a fresh entry as a route of its own (`source="cache"`, `stale=False`), where the
  cache sits in the fallback order;
- a stale entry only when every route failed (`source="cache"`, `stale=True`).

The cache holds at most `max_entries`; storing one more evicts the least recently used.
Keys come from a user-supplied function of the request; requests whose key function
raises `Unhashable`-style errors are never cached. Time comes from
`anyio.current_time()` (or the `now` you pass). Not thread-safe.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Generic, TypeVar

import attrs

from actors import ConfigError
from actors.lowlevel import check_name, non_negative, positive, positive_int
from actors.lowlevel import now as _current_time
from supervisor.health._metrics import record_cache

__all__ = ["CacheConfig", "CacheMetrics", "ResponseCache", "create_cache"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def _identity(request: Any) -> Hashable:
    return request  # type: ignore[no-any-return]


@attrs.frozen(kw_only=True)
class CacheConfig:
    """Bounds of a `ResponseCache`.

    Attributes:
        ttl: Seconds an entry stays fresh.
        stale_ttl: Seconds an expired entry may still be served stale on error
            (0: never serve stale; `inf`: until evicted).
        max_entries: Entries kept; the least recently used goes first.
    """

    ttl: float = attrs.field(default=60.0, validator=positive)
    stale_ttl: float = attrs.field(default=math.inf, validator=non_negative)
    max_entries: int = attrs.field(default=1024, validator=positive_int)


@attrs.frozen(kw_only=True)
class CacheMetrics:
    """Cumulative lookup counts of one cache.

    Attributes:
        name: The cache's name.
        size: Entries held now.
        hits: Fresh entries served.
        misses: Lookups that found nothing fresh (stale lookups count separately).
        stale_hits: Stale entries served after every route failed.
        stale_misses: Stale lookups that found nothing.
        evictions: Entries dropped by the size bound.
        stores: Replies stored (`put` calls with a cacheable request).
    """

    name: str
    size: int
    hits: int
    misses: int
    stale_hits: int
    stale_misses: int
    evictions: int
    stores: int


@attrs.define(eq=False)
class _Entry(Generic[Resp]):
    value: Resp
    stored_at: float


@attrs.define(eq=False)
class ResponseCache(Generic[Req, Resp]):
    """A bounded TTL cache of replies; create it with `create_cache`.

    Attributes:
        name: Used in metrics and events.
        key: Maps a request to its cache key (default: the request itself).
    """

    name: str
    config: CacheConfig
    key: Callable[[Req], Hashable] = attrs.field(repr=False)
    _entries: OrderedDict[Hashable, _Entry[Resp]] = attrs.field(
        factory=OrderedDict, init=False, repr=False
    )
    hits: int = attrs.field(default=0, init=False)
    misses: int = attrs.field(default=0, init=False)
    stale_hits: int = attrs.field(default=0, init=False)
    stale_misses: int = attrs.field(default=0, init=False)
    evictions: int = attrs.field(default=0, init=False)
    stores: int = attrs.field(default=0, init=False)

    def __len__(self) -> int:
        return len(self._entries)

    def _key(self, request: Req) -> Hashable | None:
        try:
            key = self.key(request)
            hash(key)
        except TypeError:  # unhashable: this request is not cacheable
            return None
        return key

    def get(self, request: Req, *, now: float | None = None) -> tuple[bool, Resp | None]:
        """Looks up a fresh entry; counts a hit or a miss. Not a checkpoint.

        Returns:
            `(True, value)` for a fresh entry, else `(False, None)`.
        """
        key = self._key(request)
        entry = self._entries.get(key) if key is not None else None
        if entry is not None:
            now = _current_time() if now is None else now
            if now - entry.stored_at < self.config.ttl:
                self._entries.move_to_end(key)
                self.hits += 1
                record_cache(self.name, "hit")
                return True, entry.value
        self.misses += 1
        record_cache(self.name, "miss")
        return False, None

    def get_stale(self, request: Req, *, now: float | None = None) -> tuple[bool, Resp | None]:
        """Looks up any servable entry, fresh or within `stale_ttl` past expiry.

        Meant for the moment every route has failed; counts a stale hit or miss.

        Returns:
            `(True, value)` when an entry may be served, else `(False, None)`.
        """
        key = self._key(request)
        entry = self._entries.get(key) if key is not None else None
        if entry is not None:
            now = _current_time() if now is None else now
            cfg = self.config
            if now - entry.stored_at < cfg.ttl + cfg.stale_ttl:
                self._entries.move_to_end(key)
                self.stale_hits += 1
                record_cache(self.name, "stale")
                return True, entry.value
            del self._entries[key]
        self.stale_misses += 1
        record_cache(self.name, "stale_miss")
        return False, None

    def put(self, request: Req, value: Resp, *, now: float | None = None) -> None:
        """Stores `value` for `request` (fresh from now); evicts the LRU entry if full."""
        key = self._key(request)
        if key is None:
            return
        now = _current_time() if now is None else now
        entries = self._entries
        entry = entries.get(key)
        if entry is not None:
            entry.value = value
            entry.stored_at = now
            entries.move_to_end(key)
        else:
            entries[key] = _Entry(value, now)
            if len(entries) > self.config.max_entries:
                entries.popitem(last=False)
                self.evictions += 1
                record_cache(self.name, "evicted")
        self.stores += 1

    def invalidate(self, request: Req) -> bool:
        """Drops the entry for `request`; returns whether there was one."""
        key = self._key(request)
        return key is not None and self._entries.pop(key, None) is not None

    def clear(self) -> None:
        """Drops every entry (the counters stay)."""
        self._entries.clear()

    def metrics(self) -> CacheMetrics:
        """A snapshot of the counters."""
        return CacheMetrics(
            name=self.name,
            size=len(self._entries),
            hits=self.hits,
            misses=self.misses,
            stale_hits=self.stale_hits,
            stale_misses=self.stale_misses,
            evictions=self.evictions,
            stores=self.stores,
        )

    def prometheus_families(self) -> Iterator[Any]:
        """prometheus-client metric families for `health_app(extra_metrics=...)`.

        Raises:
            ImportError: prometheus-client is not installed.
        """
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        lookups = CounterMetricFamily(
            "actorvisor_fallback_cache_lookups",
            "Response cache lookups",
            labels=["cache", "result"],
        )
        for result, count in (
            ("hit", self.hits),
            ("miss", self.misses),
            ("stale", self.stale_hits),
            ("stale_miss", self.stale_misses),
        ):
            lookups.add_metric([self.name, result], count)
        size = GaugeMetricFamily(
            "actorvisor_fallback_cache_entries", "Entries in the cache", labels=["cache"]
        )
        size.add_metric([self.name], len(self._entries))
        evictions = CounterMetricFamily(
            "actorvisor_fallback_cache_evictions", "Entries evicted", labels=["cache"]
        )
        evictions.add_metric([self.name], self.evictions)
        yield from (lookups, size, evictions)


def create_cache(
    name: str = "cache",
    config: CacheConfig | None = None,
    *,
    key: Callable[[Req], Hashable] | None = None,
    ttl: float | None = None,
    stale_ttl: float | None = None,
    max_entries: int | None = None,
) -> ResponseCache[Req, Resp]:
    """Creates a `ResponseCache`; `ttl`, `stale_ttl` and `max_entries` override `config`.

    Raises:
        ConfigError: Invalid bounds, or a `key` that is not callable.
    """
    base = CacheConfig() if config is None else config
    changes: dict[str, Any] = {
        k: v
        for k, v in {"ttl": ttl, "stale_ttl": stale_ttl, "max_entries": max_entries}.items()
        if v is not None
    }
    cfg = attrs.evolve(base, **changes) if changes else base
    if key is not None and not callable(key):
        raise ConfigError("key", key, "must be a function of the request")
    check_name("name", name)
    return ResponseCache(name, cfg, key if key is not None else _identity)
