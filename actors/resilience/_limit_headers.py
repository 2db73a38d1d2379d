"""Reading a provider's rate-limit headers (untrusted input) into figures per limit.

Two conventions, read case-insensitively for each limit name:

========================  ===============================================  ==============
provider                  headers                                          reset is
========================  ===============================================  ==============
OpenAI (and compatibles)  ``x-ratelimit-{limit,remaining,reset}-<name>``   a duration
                                                                           (``"6m0s"``)
Anthropic                 ``anthropic-ratelimit-<name>-{limit,remaining,   an RFC 3339
                          reset}``, ``<name>`` with ``-`` for ``_``        time
                          (``input-tokens``)
========================  ===============================================  ==============

An Anthropic reset time becomes seconds against the response's own ``date`` header
(the server's clock; the library never reads the wall clock), so without ``date`` it
is not known. Every figure is checked before it is used: one that is not a finite
number >= 0 is ignored (event ``limiter.header_rejected``), a ``remaining`` above the
limit's capacity is clamped to it (``limiter.header_clamped``), and a reset further
away than twice the limit's refill time (at least a minute) is ignored
(``limiter.header_rejected``). A reply can never put a limit into debt or hold it for
months.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Final

import attrs

from actors._events import emit
from actors.resilience._limit_algorithms import LimitConfig
from actors.resilience._retry_after import parse_duration

__all__ = ["HeaderLimits", "read_rate_headers"]

_MIN_HORIZON: Final = 60.0
"""A reset up to this far away is always plausible (seconds)."""

_SHOWN: Final = 40
"""Characters of a rejected header value quoted in an event."""


@attrs.frozen(kw_only=True)
class HeaderLimits:
    """What a response's rate-limit headers said about one limit, after the checks.

    Attributes:
        limit: The provider's limit (`x-ratelimit-limit-<name>`), if present and sane.
        remaining: Units left now, if present (clamped to the configured capacity).
        reset_after: Seconds until the limit is full again, if present and plausible.
    """

    limit: float | None
    remaining: float | None
    reset_after: float | None


def _rejected(limiter: str, header: str, value: str, reason: str) -> None:
    emit(
        "limiter.header_rejected",
        level="warning",
        limiter=limiter,
        header=header,
        value=value[:_SHOWN],
        reason=reason,
    )


def _number(limiter: str, header: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        _rejected(limiter, header, text, "not a finite number >= 0")
        return None
    return value


def _reset_time(text: str, date: str | None) -> float | None:
    """Seconds from the response's `date` to the RFC 3339 time `text` (None if unknown)."""
    if date is None:
        return None
    try:
        reset = datetime.fromisoformat(text.strip())
        sent = parsedate_to_datetime(date)
        seconds = (reset - sent).total_seconds()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _horizon(config: LimitConfig) -> float:
    """The furthest plausible reset: twice the time to refill from empty, at least 60 s."""
    return max(_MIN_HORIZON, 2.0 * config.max_cost / config.mean_rate)


def read_rate_headers(
    headers: Mapping[str, str], limits: Sequence[tuple[str, LimitConfig]], *, limiter: str
) -> dict[str, HeaderLimits]:
    """The checked figures per limit name that had at least one header.

    Args:
        headers: The response's headers (any case).
        limits: `(name, config)` per limit.
        limiter: The limiter's name, for events.
    """
    lowered = {str(key).lower(): str(value) for key, value in headers.items()}
    date = lowered.get("date")
    seen: dict[str, HeaderLimits] = {}
    for name, config in limits:
        anthropic = f"anthropic-ratelimit-{name.replace('_', '-')}-"
        openai = (f"x-ratelimit-limit-{name}", f"x-ratelimit-remaining-{name}")
        if openai[0] in lowered or openai[1] in lowered or f"x-ratelimit-reset-{name}" in lowered:
            names = (*openai, f"x-ratelimit-reset-{name}")
            is_time = False
        else:
            names = (f"{anthropic}limit", f"{anthropic}remaining", f"{anthropic}reset")
            is_time = True
        limit_text, remaining_text, reset_text = (lowered.get(header) for header in names)
        if limit_text is None and remaining_text is None and reset_text is None:
            continue
        limit = _number(limiter, names[0], limit_text)
        remaining = _number(limiter, names[1], remaining_text)
        if remaining is not None and remaining > config.max_cost:
            emit(
                "limiter.header_clamped",
                level="warning",
                limiter=limiter,
                header=names[1],
                value=remaining,
                capacity=config.max_cost,
            )
            remaining = config.max_cost
        reset_after = None
        if reset_text is not None:
            reset_after = _reset_time(reset_text, date) if is_time else parse_duration(reset_text)
            if reset_after is None:
                reason = "not an RFC 3339 time after `date`" if is_time else "not a duration"
                _rejected(limiter, names[2], reset_text, reason)
            elif reset_after > _horizon(config):
                _rejected(limiter, names[2], reset_text, "implausibly far away")
                reset_after = None
        if limit is None and remaining is None and reset_after is None:
            continue
        seen[name] = HeaderLimits(limit=limit, remaining=remaining, reset_after=reset_after)
    return seen
