"""actors: service actors with supervision-ready mailboxes and resilience primitives."""

from actors._errors import (
    ActorDown,
    ActorError,
    ActorRestarting,
    ActorStopped,
    BulkheadFull,
    CallCycle,
    CallError,
    CallTimeout,
    CircuitOpen,
    ConfigError,
    MailboxFull,
    RateLimited,
    ResilienceError,
)

__all__ = [
    "ActorDown",
    "ActorError",
    "ActorRestarting",
    "ActorStopped",
    "BulkheadFull",
    "CallCycle",
    "CallError",
    "CallTimeout",
    "CircuitOpen",
    "ConfigError",
    "MailboxFull",
    "RateLimited",
    "ResilienceError",
]
