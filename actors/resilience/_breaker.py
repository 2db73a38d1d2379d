"""Circuit breaker: stop calling a service that is failing, probe it, and resume.

::

    CLOSED ──(failure or slow-call rate >= threshold, once minimum_calls are buffered;
      ▲       or consecutive_failures in a row)──► OPEN
      │                                             │ open duration (with backoff, jitter) elapses
      │                                             ▼ (checked at the next acquire)
      └──(the N trial calls stay under both rates)── HALF_OPEN ──(trial rates >= threshold)──► OPEN

Manual states, entered only with `CircuitBreaker.force`: DISABLED (always permits,
records totals only), FORCED_OPEN (always rejects), METRICS_ONLY (records the window,
never opens).

The state machine is a synchronous, clock-injected core: every method that needs the
time takes `now` and reads `anyio.current_time()` only when it is not given (and only
when it is actually needed). `call` and `guard` wrap it for async code. anyio runs one
event loop per thread, so state changes need no lock; never share a breaker between
threads.

Where the shared state lives (state, generation, when it changed, open duration) is a
`BreakerStateStore`: an in-memory dict by default, a shared store (e.g. Redis) later.
The sliding window and the half-open round counters are local evidence, per process.
"""

from __future__ import annotations

import enum
import math
import random as _random_module
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, Protocol, TypeVar

import attrs

from actors._classify import Classifier, ErrorClass, ErrorClassifier
from actors._clock import now as _now
from actors._clock import now_or_none as _now_or_none
from actors._errors import CircuitOpen, ConfigError
from actors._events import emit
from actors._tracing import add_event
from actors._validate import finite_positive, fraction, optional, positive, positive_int
from actors.resilience._breaker_window import FAILED, SLOW, CountWindow, TimeWindow, Window

if TYPE_CHECKING:
    pass

__all__ = [
    "BreakerConfig",
    "BreakerListener",
    "BreakerMetrics",
    "BreakerRecord",
    "BreakerState",
    "BreakerStateStore",
    "BreakerTransition",
    "CircuitBreaker",
    "InMemoryBreakerStore",
    "create_breaker",
]

P = ParamSpec("P")
T = TypeVar("T")


class BreakerState(enum.Enum):
    """The states of a circuit breaker (the value is the name used in events)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    DISABLED = "disabled"
    FORCED_OPEN = "forced_open"
    METRICS_ONLY = "metrics_only"


_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN
_DISABLED = BreakerState.DISABLED
_FORCED_OPEN = BreakerState.FORCED_OPEN
_METRICS_ONLY = BreakerState.METRICS_ONLY


# --------------------------------------------------------------------------- config


def _window_kind(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if value not in ("count", "time"):
        raise ConfigError(attr.name, value, 'must be "count" or "time"')


def _jitter(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ConfigError(attr.name, value, "must be a number in [0, 1)")


def _multiplier(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 1 <= value < math.inf  # also rejects NaN
    ):
        raise ConfigError(attr.name, value, "must be a finite number >= 1")


def _minimum_calls(inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    positive_int(inst, attr, value)
    if inst.window == "count" and value > inst.window_size:
        raise ConfigError(
            attr.name, value, f"must be <= window_size ({inst.window_size}) for a count window"
        )


def _max_open(inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    positive(inst, attr, value)
    if value < inst.open_duration:
        raise ConfigError(attr.name, value, f"must be >= open_duration ({inst.open_duration})")


def _preset(kind: str, changes: dict[str, Any]) -> BreakerConfig:
    from actors._kinds import kind_named

    return attrs.evolve(kind_named(kind).breaker, **changes)


@attrs.frozen(kw_only=True)
class BreakerConfig:
    """How a circuit breaker decides (every duration in seconds).

    Attributes:
        window: "count" (the last `window_size` calls) or "time" (the calls of the last
            `window_size` seconds, in one-second buckets).
        window_size: Calls (count window) or whole seconds (time window).
        failure_rate_threshold: Opens when failures / buffered calls reaches this, in (0, 1].
        slow_call_rate_threshold: Opens when slow calls / buffered calls reaches this.
        slow_call_duration: A call that took longer than this is slow (`inf`: never).
        minimum_calls: Rates are applied only once this many calls are buffered.
        consecutive_failures: Also opens after this many failures in a row, whatever
            `minimum_calls` says (`None`: off).
        open_duration: How long the breaker stays open the first time.
        open_backoff_multiplier: Each re-open straight from half-open multiplies the
            open duration by this, up to `max_open_duration`; a close resets it.
        max_open_duration: Cap of the open duration before jitter.
        open_jitter: The actual open duration is drawn in `(1 - jitter) * d .. d`.
        half_open_permits: Trial calls let through in half-open (the rest are rejected).
        half_open_max_wait: When every trial permit is taken and none was handed out for
            this long, the holders are presumed lost and a new round of trial permits
            starts (`inf`: wait for them forever).

    Which outcomes count as failures is not configured here: the resilience pipeline's
    classifier judges each attempt once (see `actors.ErrorClass`), and `record` maps
    that verdict onto the breaker.
    """

    window: Literal["count", "time"] = attrs.field(default="count", validator=_window_kind)
    window_size: int = attrs.field(default=100, validator=positive_int)
    failure_rate_threshold: float = attrs.field(default=0.5, validator=fraction)
    slow_call_rate_threshold: float = attrs.field(default=1.0, validator=fraction)
    slow_call_duration: float = attrs.field(default=60.0, validator=positive)
    minimum_calls: int = attrs.field(default=20, validator=_minimum_calls)
    consecutive_failures: int | None = attrs.field(default=None, validator=optional(positive_int))
    open_duration: float = attrs.field(default=30.0, validator=finite_positive)
    open_backoff_multiplier: float = attrs.field(default=2.0, validator=_multiplier)
    max_open_duration: float = attrs.field(default=300.0, validator=_max_open)
    open_jitter: float = attrs.field(default=0.1, validator=_jitter)
    half_open_permits: int = attrs.field(default=3, validator=positive_int)
    half_open_max_wait: float = attrs.field(default=120.0, validator=positive)

    @classmethod
    def for_llm(cls, **changes: Any) -> BreakerConfig:
        """LLM HTTP APIs: 50 % failures over 60 s (min 20 calls), slow > 60 s, open 30 s."""
        return _preset("llm", changes)

    @classmethod
    def for_http(cls, **changes: Any) -> BreakerConfig:
        """Other HTTP APIs: 50 % failures over 60 s (min 20 calls), slow > 10 s, open 15 s."""
        return _preset("http", changes)

    @classmethod
    def for_database(cls, **changes: Any) -> BreakerConfig:
        """Databases: 5 failures in a row or 50 % of 20 calls, slow > 2 s, open 5 s."""
        return _preset("database", changes)

    @classmethod
    def for_mcp(cls, **changes: Any) -> BreakerConfig:
        """MCP tool servers: 50 % failures over 20 calls, slow > 10 s, open 10 s."""
        return _preset("mcp", changes)


# --------------------------------------------------------------------------- records


@attrs.frozen(kw_only=True)
class BreakerRecord:
    """The shareable state of one breaker, as kept by a `BreakerStateStore`.

    Attributes:
        state: The current state.
        generation: Bumped by every transition; a permit is the generation it was
            issued in, so outcomes reported after a transition are not misattributed.
        since: When the state was entered (`anyio.current_time()`); `None` if the
            breaker was created outside an event loop and never changed state.
        open_duration: How long this opening lasts (jitter applied); 0 unless OPEN.
        open_base: The opening's duration before jitter, kept through half-open so a
            failed trial can grow it; 0 after a close.
    """

    state: BreakerState
    generation: int = 0
    since: float | None = None
    open_duration: float = 0.0
    open_base: float = 0.0

    @property
    def open_until(self) -> float:
        """When an OPEN breaker lets trial calls through."""
        return (self.since or 0.0) + self.open_duration


class BreakerStateStore(Protocol):
    """Where breaker records live; the in-memory default or a shared store.

    `get` runs on every `acquire`, so it must be cheap and must not block: a store
    shared across processes keeps a local copy and refreshes it in the background.
    """

    def get(self, name: str) -> BreakerRecord | None:
        """Returns the record of breaker `name`, or `None` if there is none yet."""
        ...

    def set(self, name: str, record: BreakerRecord) -> None:
        """Stores the record of breaker `name` (after a transition)."""
        ...


@attrs.define(eq=False)
class InMemoryBreakerStore:
    """The default store: a dict in this process."""

    _records: dict[str, BreakerRecord] = attrs.field(factory=dict)

    def get(self, name: str) -> BreakerRecord | None:
        """Returns the record of breaker `name`, or `None`."""
        return self._records.get(name)

    def set(self, name: str, record: BreakerRecord) -> None:
        """Stores the record of breaker `name`."""
        self._records[name] = record


@attrs.frozen(kw_only=True)
class BreakerTransition:
    """One state change, as passed to listeners (and emitted as an event).

    Attributes:
        reason: "failure_rate", "slow_call_rate", "consecutive_failures",
            "open_duration_elapsed", "trial_failure_rate", "trial_slow_call_rate",
            "trial_passed", "half_open_expired" or "forced".
        failure_rate: The rate the decision looked at (window, or trial calls).
        slow_call_rate: Likewise for slow calls.
        open_duration: The chosen open duration when `to_state` is OPEN, else 0.
    """

    name: str
    from_state: BreakerState
    to_state: BreakerState
    at: float
    reason: str
    failure_rate: float
    slow_call_rate: float
    open_duration: float


@attrs.frozen(kw_only=True)
class BreakerMetrics:
    """A snapshot of one breaker.

    Outcome counters are cumulative since creation and disjoint (a slow success is
    counted in `slow_successes` only). Window figures describe the sliding window
    (only applied once `buffered_calls >= minimum_calls`).

    Attributes:
        retry_after: Seconds until an OPEN breaker half-opens (`inf` when forced open).
        time_in_state: Seconds since the last transition (`None` if unknown).
    """

    name: str
    state: BreakerState
    failure_rate: float
    slow_call_rate: float
    buffered_calls: int
    buffered_failures: int
    buffered_slow_calls: int
    successes: int
    failures: int
    slow_successes: int
    slow_failures: int
    ignored: int
    cancelled: int
    not_permitted: int
    half_open_in_flight: int
    last_transition_at: float | None
    time_in_state: float | None
    retry_after: float
    open_duration: float


class BreakerListener(Protocol):
    """Called synchronously with every transition; must be quick and must not block."""

    def __call__(self, transition: BreakerTransition, /) -> None:
        """Observes one transition (an exception it raises is reported and ignored)."""


_EVENTS = {
    _OPEN: "breaker.opened",
    _HALF_OPEN: "breaker.half_opened",
    _CLOSED: "breaker.closed",
}


# --------------------------------------------------------------------------- breaker


@attrs.define(eq=False)
class CircuitBreaker:
    """A circuit breaker guarding one service; create it with `create_breaker`.

    Protocol for a guarded call: `permit = breaker.acquire()`, then exactly one of
    `record(permit, verdict, duration)` (or the `on_success` / `on_failure` /
    `on_ignored` it maps to) or `on_cancel(permit)`. The resilience pipeline does this
    for every attempt; `call` and `guard` do it around one call, judging failures with
    the breaker's `classifier`. A permit is an opaque int.
    """

    name: str
    config: BreakerConfig
    classifier: Classifier = attrs.field(repr=False)
    _store: BreakerStateStore = attrs.field(repr=False)
    _random: Callable[[], float] = attrs.field(repr=False)
    _window: Window = attrs.field(repr=False)
    _record: BreakerRecord = attrs.field(repr=False)
    _listeners: list[BreakerListener] = attrs.field(factory=list, repr=False)
    _slow_after: float = attrs.field(init=False, repr=False)
    _timed: bool = attrs.field(init=False, repr=False)
    _time_window: bool = attrs.field(init=False, repr=False)
    _below_minimum: int = attrs.field(init=False, repr=False)
    _consecutive: int = attrs.field(default=0, init=False, repr=False)
    _trial_out: int = attrs.field(default=0, init=False, repr=False)
    _trial_done: int = attrs.field(default=0, init=False, repr=False)
    _trial_failed: int = attrs.field(default=0, init=False, repr=False)
    _trial_slow: int = attrs.field(default=0, init=False, repr=False)
    _trial_last_issue: float = attrs.field(default=0.0, init=False, repr=False)
    # Cumulative outcome counters (read them through `metrics()`).
    successes: int = attrs.field(default=0, init=False, repr=False)
    failures: int = attrs.field(default=0, init=False, repr=False)
    slow_successes: int = attrs.field(default=0, init=False, repr=False)
    slow_failures: int = attrs.field(default=0, init=False, repr=False)
    ignored: int = attrs.field(default=0, init=False, repr=False)
    cancelled: int = attrs.field(default=0, init=False, repr=False)
    not_permitted: int = attrs.field(default=0, init=False, repr=False)
    _alone: Any = attrs.field(default=None, init=False, repr=False)  # a Pipeline, made on first use

    def __attrs_post_init__(self) -> None:
        self._slow_after = self.config.slow_call_duration
        self._time_window = self.config.window == "time"
        self._timed = self._time_window or not math.isinf(self._slow_after)
        self._below_minimum = self.config.minimum_calls - 1

    # ----------------------------------------------------------------- listeners

    def add_listener(self, listener: BreakerListener) -> None:
        """Calls `listener(transition)` synchronously on every state change.

        A listener must be quick and must not block; an exception it raises is
        reported as a "breaker.listener_failed" event and otherwise ignored.
        """
        self._listeners.append(listener)

    def remove_listener(self, listener: BreakerListener) -> None:
        """Stops calling `listener`; raises `ValueError` if it was not added."""
        self._listeners.remove(listener)

    # ----------------------------------------------------------------- core

    @property
    def state(self) -> BreakerState:
        """The stored state (OPEN turns HALF_OPEN only at the next `acquire`)."""
        return self._current().state

    @property
    def seen_state(self) -> BreakerState:
        """The state this process last saw, without asking the store: safe to read from
        any thread (a metric reader's)."""
        return self._record.state

    def _current(self) -> BreakerRecord:
        record = self._store.get(self.name)
        return record if record is self._record else self._sync(record)

    def _sync(self, record: BreakerRecord | None) -> BreakerRecord:
        """Adopts a record written by someone else (or re-seeds a store that lost it)."""
        old = self._record
        if record is None:
            self._store.set(self.name, old)
            return old
        self._record = record
        if record.generation != old.generation:
            self._reset_local(record.state)
        return record

    def _reset_local(self, state: BreakerState) -> None:
        self._trial_out = self._trial_done = self._trial_failed = self._trial_slow = 0
        if state is _CLOSED or state is _METRICS_ONLY:
            self._window.reset()
            self._consecutive = 0

    def acquire(self, now: float | None = None) -> int:
        """Asks for permission to call the service; not a checkpoint, never blocks.

        Args:
            now: The current time; read from `anyio.current_time()` only if needed.

        Returns:
            A permit to pass to exactly one of the `on_*` methods.

        Raises:
            CircuitOpen: The breaker is open (`retry_after` until it half-opens), forced
                open (`retry_after` is `inf`), or half-open with every trial permit
                taken (`retry_after` is the base open duration, or the time until the
                trial permits would expire if sooner).
        """
        record = self._store.get(self.name)
        if record is not self._record:
            record = self._sync(record)
        state = record.state
        if state is _CLOSED or state is _METRICS_ONLY or state is _DISABLED:
            return record.generation
        return self._acquire_slow(record, _now() if now is None else now)

    def _acquire_slow(self, record: BreakerRecord, now: float) -> int:
        state = record.state
        if state is _FORCED_OPEN:
            raise self._refuse(math.inf)
        if state is _OPEN:
            open_until = record.open_until
            if now < open_until:
                raise self._refuse(open_until - now)
            record = self._transition(_HALF_OPEN, now, "open_duration_elapsed", 0.0, 0.0)
        config = self.config
        if self._trial_out + self._trial_done >= config.half_open_permits:
            waited = now - self._trial_last_issue
            if waited < config.half_open_max_wait:
                raise self._refuse(min(config.open_duration, config.half_open_max_wait - waited))
            record = self._transition(_HALF_OPEN, now, "half_open_expired", 0.0, 0.0)
        self._trial_out += 1
        self._trial_last_issue = now
        return record.generation

    def _refuse(self, retry_after: float) -> CircuitOpen:
        """Counts a call not permitted; the error to raise (an event on the current span)."""
        self.not_permitted += 1
        add_event(
            "actorvisor.breaker.rejected",
            {
                "actorvisor.breaker": self.name,
                "actorvisor.breaker.state": self._record.state.value,
                "actorvisor.breaker.retry_after": retry_after,
            },
        )
        return CircuitOpen(self.name, retry_after)

    def on_success(self, permit: int, duration: float = 0.0, *, now: float | None = None) -> None:
        """Records a successful call that took `duration` seconds; not a checkpoint."""
        if duration > self._slow_after:
            self.slow_successes += 1
            self._on_outcome(permit, SLOW, now)
            return
        self.successes += 1
        record = self._record
        if permit != record.generation:
            return
        if record.state is _CLOSED:
            # Hot path. A fast success cannot raise either rate, unless it brings the
            # window to minimum_calls or time made older calls slide out.
            self._consecutive = 0
            window = self._window
            crossing = window.total == self._below_minimum
            if self._time_window and now is None:
                now = _now()
            if window.record_success(0.0 if now is None else now) or crossing:
                self._check_thresholds(now)
            return
        self._on_outcome(permit, 0, now)

    def _on_outcome(self, permit: int, code: int, now: float | None) -> None:
        record = self._record
        if permit != record.generation:
            return
        state = record.state
        if state is _CLOSED or state is _METRICS_ONLY:
            if code & FAILED:
                self._consecutive += 1
            else:
                self._consecutive = 0
            if self._time_window and now is None:
                now = _now()
            self._window.record(code, 0.0 if now is None else now)
            self._check_thresholds(now)
        elif state is _HALF_OPEN:
            self._record_trial(failed=bool(code & FAILED), slow=bool(code & SLOW), now=now)

    def on_failure(self, permit: int, duration: float = 0.0, *, now: float | None = None) -> None:
        """Records a failed call that took `duration` seconds; not a checkpoint."""
        if duration > self._slow_after:
            self.slow_failures += 1
            self._on_outcome(permit, FAILED | SLOW, now)
        else:
            self.failures += 1
            self._on_outcome(permit, FAILED, now)

    def on_ignored(self, permit: int) -> None:
        """Records a call whose outcome counts neither way; returns a trial permit."""
        self.ignored += 1
        self._return_permit(permit)

    def on_cancel(self, permit: int, duration: float = 0.0, *, now: float | None = None) -> None:
        """Records a cancelled or abandoned call; not a checkpoint.

        A cancellation is never a failure. A call abandoned after running longer than
        `slow_call_duration` counts as a slow call (a success that was slow): the
        service was measurably slow before the caller gave up, which is how a hung
        service reaches the slow-call rate without any attempt timeout. Any other
        cancellation counts nothing and returns its trial permit, so it never wedges
        half-open.
        """
        self.cancelled += 1
        if duration > self._slow_after:
            self.slow_successes += 1
            self._on_outcome(permit, SLOW, now)
            return
        self._return_permit(permit)

    def record(
        self,
        permit: int,
        verdict: ErrorClass | None,
        duration: float = 0.0,
        *,
        now: float | None = None,
    ) -> None:
        """Records one attempt's verdict (None: a success); not a checkpoint.

        The one mapping from a verdict to the breaker (see `actors.ErrorClass`):
        RETRYABLE and PERMANENT are failures; REJECTED (the caller's mistake, answered
        by a healthy service) is a success; THROTTLED and IGNORED count neither way
        and return a trial permit. A cancelled attempt is `on_cancel`, not a verdict.
        """
        if verdict is None:
            self.on_success(permit, duration, now=now)
            return
        outcome = verdict.breaker_outcome
        if outcome == "failure":
            self.on_failure(permit, duration, now=now)
        elif outcome == "success":
            self.on_success(permit, duration, now=now)
        else:
            self.on_ignored(permit)

    def _return_permit(self, permit: int) -> None:
        record = self._record
        if permit == record.generation and record.state is _HALF_OPEN and self._trial_out > 0:
            self._trial_out -= 1

    def _check_thresholds(self, now: float | None) -> None:
        """Opens a CLOSED breaker whose window (just updated) crosses a threshold."""
        if self._record.state is not _CLOSED:
            return
        window = self._window
        total = window.total
        config = self.config
        consecutive = config.consecutive_failures
        if consecutive is not None and self._consecutive >= consecutive:
            reason = "consecutive_failures"
        elif total < config.minimum_calls:
            return
        elif window.failures / total >= config.failure_rate_threshold:
            reason = "failure_rate"
        elif window.slow / total >= config.slow_call_rate_threshold:
            reason = "slow_call_rate"
        else:
            return
        failure_rate = window.failures / total if total else 0.0
        slow_rate = window.slow / total if total else 0.0
        now = _now() if now is None else now
        self._transition(_OPEN, now, reason, failure_rate, slow_rate)

    def _record_trial(self, *, failed: bool, slow: bool, now: float | None) -> None:
        if self._trial_out <= 0:  # reported twice: ignore
            return
        self._trial_out -= 1
        self._trial_done += 1
        self._trial_failed += failed
        self._trial_slow += slow
        permits = self.config.half_open_permits
        if self._trial_done < permits:
            return
        failure_rate = self._trial_failed / permits
        slow_rate = self._trial_slow / permits
        now = _now() if now is None else now
        if failure_rate >= self.config.failure_rate_threshold:
            self._transition(_OPEN, now, "trial_failure_rate", failure_rate, slow_rate)
        elif slow_rate >= self.config.slow_call_rate_threshold:
            self._transition(_OPEN, now, "trial_slow_call_rate", failure_rate, slow_rate)
        else:
            self._transition(_CLOSED, now, "trial_passed", failure_rate, slow_rate)

    def _transition(
        self,
        to: BreakerState,
        now: float,
        reason: str,
        failure_rate: float,
        slow_call_rate: float,
    ) -> BreakerRecord:
        old = self._record
        config = self.config
        duration = base = 0.0
        if to is _OPEN:
            if old.state is _HALF_OPEN and reason != "forced":
                base = min(
                    (old.open_base or config.open_duration) * config.open_backoff_multiplier,
                    config.max_open_duration,
                )
            else:
                base = config.open_duration
            duration = base * (1.0 - config.open_jitter * self._random())
        elif to is _HALF_OPEN:
            base = old.open_base
        record = BreakerRecord(
            state=to,
            generation=old.generation + 1,
            since=now,
            open_duration=duration,
            open_base=base,
        )
        self._store.set(self.name, record)
        self._record = record
        self._reset_local(to)
        transition = BreakerTransition(
            name=self.name,
            from_state=old.state,
            to_state=to,
            at=now,
            reason=reason,
            failure_rate=failure_rate,
            slow_call_rate=slow_call_rate,
            open_duration=duration,
        )
        if reason == "forced":
            event = "breaker.state_forced"
        elif reason == "half_open_expired":
            event = "breaker.half_open_expired"
        else:
            event = _EVENTS[to]
        emit(
            event,
            level="warning" if to is _OPEN or to is _FORCED_OPEN else "info",
            name=self.name,
            from_state=old.state.value,
            to_state=to.value,
            reason=reason,
            failure_rate=failure_rate,
            slow_call_rate=slow_call_rate,
            open_duration=duration,
        )
        add_event(
            "actorvisor.breaker.transition",
            {
                "actorvisor.breaker": self.name,
                "actorvisor.breaker.from": old.state.value,
                "actorvisor.breaker.to": to.value,
                "actorvisor.breaker.reason": reason,
            },
        )
        for listener in tuple(self._listeners):
            try:
                listener(transition)
            except Exception as exc:
                emit(
                    "breaker.listener_failed",
                    level="error",
                    name=self.name,
                    error=f"{type(exc).__name__}: {exc}",
                )
        return record

    def force(self, state: BreakerState, *, now: float | None = None) -> None:
        """Moves the breaker to `state` by hand ("breaker.state_forced" event).

        CLOSED resets the window and the backoff; OPEN opens for the base open
        duration (with jitter); HALF_OPEN starts a trial round; DISABLED,
        FORCED_OPEN and METRICS_ONLY stay until forced again. Calls in flight from
        before report into totals only. Not a checkpoint.
        """
        self._current()
        self._transition(state, _now() if now is None else now, "forced", 0.0, 0.0)

    def reset(self, *, now: float | None = None) -> None:
        """Forces CLOSED: forgets the window and the open-duration backoff."""
        self.force(_CLOSED, now=now)

    def metrics(self, now: float | None = None) -> BreakerMetrics:
        """Returns a snapshot; call it from the event loop's thread (or pass `now`)."""
        now = _now() if now is None else now
        record = self._current()
        window = self._window
        window.advance(now)
        total = window.total
        state = record.state
        if state is _OPEN:
            retry_after = max(0.0, record.open_until - now)
        elif state is _FORCED_OPEN:
            retry_after = math.inf
        else:
            retry_after = 0.0
        return BreakerMetrics(
            name=self.name,
            state=state,
            failure_rate=window.failures / total if total else 0.0,
            slow_call_rate=window.slow / total if total else 0.0,
            buffered_calls=total,
            buffered_failures=window.failures,
            buffered_slow_calls=window.slow,
            successes=self.successes,
            failures=self.failures,
            slow_successes=self.slow_successes,
            slow_failures=self.slow_failures,
            ignored=self.ignored,
            cancelled=self.cancelled,
            not_permitted=self.not_permitted,
            half_open_in_flight=self._trial_out if state is _HALF_OPEN else 0,
            last_transition_at=record.since,
            time_in_state=None if record.since is None else now - record.since,
            retry_after=retry_after,
            open_duration=record.open_duration,
        )

    # ----------------------------------------------------------------- async API

    @property
    def timed(self) -> bool:
        """Whether results need a duration (slow-call rate or a time window); when False,
        `on_success(permit)` / `on_exception(permit, exc)` need no clock reads."""
        return self._timed

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Awaits `fn(*args, **kwargs)` under the breaker (a pipeline of this one layer).

        Checkpoints are those of `fn` only: a rejection raises before `fn` runs.
        Failures are judged by `classifier`; cancellation returns the permit, counts
        nothing, and propagates.

        Raises:
            CircuitOpen: The breaker does not permit the call (see `acquire`).
        """
        pipeline = self._alone
        if pipeline is None:
            from actors.resilience._pipeline import Pipeline

            pipeline = self._alone = Pipeline(self.name, self.classifier, breaker=self)
        result: T = await pipeline.call(fn, args, kwargs, None)
        return result

    def guard(self) -> AbstractAsyncContextManager[None]:
        """`async with breaker.guard():` runs the block under the breaker.

        Entering is not a checkpoint and raises `CircuitOpen` when not permitted;
        the block's exception is classified as in `call` and always propagates.
        """
        return _Guard(self)


class _Guard(AbstractAsyncContextManager[None]):
    __slots__ = ("_breaker", "_permit", "_start")

    def __init__(self, breaker: CircuitBreaker) -> None:
        self._breaker = breaker
        self._permit = 0
        self._start = 0.0

    async def __aenter__(self) -> None:
        breaker = self._breaker
        self._permit = breaker.acquire()
        if breaker._timed:
            self._start = _now()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        breaker = self._breaker
        now: float | None = None
        duration = 0.0
        if breaker._timed:
            end = now = _now()
            duration = end - self._start
        if exc is None:
            breaker.on_success(self._permit, duration, now=now)
        elif isinstance(exc, Exception):
            breaker.record(self._permit, breaker.classifier.classify(exc), duration, now=now)
        else:
            breaker.on_cancel(self._permit)


def create_breaker(
    name: str,
    config: BreakerConfig | None = None,
    *,
    store: BreakerStateStore | None = None,
    random: Callable[[], float] = _random_module.random,
    listeners: list[BreakerListener] | None = None,
    classifier: Classifier | None = None,
    now: float | None = None,
) -> CircuitBreaker:
    """Creates a breaker, or attaches to the record a shared `store` already holds.

    Args:
        name: The breaker's name (usually the service name), used in errors/events.
        config: Defaults to `BreakerConfig()`.
        store: Defaults to a private `InMemoryBreakerStore`.
        random: Returns a float in [0, 1) for the open-duration jitter.
        listeners: Called synchronously with every `BreakerTransition`.
        classifier: Judges failures in `call` and `guard` (inside a pipeline, the
            pipeline's classifier does); defaults to `ErrorClassifier()`.
        now: Creation time; defaults to `anyio.current_time()` when in an event loop.
    """
    config = BreakerConfig() if config is None else config
    store = InMemoryBreakerStore() if store is None else store
    window: Window = (
        TimeWindow(config.window_size)
        if config.window == "time"
        else CountWindow(config.window_size)
    )
    record = store.get(name)
    if record is None:
        record = BreakerRecord(state=_CLOSED, since=now if now is not None else _now_or_none())
        store.set(name, record)
    return CircuitBreaker(
        name,
        config,
        classifier if classifier is not None else ErrorClassifier(),
        store,
        random,
        window,
        record,
        list(listeners or ()),
    )
