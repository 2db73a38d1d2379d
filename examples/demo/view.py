"""The live view: every actor with its numbers, from the first second.

With a terminal, a table redrawn four times a second (rich); without one (or with
``--no-live``), one line a second. Both read the same `rows`: per service its state,
health, breaker, limits' room and restarts, the requests completed (ok, fallback,
error, as the routes counted them), what the actor itself counted (requests and
failures, retries included), and its attempts' p50/p99 latency.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio

from demo.ledger import Ledger
from demo.recovery import RecoveryTracker
from demo.stack import Stack

COLUMNS = (
    "actor",
    "state",
    "health",
    "breaker",
    "limits room",
    "restarts",
    "ok",
    "fallback",
    "errors",
    "req/fail",
    "p50 ms",
    "p99 ms",
)


def rows(stack: Stack, ledger: Ledger) -> list[tuple[str, ...]]:
    """One row of `COLUMNS` per service (ok, fallback and errors: requests to it as its
    router's primary; req/fail: what its actor counted)."""
    now = anyio.current_time()
    health = {svc.name: svc for svc in stack.monitor.report().services}
    restarts = {child.id: child.restarts for child in stack.sup.which_children()}
    out: list[tuple[str, ...]] = []
    for name, service in stack.services.items():
        ref = stack.ref(name)
        done = ledger.completed.get(name, Counter())
        state = health.get(ref.name)
        limits = ""
        if service.limits is not None:
            room = service.limits.metrics().available
            limits = " ".join(f"{k[:3]}={_short(v)}" for k, v in room.items())
        stats = service.stats
        p50, p99 = (service.latency.quantile(q, now) for q in (0.5, 0.99))
        out.append(
            (
                name,
                ref.state.value,
                state.status.value if state else "-",
                service.breaker.state.value if service.breaker else "-",
                limits,
                str(restarts.get(name, 0)),
                str(done.get("ok", 0)),
                str(done.get("fallback", 0)),
                str(done.get("error", 0)),
                f"{stats.requests}/{stats.failed}",
                "-" if p50 is None else f"{p50 * 1e3:.1f}",
                "-" if p99 is None else f"{p99 * 1e3:.1f}",
            )
        )
    return out


def _short(value: float) -> str:
    return f"{value / 1000:.0f}k" if value >= 10_000 else f"{value:.0f}"


def _turns(ledger: Ledger) -> str:
    turns = ledger.turns
    return f"ok={turns['ok']} degraded={turns['degraded']} error={turns['error']}"


def _chaos(tracker: RecoveryTracker, limit: int = 5) -> list[str]:
    lines = []
    for record in tracker.events[-limit:]:
        took = record.took
        status = "recovering..." if took is None else f"recovered in {took:.2f}s"
        if record.missed:
            status = f"not injected: {record.missed}"
        lines.append(
            f"t={record.began:5.1f}s {record.fault.label():28} ended {record.ended:5.1f}s  {status}"
        )
    return lines


async def show(
    stack: Stack,
    ledger: Ledger,
    tracker: RecoveryTracker,
    duration: float,
    start: float,
    *,
    live: bool,
) -> None:
    """Shows the run until cancelled."""
    if live:
        await _live(stack, ledger, tracker, duration, start)
    else:
        await _lines(stack, ledger, start)


async def _lines(stack: Stack, ledger: Ledger, start: float) -> None:
    while True:
        elapsed = anyio.current_time() - start
        parts = [
            f"{r[0]} {r[2]} ok={r[6]} fb={r[7]} err={r[8]} rs={r[5]}" for r in rows(stack, ledger)
        ]
        print(f"t={elapsed:5.1f}s turns {_turns(ledger)} | " + " | ".join(parts), flush=True)
        await anyio.sleep_until(start + int(elapsed) + 1)


async def _live(
    stack: Stack, ledger: Ledger, tracker: RecoveryTracker, duration: float, start: float
) -> None:
    from rich.live import Live

    with Live(_table(stack, ledger, tracker, duration, 0.0), refresh_per_second=4) as screen:
        while True:
            await anyio.sleep(0.25)
            elapsed = anyio.current_time() - start
            screen.update(_table(stack, ledger, tracker, duration, elapsed))


def _table(
    stack: Stack, ledger: Ledger, tracker: RecoveryTracker, duration: float, elapsed: float
) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"actorvisor demo  t={elapsed:4.1f}/{duration:.0f}s   {stack.dashboard}")
    for column in COLUMNS:
        left = column in ("actor", "state", "health", "breaker", "limits room")
        table.add_column(column, justify="left" if left else "right")
    for row in rows(stack, ledger):
        table.add_row(*row)
    chaos = "\n".join(_chaos(tracker)) or "(none yet)"
    return Group(table, Text(f"turns: {_turns(ledger)}"), Text(f"chaos:\n{chaos}"))
