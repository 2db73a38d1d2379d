"""`python -m supervisor`: check a TOML supervision tree and print it, without starting it.

::

    python -m supervisor check tree.toml              # exit 0, or 1 with the ConfigError
    python -m supervisor tree tree.toml [--mermaid]   # the tree as text or Mermaid

The file's ``[supervisor]`` table is loaded with `spec_from_toml` and its
``[services.<name>]`` tables, when present, with `actors.load_services_config`, and its
``[groups.<name>]`` tables with `supervisor.groups.load_groups_config` (with services in
the file, each member must name one of them); other tables are left to the
application. Factories cannot be written in TOML: without
``--factories`` every factory name is accepted as written (nothing is ever started);
with ``--factories module:attribute`` (a mapping of names to factories, imported from
the current directory or the path) an unknown name is an error too.

Exit codes: 0 valid, 1 invalid (the `ConfigError`, with its dotted field, on stderr),
2 usage errors (a missing file, a bad ``--factories``).
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from actors import Actor, ConfigError, load_services_config
from supervisor._load import spec_from_toml
from supervisor._spec import BRUTAL_KILL, Child, SupervisorSpec
from supervisor._tree import TreeNode, render_mermaid, render_text
from supervisor.groups import load_groups_config

__all__ = ["main"]

NOT_STARTED = "not started"
"""The state shown for every node of a tree read from a file."""


class _Named:
    """A factory known only by its name: the CLI validates trees, it never starts them."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self) -> Actor[Any, Any]:
        raise RuntimeError(f"factory {self.name!r} stands for a name only; nothing is started")


class _AnyName(Mapping[str, Callable[[], Actor[Any, Any]]]):
    """Accepts every factory name (for checking a file without the application's code)."""

    def __getitem__(self, name: str) -> Callable[[], Actor[Any, Any]]:
        return _Named(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class _UsageError(Exception):
    """A bad command line or an unreadable file (exit code 2)."""


def _import_factories(target: str) -> Mapping[str, Callable[[], Actor[Any, Any]]]:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise _UsageError(f"--factories {target!r}: expected module:attribute")
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _UsageError(f"--factories {target!r}: {exc}") from None
    finally:
        sys.path.pop(0)
    factories = getattr(module, attribute, None)
    if not isinstance(factories, Mapping):
        raise _UsageError(f"--factories {target!r}: not a mapping of names to factories")
    return factories


def _seconds(value: float) -> str:
    return "infinity" if value == math.inf else f"{value:g}s"


def _node(spec: Child, parent: str | None, names: Mapping[int, str]) -> TreeNode:
    path = spec.id if parent is None else f"{parent}/{spec.id}"
    if isinstance(spec, SupervisorSpec):
        detail = (
            f"{spec.strategy.value}, max_restarts={spec.max_restarts} in {_seconds(spec.period)}"
        )
        children = tuple(_node(child, path, names) for child in spec.children)
        return TreeNode(path, "supervisor", NOT_STARTED, 0, detail, children)
    factory = spec.factory
    name = factory.name if isinstance(factory, _Named) else names.get(id(factory), "?")
    shutdown = BRUTAL_KILL if spec.shutdown == BRUTAL_KILL else _seconds(float(spec.shutdown))
    detail = f"factory={name}, {spec.restart.value}, shutdown={shutdown}"
    return TreeNode(path, "worker", NOT_STARTED, 0, detail)


def _count(spec: SupervisorSpec) -> tuple[int, int]:
    """Workers and nested supervisors under `spec`."""
    workers = supervisors = 0
    for child in spec.children:
        if isinstance(child, SupervisorSpec):
            below = _count(child)
            workers += below[0]
            supervisors += 1 + below[1]
        else:
            workers += 1
    return workers, supervisors


def _load(path: Path, factories: Mapping[str, Any]) -> tuple[SupervisorSpec, list[str], list[str]]:
    """The file's tree, its service names and its group names.

    Raises:
        ConfigError: An invalid file.
        _UsageError: The file cannot be read.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _UsageError(f"cannot read {path}: {exc}") from None
    spec = spec_from_toml(text, factories)
    document = tomllib.loads(text)  # it parsed above
    services = load_services_config(document) if "services" in document else {}
    groups = load_groups_config(document) if "groups" in document else {}
    if services:
        for group, group_spec in groups.items():
            group_spec.check_members(services, field=f"groups.{group}.members")
    return spec, list(services), list(groups)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m supervisor",
        description="Check a TOML supervision tree, or print it, without starting it.",
        epilog="Exit codes: 0 valid, 1 invalid (the ConfigError names the field), 2 usage.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    factories_help = (
        "module:attribute of a mapping of factory names to factories; without it, "
        "every factory name is accepted"
    )
    check = commands.add_parser("check", help="validate the [supervisor] and [services] tables")
    tree = commands.add_parser("tree", help="print the tree as text (or Mermaid)")
    for command in (check, tree):
        command.add_argument("file", type=Path, metavar="FILE", help="a TOML file")
        command.add_argument("--factories", metavar="MODULE:ATTR", help=factories_help)
    tree.add_argument("--mermaid", action="store_true", help="print a Mermaid graph TD")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        factories: Mapping[str, Any] = (
            _AnyName() if args.factories is None else _import_factories(args.factories)
        )
        spec, services, groups = _load(args.file, factories)
    except _UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"{args.file}: invalid: {exc}", file=sys.stderr)
        return 1
    names = {id(value): key for key, value in factories.items()}
    root = _node(spec, None, names)
    if args.command == "tree":
        print(render_mermaid(root) if args.mermaid else render_text(root))
        return 0
    workers, supervisors = _count(spec)
    listed = ", ".join(services) if services else "none"
    grouped = f"; groups: {', '.join(groups)}" if groups else ""
    print(
        f"{args.file}: ok: supervisor {spec.id!r} with {workers} workers and "
        f"{supervisors} nested supervisors; services: {listed}{grouped}"
    )
    return 0
