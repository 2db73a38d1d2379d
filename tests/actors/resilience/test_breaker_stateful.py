"""The breaker's pure core agrees with a small reference model under random operations."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from actors import CircuitOpen
from actors.resilience import BreakerConfig, BreakerState, create_breaker

JITTER_DRAW = 0.25

CONFIGS: list[dict[str, Any]] = [
    {"window": "count", "window_size": 3, "minimum_calls": 2},
    {"window": "count", "window_size": 5, "minimum_calls": 3},
    {"window": "count", "window_size": 8, "minimum_calls": 8, "consecutive_failures": 3},
    {"window": "time", "window_size": 3, "minimum_calls": 2},
    {"window": "time", "window_size": 4, "minimum_calls": 3},
    {"window": "time", "window_size": 10, "minimum_calls": 2, "consecutive_failures": 2},
]

S = BreakerState

OUTCOMES = (
    "success",
    "failure",
    "slow_success",
    "slow_failure",
    "ignored",
    "cancelled",
    "not_permitted",
)


@attrs.define
class Model:
    """The obviously-right breaker: lists instead of rings, rates recomputed from scratch."""

    config: BreakerConfig
    state: BreakerState = S.CLOSED
    gen: int = 0
    history: list[tuple[float, bool, bool]] = attrs.field(factory=list)  # (at, failed, slow)
    consecutive: int = 0
    opened_at: float = 0.0
    open_for: float = 0.0
    base: float = 0.0
    trial_out: int = 0
    trials: list[tuple[bool, bool]] = attrs.field(factory=list)
    last_issue: float = 0.0
    counts: dict[str, int] = attrs.field(factory=lambda: dict.fromkeys(OUTCOMES, 0))

    def window(self, now: float) -> list[tuple[float, bool, bool]]:
        size = self.config.window_size
        if self.config.window == "count":
            return self.history[-size:]
        return [h for h in self.history if math.floor(h[0]) > math.floor(now) - size]

    def move(self, to: BreakerState, now: float, *, forced: bool = False) -> None:
        config = self.config
        if to is S.OPEN:
            if self.state is S.HALF_OPEN and not forced:
                base = min((self.base or config.open_duration) * 2, config.max_open_duration)
            else:
                base = config.open_duration
            self.open_for = base * (1 - config.open_jitter * JITTER_DRAW)
            self.base = base
        else:
            self.open_for = 0.0
            self.base = self.base if to is S.HALF_OPEN else 0.0
        self.state, self.gen, self.opened_at = to, self.gen + 1, now
        self.trial_out, self.trials = 0, []
        if to in (S.CLOSED, S.METRICS_ONLY):
            self.history, self.consecutive = [], 0

    def acquire(self, now: float) -> int | float:
        """Returns the permit (an int), or the retry_after of the rejection (a float)."""
        config = self.config
        if self.state in (S.CLOSED, S.METRICS_ONLY, S.DISABLED):
            return self.gen
        if self.state is S.FORCED_OPEN:
            self.counts["not_permitted"] += 1
            return math.inf
        if self.state is S.OPEN:
            if now < self.opened_at + self.open_for:
                self.counts["not_permitted"] += 1
                return self.opened_at + self.open_for - now
            self.move(S.HALF_OPEN, now)
        if self.trial_out + len(self.trials) >= config.half_open_permits:
            if now - self.last_issue < config.half_open_max_wait:
                self.counts["not_permitted"] += 1
                return min(config.open_duration, config.half_open_max_wait - now + self.last_issue)
            self.move(S.HALF_OPEN, now)
        self.trial_out += 1
        self.last_issue = now
        return self.gen

    def report(self, permit: int, outcome: str, slow: bool, now: float) -> None:
        config = self.config
        if outcome in ("success", "failure"):
            self.counts[("slow_" if slow else "") + outcome] += 1
        else:
            self.counts[outcome] += 1
        if permit != self.gen:
            return
        if outcome in ("ignored", "cancelled"):
            if self.state is S.HALF_OPEN and self.trial_out > 0:
                self.trial_out -= 1
            return
        failed = outcome == "failure"
        if self.state in (S.CLOSED, S.METRICS_ONLY):
            self.history.append((now, failed, slow))
            self.consecutive = self.consecutive + 1 if failed else 0
            window = self.window(now)
            total = len(window)
            fails = sum(f for _, f, _ in window)
            slows = sum(s for _, _, s in window)
            if self.state is not S.CLOSED:
                return
            in_a_row = config.consecutive_failures or math.inf
            rates_bad = total >= config.minimum_calls and (
                fails / total >= config.failure_rate_threshold
                or slows / total >= config.slow_call_rate_threshold
            )
            if self.consecutive >= in_a_row or rates_bad:
                self.move(S.OPEN, now)
        elif self.state is S.HALF_OPEN and self.trial_out > 0:
            self.trial_out -= 1
            self.trials.append((failed, slow))
            permits = config.half_open_permits
            if len(self.trials) == permits:
                fails = sum(f for f, _ in self.trials)
                slows = sum(s for _, s in self.trials)
                bad = (
                    fails / permits >= config.failure_rate_threshold
                    or slows / permits >= config.slow_call_rate_threshold
                )
                self.move(S.OPEN if bad else S.CLOSED, now)


SLOW = st.sampled_from([False, False, False, True])
OUTCOME = st.sampled_from(["success", "success", "failure", "failure", "ignored", "cancelled"])


class BreakerMachine(RuleBasedStateMachine):
    """Random acquisitions, outcomes, time steps and manual states, real vs model."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.held: list[int] = []

    @initialize(
        base=st.sampled_from(CONFIGS),
        permits=st.integers(1, 3),
        failure_rate=st.sampled_from([0.34, 0.5, 1.0]),
        slow_rate=st.sampled_from([0.5, 1.0]),
        max_wait=st.sampled_from([3.0, 50.0, math.inf]),
    )
    def setup(
        self,
        base: dict[str, Any],
        permits: int,
        failure_rate: float,
        slow_rate: float,
        max_wait: float,
    ) -> None:
        config = BreakerConfig(
            **base,
            failure_rate_threshold=failure_rate,
            slow_call_rate_threshold=slow_rate,
            slow_call_duration=1.0,
            open_duration=4.0,
            open_backoff_multiplier=2.0,
            max_open_duration=20.0,
            open_jitter=0.5,
            half_open_permits=permits,
            half_open_max_wait=max_wait,
        )
        self.real = create_breaker("svc", config, random=lambda: JITTER_DRAW, now=0.0)
        self.model = Model(config)

    @rule(dt=st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 3.5, 4.0, 9.0, 30.0]))
    def advance(self, dt: float) -> None:
        self.now += dt

    def _acquire(self) -> int | None:
        expected = self.model.acquire(self.now)
        if isinstance(expected, float):
            with pytest.raises(CircuitOpen) as info:
                self.real.acquire(self.now)
            assert info.value.retry_after == pytest.approx(expected)
            assert info.value.retry_after > 0
            return None
        permit = self.real.acquire(self.now)
        assert permit == expected
        return permit

    def _report(self, permit: int, outcome: str, slow: bool) -> None:
        duration = 2.0 if slow else 0.5
        self.model.report(permit, outcome, slow and outcome in ("success", "failure"), self.now)
        if outcome == "success":
            self.real.on_success(permit, duration, now=self.now)
        elif outcome == "failure":
            self.real.on_failure(permit, duration, now=self.now)
        elif outcome == "ignored":
            self.real.on_ignored(permit)
        else:
            self.real.on_cancel(permit)

    @rule(outcome=OUTCOME, slow=SLOW)
    def call(self, outcome: str, slow: bool) -> None:
        """A whole call: acquire, then report at once."""
        permit = self._acquire()
        if permit is not None:
            self._report(permit, outcome, slow)

    @rule(outcomes=st.lists(st.tuples(OUTCOME, SLOW), min_size=2, max_size=6))
    def burst(self, outcomes: list[tuple[str, bool]]) -> None:
        """Several whole calls in a row."""
        for outcome, slow in outcomes:
            self.call(outcome, slow)

    @rule()
    def start(self) -> None:
        """A call that stays in flight."""
        permit = self._acquire()
        if permit is not None:
            self.held.append(permit)

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 1000), outcome=OUTCOME, slow=SLOW)
    def finish(self, index: int, outcome: str, slow: bool) -> None:
        """An in-flight call reports (possibly after transitions)."""
        self._report(self.held.pop(index % len(self.held)), outcome, slow)

    @rule(state=st.sampled_from(list(BreakerState)), dice=st.integers(0, 5))
    def force(self, state: BreakerState, dice: int) -> None:
        """Now and then, an operator forces a state."""
        if dice == 0:
            self.model.move(state, self.now, forced=True)
            self.real.force(state, now=self.now)

    @invariant()
    def agrees_with_model(self) -> None:
        metrics = self.real.metrics(self.now)
        model = self.model
        assert metrics.state is model.state
        counts = {
            "success": metrics.successes,
            "failure": metrics.failures,
            "slow_success": metrics.slow_successes,
            "slow_failure": metrics.slow_failures,
            "ignored": metrics.ignored,
            "cancelled": metrics.cancelled,
            "not_permitted": metrics.not_permitted,
        }
        assert counts == model.counts
        window = model.window(self.now)
        assert metrics.buffered_calls == len(window)
        assert metrics.buffered_failures == sum(f for _, f, _ in window)
        assert metrics.buffered_slow_calls == sum(s for _, _, s in window)
        if model.state is S.HALF_OPEN:
            assert metrics.half_open_in_flight == model.trial_out
            assert model.trial_out + len(model.trials) <= model.config.half_open_permits
        if model.state is S.OPEN:
            assert metrics.open_duration == pytest.approx(model.open_for)
            assert model.open_for <= model.config.max_open_duration


BreakerMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBreakerMachine = BreakerMachine.TestCase
