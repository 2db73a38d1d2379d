"""Configuration and statistics records of the connection pool (`actors._pool`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from actors._errors import ConfigError
from actors._validate import non_negative, optional, positive, positive_int

__all__ = ["PoolConfig", "PoolStats"]


def _size(_inst: Any, attr: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(attr.name, value, "must be an integer >= 0")


def _is_bool(_inst: Any, attr: attrs.Attribute[bool], value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(attr.name, value, "must be a bool")


def _callable(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not callable(value):
        raise ConfigError(attr.name, value, "must be a callable taking an exception, or None")


@attrs.frozen(kw_only=True)
class PoolConfig:
    """How many connections a pool keeps, how long they live and how they are checked.

    Times are in seconds; `None` turns a limit off.

    Attributes:
        min_size: Connections kept open even when idle (warm), integer >= 0.
        max_size: Most connections open at once (in use, idle, opening or closing),
            integer >= 1 and >= `min_size`.
        acquire_timeout: Longest wait for a connection; the caller's deadline, when
            earlier, wins. Also bounds opening and validating one connection.
        max_lifetime: A connection older than this is closed instead of reused (when
            returned or found idle) and replaced up to `min_size`.
        max_idle: An idle connection unused for this long is closed, as long as more
            than `min_size` connections are open.
        validate_on_borrow: Check every connection with the factory's `validate`
            before handing it out; a failed check closes it and the pool tries another.
        validation_interval: Idle connections are checked in the background this often
            (`None`: never).
        close_timeout: Longest wait for the factory to close one connection (the close
            is shielded from cancellation and abandoned after this).
        close_on_cancel: Close (instead of return) a connection whose holder was
            cancelled: a database connection cancelled mid-query may be left dirty.
        broken_on: Predicate over the exception that ended a holder's block; true means
            the connection is broken and is closed instead of returned. Only `Exception`
            subclasses are offered to it.
        reconnect_delay: After a failed background open (keeping `min_size` warm), wait
            this long before trying again.
    """

    min_size: int = attrs.field(default=0, validator=_size)
    max_size: int = attrs.field(default=10, validator=positive_int)
    acquire_timeout: float = attrs.field(default=5.0, validator=positive)
    max_lifetime: float | None = attrs.field(default=3600.0, validator=optional(positive))
    max_idle: float | None = attrs.field(default=600.0, validator=optional(positive))
    validate_on_borrow: bool = attrs.field(default=False, validator=_is_bool)
    validation_interval: float | None = attrs.field(default=None, validator=optional(positive))
    close_timeout: float = attrs.field(default=5.0, validator=non_negative)
    close_on_cancel: bool = attrs.field(default=True, validator=_is_bool)
    broken_on: Callable[[Exception], bool] | None = attrs.field(default=None, validator=_callable)
    reconnect_delay: float = attrs.field(default=1.0, validator=positive)

    def __attrs_post_init__(self) -> None:
        if self.min_size > self.max_size:
            raise ConfigError("min_size", self.min_size, f"must be <= max_size ({self.max_size})")


@attrs.frozen(kw_only=True)
class PoolStats:
    """A snapshot of a pool's gauges and counters.

    Attributes:
        name: The pool's name.
        size: Connections open or being opened/closed (counts against `max_size`).
        in_use: Connections lent out now.
        idle: Connections ready to lend.
        waiting: Callers waiting for a connection now.
        created: Connections opened so far.
        closed: Connections closed so far (a close that failed or timed out counts).
        failed_opens: Opens that raised or timed out.
        failed_validations: Validations that returned false or raised.
        waits: Acquisitions that had to wait for a connection.
        timeouts: Acquisitions that gave up with `PoolTimeout`.
    """

    name: str
    size: int
    in_use: int
    idle: int
    waiting: int
    created: int
    closed: int
    failed_opens: int
    failed_validations: int
    waits: int
    timeouts: int
