"""Running a tree: `async with supervisor.start(spec) as sup:` or `start_tree` in a task group."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc

from actors import ConfigError
from supervisor._errors import IntensityExceeded
from supervisor._spec import SupervisorSpec
from supervisor._supervisor import Supervisor

__all__ = ["start", "start_tree"]


def _check(spec: object) -> SupervisorSpec:
    if not isinstance(spec, SupervisorSpec):
        raise ConfigError("spec", type(spec).__name__, "must be a SupervisorSpec")
    return spec


@asynccontextmanager
async def start(
    spec: SupervisorSpec, *, rng: random.Random | None = None
) -> AsyncIterator[Supervisor]:
    """Runs a supervision tree for the duration of the block.

    Every initial child has started (in order) when the block begins; when it ends the
    children stop in reverse order, each within its shutdown. If the tree gives up
    (restart intensity exceeded at the root), the block is cancelled and
    `IntensityExceeded` is raised from the `async with`.

    Args:
        spec: The root supervisor's spec.
        rng: Randomness for backoff jitter (seed it for reproducible tests).

    Yields:
        The root `Supervisor` (refs, introspection, dynamic children).

    Raises:
        ConfigError: The spec is invalid, or a factory did not return an Actor.
        IntensityExceeded: The root supervisor gave up (while starting or later).
    """
    root = Supervisor(_check(spec), path=spec.id, rng=rng or random.Random())
    body = anyio.CancelScope()
    failure: BaseException | None = None
    body_error: Exception | None = None
    ready = anyio.Event()

    async def host() -> None:
        nonlocal failure
        try:
            await root.run(ready.set)
        except (IntensityExceeded, ConfigError) as exc:
            failure = exc
            root.close_addresses(exc)
            body.cancel()
        finally:
            ready.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(host)
        await ready.wait()
        if failure is None:
            try:
                with body:
                    yield root
            except Exception as exc:  # re-raised below, outside the task group
                body_error = exc
            finally:
                root.request_stop()
    if body_error is not None:
        raise body_error
    if failure is not None:
        raise failure


async def start_tree(
    spec: SupervisorSpec,
    *,
    rng: random.Random | None = None,
    task_status: anyio.abc.TaskStatus[Supervisor] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Runs a supervision tree inside an existing task group until cancelled.

    Use as `sup = await tg.start(start_tree, spec)`. Cancelling the task stops the
    tree in order (children in reverse order, each within its shutdown).

    Raises:
        ConfigError: The spec is invalid.
        IntensityExceeded: The root supervisor gave up.
    """
    root = Supervisor(_check(spec), path=spec.id, rng=rng or random.Random())
    try:
        await root.run(lambda: task_status.started(root))
    except IntensityExceeded as exc:
        root.close_addresses(exc)
        raise
    except BaseException:
        root.close_addresses(None)
        raise
