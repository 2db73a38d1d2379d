"""Recovery as an invariant: after each fault, when its service was healthy again and
answering for real.

A fault's service has recovered at the first moment, after the fault ended, when both
hold: its health (the monitor's probes and breaker) is HEALTHY, and it has answered a
request itself, not through a fallback. A service that is healthy when its fault ends
counts as healthy from then; one that falls back out of HEALTHY before answering for
real must become healthy again. Times are seconds into the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs

from demo.settings import Fault
from supervisor.health import HealthStatus, HealthTransition


@attrs.define
class Recovery:
    """One fault and its measured recovery (None: not yet, or never)."""

    fault: Fault
    began: float
    ended: float
    missed: str | None = None
    healthy_at: float | None = None
    real_at: float | None = None

    @property
    def recovered_at(self) -> float | None:
        """When the service was both healthy and answering for real."""
        if self.healthy_at is None or self.real_at is None:
            return None
        return max(self.healthy_at, self.real_at)

    @property
    def took(self) -> float | None:
        """Seconds from the fault's end to the recovery."""
        at = self.recovered_at
        return None if at is None else at - self.ended

    def within(self, bound: float) -> bool:
        """Injected, and recovered at most `bound` seconds after the fault ended."""
        took = self.took
        return self.missed is None and took is not None and took <= bound


class RecoveryTracker:
    """Collects faults, health transitions and real answers into `Recovery` records."""

    def __init__(
        self,
        start: float,
        status_of: Callable[[str], HealthStatus],
        monitored: Mapping[str, str],
    ) -> None:
        """Measures from `start` (the run's t=0 on the event loop's clock).

        Args:
            status_of: The current health of a service by its monitored name.
            monitored: The monitored name of each service ("llm" -> "agent/llm").
        """
        self.start = start
        self._status_of = status_of
        self._monitored = dict(monitored)
        self._service_of = {name: service for service, name in monitored.items()}
        self.events: list[Recovery] = []

    def _pending(self, service: str) -> list[Recovery]:
        return [r for r in self.events if r.fault.service == service and r.recovered_at is None]

    def on_fault(self, fault: Fault, began: float, ended: float, missed: str | None) -> None:
        """A fault has ended (or could not be injected: `missed` says why)."""
        record = Recovery(fault=fault, began=began, ended=ended, missed=missed)
        if self._status_of(self._monitored[fault.service]) is HealthStatus.HEALTHY:
            record.healthy_at = ended
        self.events.append(record)

    def on_health(self, transition: HealthTransition) -> None:
        """A health listener (`HealthMonitor.add_listener`)."""
        service = self._service_of.get(transition.service)
        if service is None:
            return
        healthy = transition.to_status is HealthStatus.HEALTHY
        for record in self._pending(service):
            if healthy and record.healthy_at is None:
                record.healthy_at = transition.at - self.start
            elif not healthy:
                record.healthy_at = None  # out of HEALTHY before a real answer: again

    def on_answer(self, service: str, at: float) -> None:
        """`service` answered a request itself at `at` (seconds into the run)."""
        for record in self._pending(service):
            if record.real_at is None and at >= record.ended:
                record.real_at = at
