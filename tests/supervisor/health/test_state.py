"""The pure health state machine: hysteresis, breaker signal, dependencies, config."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from actors import ConfigError
from actors.resilience import BreakerState
from supervisor import UnknownService
from supervisor.health import HealthConfig, HealthStatus, HealthTransition
from supervisor.health._state import HealthTable, worst

H, D, U = HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY
CFG = HealthConfig(failures_to_degrade=2, failures_to_unhealthy=4, successes_to_recover=3)


def table(**services: HealthConfig) -> HealthTable:
    out = HealthTable()
    for name, cfg in services.items():
        out.add(name, cfg, now=0.0)
    return out


def probes(t: HealthTable, name: str, results: str, now: float = 1.0) -> list[HealthTransition]:
    """Feeds probe results written as 'f' (failed) and 'o' (ok)."""
    out: list[HealthTransition] = []
    for ch in results:
        out += t.record_probe(name, ok=ch == "o", now=now, latency=0.01, error="E")
    return out


def test_defaults_are_documented_values() -> None:
    """The defaults are 10 s interval, 10 % jitter, 5 s timeout, 2/5 failures, 2 successes."""
    cfg = HealthConfig()
    assert (cfg.interval, cfg.jitter, cfg.timeout) == (10.0, 0.1, 5.0)
    assert (cfg.failures_to_degrade, cfg.failures_to_unhealthy, cfg.successes_to_recover) == (
        2,
        5,
        2,
    )
    assert cfg.required
    assert cfg.ready_when_degraded
    assert cfg.breaker_open is U
    assert cfg.depends_on == ()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("interval", 0),
        ("interval", float("inf")),
        ("timeout", -1),
        ("jitter", 1.0),
        ("jitter", -0.1),
        ("failures_to_degrade", 0),
        ("successes_to_recover", 1.5),
        ("breaker_open", "healthy"),
        ("breaker_open", "nope"),
        ("depends_on", ["a", "a"]),
        ("depends_on", [""]),
        ("required", "yes"),
    ],
)
def test_bad_config_raises_config_error(field: str, value: Any) -> None:
    """Every invalid field raises ConfigError naming that field."""
    with pytest.raises(ConfigError) as info:
        HealthConfig(**{field: value})
    assert info.value.field == field


def test_unhealthy_threshold_below_degrade_threshold_is_rejected() -> None:
    """failures_to_unhealthy below failures_to_degrade is a ConfigError."""
    with pytest.raises(ConfigError, match="failures_to_degrade"):
        HealthConfig(failures_to_degrade=3, failures_to_unhealthy=2)


def test_config_accepts_status_names_and_a_single_dependency() -> None:
    """breaker_open accepts 'degraded'; depends_on accepts one name."""
    cfg = HealthConfig(breaker_open="degraded", depends_on="db")
    assert cfg.breaker_open is D
    assert cfg.depends_on == ("db",)


def test_worst_orders_statuses() -> None:
    """worst() picks the most severe status, HEALTHY for none."""
    assert worst([]) is H
    assert worst([H, U, D]) is U
    assert worst([D, H]) is D


def test_failures_degrade_after_n_and_unhealthy_after_m() -> None:
    """Two failures degrade, four make it unhealthy; one failure changes nothing."""
    t = table(svc=CFG)
    assert probes(t, "svc", "f") == []
    [tr] = probes(t, "svc", "f")
    assert (tr.from_status, tr.to_status, tr.reason) == (H, D, "probe_failures")
    assert probes(t, "svc", "f") == []
    [tr] = probes(t, "svc", "f")
    assert (tr.from_status, tr.to_status) == (D, U)


def test_success_resets_the_failure_streak() -> None:
    """A success between failures restarts the count (hysteresis)."""
    t = table(svc=CFG)
    probes(t, "svc", "fofofo")
    assert t.get("svc").status is H


def test_recovery_needs_m_consecutive_successes() -> None:
    """Three consecutive successes bring an unhealthy service back to HEALTHY."""
    t = table(svc=CFG)
    probes(t, "svc", "ffff")
    assert probes(t, "svc", "oofoo") == []
    assert t.get("svc").status is U
    [tr] = probes(t, "svc", "o")
    assert (tr.from_status, tr.to_status, tr.reason) == (U, H, "probes_recovered")


def test_equal_thresholds_go_straight_to_unhealthy() -> None:
    """failures_to_unhealthy == failures_to_degrade skips DEGRADED."""
    t = table(svc=HealthConfig(failures_to_degrade=1, failures_to_unhealthy=1))
    [tr] = probes(t, "svc", "f")
    assert (tr.from_status, tr.to_status) == (H, U)


def test_probe_records_latency_time_and_error() -> None:
    """A probe records when it ran, its latency, its result and the error type."""
    t = table(svc=CFG)
    t.record_probe("svc", ok=False, now=7.0, latency=0.25, error="ProbeTimeout")
    state = t.get("svc")
    assert (state.last_probe_at, state.last_latency, state.last_ok) == (7.0, 0.25, False)
    assert state.last_error == "ProbeTimeout"
    assert (state.consecutive_failures, state.probes, state.failed_probes) == (1, 1, 1)
    t.record_probe("svc", ok=True, now=8.0, latency=0.1)
    assert t.get("svc").last_error is None


def test_open_breaker_makes_the_service_unhealthy_by_default() -> None:
    """An OPEN breaker makes a healthy service UNHEALTHY; CLOSED restores it."""
    t = table(svc=CFG)
    [tr] = t.set_breaker("svc", BreakerState.OPEN, now=2.0)
    assert (tr.to_status, tr.reason, tr.at) == (U, "breaker_open", 2.0)
    [tr] = t.set_breaker("svc", BreakerState.CLOSED, now=3.0)
    assert (tr.to_status, tr.reason) == (H, "breaker_closed")


def test_half_open_breaker_degrades() -> None:
    """HALF_OPEN means at least DEGRADED."""
    t = table(svc=CFG)
    t.set_breaker("svc", BreakerState.HALF_OPEN, now=1.0)
    assert t.get("svc").status is D


def test_breaker_open_level_is_configurable() -> None:
    """With breaker_open=DEGRADED an open breaker only degrades."""
    t = table(svc=HealthConfig(breaker_open=D))
    t.set_breaker("svc", BreakerState.FORCED_OPEN, now=1.0)
    assert t.get("svc").status is D


def test_breaker_floor_does_not_hide_worse_probes() -> None:
    """Closing the breaker leaves the status at what the probes say."""
    t = table(svc=CFG)
    t.set_breaker("svc", BreakerState.OPEN, now=1.0)
    probes(t, "svc", "ff")
    t.set_breaker("svc", BreakerState.CLOSED, now=2.0)
    assert t.get("svc").status is D


def test_unhealthy_dependency_degrades_dependants() -> None:
    """A service is DEGRADED while a dependency is UNHEALTHY, and recovers with it."""
    t = table(db=CFG, api=HealthConfig(depends_on=("db",)))
    out = probes(t, "db", "ffff")
    assert [(tr.service, tr.to_status, tr.reason) for tr in out] == [
        ("db", D, "probe_failures"),
        ("db", U, "probe_failures"),
        ("api", D, "dependency_unhealthy"),
    ]
    out = probes(t, "db", "ooo")
    assert [(tr.service, tr.to_status) for tr in out] == [("db", H), ("api", H)]


def test_degraded_dependency_does_not_degrade_dependants() -> None:
    """Only an UNHEALTHY dependency counts."""
    t = table(db=CFG, api=HealthConfig(depends_on=("db",)))
    probes(t, "db", "ff")
    assert t.get("api").status is H


def test_dependency_added_later_is_taken_into_account() -> None:
    """A dependant added while its dependency is unhealthy starts DEGRADED."""
    t = table(db=CFG)
    probes(t, "db", "ffff")
    [tr] = t.add("api", HealthConfig(depends_on=("db",)), now=5.0)
    assert (tr.service, tr.to_status) == ("api", D)


def test_removing_an_unhealthy_dependency_recovers_dependants() -> None:
    """Forgetting an unhealthy dependency lifts its floor."""
    t = table(db=CFG, api=HealthConfig(depends_on=("db",)))
    probes(t, "db", "ffff")
    [tr] = t.remove("db", now=9.0)
    assert (tr.service, tr.to_status, tr.reason) == ("api", H, "removed_dependency")


def test_self_dependency_and_cycles_are_rejected() -> None:
    """A service depending on itself, or closing a cycle, is a ConfigError."""
    t = table(a=HealthConfig(depends_on=("b",)))
    with pytest.raises(ConfigError, match="itself"):
        t.add("c", HealthConfig(depends_on=("c",)), now=0.0)
    with pytest.raises(ConfigError, match="cycle: b -> a -> b"):
        t.add("b", HealthConfig(depends_on=("a",)), now=0.0)


def test_duplicate_and_unknown_names_are_clear_errors() -> None:
    """Adding a name twice is a ConfigError; an unknown name raises UnknownService."""
    t = table(a=CFG)
    with pytest.raises(ConfigError, match="already"):
        t.add("a", CFG, now=0.0)
    with pytest.raises(UnknownService, match="nope"):
        t.record_probe("nope", ok=True, now=0.0)
    with pytest.raises(LookupError):
        t.get("nope")


# --------------------------------------------------------------------------- model


class Model:
    """An obviously-right reference: recompute the level from the probe history."""

    def __init__(self, cfg: HealthConfig) -> None:
        self.cfg = cfg
        self.level = H
        self.fails = 0
        self.oks = 0
        self.breaker: BreakerState | None = None

    def probe(self, ok: bool) -> None:
        if ok:
            self.fails, self.oks = 0, self.oks + 1
            if self.oks >= self.cfg.successes_to_recover:
                self.level = H
        else:
            self.oks, self.fails = 0, self.fails + 1
            if self.fails >= self.cfg.failures_to_unhealthy:
                self.level = U
            elif self.fails >= self.cfg.failures_to_degrade and self.level is H:
                self.level = D

    def status(self) -> HealthStatus:
        floor = H
        if self.breaker in (BreakerState.OPEN, BreakerState.FORCED_OPEN):
            floor = self.cfg.breaker_open
        elif self.breaker is BreakerState.HALF_OPEN:
            floor = D
        return worst([self.level, floor])


class HealthMachine(RuleBasedStateMachine):
    """Random probe results and breaker states against the reference model."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg = HealthConfig(
            failures_to_degrade=2, failures_to_unhealthy=3, successes_to_recover=2
        )
        self.table = table(svc=self.cfg)
        self.model = Model(self.cfg)
        self.now = 0.0
        self.status = H

    def _check(self, out: list[HealthTransition]) -> None:
        for tr in out:
            assert tr.from_status is self.status
            assert tr.to_status is not tr.from_status
            self.status = tr.to_status

    @rule(ok=st.booleans())
    def probe(self, ok: bool) -> None:
        self.now += 1
        self.model.probe(ok)
        self._check(self.table.record_probe("svc", ok=ok, now=self.now))

    @rule(state=st.sampled_from([*BreakerState, None]))
    def breaker(self, state: BreakerState | None) -> None:
        self.now += 1
        self.model.breaker = state
        self._check(self.table.set_breaker("svc", state, now=self.now))

    @invariant()
    def agrees(self) -> None:
        assert self.table.get("svc").status is self.model.status() is self.status


HealthMachine.TestCase.settings = settings(max_examples=60, deadline=None)
test_health_machine = HealthMachine.TestCase
