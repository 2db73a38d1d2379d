"""Shared state stores for replicas: Redis (extra `redis`).

Import-light: nothing here imports coredis until a name is used. The names are
`FailurePolicy`, `RedisBreakerStore`, `RedisLimiterStore`, `RedisOptions`,
`RedisStoreMetrics`, `RedisStores` and `open_redis_stores`, all from
`actors.stores.redis` (``from actors.stores.redis import open_redis_stores`` works too).
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
    from actors.stores.redis import (
        FailurePolicy,
        RedisBreakerStore,
        RedisLimiterStore,
        RedisOptions,
        RedisStoreMetrics,
        RedisStores,
        open_redis_stores,
    )

__all__ = [
    "FailurePolicy",
    "RedisBreakerStore",
    "RedisLimiterStore",
    "RedisOptions",
    "RedisStoreMetrics",
    "RedisStores",
    "open_redis_stores",
]


def __getattr__(name: str) -> _Any:
    if name in __all__:
        from actors.stores import redis

        return getattr(redis, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
