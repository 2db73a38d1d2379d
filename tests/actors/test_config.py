"""Resilience configuration: loading dicts and TOML into the frozen configs, and bad input."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import (
    KINDS,
    ConfigError,
    DatabaseClassifier,
    ErrorClassifier,
    HTTPClassifier,
    LLMClassifier,
    MCPClassifier,
    ResilienceConfig,
    load_resilience_config,
    load_resilience_toml,
    load_services_config,
    load_services_toml,
)
from actors.resilience import (
    GCRA,
    BreakerConfig,
    BulkheadConfig,
    Limiter,
    MultiLimit,
    RetryPolicy,
    SlidingWindow,
    TokenBucket,
    resilient,
)

pytestmark = pytest.mark.anyio

FULL_EXAMPLE = """
[services.llm]
preset = "llm"

[services.llm.retry]
attempts = 5
timeout = 120.0
max_server_delay = 30.0

[services.llm.breaker]
open_duration = 20.0

[services.llm.limits.requests]
kind = "token_bucket"
rate = 500
period = 60.0

[services.llm.limits.tokens]
kind = "token_bucket"
rate = 30000
period = 60.0

[services.llm.costs]
requests = 1
tokens = 0

[services.db]
preset = "database"
bulkhead = { max_concurrent = 10, max_queued = 20 }

[services.tools]
preset = "mcp"
limiter = { kind = "gcra", emission_interval = 0.05, burst_tolerance = 0.5 }

[services.search]
cost = 2
classifier = "http"

[services.search.retry]
attempts = 2
backoff_initial = 0.1

[services.search.breaker]
window = "time"
window_size = 30
slow_call_duration = inf

[services.search.limiter]
kind = "sliding_window"
limit = 10
window = 1.0
"""


def test_full_example_loads_every_section() -> None:
    """The documented example loads into the right frozen configs, presets merged."""
    services = load_services_toml(FULL_EXAMPLE)
    assert sorted(services) == ["db", "llm", "search", "tools"]

    llm = services["llm"]
    assert llm.retry == RetryPolicy.for_llm(attempts=5, timeout=120.0, max_server_delay=30.0)
    assert isinstance(llm.classifier, LLMClassifier)
    assert llm.breaker == BreakerConfig.for_llm(open_duration=20.0)
    assert llm.limits == {
        "requests": TokenBucket(rate=500, period=60.0),
        "tokens": TokenBucket(rate=30000, period=60.0),
    }
    assert llm.limiter_cost() == {"requests": 1, "tokens": 0}

    db = services["db"]
    assert db.retry == RetryPolicy.for_database()
    assert db.breaker == BreakerConfig.for_database()
    assert db.bulkhead == BulkheadConfig(max_concurrent=10, max_queued=20)

    tools = services["tools"]
    assert tools.limiter == GCRA(emission_interval=0.05, burst_tolerance=0.5)
    assert tools.retry == RetryPolicy.for_mcp()
    assert isinstance(tools.classifier, MCPClassifier)

    search = services["search"]
    assert search.retry is not None
    assert search.retry == RetryPolicy(attempts=2, backoff_initial=0.1)
    assert type(search.classifier) is HTTPClassifier
    assert search.breaker is not None
    assert search.breaker.window == "time"
    assert math.isinf(search.breaker.slow_call_duration)
    assert search.limiter == SlidingWindow(limit=10, window=1.0)
    assert search.limiter_cost() == 2


def test_empty_table_turns_everything_off() -> None:
    """An empty table is a config with every layer off."""
    assert load_resilience_config({}) == ResilienceConfig()


@pytest.mark.parametrize(
    ("preset", "classifier"),
    [
        ("llm", LLMClassifier),
        ("http", HTTPClassifier),
        ("database", DatabaseClassifier),
        ("mcp", MCPClassifier),
        ("custom", ErrorClassifier),
    ],
)
def test_preset_alone_gives_the_kinds_presets(preset: str, classifier: type[Any]) -> None:
    """`preset` alone selects the retry, breaker and classifier of that kind."""
    config = load_resilience_config({"preset": preset})
    assert config == ResilienceConfig.preset(preset)
    assert config.retry == KINDS[preset].retry
    assert config.breaker == KINDS[preset].breaker
    assert type(config.classifier) is classifier
    assert config.limiter is None
    assert config.bulkhead is None


def test_preset_fields_survive_an_override() -> None:
    """Overriding one field keeps the preset's other fields and classifier."""
    config = load_resilience_config({"preset": "llm", "retry": {"attempts": 2}})
    assert config.retry == RetryPolicy.for_llm(attempts=2)


def test_false_turns_a_preset_section_off() -> None:
    """`breaker = false` removes the preset's breaker."""
    config = load_resilience_config({"preset": "database", "breaker": False})
    assert config.breaker is None
    assert config.retry == RetryPolicy.for_database()


def test_classifier_is_chosen_by_name() -> None:
    """`classifier = "database"` selects the database kind's classifier, no preset needed."""
    config = load_resilience_config({"classifier": "database"})
    assert config.classifier is KINDS["database"].classifier
    assert config.retry is None


def test_classifier_replaces_the_presets() -> None:
    """A `classifier` key replaces the preset's classifier and keeps its other sections."""
    config = load_resilience_config({"preset": "llm", "classifier": "http"})
    assert type(config.classifier) is HTTPClassifier
    assert config.retry == RetryPolicy.for_llm()


def test_without_preset_or_classifier_the_custom_kind_judges() -> None:
    """No classifier in the table leaves it to the decorator: the custom kind's."""
    config = load_resilience_config({"retry": {"attempts": 2}})
    assert config.classifier is None

    async def call() -> None: ...

    assert type(resilient.from_config(config)(call).resilience.classifier) is ErrorClassifier


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"kind": "token_bucket", "rate": 5, "capacity": 10}, TokenBucket(rate=5, capacity=10)),
        ({"kind": "sliding_window", "limit": 100}, SlidingWindow(limit=100)),
        ({"kind": "gcra", "emission_interval": 0.1}, GCRA(emission_interval=0.1)),
    ],
)
def test_limiter_kind_selects_the_algorithm(table: dict[str, Any], expected: object) -> None:
    """`kind` picks TokenBucket, SlidingWindow or GCRA."""
    assert load_resilience_config({"limiter": table}).limiter == expected


def test_single_service_toml_loads() -> None:
    """`load_resilience_toml` reads one service's table at the top level."""
    config = load_resilience_toml('preset = "mcp"\n[bulkhead]\nmax_concurrent = 3\n')
    assert config.retry == RetryPolicy.for_mcp()
    assert config.bulkhead == BulkheadConfig(max_concurrent=3)


def test_other_top_level_tables_are_left_alone() -> None:
    """Only the `services` table is read; other tables belong to other parts of the app."""
    services = load_services_config({"app": {"debug": True}, "services": {"db": {}}})
    assert services == {"db": ResilienceConfig()}


async def test_from_config_decorates_with_a_loaded_service() -> None:
    """A loaded service config drives `resilient.from_config`."""
    config = load_services_toml(FULL_EXAMPLE)["llm"]

    @resilient.from_config(config, name="llm")
    async def complete(prompt: str) -> str:
        return prompt[::-1]

    assert await complete("abc") == "cba"
    res = complete.resilience
    assert isinstance(res.limiter, MultiLimit)
    assert res.limiter.metrics().admitted_cost == {"requests": 1, "tokens": 0}
    assert res.retrier is not None
    assert res.retrier.policy.attempts == 5
    assert res.classifier is config.classifier


def test_from_config_takes_a_classifier_of_its_own() -> None:
    """`resilient.from_config(classifier=...)` replaces the configuration's classifier."""
    mine = DatabaseClassifier()

    async def call() -> None: ...

    fn = resilient.from_config({"preset": "llm"}, classifier=mine)(call)
    assert fn.resilience.classifier is mine


async def test_from_config_accepts_a_dict() -> None:
    """`resilient.from_config` also takes the raw mapping."""

    @resilient.from_config({"limiter": {"kind": "token_bucket", "rate": 10}})
    async def ping() -> str:
        return "pong"

    assert await ping() == "pong"
    assert isinstance(ping.resilience.limiter, Limiter)


# --- bad input ---------------------------------------------------------------------------

BAD = [
    # thresholds outside (0, 1]
    ({"breaker": {"failure_rate_threshold": 0}}, "breaker.failure_rate_threshold", 0),
    ({"breaker": {"failure_rate_threshold": 1.5}}, "breaker.failure_rate_threshold", 1.5),
    ({"breaker": {"slow_call_rate_threshold": -0.1}}, "breaker.slow_call_rate_threshold", -0.1),
    ({"retry": {"budget_ratio": 2}}, "retry.budget_ratio", 2),
    # negative durations
    ({"breaker": {"open_duration": -1}}, "breaker.open_duration", -1),
    ({"retry": {"timeout": -2.0}}, "retry.timeout", -2.0),
    ({"retry": {"attempt_timeout": 0}}, "retry.attempt_timeout", 0),
    ({"retry": {"backoff_initial": -0.1}}, "retry.backoff_initial", -0.1),
    (
        {"limiter": {"kind": "gcra", "emission_interval": 0.1, "burst_tolerance": -1}},
        "limiter.burst_tolerance",
        -1,
    ),
    # zero rates
    ({"limiter": {"kind": "token_bucket", "rate": 0}}, "limiter.rate", 0),
    ({"limiter": {"kind": "sliding_window", "limit": 0}}, "limiter.limit", 0),
    ({"limits": {"tokens": {"kind": "token_bucket", "rate": 0}}}, "limits.tokens.rate", 0),
    # zero attempts and other counts
    ({"retry": {"attempts": 0}}, "retry.attempts", 0),
    ({"bulkhead": {"max_concurrent": 0}}, "bulkhead.max_concurrent", 0),
    ({"breaker": {"half_open_permits": 0}}, "breaker.half_open_permits", 0),
    # unknown keys
    ({"retries": {}}, "retries", {}),
    ({"retry": {"atempts": 3}}, "retry.atempts", 3),
    ({"breaker": {"threshold": 0.5}}, "breaker.threshold", 0.5),
    ({"limiter": {"kind": "token_bucket", "rate": 1, "burst": 5}}, "limiter.burst", 5),
    ({"bulkhead": {"size": 5}}, "bulkhead.size", 5),
    # wrong types: no silent conversion
    ({"retry": {"attempts": "3"}}, "retry.attempts", "3"),
    ({"retry": {"attempts": True}}, "retry.attempts", True),
    ({"retry": {"attempts": 2.5}}, "retry.attempts", 2.5),
    ({"breaker": {"open_duration": "5s"}}, "breaker.open_duration", "5s"),
    ({"retry": "fast"}, "retry", "fast"),
    # names and choices
    ({"preset": "redis"}, "preset", "redis"),
    ({"breaker": {"window": "sliding"}}, "breaker.window", "sliding"),
    ({"limiter": {"kind": "leaky_bucket", "rate": 1}}, "limiter.kind", "leaky_bucket"),
    ({"limiter": {"rate": 1}}, "limiter.kind", None),
    ({"classifier": "redis"}, "classifier", "redis"),
    ({"classifier": 3}, "classifier", 3),
    # keys that moved or went: the classifier is the service's, deadline became timeout
    ({"retry": {"classifier": "http"}}, "retry.classifier", "http"),
    ({"retry": {"deadline": 1.0}}, "retry.deadline", 1.0),
    ({"breaker": {"record_exception": "all"}}, "breaker.record_exception", "all"),
    # combinations
    ({"cost": -1}, "cost", -1),
    ({"costs": "llm"}, "costs", "llm"),
    ({"costs": False}, "costs", False),
    ({"limits": {"a": {"kind": "gcra", "emission_interval": 1}}, "costs": {"b": 1}}, "costs.b", 1),
    ({"limits": {"deadline": {"kind": "gcra", "emission_interval": 1}}}, "limits.deadline", None),
]


@pytest.mark.parametrize(("data", "field", "value"), BAD)
def test_bad_config_names_the_field_and_value(data: dict[str, Any], field: str, value: Any) -> None:
    """Every invalid table raises ConfigError with the dotted field and the rejected value."""
    with pytest.raises(ConfigError) as info:
        load_resilience_config(data)
    assert info.value.field == field
    if value is not None:
        assert info.value.value == value
        assert type(info.value.value) is type(value)


def test_limiter_and_limits_are_exclusive() -> None:
    """Giving both `limiter` and `limits` is an error on `limits`."""
    table = {"kind": "gcra", "emission_interval": 1}
    with pytest.raises(ConfigError) as info:
        load_resilience_config({"limiter": table, "limits": {"a": table}})
    assert info.value.field == "limits"


def test_service_errors_carry_the_full_dotted_path() -> None:
    """Inside `services`, fields are named from the document root."""
    text = '[services.db.breaker]\nminimum_calls = 0\n[services.llm]\npreset = "llm"\n'
    with pytest.raises(ConfigError) as info:
        load_services_toml(text)
    assert info.value.field == "services.db.breaker.minimum_calls"
    assert info.value.value == 0


def test_missing_services_table_is_an_error() -> None:
    """A document without `services` is rejected, naming `services`."""
    with pytest.raises(ConfigError) as info:
        load_services_toml("[app]\nname = 'x'\n")
    assert info.value.field == "services"


def test_invalid_toml_is_a_config_error() -> None:
    """A syntax error in the TOML text is a ConfigError on field "toml"."""
    with pytest.raises(ConfigError) as info:
        load_resilience_toml("retry = {attempts = }")
    assert info.value.field == "toml"


def test_config_error_message_names_field_and_value() -> None:
    """The message reads `field=value: reason`."""
    with pytest.raises(ConfigError, match=r"^retry\.attempts=0: "):
        load_resilience_config({"retry": {"attempts": 0}})


def test_record_rejects_sections_of_the_wrong_type() -> None:
    """Building `ResilienceConfig` by hand checks each section's type."""
    with pytest.raises(ConfigError) as info:
        ResilienceConfig(breaker=RetryPolicy())  # type: ignore[arg-type]
    assert info.value.field == "breaker"


def test_documented_toml_example_loads() -> None:
    """The TOML example in docs/resilience/decorators.md is valid configuration."""
    docs = Path(__file__).resolve().parents[2] / "docs" / "resilience" / "decorators.md"
    block = re.findall(r"```toml\n(.*?)```", docs.read_text(), re.DOTALL)[0]
    services = load_services_toml(block)
    assert sorted(services) == ["db", "llm", "search", "tools"]
    assert services["tools"].breaker is None
    assert services["llm"].limiter_cost() == {"requests": 1, "tokens": 0}


_SECTIONS = ["preset", "classifier", "retry", "breaker", "limiter", "limits", "bulkhead"]
_SECTIONS += ["adaptive", "cost", "costs", "tokens", "zzz"]
_FIELDS = ["attempts", "timeout", "backoff_initial", "budget_ratio", "kind", "rate", "period"]
_FIELDS += ["capacity", "limit", "emission_interval", "burst_tolerance", "open_duration"]
_FIELDS += ["failure_rate_threshold", "minimum_calls", "max_concurrent", "requests", "tokens"]
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["llm", "database", "mcp", "http", "token_bucket", "gcra", "sliding_window"]),
    st.text(max_size=6),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(_FIELDS) | st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_SECTIONS), _values, max_size=5))
def test_any_table_loads_or_raises_a_config_error_inside_it(table: dict[str, Any]) -> None:
    """Whatever a file holds, a service's table loads or raises ConfigError naming a
    field under `services.<name>`."""
    error: ConfigError | None = None
    try:
        services = load_services_config({"services": {"svc": table}})
    except ConfigError as exc:
        error = exc
    if error is None:
        assert isinstance(services["svc"], ResilienceConfig)
    else:
        assert error.field.startswith("services.svc")
