"""How one actor's address behaves: mailbox size, full policies, deadlines, shutdown."""

from __future__ import annotations

import enum
from typing import Any

import attrs

from actors._errors import ConfigError
from actors._validate import finite_positive, optional, positive, positive_int

__all__ = ["ActorConfig", "FullPolicy"]


class FullPolicy(enum.Enum):
    """What a sender does when the mailbox is full.

    WAIT: wait (first-in first-out) for a place until the call's deadline, then raise
        `MailboxFull`.
    FAIL: raise `MailboxFull` at once.
    DROP: (casts only) drop the message, emit `actor.dead_letter`, and return.
    """

    WAIT = "wait"
    FAIL = "fail"
    DROP = "drop"


def _to_policy(field: str, value: Any) -> FullPolicy:
    if isinstance(value, FullPolicy):
        return value
    try:
        return FullPolicy(value)
    except ValueError:
        raise ConfigError(field, value, f"must be one of {[p.value for p in FullPolicy]}") from None


def _call_full(value: Any) -> FullPolicy:
    return _to_policy("call_full", value)


def _cast_full(value: Any) -> FullPolicy:
    return _to_policy("cast_full", value)


def _call_policy(_inst: Any, attr: attrs.Attribute[Any], value: FullPolicy) -> None:
    if value is FullPolicy.DROP:
        raise ConfigError(attr.name, value.value, "calls cannot be dropped; use wait or fail")


@attrs.frozen(kw_only=True)
class ActorConfig:
    """Per-actor runtime settings (the address's, so they hold across restarts).

    Attributes:
        mailbox_size: Messages that may wait in the mailbox (handled ones not counted).
        call_timeout: Default deadline of `call` (and of a `cast` waiting for room), in
            seconds. Finite on purpose: no call waits forever by accident.
        call_full: `FullPolicy` for calls when the mailbox is full (WAIT or FAIL).
        cast_full: `FullPolicy` for casts when the mailbox is full (WAIT, FAIL or DROP).
        start_timeout: Seconds `on_start` may take before the start counts as failed.
        shutdown_timeout: Seconds a stopping actor gets, in all, to finish its current
            messages and run `on_stop` before it is cancelled hard (also what bounds
            `on_stop` after a crash). A supervised child's stop budget is its
            `ChildSpec.shutdown` instead: one budget per stop, never a sum.
        hibernate_after: Seconds without a message after which the actor *hibernates*:
            its task ends, and the next message starts a new one in the same task group
            (OTP's `hibernate_after`). A hibernated actor costs its address and its
            state, no task. It hibernates between this and twice this after its last
            message. None: never (for an actor whose first call after a quiet spell
            must not pay the wake-up, a few microseconds). An actor that overrides
            `lifespan` never hibernates (its task holds the resources); one that only
            overrides `on_start` runs it in a task and hibernates afterwards; one that
            overrides neither starts hibernated.
    """

    mailbox_size: int = attrs.field(default=1000, validator=positive_int)
    call_timeout: float = attrs.field(default=5.0, validator=finite_positive)
    call_full: FullPolicy = attrs.field(
        default=FullPolicy.WAIT, converter=_call_full, validator=_call_policy
    )
    cast_full: FullPolicy = attrs.field(default=FullPolicy.WAIT, converter=_cast_full)
    start_timeout: float = attrs.field(default=5.0, validator=positive)
    shutdown_timeout: float = attrs.field(default=5.0, validator=positive)
    hibernate_after: float | None = attrs.field(default=1.0, validator=optional(finite_positive))
