"""actors: the actor runtime, its errors, the kinds of service and the service actor.

`open_actor` runs an `Actor` and gives its `ActorRef`; a `Service` is one external
service (its client, breaker, limits and retries) whose `ServiceActor` a supervisor
runs. Every error raised on purpose derives from `ActorError` (the tree is drawn in
docs/actors.md). The resilience primitives are in `actors.resilience`, the concrete
services in `actors.services`, the testing kit in `actors.testing`.
"""

from actors._actor import Actor
from actors._classify import (
    Classifier,
    DatabaseClassifier,
    ErrorClass,
    ErrorClassifier,
    HTTPClassifier,
    LLMClassifier,
    MCPClassifier,
)
from actors._config import (
    ResilienceConfig,
    load_resilience_config,
    load_resilience_toml,
    load_services_config,
    load_services_toml,
)
from actors._envelope import (
    correlation_id,
    current_correlation_id,
    current_deadline,
    new_correlation_id,
)
from actors._errors import (
    ActorDown,
    ActorError,
    ActorRestarting,
    ActorStopped,
    AttemptTimeout,
    BulkheadFull,
    CallCycle,
    CallError,
    CallTimeout,
    CircuitOpen,
    ConfigError,
    DeadlineExceeded,
    InvalidRequest,
    MailboxFull,
    MalformedResponse,
    ProtocolError,
    QueryError,
    RateLimited,
    ResilienceError,
    ServiceError,
    ServiceResponseError,
    ServiceTimeout,
    ServiceUnavailable,
    ToolError,
)
from actors._kinds import KINDS, ServiceKind
from actors._latency import LatencyRecorder
from actors._open import open_actor
from actors._options import ActorConfig, FullPolicy
from actors._pool import (
    ConnectionFactory,
    Lease,
    Pool,
    PoolClosed,
    PoolConfig,
    PoolStats,
    PoolTimeout,
    open_pool,
)
from actors._public import publish as _publish
from actors._ref import ActorRef, ActorState
from actors._serve import serve_asgi
from actors._tracing import Operation, instrument
from actors.services._actor import Service, ServiceActor, ServiceConfig, ServiceStats
from actors.services._base import Secret, ServiceClient

__all__ = [
    "KINDS",
    "Actor",
    "ActorConfig",
    "ActorDown",
    "ActorError",
    "ActorRef",
    "ActorRestarting",
    "ActorState",
    "ActorStopped",
    "AttemptTimeout",
    "BulkheadFull",
    "CallCycle",
    "CallError",
    "CallTimeout",
    "CircuitOpen",
    "Classifier",
    "ConfigError",
    "ConnectionFactory",
    "DatabaseClassifier",
    "DeadlineExceeded",
    "ErrorClass",
    "ErrorClassifier",
    "FullPolicy",
    "HTTPClassifier",
    "InvalidRequest",
    "LLMClassifier",
    "LatencyRecorder",
    "Lease",
    "MCPClassifier",
    "MailboxFull",
    "MalformedResponse",
    "Operation",
    "Pool",
    "PoolClosed",
    "PoolConfig",
    "PoolStats",
    "PoolTimeout",
    "ProtocolError",
    "QueryError",
    "RateLimited",
    "ResilienceConfig",
    "ResilienceError",
    "Secret",
    "Service",
    "ServiceActor",
    "ServiceClient",
    "ServiceConfig",
    "ServiceError",
    "ServiceKind",
    "ServiceResponseError",
    "ServiceStats",
    "ServiceTimeout",
    "ServiceUnavailable",
    "ToolError",
    "correlation_id",
    "current_correlation_id",
    "current_deadline",
    "instrument",
    "load_resilience_config",
    "load_resilience_toml",
    "load_services_config",
    "load_services_toml",
    "new_correlation_id",
    "open_actor",
    "open_pool",
    "serve_asgi",
]

_publish(globals(), "actors", resolve=True)
