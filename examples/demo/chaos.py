"""The chaos schedule: each fault started on its mock or actor, and stopped, on time.

LLM faults change what a mock LLM server does (`MockLLM`'s controls) for the fault's
duration; `crash` makes the database actor's next request a bug (its supervisor
restarts it), and ends when that request has crashed it; `kill_mcp` SIGKILLs the MCP
server process (the MCP actor must start a new one). Every fault's start and end
are reported to `on_fault(fault, started, ended, missed)` in seconds into the run, so
recovery is measured from when the fault really ended; `missed` says why a fault
could not be injected (None when it was).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import attrs

from actors import ActorError
from actors.services.mcp import CallTool
from actors.testing import Behaviour, ChaosClient, MockLLM
from demo.settings import Fault

FaultListener = Callable[[Fault, float, float, str | None], None]


@attrs.frozen
class Targets:
    """What faults act on: the mock LLM servers by service, the database actor's chaos
    wrapper, and the MCP actor's ref."""

    mocks: Mapping[str, MockLLM]
    db: ChaosClient[Any, Any, Any]
    tools: Any


async def run_chaos(
    schedule: tuple[Fault, ...], start: float, targets: Targets, on_fault: FaultListener
) -> None:
    """Fires every fault of `schedule` at its time (`start` is the run's t=0), each in
    its own task so that long faults overlap; returns when all have ended."""
    async with anyio.create_task_group() as tg:
        for fault in schedule:
            await anyio.sleep_until(start + fault.at)
            tg.start_soon(_fire, fault, start, targets, on_fault)


async def _fire(fault: Fault, start: float, targets: Targets, on_fault: FaultListener) -> None:
    began = anyio.current_time() - start
    missed = None
    if fault.kind == "crash":
        missed = await _crash(targets.db)
    elif fault.kind == "kill_mcp":
        try:
            await _kill_mcp_server(targets.tools)
        except (ActorError, OSError, ValueError) as exc:  # no server to kill right now
            missed = f"{type(exc).__name__}: {exc}"
    else:
        undo = _apply(targets.mocks[fault.service], fault)
        await anyio.sleep(fault.duration)
        undo()
    on_fault(fault, began, anyio.current_time() - start, missed)


def _apply(mock: MockLLM, fault: Fault) -> Callable[[], None]:
    """Starts an LLM fault on `mock`; returns what stops it."""
    kind = fault.kind
    if kind == "latency_spike":
        mock.latency = fault.seconds
        return lambda: setattr(mock, "latency", 0.0)
    if kind == "outage":
        mock.down = True
        return lambda: setattr(mock, "down", False)
    if kind == "capacity":
        mock.capacity, mock.backlog = fault.limit, 0
        return lambda: setattr(mock, "capacity", None)
    behaviours = {
        "rate_limit_burst": lambda: Behaviour.rate_limited(retry_after=None, retry_after_ms=100),
        "overloaded": Behaviour.overloaded,
        "hang": Behaviour.hang,
        "drop": Behaviour.drop,
        "stream_error": Behaviour.stream_error,
    }
    mock.default = behaviours[kind]()

    def undo() -> None:
        mock.default = Behaviour()
        mock.release_hangs()

    return undo


async def _crash(db: ChaosClient[Any, Any, Any], patience: float = 5.0) -> str | None:
    """Makes the database actor's next request crash it; waits until it has."""
    crashes = db.stats.crashes
    db.crash_next()
    for _ in range(int(patience / 0.01)):
        if db.stats.crashes > crashes:
            return None
        await anyio.sleep(0.01)
    return f"no request reached the database within {patience:g}s"


async def _kill_mcp_server(tools: Any) -> None:
    """Asks the MCP server for its process id, then kills it (it never says goodbye)."""
    reply = await tools.call(CallTool("pid", {}), timeout=10)
    os.kill(int(reply.text), signal.SIGKILL)
