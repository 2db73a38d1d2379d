"""The retry budget: retries stay a fraction of requests plus a floor, over a sliding window."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.resilience import RetryBudget, RetryPolicy, create_retrier


def test_ratio_limits_retries_to_a_fraction_of_requests() -> None:
    """With ratio 0.1 and no floor, 30 requests fund exactly 3 retries."""
    budget = RetryBudget(ratio=0.1, min_per_second=0.0, ttl=10.0)
    for _ in range(30):
        budget.deposit(0.0)
    granted = sum(budget.try_withdraw(0.0) for _ in range(10))
    assert granted == 3


def test_floor_allows_retries_without_traffic() -> None:
    """The floor of min_per_second * ttl retries holds even with no requests."""
    budget = RetryBudget(ratio=0.2, min_per_second=0.5, ttl=10.0)
    granted = sum(budget.try_withdraw(1.0) for _ in range(10))
    assert granted == 5


def test_no_retries_without_requests_or_floor() -> None:
    """A budget with no floor and no requests refuses every retry."""
    budget = RetryBudget(ratio=1.0, min_per_second=0.0, ttl=10.0)
    assert not budget.try_withdraw(0.0)


def test_deposits_and_withdrawals_expire_after_ttl() -> None:
    """After the window has passed, old requests no longer fund retries."""
    budget = RetryBudget(ratio=0.5, min_per_second=0.0, ttl=10.0)
    for _ in range(4):
        budget.deposit(0.0)
    assert budget.try_withdraw(0.0)
    assert budget.balance(0.0) == pytest.approx(1.0)
    assert budget.balance(10.5) == pytest.approx(0.0)


def test_withdrawals_expire_and_free_the_floor() -> None:
    """Spent floor retries come back once they leave the window."""
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, ttl=10.0)
    assert budget.try_withdraw(0.0)
    assert not budget.try_withdraw(5.0)
    assert budget.try_withdraw(11.0)


def test_quiet_successes_are_credited_only_for_the_window() -> None:
    """Requests deposited over a long quiet stretch count only for their share in the window."""
    budget = RetryBudget(ratio=1.0, min_per_second=0.0, ttl=10.0)
    budget.deposit(0.0)
    for _ in range(99):
        budget.deposit()
    # 100 requests spread over 100 s: 10 of them fall in the last 10 s.
    assert budget.balance(100.0) == pytest.approx(10.0)


@pytest.mark.anyio
@pytest.mark.virtual_time
async def test_retrier_enforces_budget_under_failures() -> None:
    """With ratio 0.1 and no floor, 20 always-failing calls get exactly 2 retries."""
    policy = RetryPolicy(
        attempts=4,
        backoff_initial=0.0,
        backoff_max=0.0,
        budget_ratio=0.1,
        budget_min_per_second=0.0,
    )
    retrier = create_retrier(policy, service="svc", random=lambda: 0.0)
    attempts = 0

    async def fail() -> None:
        nonlocal attempts
        attempts += 1
        raise TimeoutError

    for _ in range(20):
        with pytest.raises(TimeoutError):
            await retrier.call(fail)
    assert attempts == 22
    assert retrier.metrics.retries == 2
    # 18 calls are refused their first retry; the 2 retried calls their second one.
    assert retrier.metrics.budget_denied == 20
    assert retrier.metrics.give_ups["budget"] == 20
    assert retrier.metrics.give_ups["attempts"] == 0


@pytest.mark.anyio
@pytest.mark.virtual_time
async def test_retrier_budget_refills_as_the_window_moves() -> None:
    """Once a failure burst leaves the window, the floor funds retries again."""
    policy = RetryPolicy(
        attempts=2,
        backoff_initial=0.0,
        backoff_max=0.0,
        budget_ratio=0.0,
        budget_min_per_second=0.1,
        budget_ttl=10.0,
    )
    retrier = create_retrier(policy, service="svc", random=lambda: 0.0)

    async def fail() -> None:
        raise TimeoutError

    for _ in range(3):
        with pytest.raises(TimeoutError):
            await retrier.call(fail)
    assert retrier.metrics.retries == 1
    await anyio.sleep(11.0)
    with pytest.raises(TimeoutError):
        await retrier.call(fail)
    assert retrier.metrics.retries == 2


def test_disabled_budget() -> None:
    """budget_ratio=None gives a retrier without a budget."""
    assert create_retrier(RetryPolicy(budget_ratio=None)).budget is None


class BudgetMachine(RuleBasedStateMachine):
    """The budget against a reference that keeps every event with its time slice."""

    ratio = 0.25
    floor = 0.2
    ttl = 5.0
    slices = 10

    def __init__(self) -> None:
        super().__init__()
        self.budget = RetryBudget(
            ratio=self.ratio, min_per_second=self.floor, ttl=self.ttl, slices=self.slices
        )
        self.now = 0.0
        self.events: list[tuple[int, str]] = []

    def _slice(self) -> int:
        return int(self.now // (self.ttl / self.slices))

    def _model_balance(self) -> float:
        current = self._slice()
        live = [kind for index, kind in self.events if index > current - self.slices]
        return self.ratio * live.count("deposit") + self.floor * self.ttl - live.count("retry")

    @rule(dt=st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.5, 6.0]))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule()
    def deposit(self) -> None:
        self.budget.deposit(self.now)
        self.budget.balance(self.now)  # folds the deposit at `now`
        self.events.append((self._slice(), "deposit"))

    @precondition(lambda self: self.now < 1000)
    @rule()
    def withdraw(self) -> None:
        expected = self._model_balance() >= 1 - 1e-9
        assert self.budget.try_withdraw(self.now) is expected
        if expected:
            self.events.append((self._slice(), "retry"))

    @invariant()
    def balance_matches(self) -> None:
        assert self.budget.balance(self.now) == pytest.approx(self._model_balance())


BudgetMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestBudgetMachine = BudgetMachine.TestCase
