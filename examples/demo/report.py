"""The end of the run: what happened, every invariant checked, the exit code.

The run fails (exit 1) when any of these does not hold:

- every chaos event was injected, and its service recovered (healthy again and
  answering for real) within the recovery bound after the fault ended;
- the final health, with the load over, is HEALTHY;
- turns kept completing: every `progress_window` of the run finished at least one
  turn that was not an error;
- every issued request was completed exactly once (ok, fallback or error), and the
  routers' own counts agree with the routes';
- no call or turn overran its deadline by more than the event loop's measured
  lateness over that stretch, plus `lateness_tolerance`;
- nothing was left running after shutdown.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from demo.lateness import LoopLateness
from demo.ledger import Ledger
from demo.recovery import Recovery
from demo.settings import KINDS, Settings


@attrs.define
class Outcome:
    """Everything the report needs, collected once the tree has stopped."""

    settings: Settings
    ledger: Ledger
    recoveries: list[Recovery]
    lateness: LoopLateness
    final_health: str
    routers: Mapping[str, Mapping[str, int]]
    actors: Mapping[str, Mapping[str, Any]]
    tasks_left: int
    elapsed: float


def stalled_windows(ledger: Ledger, settings: Settings) -> list[str]:
    """The windows of `progress_window` seconds that finished no turn but errors."""
    window = settings.progress_window
    stalled = []
    count = int(settings.duration // window)
    for index in range(count):
        low, high = index * window, (index + 1) * window
        done = sum(
            outcomes["ok"] + outcomes["degraded"]
            for second, outcomes in ledger.by_second.items()
            if low <= second < high
        )
        if done == 0:
            stalled.append(f"{low:g}-{high:g}s")
    return stalled


def checks(outcome: Outcome) -> dict[str, tuple[bool, str]]:
    """Each invariant: (held, detail)."""
    settings, ledger = outcome.settings, outcome.ledger
    bound = settings.recovery_bound
    late = [r for r in outcome.recoveries if not r.within(bound)]
    overruns = [outcome.lateness.explain(o) for o in ledger.overruns]
    unexplained = [o for o in overruns if o.unexplained > settings.lateness_tolerance]
    worst = max(overruns, key=lambda o: o.unexplained, default=None)
    stalled = stalled_windows(ledger, settings)
    unbalanced = ledger.unbalanced()
    disagreeing = ledger.disagreements(outcome.routers)
    scheduled = len(settings.chaos)
    tolerance = f"{settings.lateness_tolerance * 1e3:g} ms"
    return {
        f"every chaos event recovered within {bound:g}s of its end": (
            not late and len(outcome.recoveries) == scheduled,
            ", ".join(f"{r.fault.label()} at {r.began:.1f}s" for r in late)
            or f"{len(outcome.recoveries)} of {scheduled} events",
        ),
        "final health is healthy": (
            outcome.final_health == "healthy",
            outcome.final_health,
        ),
        f"turns kept completing (every {settings.progress_window:g}s)": (
            not stalled,
            ", ".join(stalled) or f"{sum(ledger.turns.values())} turns",
        ),
        "every request completed once (issued == ok + fallback + error)": (
            not unbalanced,
            "; ".join(f"{k}: {v}" for k, v in unbalanced.items()) or "balanced",
        ),
        "the routers' counts agree with the routes'": (
            not disagreeing,
            "; ".join(f"{k}: {v}" for k, v in disagreeing.items()) or "agree",
        ),
        f"no deadline overrun beyond the loop's lateness + {tolerance}": (
            not unexplained,
            "none late"
            if worst is None
            else f"{len(overruns)} late, worst unexplained {worst.unexplained * 1e3:.1f} ms "
            f"({worst.what}: {worst.late * 1e3:.1f} ms late, loop {worst.explained * 1e3:.1f} ms)",
        ),
        "no task left running after shutdown": (
            outcome.tasks_left <= 0,
            f"{max(outcome.tasks_left, 0)} left",
        ),
    }


def render(outcome: Outcome) -> tuple[str, bool]:
    """The report's text, and whether every invariant held."""
    settings, ledger = outcome.settings, outcome.ledger
    lines = ["", "== report"]
    turns = ledger.turns
    lines.append(
        f"turns: started {ledger.turns_started}, ok {turns['ok']}, degraded "
        f"{turns['degraded']}, error {turns['error']} in {outcome.elapsed:.1f}s "
        f"(turn deadline {settings.turn_timeout:g}s)"
    )
    if ledger.errors.get("turn"):
        lines.append(f"  turn errors: {dict(ledger.errors['turn'])}")
    lines.append("requests (issued by the agent; completed as the routes and routers counted):")
    for service in sorted(ledger.issued):
        done = ledger.completed.get(service, Counter())
        latencies = ledger.latencies.get(service, [])
        lines.append(
            f"  {service:8} issued {ledger.issued[service]:6}  ok {done.get('ok', 0):6}  "
            f"fallback {done.get('fallback', 0):5}  error {done.get('error', 0):4}   "
            f"p50 {ledger.percentile(service, 0.5) * 1e3:6.1f} ms  "
            f"p99 {ledger.percentile(service, 0.99) * 1e3:6.1f} ms  "
            f"max {max(latencies, default=0.0) * 1e3:5.0f} ms"
        )
        lines.append(f"           router: {dict(outcome.routers.get(service, {}))}")
        if ledger.errors.get(service):
            lines.append(f"           errors: {dict(ledger.errors[service])}")
    lines.append("actors (their own counters, across restarts):")
    for name, actor in outcome.actors.items():
        lines.append(
            f"  {name:8} requests {actor['requests']}, succeeded {actor['succeeded']}, "
            f"failed {actor['failed']}, retries {actor['retries']}, restarts "
            f"{actor['restarts']}, breaker {actor['breaker']}"
        )
    bound = settings.recovery_bound
    lines.append(f"chaos and recovery (bound {bound:g}s after each fault ends):")
    for record in outcome.recoveries:
        healthy = "never" if record.healthy_at is None else f"{record.healthy_at:5.2f}s"
        real = "never" if record.real_at is None else f"{record.real_at:5.2f}s"
        took = record.took
        verdict = "ok" if record.within(bound) else "FAILED"
        status = (
            f"not injected ({record.missed})"
            if record.missed
            else f"recovered in {took:.2f}s"
            if took is not None
            else "not recovered"
        )
        lines.append(
            f"  [{verdict:6}] {record.fault.label():26} {record.began:5.2f}s -> fault ended "
            f"{record.ended:5.2f}s, healthy {healthy}, real answer {real}: {status}"
        )
    lateness = outcome.lateness
    lines.append(
        f"event loop lateness (a probe task's sleeps): p50 {lateness.quantile(0.5) * 1e3:.1f} ms, "
        f"p99 {lateness.quantile(0.99) * 1e3:.1f} ms, worst {lateness.worst * 1e3:.1f} ms"
    )
    fired = {r.fault.kind for r in outcome.recoveries if r.missed is None}
    missing = [kind for kind in KINDS if kind not in fired]
    lines.append(
        f"chaos kinds fired: {len(fired)} of {len(KINDS)}"
        + (f" (not in this schedule: {', '.join(missing)})" if missing else "")
    )
    lines.append(f"final health: {outcome.final_health}")
    results = checks(outcome)
    for name, (held, detail) in results.items():
        lines.append(f"  [{'ok' if held else 'FAILED'}] {name}: {detail}")
    held = all(ok for ok, _ in results.values())
    lines.append("every invariant held" if held else "INVARIANTS VIOLATED")
    return "\n".join(lines), held


def write_json(outcome: Outcome, path: Path) -> None:
    """The checks and the recoveries as JSON (for tests and scripts)."""
    results = checks(outcome)
    data = {
        "checks": {
            name: {"held": held, "detail": detail} for name, (held, detail) in results.items()
        },
        "recoveries": [
            {
                "kind": r.fault.kind,
                "service": r.fault.service,
                "began": r.began,
                "ended": r.ended,
                "healthy_at": r.healthy_at,
                "real_at": r.real_at,
                "took": r.took,
                "missed": r.missed,
            }
            for r in outcome.recoveries
        ],
        "turns": dict(outcome.ledger.turns),
        "issued": dict(outcome.ledger.issued),
        "completed": {k: dict(v) for k, v in outcome.ledger.completed.items()},
        "routers": {k: dict(v) for k, v in outcome.routers.items()},
        "overruns": [
            {"what": o.what, "late": o.late, "explained": o.explained}
            for o in outcome.ledger.overruns
        ],
        "lateness": {
            "p50": outcome.lateness.quantile(0.5),
            "p99": outcome.lateness.quantile(0.99),
            "worst": outcome.lateness.worst,
        },
        "final_health": outcome.final_health,
    }
    path.write_text(json.dumps(data, indent=2))
