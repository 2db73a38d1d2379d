"""Adaptive concurrency: a concurrency limit learned from latency and from drops.

An `AdaptiveLimit` is a `Bulkhead` (its FIFO wait queue, deadlines and `BulkheadFull`)
whose number of slots moves, in the pipeline's bulkhead position; the pipeline also
hands it every attempt's latency and verdict (`observe`), from which it moves its
limit between `min_limit` and `max_limit`:

- **Latency (Vegas).** The no-load latency is the least latency seen in the last one
  or two `rtt_window`s. Samples are folded into one decision per *round* (about one
  no-load latency long, so the limit moves once per round trip, not once per
  sample): with ``L`` the limit and ``lg = max(1, log10(L))``, the round's mean
  latency ``rtt`` gives the queue the limit builds at the service,
  ``queue = L * (1 - no_load / rtt)``. Below ``alpha * lg`` the limit grows by
  ``lg`` (by ``beta * lg`` while no queue shows and nothing was ever dropped: the
  slow start); above ``beta * lg`` it shrinks by ``lg``; in between it holds (TCP
  Vegas, Netflix's VegasLimit).
- **Drops (AIMD).** A drop is an attempt answered 429, 503 or 529
  (`AdaptiveConcurrency.drop_statuses`, or a THROTTLED verdict) or cut by the attempt
  timeout: the limit is multiplied by `backoff` at once, the slow start ends, and the
  round it happened in does not grow the limit. Like TCP, it backs off once per
  round: a drop of an attempt sent before the last decrease was sent under the old
  limit and is not counted again. A service that sheds load without queueing first
  (no latency signal) is found by probing: one drop per probe, the limit growing by
  ``lg`` per round in between.
- **Application-limited rounds** (fewer than half the limit in use) teach nothing
  about the service and leave the limit alone, so an idle service does not grow an
  unbounded limit.

Only what the service answered is a signal: our own refusals (IGNORED verdicts) and
cancellations are never observed. Time comes from the caller (`now`), so the
algorithm runs on virtual time and is tested with exact figures.

Its slots are whole numbers: ``floor(limit)`` calls run at once. When the limit
shrinks below the calls in flight, no new call starts until enough have finished;
when it grows, waiters are admitted at once.
"""

from __future__ import annotations

import math
from typing import Final

import attrs

from actors._classify import ErrorClass, status_of
from actors._errors import AttemptTimeout, ConfigError
from actors._events import emit
from actors._validate import check_name, finite_positive, non_negative_int, positive_int
from actors.resilience._bulkhead import Bulkhead, BulkheadConfig, BulkheadMetrics

__all__ = ["AdaptiveConcurrency", "AdaptiveLimit", "AdaptiveMetrics", "create_adaptive_limit"]

_THROTTLED: Final = ErrorClass.THROTTLED
_IGNORED: Final = ErrorClass.IGNORED
_REJECTED: Final = ErrorClass.REJECTED


def _statuses(value: object) -> frozenset[int]:
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise ConfigError("drop_statuses", value, "must be a collection of HTTP statuses")
    found = frozenset(value)
    for status in found:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ConfigError("drop_statuses", status, "must be HTTP statuses (100-599)")
    return found


def _ratio(_inst: object, attr: attrs.Attribute[float], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ConfigError(attr.name, value, "must be a number in (0, 1)")


@attrs.frozen(kw_only=True)
class AdaptiveConcurrency:
    """How an adaptive concurrency limit learns (see the module docstring).

    Attributes:
        initial: The limit before anything is learned.
        min_limit: The limit never goes below this (>= 1).
        max_limit: Nor above this (>= initial).
        backoff: Multiplies the limit on a drop, in (0, 1).
        alpha: Below ``alpha * lg`` queued requests the limit grows (``lg`` as in the
            module docstring).
        beta: Above ``beta * lg`` it shrinks (> alpha).
        drop_statuses: HTTP statuses that mean "too much load" (429, 503, 529).
        rtt_window: Seconds over which the least latency is the no-load latency; it
            follows a lasting change of the service's latency within two windows.
        max_queued: Callers that may wait for a slot (FIFO, within their deadline);
            0 refuses at once with `BulkheadFull`.
    """

    initial: int = attrs.field(default=10, validator=positive_int)
    min_limit: int = attrs.field(default=1, validator=positive_int)
    max_limit: int = attrs.field(default=200, validator=positive_int)
    backoff: float = attrs.field(default=0.9, validator=_ratio)
    alpha: float = attrs.field(default=3.0, validator=finite_positive)
    beta: float = attrs.field(default=6.0, validator=finite_positive)
    drop_statuses: frozenset[int] = attrs.field(
        default=frozenset({429, 503, 529}), converter=_statuses
    )
    rtt_window: float = attrs.field(default=30.0, validator=finite_positive)
    max_queued: int = attrs.field(default=0, validator=non_negative_int)

    def __attrs_post_init__(self) -> None:
        if self.max_limit < self.min_limit:
            raise ConfigError(
                "max_limit", self.max_limit, f"must be >= min_limit ({self.min_limit})"
            )
        if not self.min_limit <= self.initial <= self.max_limit:
            raise ConfigError(
                "initial",
                self.initial,
                f"must be within [min_limit, max_limit] ([{self.min_limit}, {self.max_limit}])",
            )
        if self.beta <= self.alpha:
            raise ConfigError("beta", self.beta, f"must be > alpha ({self.alpha:g})")


@attrs.frozen(kw_only=True)
class AdaptiveMetrics(BulkheadMetrics):
    """A snapshot of an adaptive limit: a bulkhead's counters, and what it learned.

    Attributes:
        limit: The current limit (a whole number of slots is ``floor(limit)``).
        drops: Attempts observed as drops (429/503/529, attempt timeouts).
        decreases: Times the limit was multiplied by `backoff`.
        no_load_latency: The no-load latency in use (None before any sample).
    """

    limit: float
    drops: int
    decreases: int
    no_load_latency: float | None


@attrs.define(eq=False)
class AdaptiveLimit(Bulkhead):
    """A `Bulkhead` whose number of slots adapts to the service; create it with
    `create_adaptive_limit` (or `ServiceConfig(adaptive=...)`).

    Waiting, deadlines, cancellation and refusals are the bulkhead's (FIFO, a slot
    handed over at cancellation is passed on, `BulkheadFull`); only the number of
    slots moves, and a released slot goes to a waiter only while the limit allows.

    Attributes:
        adaptive: How it learns (`config` holds its queue size; its slots are
            `limit`'s floor).
    """

    adaptive: AdaptiveConcurrency = attrs.field(kw_only=True)
    _limit: float = attrs.field(init=False)
    _slots: int = attrs.field(init=False)
    _drops: int = attrs.field(default=0, init=False)
    _decreases: int = attrs.field(default=0, init=False)
    _decreased_at: float = attrs.field(default=-math.inf, init=False)
    _slow_start: bool = attrs.field(default=True, init=False)
    _window_start: float | None = attrs.field(default=None, init=False)
    _window_min: float = attrs.field(default=math.inf, init=False)
    _previous_min: float = attrs.field(default=math.inf, init=False)
    _round_end: float = attrs.field(default=-math.inf, init=False)
    _round_sum: float = attrs.field(default=0.0, init=False)
    _round_count: int = attrs.field(default=0, init=False)
    _round_dropped: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self._limit = float(self.adaptive.initial)
        self._slots = self.adaptive.initial

    @property
    def limit(self) -> float:
        """The current limit."""
        return self._limit

    def _enter(self) -> bool:
        """Takes a free slot if nobody waits; the success path (an integer compare)."""
        active = self._active
        if active < self._slots and not self._waiters:
            self._active = active = active + 1
            self._admitted += 1
            self._max_active = max(self._max_active, active)
            return True
        return False

    def release(self) -> None:
        """Returns a slot; admits waiters while the limit allows. Never a checkpoint.

        Raises:
            RuntimeError: No slot is held.
        """
        if self._active <= 0:
            raise RuntimeError(f"adaptive limit {self.name!r}: release without acquire")
        self._active -= 1
        if self._waiters:
            self._admit_waiters()

    def _admit_waiters(self) -> None:
        waiters = self._waiters
        while waiters and self._active < self._slots:
            waiter = waiters.popleft()
            waiter.granted = True
            self._active += 1
            self._admitted += 1
            self._max_active = max(self._max_active, self._active)
            waiter.event.set()

    # ------------------------------------------------------------------ learning

    def observe(
        self, latency: float, outcome: object, verdict: ErrorClass | None, now: float
    ) -> None:
        """Learns from one attempt that reached the service (the pipeline calls it).

        Args:
            latency: The attempt's duration, seconds.
            outcome: Its result or failure (read for an HTTP status).
            verdict: The classifier's verdict (None: a success).
            now: The loop time at its end.
        """
        if verdict is _IGNORED:
            return  # our own refusal or cut: not the service's answer
        if self._is_drop(outcome, verdict):
            self._drops += 1
            self._round_dropped = True
            self._slow_start = False
            if now - latency >= self._decreased_at:  # sent under the current limit
                adaptive = self.adaptive
                self._set(max(adaptive.min_limit, self._limit * adaptive.backoff), now)
                self._decreases += 1
                self._decreased_at = now
            return
        if verdict is not None and verdict is not _REJECTED:
            return  # a failure's latency says nothing about queueing
        self._sample(latency, now)

    def _is_drop(self, outcome: object, verdict: ErrorClass | None) -> bool:
        if verdict is _THROTTLED or isinstance(outcome, AttemptTimeout):
            return True
        if verdict is None:
            return False
        return status_of(outcome) in self.adaptive.drop_statuses

    def _sample(self, latency: float, now: float) -> None:
        if not latency > 0 or math.isinf(latency):
            return
        window = self.adaptive.rtt_window
        start = self._window_start
        if start is None or now >= start + 2 * window:
            self._window_start = now
            self._previous_min = math.inf
            self._window_min = latency
        elif now >= start + window:
            self._window_start = start + window
            self._previous_min = self._window_min
            self._window_min = latency
        elif latency < self._window_min:
            self._window_min = latency
        self._round_sum += latency
        self._round_count += 1
        if now < self._round_end:
            return
        no_load = min(self._window_min, self._previous_min)
        mean = self._round_sum / self._round_count
        dropped = self._round_dropped
        self._round_end = now + no_load
        self._round_sum = 0.0
        self._round_count = 0
        self._round_dropped = False
        limit = self._limit
        if self._active * 2 < limit:
            return  # application-limited: the service was not asked for the limit
        config = self.adaptive
        lg = max(1.0, math.log10(limit))
        queue = limit * (1.0 - no_load / mean)
        if queue < config.alpha * lg:
            if dropped:
                return
            target = limit + (config.beta * lg if self._slow_start and queue <= lg else lg)
        elif queue > config.beta * lg:
            target = limit - lg
        else:
            return
        self._set(min(config.max_limit, max(config.min_limit, target)), now)

    def _set(self, limit: float, now: float) -> None:
        before = self._slots
        self._limit = limit
        self._slots = int(limit)
        if self._slots != before:
            emit(
                "adaptive.limit_changed",
                level="debug",
                limiter=self.name,
                limit=self._slots,
                previous=before,
            )
        if self._slots > before and self._waiters:
            self._admit_waiters()

    def metrics(self) -> AdaptiveMetrics:
        """A snapshot of the slots, the limit and its counters (never a checkpoint)."""
        base = super().metrics()
        no_load = min(self._window_min, self._previous_min)
        return AdaptiveMetrics(
            **attrs.asdict(base),
            limit=self._limit,
            drops=self._drops,
            decreases=self._decreases,
            no_load_latency=None if math.isinf(no_load) else no_load,
        )

    def __repr__(self) -> str:
        return f"<AdaptiveLimit {self.name!r} limit={self._limit:.1f} active={self._active}>"


def create_adaptive_limit(config: AdaptiveConcurrency | None = None, *, name: str) -> AdaptiveLimit:
    """Creates an adaptive concurrency limit.

    Args:
        config: How it learns; `AdaptiveConcurrency()` when omitted.
        name: Its name (errors, events).

    Raises:
        ConfigError: An empty name, or `config` is not an `AdaptiveConcurrency`.
    """
    check_name("name", name)
    config = AdaptiveConcurrency() if config is None else config
    if not isinstance(config, AdaptiveConcurrency):
        raise ConfigError("config", config, "must be an AdaptiveConcurrency")
    queue = BulkheadConfig(max_concurrent=config.max_limit, max_queued=config.max_queued)
    return AdaptiveLimit(name=name, config=queue, adaptive=config)
