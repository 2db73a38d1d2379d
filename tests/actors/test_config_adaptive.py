"""The adaptive concurrency section of a service's configuration (`[services.<name>.adaptive]`):
loaded into an `AdaptiveConcurrency` by the strict loader, every bad value a ConfigError
naming its dotted field, arbitrary input never crashing the loader."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import (
    ConfigError,
    ResilienceConfig,
    ServiceConfig,
    load_resilience_config,
    load_services_config,
    load_services_toml,
)
from actors.resilience import AdaptiveConcurrency, AdaptiveLimit, BulkheadConfig, resilient

TOML = """
[services.llm]
preset = "llm"

[services.llm.adaptive]
initial = 8
min_limit = 2
max_limit = 64
backoff = 0.8
alpha = 2
beta = 4.5
drop_statuses = [429, 503]
rtt_window = 10.0
max_queued = 100
"""


def test_the_adaptive_section_loads_every_field() -> None:
    """`[services.llm.adaptive]` gives the service an AdaptiveConcurrency with its values."""
    llm = load_services_toml(TOML)["llm"]
    assert llm.adaptive == AdaptiveConcurrency(
        initial=8,
        min_limit=2,
        max_limit=64,
        backoff=0.8,
        alpha=2,
        beta=4.5,
        drop_statuses=frozenset({429, 503}),
        rtt_window=10.0,
        max_queued=100,
    )
    assert llm.bulkhead is None


def test_an_empty_section_takes_the_defaults_and_false_or_absence_none() -> None:
    """An empty table is `AdaptiveConcurrency()`; `false` or no section is no limit."""
    assert load_resilience_config({"adaptive": {}}).adaptive == AdaptiveConcurrency()
    assert load_resilience_config({"adaptive": False}).adaptive is None
    assert load_resilience_config({"preset": "llm"}).adaptive is None


BAD = [
    ({"initial": 0}, "initial", 0),
    ({"initial": 2.5}, "initial", 2.5),
    ({"initial": "8"}, "initial", "8"),
    ({"initial": True}, "initial", True),
    ({"min_limit": 0}, "min_limit", 0),
    ({"min_limit": 5, "initial": 4}, "initial", 4),
    ({"max_limit": 3}, "initial", 10),
    ({"max_limit": 3, "min_limit": 4, "initial": 4}, "max_limit", 3),
    ({"backoff": 1}, "backoff", 1),
    ({"backoff": 0}, "backoff", 0),
    ({"backoff": -0.5}, "backoff", -0.5),
    ({"alpha": 0}, "alpha", 0),
    ({"alpha": 7}, "beta", 6.0),
    ({"beta": float("inf")}, "beta", float("inf")),
    ({"drop_statuses": "503"}, "drop_statuses", "503"),
    ({"drop_statuses": 503}, "drop_statuses", 503),
    ({"drop_statuses": [700]}, "drop_statuses", 700),
    ({"drop_statuses": [True]}, "drop_statuses", True),
    ({"drop_statuses": ["429"]}, "drop_statuses", "429"),
    ({"rtt_window": 0}, "rtt_window", 0),
    ({"rtt_window": "30s"}, "rtt_window", "30s"),
    ({"max_queued": -1}, "max_queued", -1),
    ({"limit": 5}, "limit", 5),
]


@pytest.mark.parametrize(("table", "field", "value"), BAD)
def test_a_bad_value_names_its_dotted_field(table: dict[str, Any], field: str, value: Any) -> None:
    """Each invalid value is a ConfigError on services.llm.adaptive.<field>, with the value."""
    with pytest.raises(ConfigError) as info:
        load_services_config({"services": {"llm": {"adaptive": table}}})
    assert info.value.field == f"services.llm.adaptive.{field}"
    assert info.value.value == value
    assert type(info.value.value) is type(value)


def test_a_section_that_is_not_a_table_is_refused() -> None:
    """`adaptive = 8` is a ConfigError on the section itself."""
    with pytest.raises(ConfigError) as info:
        load_resilience_config({"adaptive": 8}, path="services.llm")
    assert (info.value.field, info.value.value) == ("services.llm.adaptive", 8)


def test_bulkhead_and_adaptive_are_exclusive() -> None:
    """Both hold the bulkhead's place: giving both is an error on `adaptive`, in a file and
    in the record."""
    with pytest.raises(ConfigError) as info:
        load_resilience_config(
            {"bulkhead": {"max_concurrent": 4}, "adaptive": {"initial": 2}}, path="services.db"
        )
    assert (info.value.field, info.value.value) == ("services.db.adaptive", {"initial": 2})
    with pytest.raises(ConfigError) as record:
        ResilienceConfig(bulkhead=BulkheadConfig(), adaptive=AdaptiveConcurrency())
    assert record.value.field == "adaptive"


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 700)
    | st.floats(allow_nan=True)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
fields = st.sampled_from(
    [
        "initial",
        "min_limit",
        "max_limit",
        "backoff",
        "alpha",
        "beta",
        "drop_statuses",
        "rtt_window",
        "max_queued",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(fields | st.text(max_size=6), values, max_size=5))
def test_arbitrary_tables_load_or_raise_config_error(table: dict[str, Any]) -> None:
    """Whatever a file holds, the section loads or raises a ConfigError inside it."""
    error: ConfigError | None = None
    try:
        loaded = load_resilience_config({"adaptive": table}, path="services.llm")
    except ConfigError as exc:
        error = exc
    if error is None:
        assert isinstance(loaded.adaptive, AdaptiveConcurrency)
    else:
        assert error.field.startswith("services.llm.adaptive")


def test_a_service_config_from_a_file_keeps_the_adaptive_limit() -> None:
    """ServiceConfig.from_resilience carries the loaded adaptive section."""
    loaded = load_services_toml(TOML)["llm"]
    assert ServiceConfig.from_resilience(loaded).adaptive == loaded.adaptive


def test_from_config_puts_an_adaptive_limit_in_the_bulkhead_place() -> None:
    """A decorated function configured with `adaptive` runs under an AdaptiveLimit."""

    @resilient.from_config({"adaptive": {"initial": 3}}, name="adaptive")
    async def ping() -> str:
        return "pong"

    limit = ping.resilience.bulkhead
    assert isinstance(limit, AdaptiveLimit)
    assert limit.limit == 3
