"""Group configuration: the records' validation and loading from dicts and TOML, every
error a ConfigError naming the dotted field; arbitrary input never crashes the loader."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import ActorConfig, ConfigError, Service, load_services_toml
from actors.resilience import AdaptiveConcurrency, RetryPolicy
from supervisor.groups import (
    FailoverPolicy,
    GroupConfig,
    GroupMember,
    GroupSpec,
    HedgePolicy,
    Routing,
    ServiceGroup,
    StreamRecovery,
    load_groups_config,
    load_groups_toml,
    member,
)
from supervisor.health import HealthStatus
from tests.actors.services.fake import Backend, client_factory
from tests.supervisor.groups.members import fake_config, fake_member

TOML = """
[groups.llm]
routing = "quota_headroom"
share = 0.5
min_healthy = 2
avoid_at = "degraded"
members = ["east", "west"]

[groups.llm.failover]
attempts = 2

[groups.llm.hedge]
quantile = 0.95
budget = 0.05

[groups.llm.stream_recovery]
max_recoveries = 2

[groups.llm.actor]
call_timeout = 30
mailbox_size = 50

[groups.sticky.routing]
kind = "consistent_hash"
key = "extra.user"
load_factor = 1.5

[groups.sticky.members.east]
weight = 3
"""


def test_toml_loads_every_section() -> None:
    """A TOML document gives one GroupSpec per group, sections and members included."""
    groups = load_groups_toml(TOML)
    llm = groups["llm"]
    assert llm.config.routing == Routing(kind="quota_headroom")
    assert llm.config.share == 0.5
    assert llm.config.min_healthy == 2
    assert llm.config.avoid_at is HealthStatus.DEGRADED
    assert llm.config.failover == FailoverPolicy(attempts=2)
    assert llm.config.hedge == HedgePolicy(quantile=0.95, budget=0.05)
    assert llm.config.stream_recovery == StreamRecovery(max_recoveries=2)
    assert llm.config.actor == ActorConfig(call_timeout=30, mailbox_size=50)
    assert llm.members == (("east", 1.0), ("west", 1.0))
    sticky = groups["sticky"]
    assert sticky.config.routing == Routing(
        kind="consistent_hash", key="extra.user", load_factor=1.5
    )
    assert sticky.members == (("east", 3.0),)


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"routing": "fastest"}, "groups.g.routing"),
        ({"routing": {"kind": "round_robin", "spin": 1}}, "groups.g.routing.spin"),
        (
            {"routing": {"kind": "consistent_hash", "load_factor": 1.0}},
            "groups.g.routing.load_factor",
        ),
        ({"routing": {"key": "extra.no-dash"}}, "groups.g.routing.key"),
        ({"share": 0}, "groups.g.share"),
        ({"share": "0.5"}, "groups.g.share"),
        ({"min_healthy": 0}, "groups.g.min_healthy"),
        ({"avoid_at": "healthy"}, "groups.g.avoid_at"),
        ({"max_concurrency": True}, "groups.g.max_concurrency"),
        ({"hedge": {"budget": 2}}, "groups.g.hedge.budget"),
        ({"hedge": {"quantile": 1.0}}, "groups.g.hedge.quantile"),
        ({"hedge": {"delay": "1s"}}, "groups.g.hedge.delay"),
        ({"hedge": {"idempotent": "yes"}}, "groups.g.hedge.idempotent"),
        ({"failover": {"attempts": 0}}, "groups.g.failover.attempts"),
        ({"failover": {"retry": 1}}, "groups.g.failover.retry"),
        ({"stream_recovery": {"instruction": " "}}, "groups.g.stream_recovery.instruction"),
        ({"members": ["a", "a"]}, "groups.g.members"),
        ({"members": [3]}, "groups.g.members[0]"),
        ({"members": {"a": {"weight": 0}}}, "groups.g.members.a.weight"),
        ({"members": {"a": {"weight": "2"}}}, "groups.g.members.a.weight"),
        ({"members": {"a": {"spare": 1}}}, "groups.g.members.a.spare"),
        ({"colour": "red"}, "groups.g.colour"),
        ({"actor": {"call_timeout": 0}}, "groups.g.actor.call_timeout"),
        ({"actor": {"mailbox_size": "10"}}, "groups.g.actor.mailbox_size"),
        ({"actor": {"call_full": "drop"}}, "groups.g.actor.call_full"),
        ({"actor": {"timeout": 1}}, "groups.g.actor.timeout"),
        ({"actor": 30}, "groups.g.actor"),
    ],
)
def test_bad_values_name_their_dotted_field(table: dict[str, Any], field: str) -> None:
    """Every invalid value is a ConfigError naming where it is."""
    with pytest.raises(ConfigError) as info:
        load_groups_config({"groups": {"g": table}})
    assert info.value.field == field


def test_a_missing_groups_table_is_refused() -> None:
    """Without a groups table, the field is "groups"; bad TOML is field "toml"."""
    with pytest.raises(ConfigError) as info:
        load_groups_config({"services": {}})
    assert info.value.field == "groups"
    with pytest.raises(ConfigError) as bad:
        load_groups_toml("[groups")
    assert bad.value.field == "toml"


config_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 300)
    | st.floats(allow_nan=True)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
known = st.sampled_from(
    [
        "routing",
        "share",
        "min_healthy",
        "avoid_at",
        "max_concurrency",
        "members",
        "hedge",
        "failover",
        "stream_recovery",
        "actor",
        "call_timeout",
        "kind",
        "weight",
        "budget",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(known | st.text(max_size=6), config_values, max_size=5))
def test_arbitrary_tables_load_or_raise_config_error(table: dict[str, Any]) -> None:
    """Whatever a file holds, loading gives a GroupSpec or a ConfigError, nothing else."""
    error: ConfigError | None = None
    try:
        spec = load_groups_config({"groups": {"g": table}})
    except ConfigError as exc:
        error = exc
    if error is None:
        assert isinstance(spec["g"], GroupSpec)
    else:
        assert error.field.startswith("groups.g")


def test_from_spec_finds_members_by_service_name() -> None:
    """ServiceGroup.from_spec takes its members from the services by name, with weights."""
    spec = load_groups_toml(TOML)["sticky"]
    east = Service("east", client_factory(Backend()), fake_config())
    group = ServiceGroup.from_spec("sticky", spec, {"east": east})
    assert [(row.id, row.weight) for row in group.members()] == [("east", 3.0)]
    with pytest.raises(ConfigError) as info:
        ServiceGroup.from_spec("llm", load_groups_toml(TOML)["llm"], {"east": east})
    assert info.value.field == "members.west"


def test_a_member_that_retries_is_refused() -> None:
    """A member whose service retries would multiply the group's retries: refused."""
    service = Service("a", client_factory(Backend()), fake_config(retry=RetryPolicy(attempts=3)))
    with pytest.raises(ConfigError) as info:
        GroupMember(id="a", service=service)
    assert info.value.field == "members.a.retry.attempts"


def test_member_builds_a_service_making_one_attempt() -> None:
    """member keeps the kind's retry timeouts but makes one attempt."""
    built = member("a", client_factory(Backend()))
    retry = built.service.config.retry
    assert retry is not None
    assert retry.attempts == 1
    assert built.service.name == "a"


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: ServiceGroup("a/b", []), "name"),
        (
            lambda: ServiceGroup("g", [fake_member("a", Backend()), fake_member("a", Backend())]),
            "members",
        ),
        (lambda: ServiceGroup("g", ["a"]), "members"),  # type: ignore[list-item]
        (
            lambda: ServiceGroup(
                "g", [fake_member("a", Backend()), fake_member("b", Backend(), kind="database")]
            ),
            "members.b.service",
        ),
        (lambda: ServiceGroup("g", [], config="fast"), "config"),  # type: ignore[arg-type]
        (lambda: ServiceGroup("g", [], strategy=object()), "strategy"),  # type: ignore[arg-type]
        (lambda: ServiceGroup("g", [], health=3), "health"),  # type: ignore[arg-type]
        (
            lambda: GroupMember(id="a/b", service=fake_member("x", Backend()).service),
            "members.id",
        ),
        (
            lambda: GroupMember(id="a", service=fake_member("x", Backend()).service, weight=0),
            "weight",
        ),
        (lambda: GroupConfig(routing="fastest"), "routing"),
    ],
)
def test_bad_groups_are_refused_before_anything_starts(build: Any, field: str) -> None:
    """A bad name, member, kind mix, config, strategy or health source is a ConfigError."""
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.field == field


def test_the_documented_group_and_member_tables_load() -> None:
    """docs/groups.md's TOML examples load: the group's tables and a member's adaptive one."""
    docs = Path(__file__).resolve().parents[3] / "docs" / "groups.md"
    blocks = re.findall(r"```toml\n(.*?)```", docs.read_text(), re.DOTALL)
    groups = load_groups_toml(blocks[0])
    assert groups["llm"].config.actor == ActorConfig(call_timeout=30.0)
    east = load_services_toml(blocks[1])["east"]
    assert east.adaptive == AdaptiveConcurrency(
        initial=8, max_limit=64, drop_statuses=frozenset({429, 503, 529})
    )
