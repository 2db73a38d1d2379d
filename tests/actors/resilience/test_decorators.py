"""`resilient`: layer order, scripted chaos, sharing, presets, cancellation, bad arguments."""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Iterable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from actors import (
    KINDS,
    AttemptTimeout,
    BulkheadFull,
    CircuitOpen,
    ConfigError,
    DatabaseClassifier,
    DeadlineExceeded,
    ErrorClass,
    ErrorClassifier,
    HTTPClassifier,
    LLMClassifier,
    MCPClassifier,
    RateLimited,
)
from actors.resilience import (
    BreakerConfig,
    BreakerRegistry,
    BreakerState,
    Bulkhead,
    BulkheadConfig,
    CircuitBreaker,
    ColdStart,
    Limiter,
    MultiLimit,
    Resilience,
    Retrier,
    RetryPolicy,
    TokenBucket,
    create_breaker,
    create_bulkhead,
    create_limiter,
    create_retrier,
    resilient,
)
from actors.testing import capture_events

pytestmark = pytest.mark.anyio

virtual_time = pytest.mark.virtual_time


class Transient(ConnectionError):
    """A retryable failure (a `ConnectionError`) for every classifier."""


class Permanent(Exception):
    """A permanent failure (any other `Exception`) for the generic classifier."""


class Script:
    """An async function whose outcomes follow a script: "ok", "retry" or "perm" per call."""

    def __init__(self, outcomes: Iterable[str], *, duration: float = 0.0) -> None:
        self.outcomes = list(outcomes)
        self.duration = duration
        self.calls = 0
        self.times: list[float] = []

    async def __call__(self, value: int) -> int:
        self.calls += 1
        self.times.append(anyio.current_time())
        if self.duration:
            await anyio.sleep(self.duration)
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if outcome == "retry":
            raise Transient(f"transient #{self.calls}")
        if outcome == "perm":
            raise Permanent(f"permanent #{self.calls}")
        return value


def exact_retrier(policy: RetryPolicy) -> Retrier:
    """A retrier whose jitter always returns the full cap, so delays are exact."""
    return create_retrier(policy, service="svc", random=lambda: 1.0)


def quiet_breaker() -> BreakerConfig:
    """A breaker that counts but never opens within a test."""
    return BreakerConfig(window_size=1000, minimum_calls=1000, slow_call_duration=math.inf)


# --- shape of the decorated function -------------------------------------------------


def test_keeps_signature_name_and_docstring() -> None:
    """The decorated function has the original's signature, name, docstring and __wrapped__."""

    async def fetch(url: str, *, timeout: float = 1.0) -> bytes:
        """Fetches."""
        return url.encode()

    wrapped = resilient(retry=RetryPolicy(), breaker=BreakerConfig())(fetch)
    assert inspect.signature(wrapped) == inspect.signature(fetch)
    assert wrapped.__name__ == "fetch"
    assert wrapped.__doc__ == "Fetches."
    assert wrapped.__wrapped__ is fetch
    assert inspect.iscoroutinefunction(wrapped)


def test_exposes_one_primitive_per_layer_named_after_the_function() -> None:
    """`fn.resilience` holds the primitives made for this function, named after it."""

    async def lookup(key: str) -> str:
        return key

    wrapped = resilient(
        retry=RetryPolicy(),
        breaker=BreakerConfig(),
        limiter=TokenBucket.per_second(10),
        bulkhead=BulkheadConfig(),
    )(lookup)
    res = wrapped.resilience
    assert isinstance(res, Resilience)
    assert isinstance(res.retrier, Retrier)
    assert isinstance(res.breaker, CircuitBreaker)
    assert isinstance(res.limiter, Limiter)
    assert isinstance(res.bulkhead, Bulkhead)
    assert res.name.endswith("lookup")
    assert res.breaker.name == res.name
    assert isinstance(res.classifier, ErrorClassifier)


def test_each_decorated_function_owns_its_primitives() -> None:
    """One `resilient(...)` applied twice makes two independent sets of primitives."""
    policy = resilient(breaker=BreakerConfig(), name="svc")

    async def a() -> None: ...

    async def b() -> None: ...

    assert policy(a).resilience.breaker is not policy(b).resilience.breaker


def test_original_function_is_left_untouched() -> None:
    """Decorating without layers still returns a new function; the original gets nothing."""

    async def plain() -> int:
        return 1

    wrapped = resilient()(plain)
    assert wrapped is not plain
    assert not hasattr(plain, "resilience")
    assert wrapped.resilience.breaker is None


async def test_no_layers_returns_the_result() -> None:
    """With every layer off the call simply returns the function's result."""

    @resilient()
    async def double(x: int) -> int:
        return 2 * x

    assert await double(21) == 42


async def test_works_on_methods() -> None:
    """Decorating a method binds `self` like the undecorated method."""

    class Client:
        def __init__(self) -> None:
            self.base = 10

        @resilient(retry=RetryPolicy(), breaker=BreakerConfig())
        async def add(self, x: int, *, extra: int = 0) -> int:
            return self.base + x + extra

    assert await Client().add(1, extra=2) == 13


async def test_success_path_never_touches_tenacity(monkeypatch: pytest.MonkeyPatch) -> None:
    """A successful call through all four layers creates no tenacity object."""
    import tenacity

    def forbidden(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("tenacity used")

    monkeypatch.setattr(tenacity, "Retrying", forbidden)
    fn = resilient.llm(
        limiter=TokenBucket.per_second(100), bulkhead=BulkheadConfig(max_concurrent=2)
    )(Script([]))
    assert await fn(3) == 3


@virtual_time
async def test_layer_metrics_match_the_primitives_own_accounting() -> None:
    """Slots, tokens and calls taken by the decorator show in each primitive's metrics."""

    async def work(value: int) -> int:
        await anyio.sleep(1.0)
        return value

    fn = resilient(
        retry=RetryPolicy(budget_ratio=None),
        breaker=quiet_breaker(),
        limiter=TokenBucket.per_second(100),
        bulkhead=BulkheadConfig(max_concurrent=2, max_queued=5),
    )(work)
    async with anyio.create_task_group() as tg:
        for value in range(3):
            tg.start_soon(fn, value)
    res = fn.resilience
    assert res.bulkhead is not None
    assert res.limiter is not None
    assert res.breaker is not None
    assert res.retrier is not None
    bulkhead = res.bulkhead.metrics()
    assert (bulkhead.admitted, bulkhead.max_active, bulkhead.max_queued) == (3, 2, 1)
    assert (bulkhead.active, bulkhead.queued, bulkhead.rejected) == (0, 0, 0)
    assert res.limiter.metrics().admitted == 3
    assert res.limiter.metrics().admitted_cost == 3
    assert res.breaker.metrics().successes == 3
    assert res.retrier.metrics.calls == 3


# --- the contract: scripted chaos ----------------------------------------------------


def expected_counts(outcomes: list[str], calls: int, attempts: int) -> dict[str, Any]:
    """A reference model of retry-around-breaker for a script (no budget, never opens)."""
    script = list(outcomes)
    expected: dict[str, Any] = {
        "fn_calls": 0,
        "retries": 0,
        "permanent": 0,
        "exhausted": 0,
        "successes": 0,
        "failures": 0,
        "results": [],
        "sleeps": [],
    }
    for call in range(calls):
        for attempt in range(1, attempts + 1):
            outcome = script.pop(0) if script else "ok"
            expected["fn_calls"] += 1
            if outcome == "ok":
                expected["successes"] += 1
                expected["results"].append(call)
                break
            expected["failures"] += 1
            if outcome == "perm":
                expected["permanent"] += 1
                expected["results"].append("Permanent")
                break
            if attempt == attempts:
                expected["exhausted"] += 1
                expected["results"].append("Transient")
                break
            expected["retries"] += 1
            expected["sleeps"].append(0.25 * 2 ** (attempt - 1))
    return expected


@virtual_time
@pytest.mark.parametrize("seed", [1, 7, 42])
async def test_scripted_chaos_counts_match_the_script(seed: int) -> None:
    """Under a seeded script of failures, every count matches what was injected."""
    rng = random.Random(seed)
    outcomes = rng.choices(["ok", "retry", "perm"], weights=[5, 4, 1], k=60)
    calls, attempts = 20, 3
    expected = expected_counts(outcomes, calls, attempts)
    script = Script(outcomes)
    policy = RetryPolicy(attempts=attempts, backoff_initial=0.25, budget_ratio=None)
    fn = resilient(retry=exact_retrier(policy), breaker=quiet_breaker())(script)
    results: list[object] = []
    start = anyio.current_time()
    with capture_events() as events:
        for call in range(calls):
            try:
                results.append(await fn(call))
            except (Transient, Permanent) as exc:
                results.append(type(exc).__name__)
    elapsed = anyio.current_time() - start

    res = fn.resilience
    assert res.retrier is not None
    assert res.breaker is not None
    metrics = res.breaker.metrics()
    assert results == expected["results"]
    assert script.calls == expected["fn_calls"]
    assert res.retrier.metrics.calls == calls
    assert res.retrier.metrics.retries == expected["retries"]
    assert res.retrier.metrics.give_ups["not_retryable"] == expected["permanent"]
    assert res.retrier.metrics.give_ups["attempts"] == expected["exhausted"]
    assert metrics.successes == expected["successes"]
    assert metrics.failures == expected["failures"]
    assert metrics.not_permitted == 0
    assert [e["event"] for e in events].count("retry.scheduled") == expected["retries"]
    assert elapsed == pytest.approx(sum(expected["sleeps"]), abs=1e-9)


@virtual_time
@pytest.mark.parametrize("seed", [3, 11])
async def test_concurrent_chaos_through_all_layers_counts_match(seed: int) -> None:
    """30 concurrent callers, each with its own seeded script, through all four layers."""
    rng = random.Random(seed)
    attempts = 3
    scripts = [rng.choices(["ok", "retry", "perm"], weights=[5, 4, 1], k=3) for _ in range(30)]
    per_call = [expected_counts(script, 1, attempts) for script in scripts]
    remaining = [list(script) for script in scripts]
    fn_calls = 0

    async def flaky(index: int) -> int:
        nonlocal fn_calls
        fn_calls += 1
        await anyio.sleep(0.01)
        outcome = remaining[index].pop(0)
        if outcome == "retry":
            raise Transient(index)
        if outcome == "perm":
            raise Permanent(index)
        return index

    policy = RetryPolicy(attempts=attempts, backoff_initial=0.25, budget_ratio=None)
    fn = resilient(
        retry=exact_retrier(policy),
        breaker=quiet_breaker(),
        limiter=TokenBucket.per_second(1000),
        bulkhead=BulkheadConfig(max_concurrent=5, max_queued=30),
    )(flaky)
    outcomes: dict[int, str] = {}

    async def caller(index: int) -> None:
        try:
            await fn(index)
            outcomes[index] = "ok"
        except (Transient, Permanent) as exc:
            outcomes[index] = type(exc).__name__

    async with anyio.create_task_group() as tg:
        for index in range(len(scripts)):
            tg.start_soon(caller, index)

    def total(key: str) -> int:
        return sum(expected[key] for expected in per_call)

    res = fn.resilience
    assert res.retrier is not None
    assert res.breaker is not None
    assert res.limiter is not None
    assert res.bulkhead is not None
    for index, expected in enumerate(per_call):
        result = expected["results"][0]
        assert outcomes[index] == ("ok" if result == 0 else result)
    assert fn_calls == total("fn_calls")
    assert res.retrier.metrics.retries == total("retries")
    assert res.retrier.metrics.give_ups["not_retryable"] == total("permanent")
    assert res.retrier.metrics.give_ups["attempts"] == total("exhausted")
    assert res.breaker.metrics().successes == total("successes")
    assert res.breaker.metrics().failures == total("failures")
    assert res.limiter.metrics().admitted == total("fn_calls")
    assert res.bulkhead.metrics().max_active == 5
    assert res.bulkhead.metrics().active == 0


@virtual_time
async def test_open_breaker_stops_the_retries() -> None:
    """Retry sits outside the breaker: once it opens, CircuitOpen ends the retrying."""
    script = Script(["retry"] * 10)
    policy = RetryPolicy(attempts=5, backoff_initial=0.1, budget_ratio=None)
    breaker = BreakerConfig(
        window_size=10, minimum_calls=10, consecutive_failures=3, slow_call_duration=math.inf
    )
    fn = resilient(retry=exact_retrier(policy), breaker=breaker)(script)
    with capture_events() as events:
        with pytest.raises(CircuitOpen):
            await fn(1)
        with pytest.raises(CircuitOpen):
            await fn(2)
    res = fn.resilience
    assert res.retrier is not None
    assert res.breaker is not None
    assert script.calls == 3  # attempts 1-3 failed; the 4th was refused by the breaker
    assert res.retrier.metrics.retries == 3
    assert res.breaker.metrics().failures == 3
    assert res.breaker.metrics().not_permitted == 2
    assert [e["event"] for e in events].count("breaker.opened") == 1


@virtual_time
async def test_breaker_half_opens_and_closes_through_the_decorator() -> None:
    """After the open duration a trial call goes through and a success closes the breaker."""
    script = Script(["perm", "ok"])
    breaker = BreakerConfig(
        window_size=5,
        minimum_calls=1,
        failure_rate_threshold=1.0,
        open_duration=2.0,
        open_jitter=0.0,
        half_open_permits=1,
        slow_call_duration=math.inf,
    )
    fn = resilient(breaker=breaker)(script)
    with pytest.raises(Permanent):
        await fn(1)
    guard = fn.resilience.breaker
    assert guard is not None
    assert guard.metrics().state is BreakerState.OPEN
    with pytest.raises(CircuitOpen) as info:
        await fn(2)
    assert info.value.retry_after == pytest.approx(2.0, abs=1e-9)
    await anyio.sleep(2.0)
    assert await fn(3) == 3
    assert guard.metrics().state is BreakerState.CLOSED


async def test_permanent_failure_is_not_retried_but_counted() -> None:
    """A permanent failure is raised at once and counted by the breaker."""
    script = Script(["perm"])
    fn = resilient(retry=RetryPolicy(), breaker=quiet_breaker())(script)
    with pytest.raises(Permanent):
        await fn(1)
    assert script.calls == 1
    assert fn.resilience.breaker is not None
    assert fn.resilience.retrier is not None
    assert fn.resilience.breaker.metrics().failures == 1
    assert fn.resilience.retrier.metrics.give_ups["not_retryable"] == 1


async def test_ignored_failure_is_neither_retried_nor_counted() -> None:
    """A failure the classifier ignores (a ConfigError) returns the permit uncounted."""
    calls = 0

    async def misconfigured() -> None:
        nonlocal calls
        calls += 1
        raise ConfigError("x", 1, "bad")

    fn = resilient(retry=RetryPolicy(), breaker=quiet_breaker())(misconfigured)
    with pytest.raises(ConfigError):
        await fn()
    assert calls == 1
    assert fn.resilience.breaker is not None
    metrics = fn.resilience.breaker.metrics()
    assert (metrics.failures, metrics.ignored) == (0, 1)


# --- limiter and bulkhead placement ---------------------------------------------------


@virtual_time
async def test_every_attempt_takes_limiter_capacity() -> None:
    """Retries are rate-limited too: a third attempt waits for a token to refill."""
    script = Script(["retry", "retry", "ok"])
    policy = RetryPolicy(attempts=3, backoff_initial=0.0, backoff_max=0.0, budget_ratio=None)
    fn = resilient(retry=policy, limiter=TokenBucket(rate=1, period=1.0, capacity=2))(script)
    start = anyio.current_time()
    assert await fn(5) == 5
    assert anyio.current_time() - start == pytest.approx(1.0, abs=1e-9)
    assert fn.resilience.limiter is not None
    assert fn.resilience.limiter.metrics().admitted == 3
    assert [t - start for t in script.times] == pytest.approx([0.0, 0.0, 1.0], abs=1e-9)


@virtual_time
async def test_a_call_waiting_for_the_limiter_is_counted_once() -> None:
    """A call the inline fast path cannot admit waits and counts one waited admission."""
    limiter = create_limiter(TokenBucket(rate=1, period=1.0, capacity=1), name="svc")
    fn = resilient(limiter=limiter, cost=1)(Script(["ok", "ok"]))
    start = anyio.current_time()
    await fn(1)
    await fn(2)
    assert anyio.current_time() - start == pytest.approx(1.0, abs=1e-9)
    metrics = limiter.metrics()
    assert (metrics.admitted, metrics.admitted_cost, metrics.waited, metrics.rejected) == (
        2,
        2.0,
        1,
        0,
    )


@virtual_time
async def test_rate_limited_is_not_retried_and_returns_the_breaker_permit() -> None:
    """RateLimited (wait beyond the caller's deadline) ends the call; the breaker counts nothing."""
    script = Script([])
    fn = resilient(
        retry=RetryPolicy(budget_ratio=None),
        breaker=quiet_breaker(),
        limiter=TokenBucket(rate=1, period=1.0, capacity=1),
    )(script)
    assert await fn(1) == 1
    with anyio.fail_after(0.5), pytest.raises(RateLimited):
        await fn(2)
    res = fn.resilience
    assert res.breaker is not None
    assert res.retrier is not None
    assert script.calls == 1
    metrics = res.breaker.metrics()
    assert (metrics.successes, metrics.failures, metrics.ignored) == (1, 0, 1)
    assert res.retrier.metrics.retries == 0


@virtual_time
async def test_bulkhead_slot_is_held_across_retries() -> None:
    """The bulkhead is outermost: a call sleeping between attempts still holds its slot."""
    script = Script(["retry", "ok"])
    policy = RetryPolicy(attempts=2, backoff_initial=1.0, budget_ratio=None)
    fn = resilient(
        retry=exact_retrier(policy),
        breaker=quiet_breaker(),
        limiter=TokenBucket.per_second(100),
        bulkhead=BulkheadConfig(max_concurrent=1, max_queued=0),
    )(script)
    res = fn.resilience
    assert res.limiter is not None
    assert res.breaker is not None
    assert res.bulkhead is not None
    async with anyio.create_task_group() as tg:
        tg.start_soon(fn, 1)
        await anyio.sleep(0.5)  # the first call is in its backoff sleep
        with pytest.raises(BulkheadFull):
            await fn(2)
        assert res.limiter.metrics().admitted == 1  # the refused call took no token
    assert script.calls == 2
    assert res.bulkhead.metrics().active == 0
    assert res.breaker.metrics().not_permitted == 0


@virtual_time
async def test_bulkhead_queues_callers_in_order() -> None:
    """With a queue, a second caller waits for the slot and then runs."""
    order: list[str] = []

    @resilient(bulkhead=BulkheadConfig(max_concurrent=1, max_queued=1))
    async def work(name: str) -> None:
        order.append(f"start {name}")
        await anyio.sleep(1.0)
        order.append(f"end {name}")

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(work, "a")
        await anyio.lowlevel.checkpoint()
        tg.start_soon(work, "b")
    assert order == ["start a", "end a", "start b", "end b"]
    assert anyio.current_time() - start == pytest.approx(2.0, abs=1e-9)


@virtual_time
async def test_attempt_timeout_counts_as_a_breaker_failure_and_is_retried() -> None:
    """A timed-out attempt is an `AttemptTimeout` failure for the breaker, then retried."""
    script = Script([], duration=5.0)
    policy = RetryPolicy(
        attempts=2, attempt_timeout=1.0, backoff_initial=0.0, backoff_max=0.0, budget_ratio=None
    )

    async def slow_then_fast(value: int) -> int:
        if script.calls == 0:
            return await script(value)
        script.calls += 1
        return value

    fn = resilient(retry=policy, breaker=quiet_breaker())(slow_then_fast)
    start = anyio.current_time()
    assert await fn(9) == 9
    assert anyio.current_time() - start == pytest.approx(1.0, abs=1e-9)
    assert fn.resilience.breaker is not None
    assert fn.resilience.retrier is not None
    metrics = fn.resilience.breaker.metrics()
    assert (metrics.failures, metrics.successes, metrics.cancelled) == (1, 1, 0)
    assert fn.resilience.retrier.metrics.retries == 1


@virtual_time
async def test_shared_retrier_with_attempt_timeout_keeps_its_metrics() -> None:
    """A shared Retrier with attempt_timeout is used with its own metrics and budget."""
    retrier = create_retrier(
        RetryPolicy(attempts=2, attempt_timeout=1.0, backoff_initial=0.0, budget_ratio=None),
        service="svc",
    )
    script = Script([], duration=2.0)
    fn = resilient(retry=retrier, breaker=quiet_breaker())(script)
    with pytest.raises(AttemptTimeout):
        await fn(1)
    assert fn.resilience.retrier is retrier
    assert retrier.metrics.calls == 1
    assert retrier.metrics.retries == 1
    assert retrier.metrics.give_ups["attempts"] == 1
    assert fn.resilience.breaker is not None
    assert fn.resilience.breaker.metrics().failures == 2


# --- cancellation ---------------------------------------------------------------------


@virtual_time
async def test_cancellation_is_not_a_failure_and_releases_everything() -> None:
    """A caller's cancellation is not retried, not counted, and frees slot and permit."""
    script = Script([], duration=10.0)
    fn = resilient(
        retry=RetryPolicy(budget_ratio=None),
        breaker=quiet_breaker(),
        limiter=TokenBucket.per_second(10),
        bulkhead=BulkheadConfig(max_concurrent=1),
    )(script)
    with anyio.move_on_after(1.0) as scope:
        await fn(1)
    assert scope.cancelled_caught
    res = fn.resilience
    assert res.breaker is not None
    assert res.bulkhead is not None
    assert res.retrier is not None
    metrics = res.breaker.metrics()
    assert (metrics.failures, metrics.successes, metrics.cancelled) == (0, 0, 1)
    assert res.bulkhead.metrics().active == 0
    assert res.retrier.metrics.retries == 0
    assert script.calls == 1


@virtual_time
async def test_cancellation_while_waiting_for_the_limiter_returns_the_permit() -> None:
    """A caller cancelled while queued at the limiter leaves a half-open permit free."""
    breaker = create_breaker(
        "svc",
        BreakerConfig(
            window_size=5,
            minimum_calls=1,
            open_duration=1.0,
            open_jitter=0.0,
            half_open_permits=1,
            slow_call_duration=math.inf,
        ),
    )
    breaker.force(BreakerState.HALF_OPEN)
    limiter = create_limiter(TokenBucket(rate=1, period=10.0, capacity=1), name="svc")
    await limiter.acquire(1)  # empty the bucket
    script = Script([])
    fn = resilient(breaker=breaker, limiter=limiter)(script)
    async with anyio.create_task_group() as tg:
        tg.start_soon(fn, 1)
        await anyio.sleep(1.0)
        assert limiter.metrics().queued == 1
        assert breaker.metrics().half_open_in_flight == 1
        tg.cancel_scope.cancel()
    assert breaker.metrics().half_open_in_flight == 0
    assert breaker.metrics().cancelled == 1
    assert script.calls == 0


# --- sharing, costs, presets, config --------------------------------------------------


async def test_functions_share_a_breaker_through_a_registry() -> None:
    """Two functions of one service share its breaker: failures of one open it for both."""
    registry = BreakerRegistry()
    config = BreakerConfig(
        window_size=2, minimum_calls=2, failure_rate_threshold=1.0, slow_call_duration=math.inf
    )
    failing = Script(["perm", "perm"])
    healthy = Script([])
    first = resilient(breaker=config, registry=registry, name="db")(failing)
    second = resilient(breaker=config, registry=registry, name="db")(healthy)
    assert first.resilience.breaker is second.resilience.breaker is registry.get("db")
    for value in (1, 2):
        with pytest.raises(Permanent):
            await first(value)
    with pytest.raises(CircuitOpen):
        await second(3)
    assert healthy.calls == 0


async def test_shared_instances_are_used_as_given() -> None:
    """Passing runtime instances shares them instead of making new ones."""
    breaker = create_breaker("svc", quiet_breaker())
    limiter = create_limiter(TokenBucket.per_second(100), name="svc")
    bulkhead = create_bulkhead(BulkheadConfig(), name="svc")
    fn = resilient(breaker=breaker, limiter=limiter, bulkhead=bulkhead)(Script([]))
    assert await fn(4) == 4
    assert fn.resilience.breaker is breaker
    assert fn.resilience.limiter is limiter
    assert fn.resilience.bulkhead is bulkhead
    assert breaker.metrics().successes == 1
    assert limiter.metrics().admitted == 1


async def test_cost_function_reaches_every_named_limit() -> None:
    """A cost function of the arguments charges each named limit of a multi-limit."""
    limits = {"requests": TokenBucket.per_minute(100), "tokens": TokenBucket.per_minute(10_000)}

    @resilient(limiter=limits, cost=lambda prompt: {"requests": 1, "tokens": len(prompt)})
    async def complete(prompt: str) -> str:
        return prompt.upper()

    assert await complete("hello") == "HELLO"
    assert await complete("hi") == "HI"
    limiter = complete.resilience.limiter
    assert isinstance(limiter, MultiLimit)
    assert limiter.metrics().admitted_cost == {"requests": 2, "tokens": 7}


async def test_number_cost_charges_every_limit_of_a_multi_limit() -> None:
    """A plain number costs that many units of each named limit."""
    limits = {"a": TokenBucket.per_second(10), "b": TokenBucket.per_second(10)}
    fn = resilient(limiter=limits, cost=2)(Script([]))
    await fn(1)
    limiter = fn.resilience.limiter
    assert isinstance(limiter, MultiLimit)
    assert limiter.metrics().admitted_cost == {"a": 2, "b": 2}


async def test_cost_function_for_a_single_limiter() -> None:
    """A cost function returning a number charges a single limiter per attempt."""

    @resilient(limiter=TokenBucket.per_second(100), cost=lambda n: n)
    async def batch(n: int) -> int:
        return n

    await batch(3)
    await batch(4)
    assert isinstance(batch.resilience.limiter, Limiter)
    assert batch.resilience.limiter.metrics().admitted_cost == 7


@pytest.mark.parametrize(
    ("preset", "retry", "breaker", "classifier"),
    [
        ("llm", RetryPolicy.for_llm(), BreakerConfig.for_llm(), LLMClassifier),
        ("http", RetryPolicy.for_http(), BreakerConfig.for_http(), HTTPClassifier),
        ("database", RetryPolicy.for_database(), BreakerConfig.for_database(), DatabaseClassifier),
        ("mcp", RetryPolicy.for_mcp(), BreakerConfig.for_mcp(), MCPClassifier),
    ],
)
def test_presets_use_the_primitives_presets(
    preset: str, retry: RetryPolicy, breaker: BreakerConfig, classifier: type[Any]
) -> None:
    """`resilient.llm/http/database/mcp` build from their kind's presets (`actors.KINDS`)."""

    async def call() -> None: ...

    fn = getattr(resilient, preset)()(call)
    res = fn.resilience
    assert res.retrier.policy == retry == KINDS[preset].retry
    assert res.breaker.config == breaker == KINDS[preset].breaker
    assert isinstance(res.classifier, classifier)
    assert res.classifier is KINDS[preset].classifier
    assert res.limiter is None
    assert res.bulkhead is None


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_of_kind_takes_a_kind_or_its_name(kind: str) -> None:
    """`resilient.of_kind` builds the same layers from a `ServiceKind` or its name."""

    async def call() -> None: ...

    by_name = resilient.of_kind(kind)(call).resilience
    by_record = resilient.of_kind(KINDS[kind])(call).resilience
    assert by_name.classifier is by_record.classifier is KINDS[kind].classifier
    assert by_name.retrier is not None
    assert by_record.retrier is not None
    assert by_name.retrier.policy == by_record.retrier.policy == KINDS[kind].retry


def test_an_unknown_kind_is_a_config_error() -> None:
    """`resilient.of_kind` names the field of an unknown kind."""
    with pytest.raises(ConfigError) as info:
        resilient.of_kind("redis")
    assert (info.value.field, info.value.value) == ("kind", "redis")


def test_a_preset_takes_a_classifier_of_its_own() -> None:
    """A preset's classifier can be replaced like any other layer."""
    mine = HTTPClassifier(quota_codes={"out_of_credit"})

    async def call() -> None: ...

    assert resilient.llm(classifier=mine)(call).resilience.classifier is mine


def test_the_classifier_defaults_to_a_shared_retriers() -> None:
    """Without a classifier, a shared Retrier's classifier judges the calls."""
    db = DatabaseClassifier()
    retrier = create_retrier(RetryPolicy(), service="db", classifier=db)

    async def call() -> None: ...

    assert resilient(retry=retrier)(call).resilience.classifier is db
    assert isinstance(resilient()(call).resilience.classifier, ErrorClassifier)


def test_preset_layers_can_be_replaced_or_turned_off() -> None:
    """A preset's argument replaces its layer; None turns it off."""

    async def call() -> None: ...

    fn = resilient.mcp(breaker=None, limiter=TokenBucket.per_second(20))(call)
    assert fn.resilience.breaker is None
    assert isinstance(fn.resilience.limiter, Limiter)
    assert fn.resilience.retrier is not None


@pytest.mark.parametrize("keyword", ["retries", "deadline"])
def test_presets_reject_other_keywords(keyword: str) -> None:
    """A preset takes the keyword arguments of `resilient` only; others are a TypeError."""
    with pytest.raises(TypeError, match=keyword):
        resilient.llm(**{keyword: None})  # type: ignore[arg-type]


async def test_from_config_builds_the_layers_of_a_dict() -> None:
    """`resilient.from_config` reads a dict in the configuration format."""
    config = {
        "preset": "database",
        "retry": {"attempts": 2},
        "bulkhead": {"max_concurrent": 4},
        "limiter": {"kind": "gcra", "emission_interval": 0.01},
    }
    fn = resilient.from_config(config, name="orders")(Script([]))
    assert await fn(8) == 8
    res = fn.resilience
    assert res.name == "orders"
    assert res.retrier is not None
    assert res.retrier.policy.attempts == 2
    assert isinstance(res.classifier, DatabaseClassifier)
    assert res.bulkhead is not None
    assert res.bulkhead.config.max_concurrent == 4
    assert isinstance(res.limiter, Limiter)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"breaker": "closed"}, "breaker"),
        ({"retry": 3}, "retry"),
        ({"bulkhead": 10}, "bulkhead"),
        ({"limiter": 100}, "limiter"),
        ({"limiter": TokenBucket.per_second(10), "cost": 11}, "cost"),
        ({"limiter": TokenBucket.per_second(10), "cost": -1}, "cost"),
        ({"limiter": TokenBucket.per_second(10), "cost": {"a": 1}}, "cost"),
        ({"limiter": {"a": TokenBucket.per_second(10)}, "cost": {"b": 1}}, "cost.b"),
        ({"classifier": object()}, "classifier"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict[str, Any], field: str) -> None:
    """Arguments of the wrong kind raise ConfigError naming the argument."""

    async def call() -> None: ...

    with pytest.raises(ConfigError) as info:
        resilient(**kwargs)(call)
    assert info.value.field == field


# --- what a failed attempt leaves at the limiter ----------------------------------------


@virtual_time
async def test_a_call_cut_by_the_policy_timeout_keeps_its_reservation() -> None:
    """The attempt `RetryPolicy.timeout` cut had reached the service: its units stay spent."""
    limiter = create_limiter(TokenBucket(rate=1, period=60.0, capacity=1), name="svc")
    fn = resilient(retry=RetryPolicy(timeout=1.0), limiter=limiter)(Script([], duration=5.0))
    with pytest.raises(DeadlineExceeded):
        await fn(1)
    assert limiter.metrics().available == pytest.approx(1 / 60, abs=1e-9)


@virtual_time
async def test_an_attempt_refused_further_in_returns_its_reservation() -> None:
    """An IGNORED failure from inside the operation (another layer's refusal) never
    reached the service: its units are given back."""

    async def refused() -> None:
        raise CircuitOpen("inner", 1.0)

    limiter = create_limiter(TokenBucket(rate=1, period=60.0, capacity=1), name="svc")
    fn = resilient(limiter=limiter)(refused)
    with pytest.raises(CircuitOpen):
        await fn()
    assert limiter.metrics().available == pytest.approx(1.0, abs=1e-9)


@virtual_time
@pytest.mark.parametrize(
    ("verdict", "attempts", "counted"),
    [
        (ErrorClass.RETRYABLE, 3, (0, 3, 0)),
        (ErrorClass.THROTTLED, 3, (0, 0, 3)),
        (ErrorClass.PERMANENT, 1, (0, 1, 0)),
        (ErrorClass.REJECTED, 1, (1, 0, 0)),
        (ErrorClass.IGNORED, 1, (0, 0, 1)),
    ],
    ids=lambda value: value.name if isinstance(value, ErrorClass) else None,
)
async def test_one_verdict_feeds_the_retry_and_the_breaker(
    verdict: ErrorClass, attempts: int, counted: tuple[int, int, int]
) -> None:
    """Each attempt's one verdict decides both its retry and its breaker count
    (successes, failures, ignored)."""
    script = Script(["perm"] * 3)
    policy = RetryPolicy(attempts=3, backoff_initial=0.0, backoff_max=0.0, budget_ratio=None)
    fn = resilient(
        retry=policy,
        breaker=quiet_breaker(),
        classifier=ErrorClassifier(overrides={Permanent: verdict}),
    )(script)
    with pytest.raises(Permanent):
        await fn(1)
    breaker = fn.resilience.breaker
    assert breaker is not None
    metrics = breaker.metrics()
    assert script.calls == attempts
    assert (metrics.successes, metrics.failures, metrics.ignored) == counted


# --- returned values judged as failures -------------------------------------------------


class Response:
    """A returned HTTP response (status, usage), as an HTTP client's call returns it."""

    def __init__(self, status_code: int, tokens: int | None = None) -> None:
        self.status_code = status_code
        self.usage = None if tokens is None else {"total_tokens": tokens}


@virtual_time
async def test_usage_reconciles_successes_only() -> None:
    """A value judged a failure keeps its estimate; `usage` is never asked about it."""
    replies = [Response(503), Response(200, tokens=40)]
    seen: list[Response] = []

    def usage(reply: Response) -> dict[str, float]:
        seen.append(reply)
        assert reply.usage is not None
        return {"tokens": reply.usage["total_tokens"]}

    @resilient(
        retry=RetryPolicy(attempts=2, backoff_initial=0.0, backoff_max=0.0, budget_ratio=None),
        limiter={"tokens": TokenBucket.per_minute(1_000)},
        cost=lambda: {"tokens": 300},
        usage=usage,
        classifier=HTTPClassifier(),
    )
    async def complete() -> Response:
        return replies.pop(0)

    assert (await complete()).status_code == 200
    limiter = complete.resilience.limiter
    assert isinstance(limiter, MultiLimit)
    assert [reply.status_code for reply in seen] == [200]
    assert limiter.metrics().available == {"tokens": pytest.approx(1_000 - 300 - 40)}


async def test_a_returned_failure_that_is_not_retried_is_a_give_up() -> None:
    """A returned 401 is returned after one attempt and counted as a "not_retryable"
    give-up, as a raised one is."""
    calls = 0

    @resilient(retry=RetryPolicy(), classifier=HTTPClassifier())
    async def fetch() -> Response:
        nonlocal calls
        calls += 1
        return Response(401)

    assert (await fetch()).status_code == 401
    assert calls == 1
    assert fetch.resilience.retrier is not None
    assert fetch.resilience.retrier.metrics.give_ups["not_retryable"] == 1


@pytest.mark.virtual_time
async def test_usage_reconciles_a_single_limit() -> None:
    """With one limit, the usage figure (a number or a one-entry mapping) replaces the
    attempt's estimate."""
    for usage in (lambda _reply: 3, lambda _reply: {"tokens": 3}):
        limiter = create_limiter(TokenBucket(rate=1, period=1000.0, capacity=100), name="one")

        @resilient(limiter=limiter, cost=lambda _x: 10, usage=usage)
        async def call(x: int) -> int:
            return x

        assert await call(1) == 1
        assert limiter.metrics().available == pytest.approx(97, abs=0.01)


@pytest.mark.virtual_time
async def test_a_single_cold_limit_opens_after_successes_without_usage() -> None:
    """Successes settle their reservations even without usage=, so a single limit's
    cold start learns and opens instead of holding everyone after its first call."""
    limiter = create_limiter(
        TokenBucket.per_second(100), name="cold", cold_start=ColdStart(outstanding=1)
    )

    @resilient(limiter=limiter)
    async def call(x: int) -> int:
        return x

    with anyio.fail_after(1):
        assert [await call(i) for i in range(5)] == list(range(5))
    assert not limiter.learning
