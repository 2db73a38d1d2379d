"""Test actors and helpers for supervision tests: a shared log of starts and stops."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from actors import Actor
from supervisor import ChildSpec


class Log:
    """Records lifecycle steps of many children, in order."""

    def __init__(self) -> None:
        self.entries: list[str] = []

    def starts(self) -> list[str]:
        return [entry.split(":", 1)[1] for entry in self.entries if entry.startswith("start:")]

    def stops(self) -> list[str]:
        return [entry.split(":", 1)[1] for entry in self.entries if entry.startswith("stop:")]

    def clear(self) -> None:
        self.entries.clear()


class Worker(Actor[Any, Any]):
    """Echoes; "crash" raises; "exit" stops normally; ("sleep", s) sleeps."""

    def __init__(self, name: str, log: Log, *, stop_delay: float = 0.0) -> None:
        self.name = name
        self.log = log
        self.stop_delay = stop_delay

    async def on_start(self) -> None:
        self.log.entries.append(f"start:{self.name}")

    async def on_stop(self, reason: BaseException | None) -> None:
        self.log.entries.append(f"stop:{self.name}")
        if self.stop_delay:
            await anyio.sleep(self.stop_delay)

    async def handle(self, msg: Any) -> Any:
        if msg == "crash":
            raise RuntimeError(f"{self.name} crashed")
        if msg == "exit":
            self.stop()
            return "bye"
        if isinstance(msg, tuple) and msg[0] == "sleep":
            await anyio.sleep(msg[1])
            return msg
        return (self.name, msg)


def worker(name: str, log: Log, **spec: Any) -> ChildSpec[Any, Any]:
    """A ChildSpec for a Worker named like its id."""
    factory: Callable[[], Worker] = lambda: Worker(name, log)  # noqa: E731
    return ChildSpec(id=name, factory=factory, **spec)
