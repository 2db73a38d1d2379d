"""The group's retry is the failover: what fails over, and when a failover is allowed.

The group's pipeline (the one resilience pipeline, `actors.lowlevel.Pipeline`) runs
each request with a `Failover` retrier: every retry goes at once (no backoff: it is
another deployment; no server delay: a member's ``retry-after`` is that member's) to a
member that has not failed this request, while the policy's attempts, its budget and
the request's deadline allow. The members make one attempt each, so one layer
retries.

What fails over is what a fallback router passes on (`supervisor._passing.passes_on`), read from the
verdict the member's own pipeline gave the failure (never judged again): a RETRYABLE,
THROTTLED or PERMANENT answer (another deployment may have quota or a valid key), the
member's refusals (`CircuitOpen`, `RateLimited`, `BulkheadFull`, its own
`DeadlineExceeded`) and failed calls to it (`CallTimeout` at its share of the
deadline, `ActorDown`, ...). A caller's mistake (REJECTED) is raised at once: every
member would refuse it.
"""

from __future__ import annotations

import random
import sys

import attrs

from actors import Classifier, ErrorClass, current_correlation_id
from actors.lowlevel import RetryRun, emit, verdict_of
from actors.lowlevel import now as _now
from actors.resilience import Retrier, RetryBudget, RetryMetrics, RetryPolicy
from supervisor.groups._config import FailoverPolicy

__all__ = ["Failover", "MemberVerdicts", "failover_retrier"]


@attrs.frozen
class MemberVerdicts:
    """The group's classifier: the verdict a member's pipeline gave a failure, or, for a
    failure no member judged (a call that never reached one), the members' kind's."""

    fallback: Classifier

    def classify(self, exc: Exception) -> ErrorClass:
        """Returns the member's verdict of `exc` (or the kind's)."""
        return verdict_of(exc, self.fallback)


@attrs.define(eq=False)
class Failover(Retrier):
    """A `Retrier` whose retries are immediate failovers (see the module docstring)."""

    def start(self, limit: float) -> RetryRun:
        """Starts the failover decisions of one request."""
        return _FailoverRun(self, limit)


class _FailoverRun(RetryRun):
    """One request's failovers: at once, within attempts, deadline and budget."""

    __slots__ = ("_failed",)

    def __init__(self, retrier: Retrier, limit: float) -> None:  # no tenacity: no waits
        self.retrier = retrier
        self.limit = limit
        self._failed = 0

    @property
    def attempt(self) -> int:
        return self._failed

    def next_delay(self, exc: BaseException) -> float | None:
        """0.0 to fail over now, or None to give up (counted and reported)."""
        retrier = self.retrier
        self._failed += 1
        now = _now()
        budget = retrier.budget
        if self._failed >= retrier.attempts:
            reason = "attempts"
        elif now >= self.limit:
            reason = "deadline"
        elif budget is not None and not budget.try_withdraw(now):
            retrier.metrics.budget_denied += 1
            reason = "budget"
        else:
            retrier.metrics.retries += 1
            emit(
                "group.failover",
                level="info",
                group=retrier.service,
                attempt=self._failed,
                error=type(exc).__name__,
                correlation_id=current_correlation_id(),
            )
            return 0.0
        retrier.gave_up(reason, exc, self._failed)  # type: ignore[arg-type]
        return None


def failover_retrier(name: str, policy: FailoverPolicy, classifier: Classifier) -> Failover:
    """The retrier of a group named `name`."""
    budget = (
        None
        if policy.budget_ratio is None
        else RetryBudget(
            ratio=policy.budget_ratio,
            min_per_second=policy.budget_min_per_second,
            ttl=policy.budget_ttl,
        )
    )
    attempts = sys.maxsize if policy.attempts is None else policy.attempts
    return Failover(
        policy=RetryPolicy(attempts=attempts, budget_ratio=None),
        service=name,
        classifier=classifier,
        metrics=RetryMetrics(),
        random=random.random,
        budget=budget,
    )
