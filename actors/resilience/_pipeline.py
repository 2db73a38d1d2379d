"""The one resilience pipeline: every layer composed once, in one order, one verdict per attempt.

Everything that makes a call resilient runs through a `Pipeline`: `@resilient`
functions, service actors, `Retrier.call`, `CircuitBreaker.call` (and later routing
groups and SDK transports). The layers, outermost first::

    caller
      └─ bulkhead          one slot for the whole call, retries and backoff sleeps included
                           (a fixed `Bulkhead`, or an `AdaptiveLimit` learning from each
                           attempt's latency and verdict)
          └─ retry         attempts, backoff, the overall timeout (RetryPolicy.timeout)
              └─ each attempt:
                  breaker permit      CircuitOpen at once while open
                  limiter reservation waits FIFO within the deadline, or RateLimited
                  attempt timeout     RetryPolicy.attempt_timeout
                  operation           timed by the breaker from here
                  one verdict         the classifier judges the outcome once

Why this order:

- **Bulkhead outermost**: a caller waiting for a slot holds no limiter capacity and no
  breaker permit, and `BulkheadFull` is raised before anything is consumed. The slot
  bounds the calls in progress, backoff sleeps included.
- **Retry around every attempt**: each attempt is a real request, so each asks the
  breaker for a permit, is counted in its window, and takes limiter capacity (a retry
  storm cannot exceed the rate limit). An open breaker ends the retries at once.
- **Breaker before the limiter**: an open breaker refuses at once instead of first
  waiting for (and wasting) limiter capacity; a refusal or cancellation while waiting
  returns the permit uncounted. The breaker times only the operation, so a queue at
  the limiter never looks like a slow service.
- **Attempt timeout inside the breaker**: an attempt cut by `attempt_timeout` reaches
  the breaker as an `AttemptTimeout` (a failure of the service) rather than as a
  cancellation (never counted), and the retry decides on it like on any failure.

Each attempt's outcome is classified exactly once (`ErrorClass`), and that verdict
feeds the breaker (`CircuitBreaker.record`), the rate limits (a THROTTLED answer
resyncs them from its headers and holds them for everyone until its ``retry-after``;
a request that never reached the service gets its reservation back), an adaptive
concurrency limit (`AdaptiveLimit.observe`), the retry decision, the metrics, and the
caller's error (marked, so a fallback router reads the same verdict). The retry
decision is the verdict's (`ErrorClass.retried`) unless the pipeline is given
``retry_on``: a service group retries (fails over to another member) every failure a
fallback router would pass on, which includes a member's PERMANENT answer and its
refusals. Returned values are judged too when the classifier judges results (an
HTTP response carrying a 503); once retries are exhausted the caller gets that value.
Every reservation is settled (a cold start counts the unsettled ones): a failed
attempt that reached the service keeps its estimate, a success is reconciled with its
usage (or kept at its estimate when it reports none). A result that outlives its
attempt (`Unsettled`: a streamed body still being read) is judged at once, by its
status at headers time; its reservation settles when its reader closes it.

Time: one deadline bounds the call, the earliest of the caller's (`deadline`, the
handled message's, the enclosing cancel scopes') and the start plus
`RetryPolicy.timeout`. No limiter wait, bulkhead wait or retry sleep is started that
would end past it, and `RetryPolicy.timeout` also cancels the attempt in flight
(`DeadlineExceeded`, not counted by the breaker: the time ran out on our side). A
caller's cancellation propagates at once: it is never classified, counted or retried.
An attempt cancelled in flight (its caller gave up, a hedged request lost its race,
the actor stopped) returns its breaker permit uncounted and its reservation: its usage
is unknown, and an answer's rate-limit headers resync the limits downwards if the
provider did count it. An attempt cut by `RetryPolicy.timeout` keeps its reservation
(our time ran out while the service worked on it).

Observed: while a tracer or meter provider is set, each attempt is a span and a
duration on the semantic conventions, described by the `Describer` the pipeline was
given (a service's client), and the call's retries, refusals and waits are events on
the current span (`actors._tracing`); otherwise the check costs one global read.

The success path is one coroutine frame around the operation: no task, lock, event,
clock read beyond the breaker's timing, or cancel scope (except one per attempt when a
timeout is configured).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, Final, TypeAlias, TypeVar, TypeVarTuple

import anyio
import attrs

from actors._classify import Classifier, ErrorClass, headers_of, mark
from actors._clock import Clock, current_clock, deadline_scope
from actors._clock import now as _now
from actors._envelope import DEADLINE_VAR, current_correlation_id, current_deadline
from actors._errors import (
    AttemptTimeout,
    DeadlineExceeded,
    InvalidRequest,
    PoolClosed,
    PoolTimeout,
)
from actors._latency import LatencyRecorder
from actors._otel_metrics import track_pipeline
from actors._tracing import Attempts, Describer, observe, observing
from actors.resilience._adaptive import AdaptiveLimit
from actors.resilience._breaker import CircuitBreaker
from actors.resilience._bulkhead import Bulkhead
from actors.resilience._limiter import Limiter
from actors.resilience._multilimit import MultiLimit
from actors.resilience._retry import Retrier, RetryRun
from actors.resilience._retry_after import server_delay
from actors.resilience._unsettled import Unsettled

__all__ = ["CostFunction", "Pipeline", "PipelineMetrics"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

Costs: TypeAlias = float | Mapping[str, float]
CostFunction: TypeAlias = Callable[..., Costs]
"""Limiter units of one attempt, from the call's arguments: a number (a `Limiter`, or
that many units of every limit of a `MultiLimit`) or a mapping of limit name to units."""
RetryOn: TypeAlias = Callable[..., bool]
"""Whether a failed attempt is retried: ``retry_on(failure, verdict, *args, **kwargs)``
with the call's arguments (a value judged a failure comes wrapped as an exception)."""

_IGNORED: Final = ErrorClass.IGNORED
_THROTTLED: Final = ErrorClass.THROTTLED
_INF: Final = math.inf
_CLEANUP: Final = 5.0  # seconds a shielded settlement may take after a cancellation


@attrs.define(eq=False)
class PipelineMetrics:
    """Counters of one pipeline (one service).

    Attributes:
        calls: Calls started.
        in_flight: Calls in progress now.
        attempts: Attempts made (each one a request to the service).
        successes: Calls that returned a value judged a success.
        failures: Calls that ended in a failure (cancellations are not failures).
        verdicts: Failed attempts by verdict (`ErrorClass` value).
    """

    calls: int = 0
    in_flight: int = 0
    attempts: int = 0
    successes: int = 0
    failures: int = 0
    verdicts: dict[str, int] = attrs.field(factory=dict)

    def count(self, verdict: ErrorClass) -> None:
        key = verdict.value
        self.verdicts[key] = self.verdicts.get(key, 0) + 1


def _check_costs(name: str, costs: object, limits: Limiter | MultiLimit) -> Costs:
    """Validates one attempt's costs against the limits; `InvalidRequest` if unusable."""
    if isinstance(limits, Limiter):
        if isinstance(costs, Mapping):
            raise InvalidRequest(name, "cost", "must be a number for a single limit")
        _check_units(name, "cost", costs, limits.config.max_cost)
        return costs  # type: ignore[return-value]
    if not isinstance(costs, Mapping):
        units = _check_units(name, "cost", costs, min(c.max_cost for c in limits.limits.values()))
        return dict.fromkeys(limits.limits, units)
    for key, value in costs.items():
        config = limits.limits.get(key)
        if config is None:
            raise InvalidRequest(name, f"cost.{key}", f"is not a limit of {limits.name!r}")
        _check_units(name, f"cost.{key}", value, config.max_cost)
    return costs


def _check_units(name: str, field: str, value: object, capacity: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < _INF:
        raise InvalidRequest(name, field, f"must be a finite number >= 0, not {value!r}")
    if value > capacity:
        raise InvalidRequest(
            name, field, f"{value:g} exceeds the limit's capacity {capacity:g}: never admitted"
        )
    return float(value)


class Pipeline:
    """The resilience layers of one service, composed once (see the module docstring).

    Built once from configuration and immutable afterwards; share it between every
    caller of the service. All layers are optional.
    """

    __slots__ = (
        "__weakref__",
        "_attempt_timeout",
        "_breaker",
        "_bulkhead",
        "_classify",
        "_cost",
        "_fixed",
        "_headers",
        "_judge",
        "_latency",
        "_limits",
        "_observe",
        "_overall",
        "_retrier",
        "_retry_on",
        "_settles",
        "_timed",
        "_usage",
        "classifier",
        "describer",
        "metrics",
        "name",
    )

    def __init__(
        self,
        name: str,
        classifier: Classifier,
        *,
        bulkhead: Bulkhead | None = None,
        retrier: Retrier | None = None,
        retry_on: RetryOn | None = None,
        breaker: CircuitBreaker | None = None,
        limits: Limiter | MultiLimit | None = None,
        cost: Costs | CostFunction = 1.0,
        usage: Callable[[Any], Mapping[str, float] | float] | None = None,
        rate_headers: Callable[[object], Mapping[str, str] | None] | None = None,
        latency: LatencyRecorder | None = None,
        describe: Describer | None = None,
    ) -> None:
        """Composes the layers.

        Args:
            name: The service's name (errors, events).
            classifier: Judges every attempt's outcome once.
            bulkhead: Bounds the calls in progress: a `Bulkhead`, or an `AdaptiveLimit`
                (a bulkhead that also observes every attempt that reached the
                operation).
            retrier: Retries per its policy (also the source of the attempt and overall
                timeouts).
            retry_on: Decides which failed attempts the retrier retries, given the
                failure, its verdict and the call's arguments (default: the
                verdict's `ErrorClass.retried`). Never asked about a call cut by
                `RetryPolicy.timeout`.
            breaker: Guards each attempt.
            limits: Admits each attempt's cost (`cost`).
            cost: Each attempt's units: a number, a mapping of limit name to units, or
                a function of the call's arguments returning either. Checked per call:
                a cost the limits can never admit fails that call with `InvalidRequest`.
            usage: Maps a successful result to what it actually used, by limit name; the
                reservation is reconciled to it (reserve-then-reconcile).
            rate_headers: Maps a result or failure to rate-limit headers to resync the
                limits from; defaults to the outcome's own ``headers``.
            latency: Records every attempt's duration (that reached the operation).
            describe: Describes each attempt for traces and metrics (a service's
                client, through its `Service`); by default an attempt is a span named
                after the pipeline (see `actors._tracing`).
        """
        self.name = name
        self.classifier = classifier
        self._classify = classifier.classify
        judges = getattr(classifier, "judges_results", False)
        self._judge: Callable[[Any], ErrorClass | None] | None = (
            classifier.classify_result if judges else None  # type: ignore[attr-defined]
        )
        self._bulkhead = bulkhead
        self._observe = bulkhead.observe if isinstance(bulkhead, AdaptiveLimit) else None
        self._retrier = retrier
        self._retry_on = retry_on
        policy = None if retrier is None else retrier.policy
        self._attempt_timeout = None if policy is None else policy.attempt_timeout
        self._overall = None if policy is None else policy.timeout
        self._breaker = breaker
        self._latency = latency
        self._timed = (
            latency is not None
            or self._observe is not None
            or (breaker is not None and breaker.timed)
        )
        self._limits = limits
        self._cost: CostFunction | None = None
        self._fixed: Costs | None = None  # a fixed cost, checked once here
        if limits is not None:
            if callable(cost):
                self._cost = cost
            else:
                self._fixed = _check_costs(name, cost, limits)
        self._usage = usage
        self._headers = rate_headers if rate_headers is not None else headers_of
        # Whether a success has anything to settle: a usage to reconcile, or
        # headers to resync several limits from (a single limit has neither).
        # (A cold start counts outstanding reservations: every success must settle its own.)
        self._settles = limits is not None and (
            usage is not None or isinstance(limits, MultiLimit) or limits.cold_start is not None
        )
        self.metrics = PipelineMetrics()
        self.describer = describe
        track_pipeline(self)  # its in-flight calls, breaker and limits, for metrics

    @property
    def retrier(self) -> Retrier | None:
        """The retry layer (its policy and metrics), or None."""
        return self._retrier

    @property
    def breaker(self) -> CircuitBreaker | None:
        """The circuit breaker, or None."""
        return self._breaker

    @property
    def limits(self) -> Limiter | MultiLimit | None:
        """The rate limits, or None."""
        return self._limits

    @property
    def bulkhead(self) -> Bulkhead | None:
        """The concurrency limit (fixed or adaptive), or None."""
        return self._bulkhead

    async def run(
        self, fn: Callable[[*Ts], Awaitable[T]], /, *args: *Ts, deadline: float | None = None
    ) -> T:
        """Awaits ``fn(*args)`` through the layers (bind keywords with functools.partial).

        Args:
            fn: The operation: one attempt.
            *args: Its arguments (also what the cost function sees).
            deadline: Absolute `anyio.current_time()` by which the call must end; with
                the handled message's deadline, the enclosing cancel scopes' and
                `RetryPolicy.timeout`, the earliest applies.

        Returns:
            The operation's value (the last one, if values are judged and every attempt
            returned a failing one).

        Raises:
            InvalidRequest: The call's cost can never be admitted.
            BulkheadFull, CircuitOpen, RateLimited: A layer refused.
            AttemptTimeout: The last attempt outlasted the attempt timeout.
            DeadlineExceeded: `RetryPolicy.timeout` passed during an attempt.
            Exception: The last failure of the operation, unchanged.

        Cancellation: a checkpoint whenever the operation is one, and while waiting for
        a slot, capacity or a retry. A cancellation propagates at once; it returns any
        slot, permit or place in a queue, and is never counted as a failure.
        """
        return await self.call(fn, args, {}, deadline)

    def _limit(self, deadline: float | None, ends: float) -> float:
        """The earliest of every deadline that applies to the call (read on slow paths)."""
        limit = min(current_deadline(), anyio.current_effective_deadline(), ends)
        return limit if deadline is None or deadline > limit else deadline

    async def call(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        deadline: float | None,
        clock: Clock | None = None,
    ) -> T:
        """`run` with keyword arguments for the operation (the decorators' entry point).

        `clock` is the running loop's (`actors._clock.current_clock()`), for a caller
        that holds it already (a service actor): looked up otherwise.
        """
        if observing() and type(fn) is not Attempts:  # traces or metrics: each attempt seen
            observed = observe(self, fn, args, kwargs, deadline)
            if observed is not None:
                return await observed  # type: ignore[no-any-return]
        metrics = self.metrics
        metrics.calls += 1
        metrics.in_flight += 1
        bulkhead = self._bulkhead
        held = False
        try:
            if clock is None:
                clock = current_clock()
            overall = self._overall
            ends = _INF if overall is None else clock() + overall
            if bulkhead is not None:
                if not bulkhead._enter():
                    await bulkhead.acquire(deadline=self._limit(deadline, ends))
                held = True
            retrier = self._retrier
            if retrier is not None:
                retrier.begin()
            breaker = self._breaker
            limits = self._limits
            timed = self._timed or limits is not None
            attempt_timeout = self._attempt_timeout
            clocked = timed or attempt_timeout is not None or ends < _INF
            run: RetryRun | None = None
            last: BaseException | None = None
            attempt = 0
            while True:
                attempt += 1
                metrics.attempts += 1
                reservation = None
                if limits is not None:
                    costs = self._fixed
                    if costs is None:
                        assert self._cost is not None
                        costs = _check_costs(self.name, self._cost(*args, **kwargs), limits)
                    permit = 0 if breaker is None else breaker.acquire()
                    start = clock()
                    reservation = (
                        limits.reserve_nowait(costs, start)  # type: ignore[arg-type]
                        if isinstance(limits, Limiter)
                        else limits.reserve_nowait(start, **costs)  # type: ignore[arg-type]
                    )
                    if reservation is None:
                        reservation = await self._reserve(limits, costs, permit, deadline, ends)
                        start = clock()
                else:
                    permit = 0 if breaker is None else breaker.acquire()
                    start = clock() if clocked else 0.0
                stop_at = ends if attempt_timeout is None else min(start + attempt_timeout, ends)
                if stop_at != _INF and stop_at >= DEADLINE_VAR.get():
                    stop_at = _INF  # the handled message's deadline comes first anyway
                try:
                    if stop_at == _INF:
                        result = await fn(*args, **kwargs)
                    else:
                        with deadline_scope(stop_at) as scope:
                            result = await fn(*args, **kwargs)
                        if scope.cancelled_caught:
                            if stop_at < ends:
                                raise AttemptTimeout(
                                    self.name,
                                    attempt_timeout or 0.0,
                                    correlation_id=current_correlation_id(),
                                )
                            raise DeadlineExceeded(self.name, overall or 0.0) from last
                except Exception as exc:
                    verdict = self._classify(exc)
                    mark(exc, verdict)
                    metrics.count(verdict)
                    end = clock() if timed else 0.0
                    if self._latency is not None:
                        self._latency.record(end - start, end)
                    cut = isinstance(exc, DeadlineExceeded)  # our time ran out, not the service's
                    if self._observe is not None and not cut:
                        self._observe(end - start, exc, verdict, end)
                    if breaker is not None:
                        if cut:
                            breaker.on_cancel(permit)
                        else:
                            breaker.record(permit, verdict, end - start, now=end or None)
                    if limits is not None:
                        await self._failed(limits, reservation, exc, verdict)
                    if retrier is not None:
                        retry_on = self._retry_on
                        if (
                            verdict.retried
                            if retry_on is None
                            else not cut and retry_on(exc, verdict, *args, **kwargs)
                        ):
                            if run is None:
                                run = retrier.start(self._limit(deadline, ends))
                            delay = run.next_delay(exc)
                            if delay is not None:
                                last = exc
                                del exc
                                await anyio.sleep(delay)
                                continue
                        elif cut:
                            retrier.gave_up("deadline", exc, attempt)
                        elif verdict is not _IGNORED:
                            retrier.gave_up("not_retryable", exc, attempt)
                    metrics.failures += 1
                    raise
                except BaseException:
                    if breaker is not None:
                        if timed:  # a hung attempt abandoned late counts as slow
                            end = clock()
                            breaker.on_cancel(permit, end - start, now=end)
                        else:
                            breaker.on_cancel(permit)
                    if reservation is not None:
                        await _release_cancelled(reservation)
                    raise
                judge = self._judge
                judged = None if judge is None else judge(result)
                if timed:
                    end = clock()
                    if self._latency is not None:
                        self._latency.record(end - start, end)
                    if breaker is not None:
                        breaker.record(permit, judged, end - start, now=end)
                    if self._observe is not None:
                        self._observe(end - start, result, judged, end)
                elif breaker is not None:
                    breaker.record(permit, judged)
                if self._settles or (judged is not None and limits is not None):
                    assert limits is not None
                    await self._succeeded(limits, reservation, result, judged)
                if judged is None:
                    metrics.successes += 1
                    return result
                metrics.count(judged)
                if retrier is not None:
                    failure = _JudgedResult(result)
                    retry_on = self._retry_on
                    if (
                        judged.retried
                        if retry_on is None
                        else retry_on(failure, judged, *args, **kwargs)
                    ):
                        if run is None:
                            run = retrier.start(self._limit(deadline, ends))
                        delay = run.next_delay(failure)
                        if delay is not None:
                            await anyio.sleep(delay)
                            continue
                    elif judged is not _IGNORED:
                        retrier.gave_up("not_retryable", failure, attempt)
                metrics.failures += 1
                return result
        finally:
            metrics.in_flight -= 1
            if held:
                assert bulkhead is not None
                bulkhead.release()

    async def _reserve(
        self,
        limits: Limiter | MultiLimit,
        costs: Costs | None,
        permit: int,
        deadline: float | None,
        ends: float,
    ) -> Any:
        """Waits for one attempt's costs (the slow path); a refusal or cancellation
        returns the breaker permit uncounted."""
        breaker = self._breaker
        try:
            limit = self._limit(deadline, ends)
            if isinstance(limits, Limiter):
                return await limits.reserve(costs, deadline=limit)  # type: ignore[arg-type]
            return await limits.reserve(deadline=limit, **costs)  # type: ignore[arg-type]
        except Exception:
            if breaker is not None:  # refused by the limiter: not the service's outcome
                breaker.on_ignored(permit)
            raise
        except BaseException:
            if breaker is not None:
                breaker.on_cancel(permit)
            raise

    async def _failed(
        self, limits: Limiter | MultiLimit, reservation: Any, exc: Exception, verdict: ErrorClass
    ) -> None:
        """Settles a failed attempt's reservation and learns from the answer's headers."""
        if reservation is not None:
            if (verdict is _IGNORED and not isinstance(exc, DeadlineExceeded)) or isinstance(
                exc, PoolTimeout | PoolClosed
            ):
                await reservation.release()  # never reached the service (a cut attempt did)
            else:
                await reservation.reconcile()  # the provider counted it: keep the estimate
        await self._learn(limits, exc, verdict)

    async def _succeeded(
        self,
        limits: Limiter | MultiLimit,
        reservation: Any,
        result: object,
        verdict: ErrorClass | None,
    ) -> None:
        """Reconciles a success's reservation with what it used (a value judged a failure
        keeps its estimate, like a failed attempt; an `Unsettled` success when it is
        closed); learns from the answer's headers."""
        if reservation is not None:
            if verdict is None and isinstance(result, Unsettled):
                await result.settle_later(partial(self._reconcile, reservation, result))
            elif verdict is None:
                await self._reconcile(reservation, result)
            else:
                await reservation.reconcile()
        await self._learn(limits, result, verdict)

    async def _reconcile(self, reservation: Any, result: object) -> None:
        if isinstance(result, Unsettled) and not result.finished:
            await reservation.release()  # closed before its end: like a cancelled attempt
            return
        usage = self._usage
        used = None if usage is None else usage(result)
        if not used:
            await reservation.reconcile()
        elif not isinstance(used, Mapping):
            await reservation.reconcile(used)  # a single limit's units
        elif isinstance(self._limits, Limiter):
            await reservation.reconcile(sum(used.values()))  # one limit: its one figure
        else:
            await reservation.reconcile(**used)

    async def _learn(
        self, limits: Limiter | MultiLimit, outcome: object, verdict: ErrorClass | None
    ) -> None:
        """Learns the provider's room from an answer.

        A THROTTLED answer with a delay holds the limits for everyone until then: the
        provider said exactly when there is room again, which its `remaining: 0`
        (for a window that empties at once, far too pessimistic) does not. Every other
        answer resyncs the limits from its rate-limit headers.
        """
        if verdict is _THROTTLED:
            delay = server_delay(outcome)  # type: ignore[arg-type]
            if delay:
                await limits.hold_until(_now() + delay)
                return
        if isinstance(limits, MultiLimit):
            headers = self._headers(outcome)
            if headers:
                await limits.sync_from_headers(headers)

    def __repr__(self) -> str:
        layers = [
            label
            for label, layer in (
                ("bulkhead", self._bulkhead),
                ("retry", self._retrier),
                ("breaker", self._breaker),
                ("limits", self._limits),
            )
            if layer is not None
        ]
        return f"<Pipeline {self.name!r} {' > '.join(layers) or 'empty'}>"


async def _release_cancelled(reservation: Any) -> None:
    """Returns a cancelled attempt's reservation, shielded and time-limited (a remote
    store may need a round trip; a local one never suspends)."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP):
        await reservation.release()


class _JudgedResult(Exception):
    """A returned value judged a failure, as tenacity's retry state holds it."""

    def __init__(self, value: object) -> None:
        super().__init__("judged result")
        self.value = value
        self.headers = headers_of(value)
        self.retry_after = getattr(value, "retry_after", None)
