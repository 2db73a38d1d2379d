"""When a request passes on to another target: the one rule routers and groups share.

A fallback router passes a request on to its next route, and a service group fails it
over to another member, for the same reasons, decided here once:

- `passes_on`: our refusals (`CircuitOpen`, `RateLimited`, `BulkheadFull`,
  `DeadlineExceeded`: every `ResilienceError`), failed calls (`CallError`: timeout,
  full mailbox, actor down, restarting or stopped) except `CallCycle` (a bug), and
  failures whose verdict is routable (RETRYABLE, THROTTLED, PERMANENT). A REJECTED
  failure (the caller's mistake) stays with the caller: another target would fail the
  same way.
- `breaker_cooling`: a target is kept out while its breaker is OPEN and not yet due
  for trial calls, or FORCED_OPEN. A breaker due for half-open is tried: only trial
  calls close it (and the breaker itself bounds them).
"""

from __future__ import annotations

from typing import Final

from actors import CallCycle, CallError, ErrorClass, ResilienceError
from actors.resilience import BreakerState, CircuitBreaker

__all__ = ["breaker_cooling", "passes_on"]

_OPEN: Final = BreakerState.OPEN
_FORCED_OPEN: Final = BreakerState.FORCED_OPEN


def passes_on(exc: Exception, verdict: ErrorClass) -> bool:
    """Whether a target's failure passes the request on to the next target."""
    if isinstance(exc, ResilienceError):
        return True
    if isinstance(exc, CallError):
        return not isinstance(exc, CallCycle)
    return verdict.routable


def breaker_cooling(breaker: CircuitBreaker | None, now: float) -> bool:
    """Whether `breaker` keeps its target out at `now` (see the module docstring)."""
    if breaker is None:
        return False
    state = breaker.state
    if state is _FORCED_OPEN:
        return True
    return state is _OPEN and breaker.metrics(now).retry_after > 0
