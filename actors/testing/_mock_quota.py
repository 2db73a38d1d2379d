"""The mock LLM's rate limits: requests and tokens per key over a rolling window.

A `Quota` makes the mock behave like a provider enforcing a per-key limit: a request
that would take the key over its requests or tokens in the last `window` seconds is
refused with 429, ``retry-after`` (when it would fit again) and the rate-limit
headers; an admitted one is logged with the tokens its answer uses. Time is
`anyio.current_time()`, so tests run on virtual time.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import attrs

__all__ = ["Quota", "QuotaLedger", "QuotaVerdict"]


def _optional_positive_int(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{attr.name} must be an integer >= 1 or None, not {value!r}")


def _positive(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{attr.name} must be a finite number > 0, not {value!r}")


@attrs.frozen(kw_only=True)
class Quota:
    """Per-key limits the mock enforces (None: unlimited).

    Attributes:
        requests_per_minute: Requests per `window` (named per minute, the window's
            default length).
        tokens_per_minute: Prompt plus completion tokens per `window`.
        window: The rolling window, seconds.
    """

    requests_per_minute: int | None = attrs.field(default=None, validator=_optional_positive_int)
    tokens_per_minute: int | None = attrs.field(default=None, validator=_optional_positive_int)
    window: float = attrs.field(default=60.0, validator=_positive)


@attrs.frozen(kw_only=True)
class QuotaVerdict:
    """Whether a request is admitted, and what the rate-limit headers say.

    Attributes:
        admitted: The request fits.
        retry_after: Seconds until it would fit (None if admitted, or never: a request
            larger than the whole token limit).
        remaining_requests / remaining_tokens: Left in the window after this request
            (before it, when refused); None for an unlimited dimension.
        reset_requests / reset_tokens: Seconds until the window is empty again.
    """

    admitted: bool
    retry_after: float | None = None
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests: float = 0.0
    reset_tokens: float = 0.0


@attrs.define(eq=False)
class QuotaLedger:
    """The log of admitted requests per key, within the window."""

    quota: Quota
    _log: dict[str, deque[tuple[float, int]]] = attrs.field(factory=dict, init=False)

    def admit(self, key: str, tokens: int, now: float) -> QuotaVerdict:
        """Admits (and logs) a request of `tokens` for `key` at `now`, or refuses it."""
        quota = self.quota
        log = self._log.setdefault(key, deque())
        while log and log[0][0] <= now - quota.window:
            log.popleft()
        used_tokens = sum(cost for _, cost in log)
        waits: list[float] = []
        never = False
        if quota.requests_per_minute is not None and len(log) + 1 > quota.requests_per_minute:
            oldest = log[len(log) - quota.requests_per_minute][0]
            waits.append(oldest + quota.window - now)
        if quota.tokens_per_minute is not None and used_tokens + tokens > quota.tokens_per_minute:
            if tokens > quota.tokens_per_minute:
                never = True
            else:
                excess = used_tokens + tokens - quota.tokens_per_minute
                freed = 0
                for at, cost in log:
                    freed += cost
                    if freed >= excess:
                        waits.append(at + quota.window - now)
                        break
        admitted = not waits and not never
        if admitted:
            log.append((now, tokens))
        newest = log[-1][0] + quota.window - now if log else 0.0
        return QuotaVerdict(
            admitted=admitted,
            retry_after=None if admitted or never else max(waits),
            remaining_requests=None
            if quota.requests_per_minute is None
            else max(0, quota.requests_per_minute - len(log)),
            remaining_tokens=None
            if quota.tokens_per_minute is None
            else max(0, quota.tokens_per_minute - sum(cost for _, cost in log)),
            reset_requests=newest,
            reset_tokens=newest,
        )

    def clear(self) -> None:
        """Forgets every key's log."""
        self._log.clear()
