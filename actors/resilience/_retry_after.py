"""Server-requested delays: how long a failed response asks us to wait.

Read from an exception's headers (``exc.headers`` or ``exc.response.headers``, see
`actors._classify.headers_of`) or from a numeric ``exc.retry_after`` attribute, in
this order of precedence:

1. ``retry-after-ms``: milliseconds (OpenAI, Azure).
2. ``retry-after``: seconds, or an HTTP date. An HTTP date is only honoured when the
   response also has a ``date`` header: the delay is ``retry-after - date``, both from
   the server's clock. Without ``date`` the value is *not honourable* and ignored (we
   never read the wall clock: the retry state machine runs on ``anyio.current_time()``,
   which may be virtual and has no relation to calendar time).
3. ``x-ratelimit-reset-requests`` / ``x-ratelimit-reset-tokens``: Go-style durations
   (``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"``). OpenAI sends them on every
   response, so one only counts when its ``x-ratelimit-remaining-*`` partner is ``0``
   or absent; the largest counting one wins.
4. ``exc.retry_after``: a number of seconds set by a client.

Malformed, negative, infinite or NaN values are ignored (``None``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Final

from actors._classify import headers_of

__all__ = ["parse_duration", "parse_server_delay", "server_delay"]

_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS: Final = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "ns": 1e-9,
}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) and value >= 0 else None


def _number(text: str) -> float | None:
    try:
        return _finite(float(text.strip()))
    except ValueError:
        return None


def parse_duration(text: str) -> float | None:
    """Parses a Go-style duration (``"6m0s"``, ``"20ms"``, ``"1.5s"``) or bare seconds.

    Returns:
        Seconds, or ``None`` when `text` is not a valid non-negative duration.
    """
    text = text.strip()
    if not text:
        return None
    bare = _number(text)
    if bare is not None:
        return bare
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(text):
        return None
    return _finite(total)


def _http_date_delay(value: str, date: str | None) -> float | None:
    if date is None:
        return None
    try:
        retry_at = parsedate_to_datetime(value)
        now = parsedate_to_datetime(date)
        delay = (retry_at - now).total_seconds()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, delay) if math.isfinite(delay) else None


def parse_server_delay(headers: Mapping[str, str]) -> float | None:
    """Returns the delay, in seconds, that response headers ask for.

    Args:
        headers: Response headers with lower-case names.

    Returns:
        Seconds, or ``None`` when the headers ask for nothing honourable.
    """
    value = headers.get("retry-after-ms")
    if value is not None:
        millis = _number(value)
        if millis is not None:
            return millis / 1000.0
    value = headers.get("retry-after")
    if value is not None:
        seconds = _number(value)
        if seconds is None:
            seconds = _http_date_delay(value, headers.get("date"))
        if seconds is not None:
            return seconds
    delay: float | None = None
    for limit in ("requests", "tokens"):
        reset = headers.get(f"x-ratelimit-reset-{limit}")
        if reset is None:
            continue
        remaining = headers.get(f"x-ratelimit-remaining-{limit}")
        if remaining is not None and remaining.strip() not in ("0", "0.0"):
            continue
        seconds = parse_duration(reset)
        if seconds is not None and (delay is None or seconds > delay):
            delay = seconds
    return delay


def server_delay(exc: BaseException) -> float | None:
    """Returns the delay, in seconds, that a failure's server asked for, if any.

    Reads the exception's headers (see `parse_server_delay`), then a numeric
    ``exc.retry_after``.
    """
    headers = headers_of(exc)
    if headers:
        delay = parse_server_delay(headers)
        if delay is not None:
            return delay
    value = getattr(exc, "retry_after", None)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _finite(float(value))
    return None
