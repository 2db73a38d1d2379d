"""Retrying on tenacity, with the first attempt outside it.

`RetryPolicy` is the frozen configuration; a `Retrier` (one per service, made by
`create_retrier`) owns the runtime state: the retry budget, the jitter source and the
metrics. ``await retrier.call(fn, *args)`` runs the first attempt as a plain
``await``: on success nothing else happens (no tenacity object, no clock read, no
cancel scope unless an attempt timeout is configured). Only a retryable failure enters
`tenacity.AsyncRetrying`, seeded with that failure, whose stop / wait / retry
strategies are built from the policy and which sleeps with `anyio.sleep` (so it runs
on asyncio and trio alike).

A retry happens only if every check passes, in this order:

1. the failure is `ErrorClass.RETRYABLE` (else: re-raised; a permanent one counts as
   a "permanent" give-up);
2. fewer than `RetryPolicy.attempts` attempts were made ("attempts");
3. the server asked for no delay above `RetryPolicy.max_server_delay` ("delay_cap":
   fail fast, do not wait minutes for a quota window);
4. the sleep would end before the deadline: the earliest of the caller's ``deadline``,
   the deadline of the actor message being handled, and the start plus
   `RetryPolicy.deadline` ("deadline");
5. the retry budget has a token ("budget").

Giving up re-raises the last failure unchanged (never a wrapper). Cancellation is
never caught, classified, counted or retried.
"""

from __future__ import annotations

import functools
import math
import random as _random
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, Literal, ParamSpec, TypeVar, TypeVarTuple

import anyio
import attrs
import tenacity

from actors._classify import (
    Classifier,
    DatabaseClassifier,
    ErrorClass,
    ErrorClassifier,
    ErrorMetrics,
    LLMClassifier,
    MCPClassifier,
    correlation_fields,
)
from actors._envelope import current_deadline
from actors._errors import ConfigError
from actors._events import emit
from actors._validate import at_least, non_negative, optional, positive, positive_int
from actors.resilience._budget import RetryBudget
from actors.resilience._retry_after import server_delay

__all__ = [
    "GIVE_UP_REASONS",
    "Retrier",
    "RetryMetrics",
    "RetryPolicy",
    "create_retrier",
    "retry_testing_mode",
]

T = TypeVar("T")
P = ParamSpec("P")
Ts = TypeVarTuple("Ts")

GiveUpReason = Literal["attempts", "deadline", "budget", "delay_cap", "permanent"]
GIVE_UP_REASONS: Final[tuple[GiveUpReason, ...]] = (
    "attempts",
    "deadline",
    "budget",
    "delay_cap",
    "permanent",
)


def _unit_interval(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or not 0 <= value <= 1
    ):
        raise ConfigError(attr.name, value, "must be a number in [0, 1]")


def _finite(_inst: Any, attr: attrs.Attribute[Any], value: float) -> None:
    if math.isinf(value):
        raise ConfigError(attr.name, value, "must be finite")


def _not_below_initial(inst: Any, attr: attrs.Attribute[Any], value: float) -> None:
    if value < inst.backoff_initial:
        raise ConfigError(
            attr.name, value, f"must be >= backoff_initial ({inst.backoff_initial:g})"
        )


def _is_classifier(_inst: Any, attr: attrs.Attribute[Any], value: object) -> None:
    if not callable(getattr(value, "classify", None)):
        raise ConfigError(attr.name, value, "must have a classify(exc) -> ErrorClass method")


_PRESETS: Final[dict[str, dict[str, Any]]] = {
    "llm": {
        "attempts": 4,
        "backoff_initial": 0.5,
        "backoff_max": 30.0,
        "max_server_delay": 60.0,
        "classifier": LLMClassifier(),
    },
    "database": {
        "attempts": 3,
        "backoff_initial": 0.05,
        "backoff_max": 2.0,
        "classifier": DatabaseClassifier(),
    },
    "mcp": {
        "attempts": 3,
        "backoff_initial": 0.2,
        "backoff_max": 5.0,
        "classifier": MCPClassifier(),
    },
}
"""The per-service presets (DESIGN.md section 3); every other field is the default."""


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How to retry one service's calls. All durations are in seconds.

    Attributes:
        attempts: Total attempts including the first (1 = never retry).
        deadline: Overall budget from the start of the call; no retry sleeps past it.
            It does not cancel an attempt in flight (that is `attempt_timeout`'s and
            the caller's cancel scope's job). ``None`` = no overall deadline.
        attempt_timeout: Each attempt runs under ``anyio.fail_after(attempt_timeout)``
            and its `TimeoutError` is classified like any failure. ``None`` = none
            (then no cancel scope is created).
        backoff_initial: Cap of the first retry's delay.
        backoff_max: Largest cap of any backoff delay.
        backoff_multiplier: Growth of the cap per retry (>= 1).
        max_server_delay: Largest server-requested delay (``retry-after`` and
            friends) honoured; beyond it the policy gives up at once.
        budget_ratio: Retries allowed per request over `budget_ttl`, in [0, 1];
            ``None`` disables the budget.
        budget_min_per_second: Retries always allowed per second (the floor).
        budget_ttl: Window of the budget.
        classifier: Decides which failures are retryable.

    The delay before retry ``n`` (0 for the first retry) is full jitter,
    ``uniform(0, min(backoff_max, backoff_initial * backoff_multiplier ** n))``,
    raised to the server-requested delay when one is given.
    """

    attempts: int = attrs.field(default=3, validator=positive_int)
    deadline: float | None = attrs.field(default=None, validator=optional(positive))
    attempt_timeout: float | None = attrs.field(default=None, validator=optional(positive))
    backoff_initial: float = attrs.field(default=0.1, validator=non_negative)
    backoff_max: float = attrs.field(default=10.0, validator=[non_negative, _not_below_initial])
    backoff_multiplier: float = attrs.field(default=2.0, validator=at_least(1))
    max_server_delay: float = attrs.field(default=60.0, validator=non_negative)
    budget_ratio: float | None = attrs.field(default=0.2, validator=optional(_unit_interval))
    budget_min_per_second: float = attrs.field(default=10.0, validator=[non_negative, _finite])
    budget_ttl: float = attrs.field(default=10.0, validator=[positive, _finite])
    classifier: Classifier = attrs.field(factory=ErrorClassifier, validator=_is_classifier)

    @classmethod
    def for_llm(cls, **changes: Any) -> RetryPolicy:
        """LLM HTTP APIs: 4 attempts, 0.5 s -> 30 s, server delays up to 60 s, `LLMClassifier`."""
        return cls(**(_PRESETS["llm"] | changes))

    @classmethod
    def for_database(cls, **changes: Any) -> RetryPolicy:
        """SQL databases: 3 attempts, 50 ms -> 2 s, `DatabaseClassifier`."""
        return cls(**(_PRESETS["database"] | changes))

    @classmethod
    def for_mcp(cls, **changes: Any) -> RetryPolicy:
        """MCP tool servers: 3 attempts, 0.2 s -> 5 s, `MCPClassifier`."""
        return cls(**(_PRESETS["mcp"] | changes))

    def backoff_cap(self, retry: int) -> float:
        """Returns the jitter cap before retry number `retry` (0 for the first retry)."""
        try:
            raw = self.backoff_initial * self.backoff_multiplier**retry
        except OverflowError:
            raw = math.inf
        return min(self.backoff_max, raw)


@attrs.define(eq=False)
class RetryMetrics:
    """Counters of one `Retrier`.

    Attributes:
        calls: Calls made through `Retrier.call`.
        retries: Retries scheduled (sleeps started).
        give_ups: Failed calls re-raised, by reason (see `GIVE_UP_REASONS`).
            Cancellation and `ErrorClass.IGNORED` failures are not give-ups.
        budget_denied: Retries refused by the budget (also ``give_ups["budget"]``).
    """

    calls: int = 0
    retries: int = 0
    give_ups: dict[GiveUpReason, int] = attrs.field(
        factory=lambda: dict.fromkeys(GIVE_UP_REASONS, 0)
    )
    budget_denied: int = 0


@attrs.define
class _TestingMode:
    active: bool = False
    attempts: int | None = None


_testing: Final = _TestingMode()


@contextmanager
def retry_testing_mode(*, attempts: int | None = None) -> Iterator[None]:
    """Turns every backoff and server-requested delay into zero while active.

    Decisions stay the same (classification, delay cap, budget, deadline), only the
    sleeps go. Process-wide, like ``stamina.set_testing``; nests, and restores the
    previous mode on exit.

    Args:
        attempts: If given, caps every policy's attempts at this number.
    """
    if attempts is not None and (isinstance(attempts, bool) or attempts < 1):
        raise ConfigError("attempts", attempts, "must be an integer >= 1")
    previous = (_testing.active, _testing.attempts)
    _testing.active, _testing.attempts = True, attempts
    try:
        yield
    finally:
        _testing.active, _testing.attempts = previous


@attrs.define(eq=False)
class Retrier:
    """Runs calls under one service's `RetryPolicy`; made by `create_retrier`.

    Attributes:
        policy: The frozen configuration.
        service: Service name used in events and error metrics.
        metrics: This retrier's counters.
        errors: Classified failures per ``(service, class)``, every attempt counted.
    """

    policy: RetryPolicy
    service: str
    metrics: RetryMetrics
    errors: ErrorMetrics
    _random: Callable[[], float]
    _budget: RetryBudget | None

    @property
    def budget(self) -> RetryBudget | None:
        """The retry budget's runtime state (``None`` when disabled)."""
        return self._budget

    async def call(
        self,
        fn: Callable[[*Ts], Awaitable[T]],
        /,
        *args: *Ts,
        deadline: float | None = None,
    ) -> T:
        """Awaits ``fn(*args)``, retrying retryable failures per the policy.

        Args:
            fn: The async function; bind keyword arguments with `functools.partial`
                (or use `wrap`).
            *args: Its positional arguments.
            deadline: Absolute time on the ``anyio.current_time()`` clock after which
                no retry sleep may end. The earliest of this, the deadline of the
                message being handled (``actors._envelope.current_deadline()``, read
                only on the failure path) and the start plus `RetryPolicy.deadline`
                applies.

        Returns:
            What `fn` returned.

        Raises:
            Exception: The last failure, unchanged, when the policy gives up or the
                failure is not retryable.

        Cancellation: a checkpoint whenever `fn` is one, and during retry sleeps. A
        cancellation propagates at once: it is never classified, counted or retried,
        and the attempt in flight is left to `fn`'s own cancellation behaviour.
        """
        # `_begin`, inlined: this is the success path of every service call.
        self.metrics.calls += 1
        budget = self._budget
        if budget is not None:
            budget.pending += 1
            if budget.since is None:
                budget.since = anyio.current_time()
        policy = self.policy
        started = None if policy.deadline is None else anyio.current_time()
        timeout = policy.attempt_timeout
        try:
            if timeout is None:
                return await fn(*args)
            with anyio.fail_after(timeout):
                return await fn(*args)
        except Exception as exc:
            if not self._first_failed(exc):
                raise
            first = exc
        return await self._retry(fn, args, {}, first, started=started, deadline=deadline)

    def wrap(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        """Returns `fn` wrapped so that every call goes through this retrier.

        The wrapper keeps `fn`'s signature, name and docstring and forwards keyword
        arguments too. Its deadline is the handled message's (see `call`) and the
        policy's own.
        """

        @functools.wraps(fn)
        async def retrying(*args: P.args, **kwargs: P.kwargs) -> T:
            started = self._begin()
            timeout = self.policy.attempt_timeout
            try:
                if timeout is None:
                    return await fn(*args, **kwargs)
                with anyio.fail_after(timeout):
                    return await fn(*args, **kwargs)
            except Exception as exc:
                if not self._first_failed(exc):
                    raise
                first = exc
            return await self._retry(fn, args, kwargs, first, started=started, deadline=None)

        return retrying

    def _begin(self) -> float | None:
        """Counts the call and deposits it in the budget; returns the start if needed."""
        self.metrics.calls += 1
        budget = self._budget
        if budget is not None:
            budget.pending += 1
            if budget.since is None:
                budget.since = anyio.current_time()
        return None if self.policy.deadline is None else anyio.current_time()

    def _first_failed(self, exc: Exception) -> bool:
        """Classifies the first attempt's failure; returns whether to enter tenacity."""
        policy = self.policy
        error_class = policy.classifier.classify(exc)
        self.errors.record(self.service, error_class)
        if error_class is not ErrorClass.RETRYABLE:
            if error_class is ErrorClass.PERMANENT:
                self._give_up("permanent", exc, 1)
            return False
        if policy.attempts == 1 or _testing.attempts == 1:
            self._give_up("attempts", exc, 1)
            return False
        return True

    async def _retry(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        first: Exception,
        *,
        started: float | None,
        deadline: float | None,
    ) -> T:
        limit = current_deadline()  # the handled message's deadline; inf outside a handler
        if deadline is not None:
            limit = min(limit, deadline)
        if started is not None and self.policy.deadline is not None:
            limit = min(limit, started + self.policy.deadline)
        run = _RetryRun(self, None if math.isinf(limit) else limit)
        retrying = tenacity.AsyncRetrying(
            sleep=anyio.sleep,
            stop=run.stop,
            wait=run.wait,
            retry=run.retry,
            before_sleep=run.before_sleep,
            reraise=True,
        )
        retrying.begin()
        state = tenacity.RetryCallState(retry_object=retrying, fn=None, args=(), kwargs={})
        state.set_exception((type(first), first, first.__traceback__))
        del first
        timeout = self.policy.attempt_timeout
        while True:
            action = await retrying.iter(retry_state=state)
            if isinstance(action, tenacity.DoAttempt):
                try:
                    if timeout is None:
                        result = await fn(*args, **kwargs)
                    else:
                        with anyio.fail_after(timeout):
                            result = await fn(*args, **kwargs)
                except Exception as exc:
                    state.set_exception((type(exc), exc, exc.__traceback__))
                else:
                    state.set_result(result)
            elif isinstance(action, tenacity.DoSleep):
                state.prepare_for_next_attempt()
                await anyio.sleep(action)
            else:
                result_value: T = action
                return result_value

    def _give_up(self, reason: GiveUpReason, exc: BaseException, attempts: int) -> None:
        self.metrics.give_ups[reason] += 1
        emit(
            "retry.gave_up",
            level="warning",
            service=self.service,
            reason=reason,
            attempts=attempts,
            error=type(exc).__name__,
            **correlation_fields(),
        )


def _failure(state: tenacity.RetryCallState) -> BaseException | None:
    outcome = state.outcome
    if outcome is None or not outcome.failed:
        return None
    return outcome.exception()


@attrs.define(eq=False)
class _RetryRun:
    """Per-call strategies handed to tenacity once the first attempt has failed."""

    retrier: Retrier
    limit: float | None
    server_delay: float | None = None

    def retry(self, state: tenacity.RetryCallState) -> bool:
        exc = _failure(state)
        if exc is None:
            return False
        retrier = self.retrier
        error_class = retrier.policy.classifier.classify(exc)
        if state.attempt_number > 1:  # the first failure was counted by `call`
            retrier.errors.record(retrier.service, error_class)
        if error_class is ErrorClass.RETRYABLE:
            return True
        if error_class is ErrorClass.PERMANENT:
            retrier._give_up("permanent", exc, state.attempt_number)
        return False

    def wait(self, state: tenacity.RetryCallState) -> float:
        exc = _failure(state)
        retrier = self.retrier
        self.server_delay = None if exc is None else server_delay(exc)
        if _testing.active:
            return 0.0
        cap = retrier.policy.backoff_cap(state.attempt_number - 1)
        delay = retrier._random() * cap
        if self.server_delay is not None:
            delay = max(delay, self.server_delay)
        return delay

    def stop(self, state: tenacity.RetryCallState) -> bool:
        retrier = self.retrier
        policy = retrier.policy
        attempts = policy.attempts
        if _testing.attempts is not None:
            attempts = min(attempts, _testing.attempts)
        reason: GiveUpReason | None = None
        if state.attempt_number >= attempts:
            reason = "attempts"
        elif self.server_delay is not None and self.server_delay > policy.max_server_delay:
            reason = "delay_cap"
        else:
            budget = retrier._budget
            if self.limit is not None or budget is not None:
                now = anyio.current_time()
                if self.limit is not None and now + state.upcoming_sleep >= self.limit:
                    reason = "deadline"
                elif budget is not None and not budget.try_withdraw(now):
                    retrier.metrics.budget_denied += 1
                    reason = "budget"
        if reason is None:
            return False
        exc = _failure(state)
        retrier._give_up(reason, exc if exc is not None else Exception(), state.attempt_number)
        return True

    def before_sleep(self, state: tenacity.RetryCallState) -> None:
        retrier = self.retrier
        retrier.metrics.retries += 1
        exc = _failure(state)
        fields: dict[str, Any] = {}
        if self.server_delay is not None:
            fields["server_delay"] = self.server_delay
        emit(
            "retry.scheduled",
            level="warning",
            service=retrier.service,
            attempt=state.attempt_number,
            delay=state.upcoming_sleep,
            error=type(exc).__name__,
            **fields,
            **correlation_fields(),
        )


def create_retrier(
    policy: RetryPolicy,
    *,
    service: str = "default",
    random: Callable[[], float] | None = None,
    errors: ErrorMetrics | None = None,
) -> Retrier:
    """Makes the runtime retrier of one service.

    Args:
        policy: The configuration.
        service: Name used in events and metrics.
        random: Jitter source returning floats in [0, 1); defaults to
            `random.random`. Inject ``random.Random(seed).random`` (or a constant) for
            exact delays in tests.
        errors: Error metrics to share (e.g. with the service's breaker); a new one
            by default.
    """
    budget = None
    if policy.budget_ratio is not None:
        budget = RetryBudget(
            ratio=policy.budget_ratio,
            min_per_second=policy.budget_min_per_second,
            ttl=policy.budget_ttl,
        )
    return Retrier(
        policy=policy,
        service=service,
        metrics=RetryMetrics(),
        errors=errors if errors is not None else ErrorMetrics(),
        random=random if random is not None else _random.random,
        budget=budget,
    )
