"""actors: service actors with supervision-ready addresses and resilience primitives.

The public names live here; the code lives in private modules. See the exception tree in
`actors._errors` (every error derives from `ActorError`).
"""

from actors._actor import Actor
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
from actors._open import open_actor
from actors._options import ActorConfig, FullPolicy
from actors._ref import ActorRef, ActorState

__all__ = [
    "Actor",
    "ActorConfig",
    "ActorDown",
    "ActorError",
    "ActorRef",
    "ActorRestarting",
    "ActorState",
    "ActorStopped",
    "BulkheadFull",
    "CallCycle",
    "CallError",
    "CallTimeout",
    "CircuitOpen",
    "ConfigError",
    "FullPolicy",
    "MailboxFull",
    "RateLimited",
    "ResilienceError",
    "correlation_id",
    "current_correlation_id",
    "current_deadline",
    "new_correlation_id",
    "open_actor",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("actors._"):
        _obj.__module__ = "actors"
del _name, _obj
