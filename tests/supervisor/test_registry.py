"""ServiceRegistry: versions and specifiers, metadata, health, lifecycle, clear errors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import Actor, ActorError, ConfigError, open_actor
from actors.testing import capture_events
from supervisor import ServiceRegistry, UnknownService, Version, VersionSpec
from supervisor.health import HealthStatus


class Ref:
    """A stand-in ref with a name and an alive flag."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.alive = True


def registry(**kwargs: Any) -> tuple[ServiceRegistry, dict[str, Ref]]:
    reg = ServiceRegistry(**kwargs)
    refs = {v: Ref(f"llm-{v}") for v in ("1.0.0", "1.4.2", "2.0.0", "2.1.0", "3.0.0")}
    for version, ref in refs.items():
        reg.register("llm", ref, version=version, tags={"openai"} if version < "3" else set())
    return reg, refs


@pytest.mark.parametrize(
    ("spec", "version", "expected"),
    [
        (">=2", "2.0.0", True),
        (">=2", "1.9", False),
        (">2", "2.0.0", False),
        (">2", "2.0.1", True),
        ("<3", "2.9.9", True),
        ("<3", "3", False),
        ("<=2.1", "2.1.0", True),
        ("==1.*", "1.4.2", True),
        ("==1.*", "2.0", False),
        ("!=1.*", "2.0", True),
        ("==2.1.0", "2.1", True),
        ("!=2.1", "2.1.0", False),
        (">=2, <3", "2.5", True),
        (">=2, <3", "3.0", False),
        ("~=2.1", "2.9", True),
        ("~=2.1", "3.0", False),
        ("~=2.1", "2.0", False),
    ],
)
def test_specifiers_match_versions(spec: str, version: str, expected: bool) -> None:
    """Each specifier clause compares versions numerically."""
    assert VersionSpec.parse(spec).contains(version) is expected


@pytest.mark.parametrize("bad", ["", "2", ">=", ">=x", "=>2", ">=2.*", "~=2", ">=2,", "1.0-beta"])
def test_unparsable_specifiers_are_config_errors(bad: str) -> None:
    """A specifier that does not parse is a ConfigError on the 'version' field."""
    with pytest.raises(ConfigError) as info:
        VersionSpec.parse(bad)
    assert info.value.field == "version"


@pytest.mark.parametrize("bad", ["", "two", "2.x", "1..2", 2])
def test_unparsable_versions_are_config_errors(bad: Any) -> None:
    """A version that is not dotted integers is a ConfigError."""
    with pytest.raises(ConfigError):
        Version.parse(bad)


def test_versions_compare_numerically_with_trailing_zeros_ignored() -> None:
    """2.10 > 2.9 and 2 == 2.0.0; a leading v is accepted."""
    assert Version.parse("2.10") > Version.parse("2.9")
    assert Version.parse("2") == Version.parse("v2.0.0")
    assert str(Version.parse("2.1.0")) == "2.1.0"


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(0, 20), min_size=1, max_size=3),
    st.lists(st.integers(0, 20), min_size=1, max_size=3),
)
def test_ordering_specifiers_agree_with_padded_tuple_order(a: list[int], b: list[int]) -> None:
    """>= and < agree with comparing zero-padded tuples."""
    va, vb = ".".join(map(str, a)), ".".join(map(str, b))
    width = max(len(a), len(b))
    ta, tb = tuple(a) + (0,) * (width - len(a)), tuple(b) + (0,) * (width - len(b))
    assert VersionSpec.parse(f">={vb}").contains(va) is (ta >= tb)
    assert VersionSpec.parse(f"<{vb}").contains(va) is (ta < tb)


def test_lookup_picks_the_highest_matching_version() -> None:
    """lookup returns the highest version satisfying the specifier."""
    reg, refs = registry()
    assert reg.lookup("llm").ref is refs["3.0.0"]
    assert reg.lookup("llm", version="<3").ref is refs["2.1.0"]
    assert reg.lookup("llm", version="==1.*").ref is refs["1.4.2"]
    assert [str(i.version) for i in reg.instances("llm", version=">=2")] == [
        "3.0.0",
        "2.1.0",
        "2.0.0",
    ]


def test_lookup_filters_by_tags_and_capabilities() -> None:
    """Tags and capabilities must all be present on the instance."""
    reg, refs = registry()
    reg.register("llm", Ref("vision"), version="2.5", capabilities={"vision", "tools"})
    assert reg.lookup("llm", tags={"openai"}).ref is refs["2.1.0"]
    assert reg.lookup("llm", capabilities=["vision"]).version == Version.parse("2.5")
    assert reg.lookup("llm", capabilities="tools").ref.name == "vision"


def test_healthy_only_asks_the_health_source() -> None:
    """healthy_only skips instances the health source does not call HEALTHY."""
    status = {"llm-3.0.0": HealthStatus.DEGRADED, "llm-2.1.0": HealthStatus.HEALTHY}

    def health(name: str) -> HealthStatus:
        if name not in status:
            raise UnknownService(name)
        return status[name]

    reg, refs = registry(health=health)
    assert reg.lookup("llm", healthy_only=True).ref is refs["2.1.0"]
    status["llm-2.1.0"] = HealthStatus.UNHEALTHY
    with pytest.raises(UnknownService, match="healthy"):
        reg.lookup("llm", healthy_only=True)


def test_healthy_only_without_a_health_source_is_a_config_error() -> None:
    """Asking for healthy instances needs a health source."""
    reg, _ = registry()
    with pytest.raises(ConfigError, match="health source"):
        reg.lookup("llm", healthy_only=True)


def test_unknown_names_and_unmatched_lookups_are_clear_errors() -> None:
    """UnknownService is a LookupError and an ActorError naming what failed."""
    reg, _ = registry()
    with pytest.raises(UnknownService, match="no service named 'db'") as info:
        reg.lookup("db")
    assert isinstance(info.value, LookupError)
    assert isinstance(info.value, ActorError)
    assert info.value.name == "db"
    with pytest.raises(UnknownService, match=r"matches version >=4 \(registered: .*3.0.0"):
        reg.lookup("llm", version=">=4")
    with pytest.raises(ConfigError):
        reg.lookup("llm", version=">=four")


def test_stopped_instances_are_deregistered_lazily() -> None:
    """A ref that is no longer alive is dropped at the next lookup, with an event."""
    reg, refs = registry()
    refs["3.0.0"].alive = False
    with capture_events() as events:
        assert reg.lookup("llm").ref is refs["2.1.0"]
    assert len(reg.instances("llm")) == 4
    [event] = [e for e in events if e["event"] == "registry.deregistered"]
    assert (event["service"], event["reason"], event["instances"]) == ("llm", "stopped", 1)


def test_all_instances_stopped_makes_the_name_unknown() -> None:
    """When every instance has stopped, the name is unknown."""
    reg = ServiceRegistry()
    ref = Ref("db")
    reg.register("db", ref)
    ref.alive = False
    with pytest.raises(UnknownService, match="stopped"):
        reg.lookup("db")
    assert "db" not in reg


def test_explicit_deregister_of_one_or_all_instances() -> None:
    """deregister removes one ref's instance, or all instances of a name."""
    reg, refs = registry()
    assert reg.deregister("llm", refs["3.0.0"]) == 1
    assert reg.lookup("llm").ref is refs["2.1.0"]
    with pytest.raises(UnknownService):
        reg.deregister("llm", refs["3.0.0"])
    assert reg.deregister("llm") == 4
    assert reg.names() == []
    with pytest.raises(UnknownService):
        reg.deregister("llm")


def test_registering_a_ref_again_replaces_its_entry() -> None:
    """The same ref registered twice under one name keeps only the newest entry."""
    reg = ServiceRegistry()
    ref = Ref("db")
    reg.register("db", ref, version="1")
    reg.register("db", ref, version="2", metadata={"region": "eu"})
    [inst] = reg.instances("db")
    assert (str(inst.version), inst.metadata["region"]) == ("2", "eu")


def test_bad_registrations_are_config_errors() -> None:
    """Empty names, bad versions and bad tags are rejected."""
    reg = ServiceRegistry()
    with pytest.raises(ConfigError):
        reg.register("", Ref("x"))
    with pytest.raises(ConfigError):
        reg.register("x", Ref("x"), version="latest")
    with pytest.raises(ConfigError):
        reg.register("x", Ref("x"), tags=[1])  # type: ignore[list-item]


class Echo(Actor[Any, Any]):
    async def handle(self, msg: Any) -> Any:
        return msg


@pytest.mark.anyio
async def test_a_stopped_actor_is_deregistered() -> None:
    """Registration follows the actor: after open_actor exits, lookups drop it."""
    reg = ServiceRegistry()
    async with open_actor(Echo(), name="echo") as ref:
        inst = reg.register("echo", ref, version="1.0")
        assert inst.health_name == "echo"
        assert await reg.lookup("echo").ref.call("hi") == "hi"
    with pytest.raises(UnknownService):
        reg.lookup("echo")


@pytest.mark.anyio
async def test_an_equal_ref_registered_again_replaces_its_entry() -> None:
    """A second ref to the same address (refs compare by address) replaces the entry."""
    reg = ServiceRegistry()
    actor = Echo()
    async with open_actor(actor, name="echo") as ref:
        reg.register("echo", ref, version="1")
        reg.register("echo", actor.ref, version="2")
        [inst] = reg.instances("echo")
        assert str(inst.version) == "2"
        assert reg.deregister("echo", actor.ref) == 1
