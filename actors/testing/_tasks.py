"""Counting the tasks alive in the current event loop, for leak checks."""

from __future__ import annotations

from typing import Any

import sniffio

__all__ = ["count_tasks"]


def count_tasks() -> int:
    """The number of tasks alive in the running event loop (asyncio or trio).

    Compare a count taken before starting something with one taken after stopping it:
    a difference is a leaked task. On trio this includes system tasks.
    """
    if sniffio.current_async_library() == "trio":
        import trio

        def walk(task: Any) -> int:
            return 1 + sum(
                walk(child) for nursery in task.child_nurseries for child in nursery.child_tasks
            )

        return walk(trio.lowlevel.current_root_task())
    import asyncio

    return len(asyncio.all_tasks())
