"""ResponseCache: TTL on virtual time, LRU size bound, stale serving, keys, metrics."""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest

from actors import ConfigError
from supervisor.fallback import CacheConfig, ResponseCache, create_cache

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


def make(**options: Any) -> ResponseCache[Any, Any]:
    return create_cache("c", **options)


async def test_entry_is_fresh_until_exactly_its_ttl() -> None:
    """An entry is served until ttl seconds have passed, then it is a miss."""
    cache = make(ttl=10.0)
    cache.put("q", "a")
    await anyio.sleep(9.999)
    assert cache.get("q") == (True, "a")
    await anyio.sleep(0.001)
    assert cache.get("q") == (False, None)
    assert (cache.hits, cache.misses) == (1, 1)


async def test_put_refreshes_the_entry() -> None:
    """Storing again restarts the TTL."""
    cache = make(ttl=10.0)
    cache.put("q", "old")
    await anyio.sleep(8)
    cache.put("q", "new")
    await anyio.sleep(8)
    assert cache.get("q") == (True, "new")


async def test_stale_entry_is_servable_only_through_get_stale() -> None:
    """After its TTL an entry misses in get() but is served by get_stale()."""
    cache = make(ttl=1.0, stale_ttl=5.0)
    cache.put("q", "a")
    await anyio.sleep(3)
    assert cache.get("q") == (False, None)
    assert cache.get_stale("q") == (True, "a")
    assert cache.stale_hits == 1


async def test_stale_entry_expires_after_stale_ttl() -> None:
    """Past ttl + stale_ttl an entry is gone even for stale lookups."""
    cache = make(ttl=1.0, stale_ttl=5.0)
    cache.put("q", "a")
    await anyio.sleep(6)
    assert cache.get_stale("q") == (False, None)
    assert len(cache) == 0
    assert cache.stale_misses == 1


async def test_zero_stale_ttl_never_serves_stale() -> None:
    """With stale_ttl=0 nothing expired is ever served."""
    cache = make(ttl=1.0, stale_ttl=0)
    cache.put("q", "a")
    await anyio.sleep(1)
    assert cache.get_stale("q") == (False, None)


async def test_size_bound_evicts_the_least_recently_used() -> None:
    """With max_entries=2, a third entry evicts the least recently used one."""
    cache = make(max_entries=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == (True, 1)  # "b" is now the least recently used
    cache.put("c", 3)
    assert len(cache) == 2
    assert cache.get("b") == (False, None)
    assert cache.get("a") == (True, 1)
    assert cache.get("c") == (True, 3)
    assert cache.evictions == 1


async def test_key_function_groups_requests() -> None:
    """Requests with the same key share an entry."""
    cache: ResponseCache[dict[str, str], str] = create_cache(
        "c", key=lambda req: req["prompt"].lower()
    )
    cache.put({"prompt": "Hi", "id": "1"}, "hello")
    assert cache.get({"prompt": "hi", "id": "2"}) == (True, "hello")


async def test_unhashable_requests_are_never_cached() -> None:
    """A request whose key is unhashable is neither stored nor found."""
    cache = make()
    cache.put(["list"], "x")
    assert len(cache) == 0
    assert cache.get(["list"]) == (False, None)


async def test_invalidate_and_clear() -> None:
    """invalidate drops one entry, clear drops every entry."""
    cache = make()
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.invalidate("a") is True
    assert cache.invalidate("a") is False
    cache.clear()
    assert len(cache) == 0


async def test_metrics_snapshot_counts_everything() -> None:
    """metrics() reports size, hits, misses, stale hits and misses, evictions, stores."""
    cache = make(ttl=1.0, max_entries=1)
    cache.put("a", 1)
    cache.get("a")
    cache.get("b")
    cache.put("b", 2)
    await anyio.sleep(2)
    cache.get_stale("b")
    cache.get_stale("a")
    m = cache.metrics()
    assert (m.size, m.hits, m.misses, m.stale_hits, m.stale_misses) == (1, 1, 1, 1, 1)
    assert (m.evictions, m.stores) == (1, 2)


def test_defaults_and_bad_config() -> None:
    """Defaults are 60 s TTL, stale forever, 1024 entries; bad values are ConfigErrors."""
    assert CacheConfig() == CacheConfig(ttl=60.0, stale_ttl=math.inf, max_entries=1024)
    with pytest.raises(ConfigError, match="ttl"):
        create_cache(ttl=0)
    with pytest.raises(ConfigError, match="max_entries"):
        create_cache(max_entries=0)
    with pytest.raises(ConfigError, match="stale_ttl"):
        create_cache(stale_ttl=-1)
    with pytest.raises(ConfigError, match="key"):
        create_cache(key="nope")  # type: ignore[arg-type]
