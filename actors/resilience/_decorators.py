"""`@resilient(...)`: an async function run through the one resilience pipeline.

The decorator builds a `Pipeline` (see `actors.resilience._pipeline` for the layers
and their order: bulkhead, retry, and per attempt breaker, limiter, attempt timeout,
the function, one verdict) from its arguments once, at decoration time, and every call
of the decorated function runs through it. The pipeline is the same object service
actors use, so a failure is judged the same way under `@resilient` as under a
`ServiceActor`.

Each layer is optional. Every decorated function owns one instance of each runtime
primitive made from a configuration (named after the function unless `name` is
given); pass instances (`CircuitBreaker`, `Limiter`, `MultiLimit`, `Bulkhead`,
`Retrier`) to share them between functions, e.g. one service's breaker from a
`BreakerRegistry`. The primitives are exposed as ``fn.resilience``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import (
    TYPE_CHECKING,
    Any,
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

import attrs

from actors._classify import Classifier, ErrorClassifier
from actors._errors import ConfigError
from actors.resilience._adaptive import AdaptiveConcurrency, create_adaptive_limit
from actors.resilience._breaker import BreakerConfig, CircuitBreaker, create_breaker
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
from actors.resilience._limiter_store import LimiterStore
from actors.resilience._multilimit import MultiLimit, create_multi_limit
from actors.resilience._pipeline import CostFunction, Costs, Pipeline
from actors.resilience._retry import Retrier, RetryPolicy, create_retrier

if TYPE_CHECKING:
    from actors._config import ResilienceConfig
    from actors._kinds import ServiceKind

__all__ = ["Resilience", "ResilientFunction", "resilient"]

P = ParamSpec("P")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

Cost: TypeAlias = Costs | CostFunction
"""Limiter cost per attempt: a number (`Limiter`, or that many units of every limit of a
`MultiLimit`), a mapping of limit name to units, or a function of the call's arguments
returning either."""

RetryArg: TypeAlias = RetryPolicy | Retrier | None
BreakerArg: TypeAlias = BreakerConfig | CircuitBreaker | None
LimiterArg: TypeAlias = LimitConfig | Mapping[str, LimitConfig] | Limiter | MultiLimit | None
BulkheadArg: TypeAlias = BulkheadConfig | AdaptiveConcurrency | Bulkhead | None


@attrs.frozen(kw_only=True)
class Resilience:
    """The runtime primitives of one decorated function (``fn.resilience``).

    Attributes:
        name: The name the primitives made by the decorator were given.
        bulkhead: The concurrency limit, or `None`.
        retrier: The retrier (its metrics count attempts and retries), or `None`.
        breaker: The circuit breaker, or `None`.
        limiter: The rate limiter (`Limiter` or `MultiLimit`), or `None`.
        classifier: Judges every attempt's outcome, once.
        pipeline: The pipeline every call runs through.
    """

    name: str
    bulkhead: Bulkhead | None
    retrier: Retrier | None
    breaker: CircuitBreaker | None
    limiter: Limiter | MultiLimit | None
    classifier: Classifier
    pipeline: Pipeline


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


def _make_breaker(
    breaker: BreakerArg, name: str, registry: BreakerRegistry | None, classifier: Classifier
) -> CircuitBreaker | None:
    if breaker is None or isinstance(breaker, CircuitBreaker):
        return breaker
    if not isinstance(breaker, BreakerConfig):
        raise ConfigError("breaker", breaker, "must be a BreakerConfig, a CircuitBreaker or None")
    if registry is not None:
        return registry.get_or_create(name, breaker)
    return create_breaker(name, breaker, classifier=classifier)


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


def _make_retrier(retry: RetryArg, name: str, classifier: Classifier) -> Retrier | None:
    if retry is None or isinstance(retry, Retrier):
        return retry
    if not isinstance(retry, RetryPolicy):
        raise ConfigError("retry", retry, "must be a RetryPolicy, a Retrier or None")
    return create_retrier(retry, service=name, classifier=classifier)


def _make_bulkhead(bulkhead: BulkheadArg, name: str) -> Bulkhead | None:
    if bulkhead is None or isinstance(bulkhead, Bulkhead):
        return bulkhead
    if isinstance(bulkhead, AdaptiveConcurrency):
        return create_adaptive_limit(bulkhead, name=name)
    if not isinstance(bulkhead, BulkheadConfig):
        raise ConfigError(
            "bulkhead",
            bulkhead,
            "must be a BulkheadConfig, an AdaptiveConcurrency, a Bulkhead or None",
        )
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
    usage: Callable[[Any], Mapping[str, float] | float] | None,
    classifier: Classifier | None,
    registry: BreakerRegistry | None,
    limiter_store: LimiterStore | None,
) -> ResilientFunction[P, T]:
    if not callable(fn):
        raise TypeError(f"resilient(...) decorates an async function, not {fn!r}")
    label = name or getattr(fn, "__qualname__", None) or repr(fn)
    if classifier is None:
        classifier = retry.classifier if isinstance(retry, Retrier) else ErrorClassifier()
    elif not callable(getattr(classifier, "classify", None)):
        raise ConfigError("classifier", classifier, "must have a classify(exc) method")
    if usage is not None and not callable(usage):
        raise ConfigError("usage", usage, "must be a function of the result or None")
    retrier = _make_retrier(retry, label, classifier)
    the_breaker = _make_breaker(breaker, label, registry, classifier)
    the_limiter = _make_limiter(limiter, label, limiter_store)
    the_bulkhead = _make_bulkhead(bulkhead, label)
    if the_limiter is not None and not callable(cost):
        _check_fixed_cost(cost, the_limiter)
    pipeline = Pipeline(
        label,
        classifier,
        bulkhead=the_bulkhead,
        retrier=retrier,
        breaker=the_breaker,
        limits=the_limiter,
        cost=cost,
        usage=usage,
    )
    call = pipeline.call

    async def run(*args: Any, **kwargs: Any) -> Any:
        return await call(fn, args, kwargs, None)

    functools.update_wrapper(run, fn)
    run.resilience = Resilience(  # type: ignore[attr-defined]
        name=label,
        bulkhead=the_bulkhead,
        retrier=retrier,
        breaker=the_breaker,
        limiter=the_limiter,
        classifier=classifier,
        pipeline=pipeline,
    )
    return run  # type: ignore[return-value]


def _check_fixed_cost(cost: object, limiter: Limiter | MultiLimit) -> None:
    """A fixed cost the limits can never admit is a configuration error, found now."""
    from actors._errors import InvalidRequest
    from actors.resilience._pipeline import _check_costs

    try:
        _check_costs("cost", cost, limiter)
    except InvalidRequest as exc:
        raise ConfigError(exc.field, cost, exc.reason) from None


class PresetLayers(TypedDict, total=False):
    """The keyword arguments of `resilient.llm` / `http` / `database` / `mcp` (all optional).

    As for `resilient`: ``retry``, ``breaker`` and ``classifier`` default to the kind's
    presets, the other layers to `None` and ``cost`` to 1.
    """

    retry: RetryArg
    breaker: BreakerArg
    limiter: LimiterArg
    bulkhead: BulkheadArg
    cost: Cost
    usage: Callable[[Any], Mapping[str, float] | float] | None
    classifier: Classifier | None
    name: str | None
    registry: BreakerRegistry | None
    limiter_store: LimiterStore | None


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
        usage: Callable[[Any], Mapping[str, float] | float] | None = None,
        classifier: Classifier | None = None,
        name: str | None = None,
        registry: BreakerRegistry | None = None,
        limiter_store: LimiterStore | None = None,
    ) -> Callable[[Callable[P, Awaitable[T]]], ResilientFunction[P, T]]:
        """Returns a decorator running an async function through the resilience pipeline.

        Order, outermost first: bulkhead → retry → (per attempt) breaker → limiter →
        attempt timeout → function (see `actors.resilience._pipeline` for why). Every
        layer is optional (`None`, the default).

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
                function of the call's arguments returning either. A cost the limits
                can never admit fails the call with `InvalidRequest`.
            usage: A function of the result returning what the call actually used,
                by limit name: the attempt's reservation is reconciled to it
                (reserve-then-reconcile, as service actors do).
            classifier: Judges every attempt's outcome once (see `actors.ErrorClass`);
                defaults to a shared `Retrier`'s classifier, else `ErrorClassifier()`.
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
        unchanged, once retries are exhausted), `AttemptTimeout` or `DeadlineExceeded`
        when the policy's timeouts cut it, or `BulkheadFull`, `CircuitOpen` or
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
                usage=usage,
                classifier=classifier,
                registry=registry,
                limiter_store=limiter_store,
            )

        return decorate

    def llm(
        self, **layers: Unpack[PresetLayers]
    ) -> Callable[[Callable[P, Awaitable[T]]], ResilientFunction[P, T]]:
        """`resilient` with the LLM kind's presets (retry, breaker, classifier).

        No limiter by default: an API key's limits are per account, so pass them, e.g.
        ``limiter={"requests": TokenBucket.per_minute(500), "tokens":
        TokenBucket.per_minute(30_000)}`` with ``cost=lambda prompt, **_: {"requests":
        1, "tokens": estimate(prompt)}`` and ``usage=lambda reply: {"tokens":
        reply.usage.total_tokens}``. Takes the keyword arguments of `resilient` (see
        `PresetLayers`); any of them replaces its preset (`None` turns a layer off).
        """
        return self._preset("llm", layers)

    def http(
        self, **layers: Unpack[PresetLayers]
    ) -> Callable[[Callable[P, Awaitable[T]]], ResilientFunction[P, T]]:
        """`resilient` with the HTTP kind's presets: statuses judged by the HTTP rule,
        returned responses with an error status included. Arguments as for `llm`."""
        return self._preset("http", layers)

    def database(
        self, **layers: Unpack[PresetLayers]
    ) -> Callable[[Callable[P, Awaitable[T]]], ResilientFunction[P, T]]:
        """`resilient` with the database kind's presets.

        A database's limit is concurrency: pass ``bulkhead=BulkheadConfig(max_concurrent=
        <pool size>)`` (none by default). Arguments as for `llm`.
        """
        return self._preset("database", layers)

    def mcp(
        self, **layers: Unpack[PresetLayers]
    ) -> Callable[[Callable[P, Awaitable[T]]], ResilientFunction[P, T]]:
        """`resilient` with the MCP kind's presets.

        An MCP server's limit is requests per second: pass e.g.
        ``limiter=TokenBucket.per_second(20)`` (none by default). Arguments as for `llm`.
        """
        return self._preset("mcp", layers)

    def of_kind(
        self, kind: ServiceKind | str, **layers: Unpack[PresetLayers]
    ) -> Callable[[Callable[P, Awaitable[T]]], ResilientFunction[P, T]]:
        """`resilient` with the presets of `kind` (a `ServiceKind` or its name)."""
        return self._preset(kind, layers)

    def _preset(
        self, kind: ServiceKind | str, layers: PresetLayers
    ) -> Callable[[Callable[P, Awaitable[T]]], ResilientFunction[P, T]]:
        from actors._kinds import kind_named

        unknown = layers.keys() - PresetLayers.__optional_keys__
        if unknown:
            raise TypeError(f"unexpected keyword argument {min(unknown)!r}")
        preset = kind_named(kind)
        merged: PresetLayers = {
            "retry": preset.retry,
            "breaker": preset.breaker,
            "classifier": preset.classifier,
            **layers,
        }
        return self(**merged)

    def from_config(
        self,
        config: ResilienceConfig | Mapping[str, Any],
        *,
        cost: Cost | None = None,
        usage: Callable[[Any], Mapping[str, float] | float] | None = None,
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
            usage, name, registry, limiter_store: As for `resilient`.
            classifier: Replaces the configuration's classifier (its ``classifier`` key,
                else its preset kind's).

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
            bulkhead=config.bulkhead if config.adaptive is None else config.adaptive,
            cost=config.limiter_cost() if cost is None else cost,
            usage=usage,
            classifier=classifier if classifier is not None else config.classifier,
            name=name,
            registry=registry,
            limiter_store=limiter_store,
        )


resilient = _Resilient()
"""The decorator factory: ``@resilient(retry=..., breaker=..., limiter=..., bulkhead=...)``,
``@resilient.llm()``, ``@resilient.http()``, ``@resilient.database()``, ``@resilient.mcp()``,
``@resilient.from_config(cfg)``."""
