"""How one actor's address behaves: mailbox size, full policies, deadlines, shutdown."""

from __future__ import annotations

import enum
from typing import Any

import attrs

from actors._errors import ConfigError
from actors._validate import positive, positive_int

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
        shutdown_timeout: Seconds a stopping actor gets to finish its current messages
            (and, separately, to run `on_stop`) before it is cancelled hard.
    """

    mailbox_size: int = attrs.field(default=1000, validator=positive_int)
    call_timeout: float = attrs.field(default=5.0, validator=positive)
    call_full: FullPolicy = attrs.field(
        default=FullPolicy.WAIT, converter=_call_full, validator=_call_policy
    )
    cast_full: FullPolicy = attrs.field(default=FullPolicy.WAIT, converter=_cast_full)
    start_timeout: float = attrs.field(default=5.0, validator=positive)
    shutdown_timeout: float = attrs.field(default=5.0, validator=positive)
