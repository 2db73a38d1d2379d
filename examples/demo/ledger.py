"""Independent accounting: requests counted where they are issued and where they complete.

The agent counts each request it is about to send (`issued`), before awaiting it; the
routes count each one where its answer or failure comes back (`completed`: "ok" when
the service itself answered, "fallback" when a fallback did, "error" otherwise, a
turn's deadline included). The fallback routers keep their own count of who answered
(served in the dashboard's `/tree` snapshot), a third view. At the end every issued
request must be completed exactly once, and the routers must agree with the routes:

    issued == ok + fallback + error                  (per service)
    ok == the router's "primary", fallback == the router's other sources
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

import attrs

from demo.lateness import Overrun

OUTCOMES = ("ok", "fallback", "error")


@attrs.define
class Ledger:
    """What the run saw, by service and by turn."""

    issued: Counter[str] = attrs.field(factory=Counter)
    completed: dict[str, Counter[str]] = attrs.field(factory=lambda: defaultdict(Counter))
    sources: dict[str, Counter[str]] = attrs.field(factory=lambda: defaultdict(Counter))
    errors: dict[str, Counter[str]] = attrs.field(factory=lambda: defaultdict(Counter))
    latencies: dict[str, list[float]] = attrs.field(factory=lambda: defaultdict(list))
    turns_started: int = 0
    turns: Counter[str] = attrs.field(factory=Counter)
    by_second: dict[int, Counter[str]] = attrs.field(factory=lambda: defaultdict(Counter))
    overruns: list[Overrun] = attrs.field(factory=list)

    def issue(self, service: str) -> None:
        """The agent is about to send a request to `service`."""
        self.issued[service] += 1

    def complete(self, service: str, source: str | None, error: str | None, latency: float) -> None:
        """A request to `service` came back: from `source` ("primary", "fallback:...")
        or with `error` (its type name)."""
        if error is not None:
            outcome = "error"
            self.errors[service][error] += 1
        else:
            outcome = "ok" if source == "primary" else "fallback"
            self.sources[service][str(source)] += 1
        self.completed[service][outcome] += 1
        self.latencies[service].append(latency)

    def turn_finished(self, outcome: str, second: int) -> None:
        self.turns[outcome] += 1
        self.by_second[second][outcome] += 1

    def percentile(self, service: str, fraction: float) -> float:
        values = sorted(self.latencies.get(service, ()))
        return values[min(len(values) - 1, int(fraction * len(values)))] if values else 0.0

    def unbalanced(self) -> dict[str, str]:
        """Services whose issued requests are not all completed exactly once."""
        problems = {}
        for service in sorted(set(self.issued) | set(self.completed)):
            done = self.completed.get(service, Counter())
            total = sum(done[o] for o in OUTCOMES)
            if total != self.issued[service]:
                problems[service] = f"issued {self.issued[service]}, completed {total}"
        return problems

    def disagreements(self, routers: Mapping[str, Mapping[str, int]]) -> dict[str, str]:
        """Services whose answered requests differ from what their router counted
        (`routers`: the `/tree` snapshot's routes, by service)."""
        problems = {}
        for service, sources in sorted(self.sources.items()):
            theirs = {k: v for k, v in routers.get(service, {}).items() if v}
            ours = {k: v for k, v in sources.items() if v}
            if theirs != ours:
                problems[service] = f"routes counted {ours}, the router counted {theirs}"
        return problems


def routes_from_tree(snapshot: Mapping[str, Any], root: str) -> dict[str, dict[str, int]]:
    """The routers' counts in a `/tree` snapshot, by service ("agent/llm" -> "llm")."""
    found: dict[str, dict[str, int]] = {}
    for router in snapshot.get("routers") or ():
        name = str(router.get("name", ""))
        found[name.removeprefix(f"{root}/")] = dict(router.get("routes") or {})
    return found
