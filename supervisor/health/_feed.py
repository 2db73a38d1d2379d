"""`EventFeed`: the most recent lifecycle events, kept in memory for the dashboard.

A feed subscribes to the events (`actors.lowlevel.subscribe`) when it is made and
unsubscribes when it is garbage collected (the health app that made it holds it), so no
event is kept, and `emit` pays nothing extra, when no dashboard exists. Appending is O(1):
the event's fields are copied (without `exc_info`, so no traceback and no frame stays
alive) into a bounded deque; they are made JSON-safe only when the dashboard reads them.
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections import deque
from collections.abc import Mapping
from typing import Any

from actors import current_correlation_id
from actors.lowlevel import now_or_none, subscribe

__all__ = ["EventFeed", "open_feed"]

_MAX_TEXT = 200  # characters of a non-scalar field's repr shown


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    text = repr(value)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


class EventFeed:
    """A bounded ring of recent events, each numbered by a sequence that only grows."""

    __slots__ = ("__weakref__", "_items", "_seq", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[tuple[int, float | None, str, str, str | None, dict[str, Any]]] = deque(
            maxlen=capacity
        )
        self._seq = itertools.count(1)

    def append(self, event: str, level: str, fields: Mapping[str, Any]) -> None:
        """Keeps one event (the oldest one leaves when the ring is full)."""
        kept = dict(fields)
        kept.pop("exc_info", None)
        cid = kept.pop("correlation_id", None) or current_correlation_id()
        self._items.append((next(self._seq), now_or_none(), event, level, cid, kept))

    def read(self, since: int = 0, limit: int | None = None) -> dict[str, Any]:
        """The events after sequence number `since`, oldest first, as JSON-ready dicts.

        Args:
            since: The last sequence number the reader has (0: everything kept).
            limit: At most this many (the newest ones).

        Returns:
            ``{"next": <the newest sequence number>, "items": [...]}``; each item has
            `seq`, `at` (loop time, or null), `event`, `level`, `correlation_id` and
            `fields`.
        """
        items = [item for item in self._items if item[0] > since]
        if limit is not None:
            items = items[-limit:] if limit > 0 else []
        newest = self._items[-1][0] if self._items else since
        return {
            "next": max(newest, since),
            "items": [
                {
                    "seq": seq,
                    "at": at,
                    "event": event,
                    "level": level,
                    "correlation_id": cid,
                    "fields": _json_safe(fields),
                }
                for seq, at, event, level, cid, fields in items
            ],
        }


def open_feed(capacity: int) -> EventFeed:
    """A feed subscribed to every event until it is garbage collected."""
    feed = EventFeed(capacity)
    ref = weakref.ref(feed)

    def sink(event: str, level: str, fields: Mapping[str, Any]) -> None:
        alive = ref()
        if alive is not None:
            alive.append(event, level, fields)

    weakref.finalize(feed, subscribe(sink))
    return feed
