"""Retry policies, and the retry decisions the pipeline asks tenacity to make.

`RetryPolicy` is the frozen configuration; a `Retrier` (one per service, made by
`create_retrier`) owns the runtime state: the retry budget, the jitter source and the
metrics. The resilience pipeline (`actors.resilience._pipeline`) runs the attempts;
after a failed attempt whose verdict is retried (`ErrorClass.RETRYABLE` or
`THROTTLED`), it asks the retrier for the next delay. The first attempt runs outside
tenacity: on success nothing of it is touched. Only after the first retryable failure
is a `tenacity.Retrying` made, seeded with that failure, whose stop and wait
strategies are built from the policy; the pipeline sleeps the delay it returns with
`anyio.sleep` (so it runs on asyncio and trio alike).

A retry happens only if every check passes, in this order:

1. the verdict is retried (else the failure is raised; PERMANENT and REJECTED count
   as a "not_retryable" give-up);
2. fewer than `RetryPolicy.attempts` attempts were made ("attempts");
3. the server asked for no delay above `RetryPolicy.max_server_delay` ("delay_cap":
   fail fast, do not wait minutes for a quota window);
4. the sleep would end before the limit: the earliest of the caller's deadline, the
   deadline of the actor message being handled, the enclosing cancel scopes'
   deadline and the start plus `RetryPolicy.timeout` ("deadline");
5. the retry budget has a token ("budget").

Giving up raises the last failure unchanged; a call whose attempt in flight is cut by
`RetryPolicy.timeout` ends with `DeadlineExceeded` (also a "deadline" give-up).
Cancellation is never caught, classified, counted or retried.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, TypeVarTuple

import attrs
import tenacity

from actors._classify import Classifier, ErrorClassifier
from actors._clock import now as _now
from actors._envelope import current_correlation_id
from actors._errors import ConfigError
from actors._events import emit
from actors._tracing import add_event, error_type
from actors._validate import (
    at_least,
    finite_positive,
    non_negative,
    optional,
    positive_int,
    unit_interval,
)
from actors.resilience._budget import RetryBudget
from actors.resilience._retry_after import server_delay

if TYPE_CHECKING:
    pass

__all__ = [
    "GIVE_UP_REASONS",
    "Retrier",
    "RetryMetrics",
    "RetryPolicy",
    "create_retrier",
    "retry_testing_mode",
]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

GiveUpReason = Literal["attempts", "deadline", "budget", "delay_cap", "not_retryable"]
GIVE_UP_REASONS: Final[tuple[GiveUpReason, ...]] = (
    "attempts",
    "deadline",
    "budget",
    "delay_cap",
    "not_retryable",
)


def _not_below_initial(inst: Any, attr: attrs.Attribute[Any], value: float) -> None:
    if value < inst.backoff_initial:
        raise ConfigError(
            attr.name, value, f"must be >= backoff_initial ({inst.backoff_initial:g})"
        )


def _preset(kind: str, changes: dict[str, Any]) -> RetryPolicy:
    from actors._kinds import kind_named

    return attrs.evolve(kind_named(kind).retry, **changes)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How to retry one service's calls. All durations are in seconds.

    Attributes:
        attempts: Total attempts including the first (1 = never retry).
        timeout: Overall budget from the start of the call, retries, backoff sleeps and
            the attempt in flight included: when it passes, the attempt in flight is
            cancelled and the call ends with `DeadlineExceeded`. None: no overall
            budget (the caller's deadline still applies).
        attempt_timeout: Each attempt is cancelled after this long and counts as an
            `AttemptTimeout` (a RETRYABLE failure the breaker counts). None: none.
        backoff_initial: Cap of the first retry's delay.
        backoff_max: Largest cap of any backoff delay.
        backoff_multiplier: Growth of the cap per retry (>= 1).
        max_server_delay: Largest server-requested delay (``retry-after`` and
            friends) honoured; beyond it the policy gives up at once.
        budget_ratio: Retries allowed per request over `budget_ttl`, in [0, 1];
            None disables the budget.
        budget_min_per_second: Retries always allowed per second (the floor).
        budget_ttl: Window of the budget.

    The delay before retry ``n`` (0 for the first retry) is full jitter,
    ``uniform(0, min(backoff_max, backoff_initial * backoff_multiplier ** n))``,
    raised to the server-requested delay when one is given.
    """

    attempts: int = attrs.field(default=3, validator=positive_int)
    timeout: float | None = attrs.field(default=None, validator=optional(finite_positive))
    attempt_timeout: float | None = attrs.field(default=None, validator=optional(finite_positive))
    backoff_initial: float = attrs.field(default=0.1, validator=non_negative)
    backoff_max: float = attrs.field(default=10.0, validator=[non_negative, _not_below_initial])
    backoff_multiplier: float = attrs.field(default=2.0, validator=at_least(1))
    max_server_delay: float = attrs.field(default=60.0, validator=non_negative)
    budget_ratio: float | None = attrs.field(default=0.2, validator=optional(unit_interval))
    budget_min_per_second: float = attrs.field(default=10.0, validator=[non_negative])
    budget_ttl: float = attrs.field(default=10.0, validator=finite_positive)

    @budget_min_per_second.validator
    def _check_floor(self, attr: attrs.Attribute[float], value: float) -> None:
        if math.isinf(value):
            raise ConfigError(attr.name, value, "must be finite")

    @classmethod
    def for_llm(cls, **changes: Any) -> RetryPolicy:
        """LLM HTTP APIs: 4 attempts, 0.5 s -> 30 s, server delays up to 60 s."""
        return _preset("llm", changes)

    @classmethod
    def for_http(cls, **changes: Any) -> RetryPolicy:
        """Other HTTP APIs: 3 attempts, 0.2 s -> 10 s, server delays up to 30 s."""
        return _preset("http", changes)

    @classmethod
    def for_database(cls, **changes: Any) -> RetryPolicy:
        """SQL databases: 3 attempts, 50 ms -> 2 s, 5 s per attempt."""
        return _preset("database", changes)

    @classmethod
    def for_mcp(cls, **changes: Any) -> RetryPolicy:
        """MCP tool servers: 3 attempts, 0.2 s -> 5 s, 20 s per attempt."""
        return _preset("mcp", changes)

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
        calls: Calls made through the retrier.
        retries: Retries scheduled (sleeps started).
        give_ups: Failed calls raised, by reason (see `GIVE_UP_REASONS`). Cancellation
            and `ErrorClass.IGNORED` failures are not give-ups, except a call cut by
            `RetryPolicy.timeout` (`DeadlineExceeded`: a "deadline" give-up).
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
    """One service's retry state under its `RetryPolicy`; made by `create_retrier`.

    The resilience pipeline drives it; `call` and `wrap` run a function through a
    pipeline that only retries (judged by `classifier`).

    Attributes:
        policy: The frozen configuration.
        service: Service name used in events.
        classifier: Judges failures when the retrier is used on its own (`call`).
        metrics: This retrier's counters.
    """

    policy: RetryPolicy
    service: str
    classifier: Classifier
    metrics: RetryMetrics
    _random: Callable[[], float]
    _budget: RetryBudget | None
    _alone: Any = attrs.field(default=None, init=False, repr=False)  # a Pipeline, made on first use

    @property
    def budget(self) -> RetryBudget | None:
        """The retry budget's runtime state (None when disabled)."""
        return self._budget

    @property
    def attempts(self) -> int:
        """The attempts the policy allows (capped by `retry_testing_mode`)."""
        attempts = self.policy.attempts
        return attempts if _testing.attempts is None else min(attempts, _testing.attempts)

    def begin(self) -> None:
        """Counts a call and deposits it in the retry budget (the success path's part)."""
        self.metrics.calls += 1
        budget = self._budget
        if budget is not None:
            budget.pending += 1
            if budget.since is None:
                budget.since = _now()

    def start(self, limit: float) -> RetryRun:
        """Starts deciding retries for a call whose first attempt failed retryably.

        Args:
            limit: Absolute time no retry sleep may end after (`inf`: none).
        """
        return RetryRun(self, limit)

    def gave_up(self, reason: GiveUpReason, exc: BaseException, attempts: int) -> None:
        """Counts and reports a call that ends with `exc` after `attempts` attempts."""
        self.metrics.give_ups[reason] += 1
        emit(
            "retry.gave_up",
            level="warning",
            service=self.service,
            reason=reason,
            attempts=attempts,
            error=type(exc).__name__,
            correlation_id=current_correlation_id(),
        )
        add_event(
            "actorvisor.retry.gave_up",
            {
                "actorvisor.service": self.service,
                "actorvisor.retry.reason": reason,
                "actorvisor.attempt": attempts,
                "error.type": error_type(exc),
            },
        )

    async def call(
        self,
        fn: Callable[[*Ts], Awaitable[T]],
        /,
        *args: *Ts,
        deadline: float | None = None,
    ) -> T:
        """Awaits ``fn(*args)``, retrying what `classifier` calls retried.

        Args:
            fn: The async function (bind keyword arguments with `functools.partial`).
            *args: Its positional arguments.
            deadline: Absolute `anyio.current_time()` after which no retry sleep may
                end (with the handled message's deadline, the enclosing cancel scopes'
                and `RetryPolicy.timeout`, the earliest applies).

        Returns:
            What `fn` returned.

        Raises:
            Exception: The last failure, unchanged, when the policy gives up or the
                failure is not retried; `AttemptTimeout` / `DeadlineExceeded` when
                the policy's timeouts cut the call.

        Cancellation: a checkpoint whenever `fn` is one and during retry sleeps; a
        cancellation propagates at once and is never classified, counted or retried.
        """
        pipeline = self._alone
        if pipeline is None:
            from actors.resilience._pipeline import Pipeline

            pipeline = self._alone = Pipeline(self.service, self.classifier, retrier=self)
        result: T = await pipeline.call(fn, args, {}, deadline)
        return result

    def wrap(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        """Returns `fn` wrapped so that every call goes through this retrier."""
        from actors.resilience._decorators import resilient

        return resilient(retry=self, classifier=self.classifier, name=self.service)(fn)


class RetryRun:
    """The retry decisions of one call, made by a `tenacity.Retrying` (no sleeping)."""

    __slots__ = ("_retrying", "_server_delay", "_state", "limit", "retrier")

    def __init__(self, retrier: Retrier, limit: float) -> None:
        self.retrier = retrier
        self.limit = limit
        self._server_delay: float | None = None
        self._retrying = tenacity.Retrying(
            sleep=_never_sleep,
            stop=self._stop,
            wait=self._wait,
            retry=_always,
            before_sleep=self._before_sleep,
            retry_error_callback=_give_up,
        )
        self._retrying.begin()
        self._state = tenacity.RetryCallState(
            retry_object=self._retrying, fn=None, args=(), kwargs={}
        )

    @property
    def attempt(self) -> int:
        """The number of the attempt that failed last (1 for the first)."""
        return self._state.attempt_number

    def next_delay(self, exc: BaseException) -> float | None:
        """The sleep before retrying after `exc` (a retried verdict), or None to give up.

        A give-up is counted and reported here.
        """
        state = self._state
        state.set_exception((type(exc), exc, exc.__traceback__))
        action = self._retrying.iter(retry_state=state)
        if action is _GIVE_UP:
            return None
        state.prepare_for_next_attempt()  # also drops the failure (and its traceback)
        assert isinstance(action, tenacity.DoSleep)
        return float(action)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = _failure(state)
        self._server_delay = None if exc is None else server_delay(exc)
        if _testing.active:
            return 0.0
        cap = self.retrier.policy.backoff_cap(state.attempt_number - 1)
        delay = self.retrier._random() * cap
        if self._server_delay is not None:
            delay = max(delay, self._server_delay)
        return delay

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        retrier = self.retrier
        policy = retrier.policy
        reason: GiveUpReason | None = None
        if state.attempt_number >= retrier.attempts:
            reason = "attempts"
        elif self._server_delay is not None and self._server_delay > policy.max_server_delay:
            reason = "delay_cap"
        else:
            now = _now()
            budget = retrier._budget
            if now + state.upcoming_sleep >= self.limit:
                reason = "deadline"
            elif budget is not None and not budget.try_withdraw(now):
                retrier.metrics.budget_denied += 1
                reason = "budget"
        if reason is None:
            return False
        exc = _failure(state)
        retrier.gave_up(reason, exc if exc is not None else Exception(), state.attempt_number)
        return True

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        retrier = self.retrier
        retrier.metrics.retries += 1
        exc = _failure(state)
        fields: dict[str, Any] = {}
        if self._server_delay is not None:
            fields["server_delay"] = self._server_delay
        emit(
            "retry.scheduled",
            level="warning",
            service=retrier.service,
            attempt=state.attempt_number,
            delay=state.upcoming_sleep,
            error=type(exc).__name__,
            correlation_id=current_correlation_id(),
            **fields,
        )
        add_event(
            "actorvisor.retry",
            {
                "actorvisor.service": retrier.service,
                "actorvisor.attempt": state.attempt_number,
                "actorvisor.retry.delay": state.upcoming_sleep,
                "error.type": "" if exc is None else error_type(exc),
            },
        )


_GIVE_UP: Final = object()


def _give_up(_state: tenacity.RetryCallState) -> object:
    return _GIVE_UP


def _always(_state: tenacity.RetryCallState) -> bool:
    return True  # the pipeline only asks about failures whose verdict is retried


def _never_sleep(_seconds: float) -> None:  # pragma: no cover - the pipeline sleeps
    raise AssertionError("tenacity decides here; the pipeline sleeps")


def _failure(state: tenacity.RetryCallState) -> BaseException | None:
    outcome = state.outcome
    if outcome is None or not outcome.failed:
        return None
    return outcome.exception()


def create_retrier(
    policy: RetryPolicy,
    *,
    service: str = "default",
    classifier: Classifier | None = None,
    random: Callable[[], float] | None = None,
) -> Retrier:
    """Makes the runtime retrier of one service.

    Args:
        policy: The configuration.
        service: Name used in events and metrics.
        classifier: Judges failures when the retrier runs calls on its own (`call`,
            `wrap`); inside a pipeline, the pipeline's classifier decides. Defaults to
            `ErrorClassifier()`.
        random: Jitter source returning floats in [0, 1); defaults to
            `random.random`. Inject ``random.Random(seed).random`` (or a constant) for
            exact delays in tests.

    Raises:
        ConfigError: `policy` is not a `RetryPolicy`.
    """
    if not isinstance(policy, RetryPolicy):
        raise ConfigError("retry", policy, "must be a RetryPolicy")
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
        classifier=classifier if classifier is not None else ErrorClassifier(),
        metrics=RetryMetrics(),
        random=random if random is not None else _random.random,
        budget=budget,
    )
