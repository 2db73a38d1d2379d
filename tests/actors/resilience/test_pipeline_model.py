"""The one pipeline against a reference model, through `@resilient` and a service actor.

Hypothesis scripts a sequence of calls. Each call gives the outcome of each of its
attempts (a success, each verdict's representative failure, a returned failing value,
a hang), an optional caller deadline and an optional caller cancellation; the retry
policy may have an overall timeout, the breaker may open on consecutive failures.
The same script runs through `@resilient` and through a `ServiceActor` (the same
`HTTPClassifier`, which also judges returned values; the same fake client), and a
small model of the pipeline predicts, call by call, the attempts made, what the
caller gets, and the breaker's counts.

Every attempt takes 1 s (a hang: until cut), the attempt timeout is 2.5 s, a 429 asks
for 1 s; deadlines and cancellations fall on quarter seconds that no attempt ends on,
so the order of events is never a tie.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import attrs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from actors import (
    ActorConfig,
    CallTimeout,
    HTTPClassifier,
    PoolConfig,
    RateLimited,
    Service,
    ServiceConfig,
    ServiceResponseError,
    open_actor,
)
from actors.resilience import BreakerConfig, CircuitBreaker, RetryPolicy
from actors.testing import virtual_time_backend
from tests.actors.scripted import settle
from tests.actors.services.fake import Backend, Reply, client_factory, scripted_function

ATTEMPTS = 3
LATENCY = 1.0
ATTEMPT_TIMEOUT = 2.5
SERVER_DELAY = 1.0
CALLER_LIMITS = [0.25, 1.75, 3.25, 4.25, 6.75]
CANCEL_AT = [0.75, 2.25, 3.75, 5.75]
POLICY_TIMEOUT = 4.75

# Each outcome: what the fake service does, its verdict, and what the caller sees.
OUTCOMES: dict[str, tuple[str | None, str]] = {
    "ok": (None, "value:ok"),
    "503": ("retryable", "status:503"),
    "429": ("throttled", "status:429"),
    "401": ("permanent", "status:401"),
    "400": ("rejected", "status:400"),
    "refused": ("ignored", "RateLimited"),
    "value503": ("retryable", "value:503"),
    "hang": ("retryable", "AttemptTimeout"),
}


def scripted(outcome: str) -> Any:
    """The fake backend's outcome for one attempt."""
    if outcome == "ok":
        return "ok"
    if outcome == "hang":
        return "hang"
    if outcome == "429":
        return ServiceResponseError("svc", 429, headers={"retry-after": str(SERVER_DELAY)})
    if outcome == "refused":
        return RateLimited("inner", 1.0)
    if outcome == "value503":
        return Reply(text="busy", status_code=503)
    return ServiceResponseError("svc", int(outcome))


@attrs.frozen
class Call:
    script: tuple[str, ...]
    deadline: float | None
    cancel: float | None


@attrs.frozen
class Scenario:
    calls: tuple[Call, ...]
    timeout: float | None
    consecutive_failures: int | None


@attrs.frozen
class Seen:
    """What one call did: attempts made and what the caller got."""

    attempts: int
    result: str


@attrs.define
class Counts:
    """The breaker's counters the model predicts."""

    successes: int = 0
    failures: int = 0
    ignored: int = 0
    cancelled: int = 0
    not_permitted: int = 0

    @classmethod
    def of(cls, breaker: CircuitBreaker | None) -> Counts:
        assert breaker is not None
        m = breaker.metrics()
        return cls(
            m.successes + m.slow_successes,
            m.failures + m.slow_failures,
            m.ignored,
            m.cancelled,
            m.not_permitted,
        )


# --- the reference model ---------------------------------------------------------------


@attrs.define
class Model:
    """The pipeline's decisions, written out plainly for this scenario's layers."""

    scenario: Scenario
    counts: Counts = attrs.field(factory=Counts)
    consecutive: int = 0
    open: bool = False

    def record(self, verdict: str | None) -> None:
        if verdict in (None, "rejected"):
            self.counts.successes += 1
            self.consecutive = 0
        elif verdict in ("retryable", "permanent"):
            self.counts.failures += 1
            self.consecutive += 1
            limit = self.scenario.consecutive_failures
            if limit is not None and self.consecutive >= limit:
                self.open = True
        else:
            self.counts.ignored += 1

    def call(self, call: Call) -> Seen:
        ends = math.inf if self.scenario.timeout is None else self.scenario.timeout
        deadline = math.inf if call.deadline is None else call.deadline
        cancel = math.inf if call.cancel is None else call.cancel
        gone, gone_as = min((deadline, "deadline"), (cancel, "cancelled"))
        retry_limit = min(deadline, ends)  # known in advance; a cancellation is not
        now = 0.0
        result = "?"
        for attempt in range(ATTEMPTS):
            if self.open:
                self.counts.not_permitted += 1
                return Seen(attempt, "CircuitOpen")
            outcome = call.script[attempt]
            finish = math.inf if outcome == "hang" else now + LATENCY
            stop = min(now + ATTEMPT_TIMEOUT, ends)
            if gone < min(finish, stop):
                self.counts.cancelled += 1
                return Seen(attempt + 1, gone_as)
            if stop < finish:
                now = stop
                if stop == ends:
                    self.counts.cancelled += 1
                    return Seen(attempt + 1, "DeadlineExceeded")
                verdict: str | None = "retryable"
                result = "AttemptTimeout"
            else:
                now = finish
                verdict, result = OUTCOMES[outcome]
            self.record(verdict)
            if verdict is None or verdict not in ("retryable", "throttled"):
                return Seen(attempt + 1, result)
            if attempt + 1 == ATTEMPTS:
                return Seen(attempt + 1, result)
            delay = SERVER_DELAY if outcome == "429" and result == "status:429" else 0.0
            if now + delay >= retry_limit:
                return Seen(attempt + 1, result)
            if gone < now + delay:
                return Seen(attempt + 1, gone_as)
            now += delay
        raise AssertionError("unreachable")


# --- the two surfaces ---------------------------------------------------------------------


def retry_policy(scenario: Scenario) -> RetryPolicy:
    return RetryPolicy(
        attempts=ATTEMPTS,
        timeout=scenario.timeout,
        attempt_timeout=ATTEMPT_TIMEOUT,
        backoff_initial=0.0,
        backoff_max=0.0,
        budget_ratio=None,
    )


def breaker_config(scenario: Scenario) -> BreakerConfig:
    return BreakerConfig(
        window="count",
        window_size=1000,
        minimum_calls=1000,
        slow_call_duration=math.inf,
        consecutive_failures=scenario.consecutive_failures,
        open_duration=1e6,
        max_open_duration=1e6,
        open_jitter=0.0,
    )


def label(value: object) -> str:
    if isinstance(value, Reply):
        return f"value:{value.status_code}"
    assert isinstance(value, str)
    return "value:" + value.split(":", 1)[0]


def label_error(exc: Exception) -> str:
    if isinstance(exc, ServiceResponseError):
        return f"status:{exc.status_code}"
    if type(exc) is TimeoutError or isinstance(exc, CallTimeout):
        return "deadline"  # the caller's own deadline: fail_after, or ref.call's timeout
    return type(exc).__name__


async def run_call(invoke: Callable[[Call], Awaitable[object]], call: Call) -> str:
    """Runs one call as its caller would; returns what the caller got."""
    result = "cancelled"

    async def caller() -> None:
        nonlocal result
        try:
            result = label(await invoke(call))
        except Exception as exc:
            result = label_error(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller)
        if call.cancel is not None:
            await anyio.sleep(call.cancel)
            tg.cancel_scope.cancel()
    await settle()  # a cancelled handler has recorded its cancellation
    return result


async def through_decorator(scenario: Scenario) -> tuple[list[Seen], Counts]:
    backend = Backend(latency=LATENCY)
    fn = scripted_function(
        backend,
        retry=retry_policy(scenario),
        breaker=breaker_config(scenario),
        classifier=HTTPClassifier(),
    )

    async def invoke(call: Call) -> object:
        if call.deadline is None:
            return await fn("x")
        with anyio.fail_after(call.deadline):
            return await fn("x")

    seen = []
    for call in scenario.calls:
        backend.outcomes = [scripted(outcome) for outcome in call.script]
        before = backend.requests
        result = await run_call(invoke, call)
        seen.append(Seen(backend.requests - before, result))
    return seen, Counts.of(fn.resilience.breaker)


async def through_service_actor(scenario: Scenario) -> tuple[list[Seen], Counts]:
    backend = Backend(latency=LATENCY)
    service = Service(
        "svc",
        client_factory(backend, classifier=HTTPClassifier()),
        ServiceConfig(
            retry=retry_policy(scenario),
            breaker=breaker_config(scenario),
            pool=PoolConfig(max_size=2, acquire_timeout=5.0, max_idle=None, max_lifetime=None),
            actor=ActorConfig(call_timeout=100.0),
        ),
    )
    seen = []
    async with open_actor(service.actor(), config=service.config.actor) as ref:

        async def invoke(call: Call) -> object:
            return await ref.call("x", timeout=call.deadline)

        for call in scenario.calls:
            backend.outcomes = [scripted(outcome) for outcome in call.script]
            before = backend.requests
            result = await run_call(invoke, call)
            seen.append(Seen(backend.requests - before, result))
    return seen, Counts.of(service.breaker)


# --- the property --------------------------------------------------------------------------

calls = st.builds(
    Call,
    script=st.tuples(*[st.sampled_from(sorted(OUTCOMES))] * ATTEMPTS),
    deadline=st.none() | st.sampled_from(CALLER_LIMITS),
    cancel=st.none() | st.sampled_from(CANCEL_AT),
)
scenarios = st.builds(
    Scenario,
    calls=st.lists(calls, min_size=1, max_size=6).map(tuple),
    timeout=st.none() | st.just(POLICY_TIMEOUT),
    consecutive_failures=st.none() | st.sampled_from([2, 4]),
)


def one(*calls: Call, timeout: float | None = None, opens_after: int | None = None) -> Scenario:
    return Scenario(calls=calls, timeout=timeout, consecutive_failures=opens_after)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=60, deadline=None)
@given(scenario=scenarios)
# The interactions a random search reaches least often, always checked:
@example(one(Call(("429", "ok", "ok"), 1.75, None)))  # no sleep past the caller's deadline
@example(one(Call(("503", "429", "ok"), None, 2.25)))  # cancelled while sleeping
@example(one(Call(("hang", "hang", "ok"), None, None), timeout=POLICY_TIMEOUT))  # cut in flight
@example(one(Call(("503", "value503", "ok"), None, None), opens_after=2))  # opens mid-call
@example(one(Call(("hang", "ok", "ok"), 1.75, None), Call(("401",) * 3, None, None)))
@example(one(Call(("400", "refused", "ok"), None, 0.75), Call(("value503",) * 3, None, None)))
def test_decorator_and_service_actor_agree_with_the_model(backend: str, scenario: Scenario) -> None:
    """Attempts, caller results and breaker counts agree between `@resilient`, a
    `ServiceActor` and the reference model, call by call."""
    model = Model(scenario)
    expected = [model.call(call) for call in scenario.calls]
    name, options = virtual_time_backend(backend)
    decorated = anyio.run(through_decorator, scenario, backend=name, backend_options=options)
    name, options = virtual_time_backend(backend)
    served = anyio.run(through_service_actor, scenario, backend=name, backend_options=options)
    assert decorated == (expected, model.counts)
    assert served == (expected, model.counts)


def test_the_model_retries_only_what_the_table_retries() -> None:
    """The reference model itself: three 503s are three attempts, a 400 one, a 429 then
    an ok two (sanity checks, so a wrong model cannot agree with a wrong pipeline)."""
    scenario = Scenario(calls=(), timeout=None, consecutive_failures=None)
    assert Model(scenario).call(Call(("503",) * 3, None, None)) == Seen(3, "status:503")
    assert Model(scenario).call(Call(("400", "ok", "ok"), None, None)) == Seen(1, "status:400")
    assert Model(scenario).call(Call(("429", "ok", "ok"), None, None)) == Seen(2, "value:ok")
    assert Model(scenario).call(Call(("hang",) * 3, 1.75, None)) == Seen(1, "deadline")
    timed = Scenario(calls=(), timeout=POLICY_TIMEOUT, consecutive_failures=None)
    assert Model(timed).call(Call(("hang",) * 3, None, None)) == Seen(2, "DeadlineExceeded")
