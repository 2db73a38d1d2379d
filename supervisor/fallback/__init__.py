"""supervisor.fallback: fallback routing, per-service fallback handlers, response cache.

See docs/health-and-fallback.md. `route(primary, *fallbacks, ...)` builds a
`FallbackRouter` whose `call` returns `Routed(value, source, stale)`, so the caller
always knows whether the primary, a fallback (and which) or the cache answered.
"""

from actors.lowlevel import publish as _publish
from supervisor._errors import FallbackExhausted
from supervisor.fallback._cache import CacheConfig, CacheMetrics, ResponseCache, create_cache
from supervisor.fallback._handlers import (
    canned_answer,
    database_router,
    degraded_tool_result,
    llm_router,
    mcp_router,
)
from supervisor.fallback._router import (
    FallbackRouter,
    Routed,
    Target,
    plan_routes,
    route,
    target,
)

__all__ = [
    "CacheConfig",
    "CacheMetrics",
    "FallbackExhausted",
    "FallbackRouter",
    "ResponseCache",
    "Routed",
    "Target",
    "canned_answer",
    "create_cache",
    "database_router",
    "degraded_tool_result",
    "llm_router",
    "mcp_router",
    "plan_routes",
    "route",
    "target",
]

_publish(globals(), "supervisor.fallback")
