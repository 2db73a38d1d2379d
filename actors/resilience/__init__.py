"""Resilience primitives: retry, circuit breaker, rate limiters, bulkhead, adaptive
concurrency, and the `resilient` decorator that composes them around a function.

Each works on its own; a service actor composes them in one pipeline. `LimitConfig` and
`LimitState` are type aliases (any limit config; one key's stored state).
"""

from actors._public import publish as _publish
from actors.resilience._adaptive import (
    AdaptiveConcurrency,
    AdaptiveLimit,
    AdaptiveMetrics,
    create_adaptive_limit,
)
from actors.resilience._breaker import (
    BreakerConfig,
    BreakerListener,
    BreakerMetrics,
    BreakerRecord,
    BreakerState,
    BreakerStateStore,
    BreakerTransition,
    CircuitBreaker,
    InMemoryBreakerStore,
    create_breaker,
)
from actors.resilience._breaker_registry import BreakerRegistry
from actors.resilience._budget import RetryBudget
from actors.resilience._bulkhead import Bulkhead, BulkheadConfig, BulkheadMetrics, create_bulkhead
from actors.resilience._decorators import Resilience, ResilientFunction, resilient
from actors.resilience._limit_algorithms import (
    GCRA,
    LimitConfig,
    LimitState,
    RateLimit,
    SlidingWindow,
    TokenBucket,
)
from actors.resilience._limit_queue import ColdStart
from actors.resilience._limiter import Limiter, LimiterMetrics, create_limiter
from actors.resilience._limiter_store import LimiterStore, MemoryLimiterStore
from actors.resilience._multilimit import (
    HeaderLimits,
    MultiLimit,
    MultiLimitMetrics,
    Reservation,
    create_multi_limit,
)
from actors.resilience._retry import Retrier, RetryMetrics, RetryPolicy, create_retrier

__all__ = [
    "GCRA",
    "AdaptiveConcurrency",
    "AdaptiveLimit",
    "AdaptiveMetrics",
    "BreakerConfig",
    "BreakerListener",
    "BreakerMetrics",
    "BreakerRecord",
    "BreakerRegistry",
    "BreakerState",
    "BreakerStateStore",
    "BreakerTransition",
    "Bulkhead",
    "BulkheadConfig",
    "BulkheadMetrics",
    "CircuitBreaker",
    "ColdStart",
    "HeaderLimits",
    "InMemoryBreakerStore",
    "LimitConfig",
    "LimitState",
    "Limiter",
    "LimiterMetrics",
    "LimiterStore",
    "MemoryLimiterStore",
    "MultiLimit",
    "MultiLimitMetrics",
    "RateLimit",
    "Reservation",
    "Resilience",
    "ResilientFunction",
    "Retrier",
    "RetryBudget",
    "RetryMetrics",
    "RetryPolicy",
    "SlidingWindow",
    "TokenBucket",
    "create_adaptive_limit",
    "create_breaker",
    "create_bulkhead",
    "create_limiter",
    "create_multi_limit",
    "create_retrier",
    "resilient",
]

_publish(globals(), "actors.resilience", resolve=True)
