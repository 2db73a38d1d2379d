"""A scripted actor for tests: each message says what the handler does."""

from __future__ import annotations

import math
from typing import Any

import anyio
import attrs

import actors
from actors import Actor


@attrs.frozen
class Echo:
    value: Any


@attrs.frozen
class Sleep:
    seconds: float
    value: Any = None


@attrs.frozen
class Raise:
    error: Exception


@attrs.frozen
class Call:
    """Calls another actor from inside the handler."""

    ref: actors.ActorRef[Any, Any]
    msg: Any
    timeout: float | None = None


@attrs.frozen
class Context:
    """Replies with the correlation id and deadline seen inside the handler."""


@attrs.frozen
class StopSelf:
    pass


class Scripted(Actor[Any, Any]):
    """Does what each message says, and records what it handled."""

    def __init__(self, *, max_concurrency: int = 1, crash_on_error: bool = True) -> None:
        self.max_concurrency = max_concurrency
        self.crash_on_error = crash_on_error
        self.handled: list[Any] = []
        self.started = 0
        self.stopped: list[BaseException | None] = []
        self.cancelled = 0

    async def on_start(self) -> None:
        self.started += 1

    async def on_stop(self, reason: BaseException | None) -> None:
        self.stopped.append(reason)

    async def handle(self, msg: Any) -> Any:
        self.handled.append(msg)
        match msg:
            case Echo(value):
                return value
            case Sleep(seconds, value):
                try:
                    await anyio.sleep(seconds)
                except anyio.get_cancelled_exc_class():
                    self.cancelled += 1
                    raise
                return value
            case Raise(error):
                raise error
            case Call(ref, inner, timeout):
                return await ref.call(inner, timeout=timeout)
            case Context():
                return actors.current_correlation_id(), actors.current_deadline()
            case StopSelf():
                self.stop()
                return "stopping"
        return msg


def hang() -> Sleep:
    return Sleep(math.inf)


async def settle() -> None:
    """Lets every other task run until it blocks (deterministic on both backends).

    trio has `wait_all_tasks_blocked`; on asyncio this yields until every other task
    waits on an unfinished future (anyio's version sleeps 0.1 s per round instead).
    """
    import sniffio

    if sniffio.current_async_library() == "trio":
        import trio.testing

        await trio.testing.wait_all_tasks_blocked()
        return
    import asyncio

    this = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for _ in range(10_000):
        await asyncio.sleep(0)
        waiting = (
            getattr(task, "_fut_waiter", None) for task in asyncio.all_tasks() if task is not this
        )
        # Settled: every other task waits on an unfinished future and no callback (a
        # wake-up, anyio's cancellation delivery) is queued to run.
        if not getattr(loop, "_ready", ()) and all(
            waiter is not None and not waiter.done() for waiter in waiting
        ):
            return
    raise AssertionError("tasks never settled")
