"""Shared state stores for replicas.

`actors.stores.redis` keeps limiter and breaker state in Redis (extra `redis`):
`open_redis_stores(RedisOptions(...))` gives the stores to pass to limiters, breakers
and services. This package imports nothing itself, so `import actors` never loads
coredis.
"""

__all__: list[str] = []
