"""The envelope a message travels in, and the context it carries into the handler.

An envelope holds the message, its absolute deadline (the caller's one budget for
enqueue, queueing, handling and reply), a correlation id, and the reply slot (`None` for
a cast). While an actor handles it, the deadline and the correlation id are bound in
context variables: nested calls inherit the remaining budget, and every structlog event
carries `correlation_id` (bound through structlog's own contextvars key). The sender's
trace context travels the same way, so the handler's spans are children of the caller's.
"""

from __future__ import annotations

import contextvars
import itertools
import math
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import structlog

__all__ = [
    "QUEUED",
    "Envelope",
    "correlation_id",
    "current_correlation_id",
    "current_deadline",
    "new_correlation_id",
]

# Envelope states.
QUEUED: Final = 0
RUNNING: Final = 1
DONE: Final = 2
ABANDONED: Final = 3  # its caller gave up while it was queued
CUT: Final = 4  # its caller gave up while it was handled: the handler is being cancelled


def _structlog_var(key: str) -> contextvars.ContextVar[Any]:
    """Finds the ContextVar structlog uses for `key` (public API only)."""
    ctx = contextvars.Context()
    ctx.run(structlog.contextvars.bind_contextvars, **{key: None})
    for var in ctx:
        if var.name == f"{structlog.contextvars.STRUCTLOG_KEY_PREFIX}{key}":
            return var
    raise RuntimeError(f"structlog did not bind {key!r}")  # pragma: no cover


CID_VAR: Final = _structlog_var("correlation_id")
"""structlog's `correlation_id` contextvar: binding it there is binding it for structlog."""

DEADLINE_VAR: Final[contextvars.ContextVar[float]] = contextvars.ContextVar(
    "actors_deadline", default=math.inf
)

CID_PREFIX: Final = f"{secrets.token_hex(4)}-"
next_cid_number: Final = itertools.count(1).__next__


def new_correlation_id() -> str:
    """Returns a new correlation id, unique within this process and unlikely across.
    (`ActorRef.call` makes one inline: `CID_PREFIX + str(next_cid_number())`.)"""
    return CID_PREFIX + str(next_cid_number())


def current_correlation_id() -> str | None:
    """The correlation id bound in this context (by the caller or the handled envelope)."""
    value = CID_VAR.get(None)
    return None if value is None or value is Ellipsis else str(value)


def current_deadline() -> float:
    """The absolute deadline (`anyio.current_time()` scale) of the message being handled.

    Returns `math.inf` outside a handler (and for casts). A `call` made from inside a
    handler never waits past it.
    """
    return DEADLINE_VAR.get()


@contextmanager
def correlation_id(value: str | None = None) -> Iterator[str]:
    """Binds a correlation id for the calls and events in the block.

    Args:
        value: The id to bind; a new one is generated when omitted.

    Yields:
        The bound id.
    """
    cid = value if value is not None else new_correlation_id()
    token = CID_VAR.set(cid)
    try:
        yield cid
    finally:
        CID_VAR.reset(token)


class Envelope:
    """One message in a mailbox. Internal: users never see envelopes.

    `scope` is set when a worker takes the envelope (it is read only while the state is
    RUNNING): the cancel scope that worker holds (see `actors._actor.Incarnation`), which
    the caller cancels if it gives up. `trace`
    is the sender's OpenTelemetry context (None while tracing is off), attached while
    the handler runs (see `actors._tracing`).
    """

    __slots__ = ("cid", "deadline", "msg", "reply", "scope", "state", "trace")

    scope: Any

    def __init__(self, msg: Any, deadline: float, cid: str, reply: Any, trace: Any) -> None:
        self.msg = msg
        self.deadline = deadline
        self.cid = cid
        self.reply = reply
        self.trace = trace
        self.state = QUEUED
