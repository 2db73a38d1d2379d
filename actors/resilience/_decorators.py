"""`@resilient(...)`: bulkhead, retry, circuit breaker and rate limiter around an async function.

The layers, from the outermost (entered first) to the innermost::

    caller
      └─ bulkhead      one slot for the whole call, retries and backoff sleeps included
          └─ retry     the first attempt is a plain await; a retryable failure enters tenacity
              └─ breaker   acquire a permit for this attempt (CircuitOpen at once if open)
                  └─ limiter   admit this attempt's cost (waits FIFO, or RateLimited)
                      └─ fn(*args, **kwargs)   timed by the breaker; attempt_timeout here

Why this order (resilience4j's and Polly's guidance, adapted):

- **Bulkhead outermost**: a caller waiting for a slot holds no limiter token and no
  breaker permit, and `BulkheadFull` is raised before anything is consumed. The slot
  bounds the calls in progress against the service, including their backoff sleeps.
- **Retry outside the breaker and the limiter**: every attempt is a request to the
  service, so every attempt asks the breaker for a permit, is counted in its window,
  and takes limiter capacity (a retry storm cannot exceed the rate limit). An open
  breaker stops the retries: `CircuitOpen`, `RateLimited` and `BulkheadFull` are
  `ErrorClass.IGNORED` for every classifier, so they are never retried.
- **Breaker before the limiter**: an open breaker rejects at once instead of first
  waiting for (and wasting) a limiter token. The breaker times only the call itself,
  not the limiter wait, so a queue at the limiter never looks like a slow service; a
  `RateLimited` (or a cancellation) while waiting returns the breaker's permit
  uncounted.

The issue's wording "bulkhead → limiter → breaker → retry" lists the same four layers;
this module documents the order in which they are actually nested, above.

Each layer is optional. Every decorated function owns one instance of each runtime
primitive made from a configuration (named after the function unless `name` is
given); pass instances (`CircuitBreaker`, `Limiter`, `MultiLimit`, `Bulkhead`,
`Retrier`) to share them between functions, e.g. one service's breaker from a
`BreakerRegistry`. The primitives are exposed as ``fn.resilience``.

- **Attempt timeout inside the breaker**: `RetryPolicy.attempt_timeout` wraps only the
  function, so a timed-out attempt reaches the breaker as a `TimeoutError` (a failure)
  rather than as a cancellation (never counted); the retrier then retries it.

The success path is one coroutine frame around the function: a free bulkhead slot is
an increment, the first attempt runs outside tenacity, the breaker permit is a dict
lookup, and a single in-memory limiter with a fixed cost is admitted inline with one
clock read (shared with the breaker's start time). No task, lock, event or cancel scope
is created (except one cancel scope per attempt when `attempt_timeout` is set). To get
there this module calls the primitives' synchronous success paths (`Bulkhead._enter`,
`Retrier._begin` / `_first_failed`, `Limiter._admit_now`, the single copy of that
logic, which their public methods use too) instead of awaiting their coroutines, and
falls back to the public methods whenever the fast path does not apply.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Generic,
    ParamSpec,
    Protocol,
    Self,
    TypeAlias,
    TypedDict,
    TypeVar,
    Unpack,
    overload,
)

import anyio
import attrs

from actors._classify import Classifier, ErrorClass, ErrorClassifier
from actors._clock import now as _now
from actors._errors import ConfigError
from actors.resilience._breaker import BreakerConfig, CircuitBreaker
from actors.resilience._breaker_registry import BreakerRegistry
from actors.resilience._bulkhead import Bulkhead, BulkheadConfig, create_bulkhead
from actors.resilience._limiter import (
    GCRA,
    LimitConfig,
    Limiter,
    SlidingWindow,
    TokenBucket,
    create_limiter,
)
from actors.resilience._limiter_store import LimiterStore, SyncLimiterStore
from actors.resilience._multilimit import MultiLimit, create_multi_limit
from actors.resilience._retry import Retrier, RetryPolicy, create_retrier

if TYPE_CHECKING:
    from actors._config import ResilienceConfig

__all__ = ["Resilience", "ResilientFunction", "resilient"]

P = ParamSpec("P")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

Cost: TypeAlias = float | Mapping[str, float] | Callable[..., float | Mapping[str, float]]
"""Limiter cost per attempt: a number (`Limiter`), a mapping of limit name to units
(`MultiLimit`), or a function of the call's arguments returning either."""

RetryArg: TypeAlias = RetryPolicy | Retrier | None
BreakerArg: TypeAlias = BreakerConfig | CircuitBreaker | None
LimiterArg: TypeAlias = LimitConfig | Mapping[str, LimitConfig] | Limiter | MultiLimit | None
BulkheadArg: TypeAlias = BulkheadConfig | Bulkhead | None

_IGNORED = ErrorClass.IGNORED


@attrs.frozen(kw_only=True)
class Resilience:
    """The runtime primitives of one decorated function (``fn.resilience``).

    Attributes:
        name: The name the primitives made by the decorator were given.
        bulkhead: The concurrency limit, or `None`.
        retrier: The retrier (its metrics count attempts and retries), or `None`.
        breaker: The circuit breaker, or `None`.
        limiter: The rate limiter (`Limiter` or `MultiLimit`), or `None`.
        classifier: Decides which failures the breaker counts (`IGNORED` ones are
            not); the retrier uses its policy's classifier.
    """

    name: str
    bulkhead: Bulkhead | None
    retrier: Retrier | None
    breaker: CircuitBreaker | None
    limiter: Limiter | MultiLimit | None
    classifier: Classifier


class ResilientFunction(Protocol, Generic[P, T_co]):
    """What `resilient` returns: the function with the same signature, plus `resilience`."""

    resilience: Resilience
    __name__: str
    __qualname__: str
    __wrapped__: Callable[..., Any]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, T_co]:
        """Calls the decorated function through the resilience layers."""
        ...

    @overload
    def __get__(self, instance: None, owner: type[Any], /) -> Self: ...
    @overload
    def __get__(
        self, instance: object, owner: type[Any] | None = None, /
    ) -> Callable[..., Coroutine[Any, Any, T_co]]: ...
    def __get__(self, instance: object, owner: type[Any] | None = None, /) -> Any:
        """Binds a decorated method like a plain function (arguments then go unchecked)."""
        ...


_Take: TypeAlias = Callable[[tuple[Any, ...], dict[str, Any]], Awaitable[None]]


def _check_cost(value: object, field: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value < math.inf  # also rejects NaN
    ):
        raise ConfigError(field, value, "must be a finite number >= 0")
    return float(value)


def _limiter_take(limiter: Limiter | MultiLimit, cost: Cost) -> _Take:
    """Returns ``take(args, kwargs)``, which admits one attempt's cost (a coroutine)."""
    if isinstance(limiter, Limiter):
        single = limiter
        if callable(cost):
            estimate = cost

            async def take_estimated(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                await single.acquire(estimate(*args, **kwargs))  # type: ignore[arg-type]

            return take_estimated
        if isinstance(cost, Mapping):
            raise ConfigError("cost", cost, "must be a number for a single limiter")
        units = _check_cost(cost, "cost")
        acquire = single.acquire
        return lambda _args, _kwargs: acquire(units)
    multi = limiter
    if callable(cost):
        estimate_many = cost

        async def take_many(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            await multi.acquire(**estimate_many(*args, **kwargs))  # type: ignore[arg-type]

        return take_many
    if isinstance(cost, Mapping):
        costs = {str(key): _check_cost(value, f"cost.{key}") for key, value in cost.items()}
        for key in costs:
            if key not in multi.limits:
                raise ConfigError(f"cost.{key}", cost[key], f"is not a limit of {multi.name!r}")
    else:  # one number: that many units of every limit
        units = _check_cost(cost, "cost")
        costs = dict.fromkeys(multi.limits, units)
    acquire_many = multi.acquire
    return lambda _args, _kwargs: acquire_many(**costs)


def _layers(
    fn: Callable[..., Awaitable[T]],
    *,
    bulkhead: Bulkhead | None,
    retrier: Retrier | None,
    breaker: CircuitBreaker | None,
    limiter: Limiter | MultiLimit | None,
    cost: Cost,
    classifier: Classifier,
    timeout: float | None,
) -> Callable[..., Awaitable[T]]:
    """Builds the decorated call: bulkhead, retry, then per attempt breaker, limiter, `fn`.

    One coroutine body serves twice: as the outer call (bulkhead slot, retrier
    bookkeeping, first attempt inline) and as the attempt that tenacity repeats on
    retries (the same body with the outer parts switched off). So the success path
    costs a single frame around `fn`, and there is one copy of the attempt logic.

    `retrier` must have no `attempt_timeout` (see `_without_timeout`); `timeout` is
    applied here around `fn` only, inside the breaker, so a timed-out attempt counts as
    the breaker's failure (a `TimeoutError`) instead of looking like a cancellation.
    """
    take = None if limiter is None else _limiter_take(limiter, cost)
    # Fast path of a single in-process limit with a fixed cost: admitted inline when
    # nobody is queued (`Limiter._admit_now`), without a coroutine, at the clock
    # reading shared with the breaker.
    fast: Limiter | None = None
    units = 0.0
    if isinstance(limiter, Limiter) and not callable(cost) and not isinstance(cost, Mapping):
        units = _check_cost(cost, "cost")
        if units > limiter.config.max_cost:
            raise ConfigError(
                "cost", cost, f"exceeds the limit's capacity {limiter.config.max_cost:g}"
            )
        if isinstance(limiter.store, SyncLimiterStore):
            fast = limiter
    timed = breaker is not None and breaker.timed
    classify = classifier.classify
    fail_after = anyio.fail_after
    clock = _now
    retry: Any = retrier  # narrowed by `with_retry` below

    async def admit(permit: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        assert take is not None
        try:
            await take(args, kwargs)
        except Exception:
            if breaker is not None:  # refused by the limiter: not the service's outcome
                breaker.on_ignored(permit)
            raise
        except BaseException:
            if breaker is not None:
                breaker.on_cancel(permit)
            raise

    def make(outer: bool) -> Callable[..., Awaitable[T]]:
        with_bulkhead = outer and bulkhead is not None
        with_retry = outer and retrier is not None

        async def run(*args: Any, **kwargs: Any) -> T:
            if with_bulkhead:
                assert bulkhead is not None
                if not bulkhead._enter():  # `acquire`'s success path, without its coroutine
                    await bulkhead.acquire()
            try:
                # `Retrier.call`'s bookkeeping: the first attempt runs outside tenacity.
                started = retry._begin() if with_retry else None
                try:
                    permit = 0 if breaker is None else breaker.acquire()
                    start = clock() if timed or fast is not None else 0.0
                    if take is not None and (fast is None or not fast._admit_now(units, start)):
                        await admit(permit, args, kwargs)
                        start = clock() if timed else 0.0
                    try:
                        if timeout is None:
                            result = await fn(*args, **kwargs)
                        else:
                            with fail_after(timeout):
                                result = await fn(*args, **kwargs)
                    except Exception as exc:
                        if breaker is not None:
                            if classify(exc) is _IGNORED:
                                breaker.on_ignored(permit)
                            elif timed:
                                now = clock()
                                breaker.on_exception(permit, exc, now - start, now=now)
                            else:
                                breaker.on_exception(permit, exc)
                        raise
                    except BaseException:
                        if breaker is not None:
                            breaker.on_cancel(permit)
                        raise
                except Exception as exc:
                    if not with_retry or not retry._first_failed(exc):
                        raise
                    first = exc
                else:
                    if breaker is not None:
                        if timed:
                            now = clock()
                            breaker.on_success(permit, now - start, now=now)
                        else:
                            breaker.on_success(permit)
                    return result
                result = await retry._retry(
                    attempt, args, kwargs, first, started=started, deadline=None
                )
                return result  # noqa: RET504  (typed through `retry`, which is Any)
            finally:
                if with_bulkhead:
                    assert bulkhead is not None
                    bulkhead.release()

        return run

    attempt = make(outer=False)
    return make(outer=True)


def _without_timeout(retrier: Retrier) -> Retrier:
    """The same retrier (shared metrics, budget, jitter) minus `attempt_timeout`.

    The decorator applies the attempt timeout itself, inside the breaker.
    """
    policy = retrier.policy
    if policy.attempt_timeout is None:
        return retrier
    return Retrier(
        policy=attrs.evolve(policy, attempt_timeout=None),
        service=retrier.service,
        metrics=retrier.metrics,
        errors=retrier.errors,
        random=retrier._random,
        budget=retrier._budget,
    )


def _make_breaker(
    breaker: BreakerArg, name: str, registry: BreakerRegistry | None
) -> CircuitBreaker | None:
    if breaker is None or isinstance(breaker, CircuitBreaker):
        return breaker
    if not isinstance(breaker, BreakerConfig):
        raise ConfigError("breaker", breaker, "must be a BreakerConfig, a CircuitBreaker or None")
    if registry is not None:
        return registry.get_or_create(name, breaker)
    return CircuitBreaker.create(name, breaker)


def _make_limiter(
    limiter: LimiterArg, name: str, store: LimiterStore | None
) -> Limiter | MultiLimit | None:
    if limiter is None or isinstance(limiter, Limiter | MultiLimit):
        return limiter
    if isinstance(limiter, TokenBucket | SlidingWindow | GCRA):
        return create_limiter(limiter, name=name, store=store)
    if isinstance(limiter, Mapping):
        return create_multi_limit(limiter, name=name, store=store)
    raise ConfigError(
        "limiter",
        limiter,
        "must be a TokenBucket, SlidingWindow, GCRA, a mapping of them, a Limiter, "
        "a MultiLimit or None",
    )


def _make_retrier(retry: RetryArg, name: str) -> Retrier | None:
    if retry is None or isinstance(retry, Retrier):
        return retry
    if not isinstance(retry, RetryPolicy):
        raise ConfigError("retry", retry, "must be a RetryPolicy, a Retrier or None")
    return create_retrier(retry, service=name)


def _make_bulkhead(bulkhead: BulkheadArg, name: str) -> Bulkhead | None:
    if bulkhead is None or isinstance(bulkhead, Bulkhead):
        return bulkhead
    if not isinstance(bulkhead, BulkheadConfig):
        raise ConfigError("bulkhead", bulkhead, "must be a BulkheadConfig, a Bulkhead or None")
    return create_bulkhead(bulkhead, name=name)


def _decorate(
    fn: Callable[P, Awaitable[T]],
    *,
    name: str | None,
    retry: RetryArg,
    breaker: BreakerArg,
    limiter: LimiterArg,
    bulkhead: BulkheadArg,
    cost: Cost,
    classifier: Classifier | None,
    registry: BreakerRegistry | None,
    limiter_store: LimiterStore | None,
) -> ResilientFunction[P, T]:
    if not callable(fn):
        raise TypeError(f"resilient(...) decorates an async function, not {fn!r}")
    label = name or getattr(fn, "__qualname__", None) or repr(fn)
    retrier = _make_retrier(retry, label)
    the_breaker = _make_breaker(breaker, label, registry)
    the_limiter = _make_limiter(limiter, label, limiter_store)
    the_bulkhead = _make_bulkhead(bulkhead, label)
    if classifier is None:
        classifier = retrier.policy.classifier if retrier is not None else ErrorClassifier()
    elif not callable(getattr(classifier, "classify", None)):
        raise ConfigError("classifier", classifier, "must have a classify(exc) method")

    timeout = None if retrier is None else retrier.policy.attempt_timeout
    inner = _layers(
        fn,
        bulkhead=the_bulkhead,
        retrier=None if retrier is None else _without_timeout(retrier),
        breaker=the_breaker,
        limiter=the_limiter,
        cost=cost,
        classifier=classifier,
        timeout=timeout,
    )
    functools.update_wrapper(inner, fn)

    resilience = Resilience(
        name=label,
        bulkhead=the_bulkhead,
        retrier=retrier,
        breaker=the_breaker,
        limiter=the_limiter,
        classifier=classifier,
    )
    inner.resilience = resilience  # type: ignore[attr-defined]
    return inner  # type: ignore[return-value]


class PresetLayers(TypedDict, total=False):
    """The keyword arguments of `resilient.llm` / `database` / `mcp` (all optional).

    As for `resilient`: ``retry`` and ``breaker`` default to the service's presets,
    the other layers to `None` and ``cost`` to 1.
    """

    retry: RetryArg
    breaker: BreakerArg
    limiter: LimiterArg
    bulkhead: BulkheadArg
    cost: Cost
    name: str | None
    registry: BreakerRegistry | None
    limiter_store: LimiterStore | None


# Frozen, so shared safely by every decorated function.
_LLM_RETRY: Final = RetryPolicy.for_llm()
_LLM_BREAKER: Final = BreakerConfig.for_llm()
_DATABASE_RETRY: Final = RetryPolicy.for_database()
_DATABASE_BREAKER: Final = BreakerConfig.for_database()
_MCP_RETRY: Final = RetryPolicy.for_mcp()
_MCP_BREAKER: Final = BreakerConfig.for_mcp()


class _Resilient:
    """The `resilient` decorator factory; see the module docstring for the layer order."""

    def __call__(
        self,
        *,
        retry: RetryArg = None,
        breaker: BreakerArg = None,
        limiter: LimiterArg = None,
        bulkhead: BulkheadArg = None,
        cost: Cost = 1,
        classifier: Classifier | None = None,
        name: str | None = None,
        registry: BreakerRegistry | None = None,
        limiter_store: LimiterStore | None = None,
    ) -> Callable[[Callable[P, Awaitable[T]]], ResilientFunction[P, T]]:
        """Returns a decorator running an async function through the resilience layers.

        Order, outermost first: bulkhead → retry → breaker → limiter → function (see
        the module docstring for why). Every layer is optional (`None`, the default).

        Args:
            retry: A `RetryPolicy` (a `Retrier` is made per decorated function) or a
                shared `Retrier`.
            breaker: A `BreakerConfig` (a breaker per function, or from `registry`) or
                a shared `CircuitBreaker`.
            limiter: A `TokenBucket` / `SlidingWindow` / `GCRA`, a mapping of limit
                names to them (a `MultiLimit`), or a shared `Limiter` / `MultiLimit`.
            bulkhead: A `BulkheadConfig` or a shared `Bulkhead`.
            cost: Limiter units per attempt: a number (for a `MultiLimit`, that many
                units of every limit), a mapping of limit name to units, or a
                function of the call's arguments returning either.
            classifier: Decides which failures the breaker counts (`IGNORED` ones are
                returned uncounted); defaults to the retry policy's classifier, else
                `ErrorClassifier()`.
            name: Name of the primitives made here (events, errors, metrics, the
                registry key); defaults to the function's ``__qualname__``.
            registry: Where breakers made from a `BreakerConfig` are looked up by
                `name` (so functions of one service share one breaker).
            limiter_store: Where limiters made here keep their state.

        Returns:
            A decorator; the decorated function keeps the signature, name and
            docstring, and has a ``resilience`` attribute (`Resilience`).

        Raises:
            ConfigError: An argument of the wrong kind, or a bad `cost`.

        The decorated call raises what the function raises (the last failure,
        unchanged, once retries are exhausted), or `BulkheadFull`, `CircuitOpen` or
        `RateLimited` when a layer refuses. Waiting for a bulkhead slot or limiter
        capacity is bounded by the caller's cancel scopes: the limiter refuses at once
        when the wait would outlast the enclosing deadline. Cancellation always
        propagates; it is never retried or counted as a failure, and it returns any
        slot, permit or queue place held.
        """

        def decorate(fn: Callable[P, Awaitable[T]]) -> ResilientFunction[P, T]:
            return _decorate(
                fn,
                name=name,
                retry=retry,
                breaker=breaker,
                limiter=limiter,
                bulkhead=bulkhead,
                cost=cost,
                classifier=classifier,
                registry=registry,
                limiter_store=limiter_store,
            )

        return decorate

    def llm(
        self, **layers: Unpack[PresetLayers]
    ) -> Callable[[Callable[P, Awaitable[T]]], ResilientFunction[P, T]]:
        """`resilient` with the LLM presets: `RetryPolicy.for_llm()`, `BreakerConfig.for_llm()`.

        No limiter by default: an API key's limits are per account, so pass them, e.g.
        ``limiter={"requests": TokenBucket.per_minute(500), "tokens":
        TokenBucket.per_minute(30_000)}`` with ``cost=lambda prompt, **_: {"requests":
        1, "tokens": estimate(prompt)}``. Takes the keyword arguments of `resilient`
        except `classifier` (see `PresetLayers`); any of them replaces its preset
        (`None` turns the layer off).
        """
        return self._preset(_LLM_RETRY, _LLM_BREAKER, layers)

    def database(
        self, **layers: Unpack[PresetLayers]
    ) -> Callable[[Callable[P, Awaitable[T]]], ResilientFunction[P, T]]:
        """`resilient` with `RetryPolicy.for_database()` and `BreakerConfig.for_database()`.

        A database's limit is concurrency: pass ``bulkhead=BulkheadConfig(max_concurrent=
        <pool size>)`` (none by default). Arguments as for `llm`.
        """
        return self._preset(_DATABASE_RETRY, _DATABASE_BREAKER, layers)

    def mcp(
        self, **layers: Unpack[PresetLayers]
    ) -> Callable[[Callable[P, Awaitable[T]]], ResilientFunction[P, T]]:
        """`resilient` with `RetryPolicy.for_mcp()` and `BreakerConfig.for_mcp()`.

        An MCP server's limit is requests per second: pass e.g.
        ``limiter=TokenBucket.per_second(20)`` (none by default). Arguments as for `llm`.
        """
        return self._preset(_MCP_RETRY, _MCP_BREAKER, layers)

    def _preset(
        self, retry: RetryPolicy, breaker: BreakerConfig, layers: PresetLayers
    ) -> Callable[[Callable[P, Awaitable[T]]], ResilientFunction[P, T]]:
        unknown = layers.keys() - PresetLayers.__optional_keys__
        if unknown:
            raise TypeError(f"unexpected keyword argument {min(unknown)!r}")
        merged: PresetLayers = {"retry": retry, "breaker": breaker, **layers}
        return self(**merged)

    def from_config(
        self,
        config: ResilienceConfig | Mapping[str, Any],
        *,
        cost: Cost | None = None,
        classifier: Classifier | None = None,
        name: str | None = None,
        registry: BreakerRegistry | None = None,
        limiter_store: LimiterStore | None = None,
    ) -> Callable[[Callable[P, Awaitable[T]]], ResilientFunction[P, T]]:
        """`resilient` configured by a `ResilienceConfig` or a dict in its format.

        Args:
            config: A `ResilienceConfig`, or a mapping loaded with
                `load_resilience_config` (see docs/resilience/decorators.md).
            cost: Replaces the configuration's ``cost`` / ``costs`` (e.g. a function
                estimating an LLM request's tokens).
            classifier, name, registry, limiter_store: As for `resilient`.

        Raises:
            ConfigError: The mapping is invalid (the error names the dotted field).
        """
        from actors._config import ResilienceConfig, load_resilience_config

        if not isinstance(config, ResilienceConfig):
            config = load_resilience_config(config)
        limiter: LimiterArg = config.limiter if config.limiter is not None else config.limits
        return self(
            retry=config.retry,
            breaker=config.breaker,
            limiter=limiter,
            bulkhead=config.bulkhead,
            cost=config.limiter_cost() if cost is None else cost,
            classifier=classifier,
            name=name,
            registry=registry,
            limiter_store=limiter_store,
        )


resilient = _Resilient()
"""The decorator factory: ``@resilient(retry=..., breaker=..., limiter=..., bulkhead=...)``,
``@resilient.llm()``, ``@resilient.database()``, ``@resilient.mcp()``,
``@resilient.from_config(cfg)``."""
