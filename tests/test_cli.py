"""`python -m supervisor`: check and print TOML trees without starting them, through a real
subprocess (exit codes, stdout and stderr)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo_agent.toml"

NESTED = """
[supervisor]
id = "agent"
strategy = "rest_for_one"
max_restarts = 5
period = 10

[[supervisor.children]]
id = "db"
factory = "db"
shutdown = "brutal_kill"

[[supervisor.children]]
id = "tools"
strategy = "one_for_all"
children = [
    { id = "mcp", factory = "mcp", restart = "transient", shutdown = 2 },
]
"""


def cli(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


@pytest.fixture
def nested(tmp_path: Path) -> Path:
    path = tmp_path / "tree.toml"
    path.write_text(NESTED)
    return path


def bad(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_demo_configuration_passes_check() -> None:
    """The demo's TOML is valid: exit 0 and a summary naming its services."""
    result = cli("check", DEMO)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"{DEMO}: ok: supervisor 'agent' with 4 workers and 0 nested supervisors; "
        "services: llm, llm_mini, db, tools\n"
    )
    assert result.stderr == ""


def test_check_counts_nested_supervisors(nested: Path) -> None:
    """check counts the workers of nested supervisors too."""
    result = cli("check", nested)
    assert result.returncode == 0
    assert "with 2 workers and 1 nested supervisors; services: none" in result.stdout


def test_a_bad_field_exits_1_naming_its_dotted_path(tmp_path: Path) -> None:
    """An invalid value exits 1 with the ConfigError's dotted field on stderr."""
    path = bad(
        tmp_path,
        """
        [supervisor]
        id = "agent"
        [[supervisor.children]]
        id = "db"
        factory = "db"
        restart = "sometimes"
        """,
    )
    result = cli("check", path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"{path}: invalid: agent.children[0].restart='sometimes'")


def test_a_bad_services_table_exits_1(tmp_path: Path) -> None:
    """The [services] tables are validated too, with their dotted field."""
    path = bad(
        tmp_path,
        """
        [supervisor]
        id = "agent"
        [services.llm]
        breaker = { failure_rate_threshold = 7 }
        """,
    )
    result = cli("check", path)
    assert result.returncode == 1
    assert "services.llm.breaker.failure_rate_threshold" in result.stderr


@pytest.mark.parametrize(
    ("groups", "field"),
    [
        ('routing = "fastest"\nmembers = ["east"]', "groups.llm.routing"),
        ('members = ["east", "nowhere"]', "groups.llm.members.nowhere"),
    ],
)
def test_a_bad_groups_table_exits_1(tmp_path: Path, groups: str, field: str) -> None:
    """The [groups] tables are validated too, and a member must name a declared service."""
    path = tmp_path / "bad.toml"
    path.write_text(
        f'[supervisor]\nid = "agent"\n[services.east]\npreset = "llm"\n[groups.llm]\n{groups}\n'
    )
    result = cli("check", path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert field in result.stderr


def test_a_good_groups_table_is_reported(tmp_path: Path) -> None:
    """A valid [groups] table passes, and the ok line names the group."""
    path = tmp_path / "good.toml"
    path.write_text(
        '[supervisor]\nid = "agent"\n[services.east]\npreset = "llm"\n'
        '[groups.llm]\nmembers = ["east"]\n'
    )
    result = cli("check", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "groups: llm" in result.stdout


@pytest.mark.parametrize(
    ("text", "field"),
    [("[supervisor\nid=", "toml="), ("[demo]\nx = 1\n", "supervisor=None")],
)
def test_unparsable_or_treeless_toml_exits_1(tmp_path: Path, text: str, field: str) -> None:
    """Broken TOML or a file without [supervisor] exits 1 with the ConfigError."""
    result = cli("check", bad(tmp_path, text))
    assert result.returncode == 1
    assert f"invalid: {field}" in result.stderr


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    """A file that cannot be read is a usage error: exit 2."""
    result = cli("check", tmp_path / "nope.toml")
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot read ")


def test_tree_prints_the_tree_as_text(nested: Path) -> None:
    """tree prints every node with its strategy or factory, restart type and shutdown."""
    result = cli("tree", nested)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "agent [supervisor rest_for_one, max_restarts=5 in 10s] not started restarts=0",
        "├── db [worker factory=db, permanent, shutdown=brutal_kill] not started restarts=0",
        "└── tools [supervisor one_for_all, max_restarts=3 in 5s] not started restarts=0",
        "    └── mcp [worker factory=mcp, transient, shutdown=2s] not started restarts=0",
    ]


def test_tree_prints_mermaid(nested: Path) -> None:
    """tree --mermaid prints a graph TD with one edge per child."""
    result = cli("tree", nested, "--mermaid")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "graph TD"
    assert "    n_agent --> n_agent_db" in lines
    assert "    n_agent_tools --> n_agent_tools_mcp" in lines
    assert '    n_agent_db["db<br/>factory=db, permanent, shutdown=brutal_kill' in result.stdout


def test_tree_of_a_bad_file_exits_1(tmp_path: Path) -> None:
    """tree refuses an invalid file as check does."""
    result = cli("tree", bad(tmp_path, '[supervisor]\nid = "a/b"\n'))
    assert result.returncode == 1
    assert result.stdout == ""


def test_factories_from_a_module_reject_unknown_names(tmp_path: Path, nested: Path) -> None:
    """With --factories, a name missing from the mapping is an error; known names pass."""
    (tmp_path / "app_factories.py").write_text(
        "FACTORIES = {'db': object, 'mcp': object}\nONLY_DB = {'db': object}\n"
    )
    assert (
        cli("check", nested, "--factories", "app_factories:FACTORIES", cwd=tmp_path).returncode == 0
    )
    result = cli("check", nested, "--factories", "app_factories:ONLY_DB", cwd=tmp_path)
    assert result.returncode == 1
    assert "children[1].children[0].factory='mcp': no such factory" in result.stderr


@pytest.mark.parametrize("target", ["nomodule", "no_such_module:X", "json:dumps"])
def test_bad_factories_option_exits_2(nested: Path, target: str) -> None:
    """--factories that is not module:attribute of a mapping is a usage error."""
    result = cli("check", nested, "--factories", target)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: --factories {target!r}")


def test_help_lists_the_commands() -> None:
    """--help exits 0 and names both commands and the exit codes."""
    result = cli("--help")
    assert result.returncode == 0
    assert "check" in result.stdout
    assert "tree" in result.stdout
    assert "Exit codes" in result.stdout


def test_no_command_is_a_usage_error() -> None:
    """Without a command argparse exits 2."""
    assert cli().returncode == 2
