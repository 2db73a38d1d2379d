"""Specs: validation before anything starts, loading from dict/TOML, and tree dumps."""

from __future__ import annotations

from typing import Any

import pytest

import supervisor as sv
from actors import ConfigError
from tests.supervisor.helpers import Log, Worker, worker

LOG = Log()
FACTORIES = {"worker": lambda: Worker("w", LOG)}


def test_duplicate_child_ids_are_refused() -> None:
    """Two children with one id raise ConfigError naming the supervisor and the id."""
    with pytest.raises(ConfigError) as info:
        sv.SupervisorSpec(id="root", children=[worker("a", LOG), worker("a", LOG)])
    assert info.value.field == "root.children"
    assert info.value.value == "a"


@pytest.mark.parametrize("value", [-1, 1.5, True, "3", None])
def test_bad_max_restarts_is_refused(value: Any) -> None:
    """max_restarts must be an integer >= 0 (0: the first failure gives up, as OTP)."""
    with pytest.raises(ConfigError, match=r"root\.max_restarts"):
        sv.SupervisorSpec(id="root", max_restarts=value)


@pytest.mark.parametrize("value", [0, -5, float("nan")])
def test_bad_period_is_refused(value: float) -> None:
    """period must be > 0."""
    with pytest.raises(ConfigError, match="period"):
        sv.SupervisorSpec(id="root", period=value)


def test_unknown_strategy_is_refused() -> None:
    """An unknown strategy name raises ConfigError listing the valid ones."""
    with pytest.raises(ConfigError, match="one_for_one"):
        sv.SupervisorSpec(id="root", strategy="one_for_most")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min": -1}, "min"),
        ({"min": 2, "max": 1}, "max"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"jitter": 1.5}, "jitter"),
        ({"reset_after": 0}, "reset_after"),
    ],
)
def test_bad_backoff_is_refused(kwargs: dict[str, float], field: str) -> None:
    """Backoff values out of range raise ConfigError naming the field."""
    with pytest.raises(ConfigError) as info:
        sv.Backoff(**kwargs)
    assert info.value.field == field


def test_permanent_significant_child_is_refused() -> None:
    """A significant child must be transient or temporary."""
    with pytest.raises(ConfigError, match=r"a\.significant"):
        worker("a", LOG, significant=True)


@pytest.mark.parametrize("child_id", ["", "a/b", 3])
def test_bad_child_id_is_refused(child_id: Any) -> None:
    """Child ids are non-empty strings without '/'."""
    with pytest.raises(ConfigError, match="id"):
        sv.ChildSpec(id=child_id, factory=lambda: Worker("x", LOG))


def test_non_callable_factory_is_refused() -> None:
    """A factory that is not callable raises ConfigError naming the child."""
    with pytest.raises(ConfigError, match=r"x\.factory"):
        sv.ChildSpec(id="x", factory=42)  # type: ignore[arg-type]


def test_bad_shutdown_is_refused() -> None:
    """shutdown is seconds > 0 or 'brutal_kill'."""
    with pytest.raises(ConfigError, match="shutdown"):
        worker("a", LOG, shutdown=0)
    with pytest.raises(ConfigError, match="shutdown"):
        worker("a", LOG, shutdown="gently")


TOML = """
[supervisor]
id = "agent"
strategy = "rest_for_one"
max_restarts = 4
period = 10
backoff = { min = 0.5, max = 8, jitter = 0 }

[[supervisor.children]]
id = "db"
factory = "worker"
shutdown = "brutal_kill"
mailbox_size = 50

[[supervisor.children]]
id = "tools"
strategy = "one_for_all"

[[supervisor.children.children]]
id = "mcp"
factory = "worker"
restart = "transient"
call_timeout = 30
"""


def test_toml_builds_the_declared_tree() -> None:
    """A TOML document becomes the same specs as the Python declaration."""
    spec = sv.spec_from_toml(TOML, FACTORIES)
    assert spec.id == "agent"
    assert spec.strategy is sv.Strategy.REST_FOR_ONE
    assert spec.max_restarts == 4
    assert spec.backoff == sv.Backoff(min=0.5, max=8, jitter=0)
    db, tools = spec.children
    assert isinstance(db, sv.ChildSpec)
    assert db.shutdown == "brutal_kill"
    assert db.config.mailbox_size == 50
    assert isinstance(tools, sv.SupervisorSpec)
    assert tools.strategy is sv.Strategy.ONE_FOR_ALL
    (mcp,) = tools.children
    assert isinstance(mcp, sv.ChildSpec)
    assert mcp.restart is sv.RestartType.TRANSIENT
    assert mcp.config.call_timeout == 30


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (('strategy = "rest_for_one"', 'strategy = "rest_for_two"'), "agent.strategy"),
        (
            ('restart = "transient"', 'restart = "sometimes"'),
            "agent.children[1].children[0].restart",
        ),
        (("mailbox_size = 50", "mailbox_size = 0"), "agent.children[0].mailbox_size"),
        (("mailbox_size = 50", "mailbox = 50"), "agent.children[0].mailbox"),
        (
            ('factory = "worker"\nshutdown', 'factory = "nope"\nshutdown'),
            "agent.children[0].factory",
        ),
        (("jitter = 0", "jitter = 2"), "agent.backoff.jitter"),
        (("max_restarts = 4", "max_restarts = -1"), "agent.max_restarts"),
    ],
)
def test_bad_toml_names_the_field(edit: tuple[str, str], field: str) -> None:
    """Each bad value or unknown key in TOML raises ConfigError naming its path."""
    text = TOML.replace(*edit)
    assert text != TOML
    with pytest.raises(ConfigError) as info:
        sv.spec_from_toml(text, FACTORIES)
    assert info.value.field == field


def test_unparsable_toml_is_a_config_error() -> None:
    """TOML that does not parse raises ConfigError."""
    with pytest.raises(ConfigError, match="toml"):
        sv.spec_from_toml("[supervisor\nid=", FACTORIES)


@pytest.mark.anyio
async def test_tree_dump_shows_every_node() -> None:
    """The text and Mermaid dumps show each child's kind, state and restart count."""
    log = Log()
    spec = sv.SupervisorSpec(
        id="root",
        children=[
            worker("a", log),
            sv.SupervisorSpec(id="sub", strategy="one_for_all", children=[worker("c", log)]),
        ],
    )
    async with sv.start(spec) as sup:
        text = sup.dump()
        assert text.splitlines() == [
            "root [supervisor one_for_one] running restarts=0",
            "├── a [worker queued=0] running restarts=0",
            "└── sub [supervisor one_for_all] running restarts=0",
            "    └── c [worker queued=0] running restarts=0",
        ]
        mermaid = sup.mermaid()
        assert mermaid.startswith("graph TD")
        assert "n_root --> n_root_sub" in mermaid
        assert "n_root_sub --> n_root_sub_c" in mermaid
        node = sup.tree()
        assert [child.id for child in node.children] == ["a", "sub"]
        assert node.children[1].children[0].path == "root/sub/c"
