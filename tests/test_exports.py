"""The public surface (docs/architecture.md, "Public surface"): which modules are public,
what each exports, and that docs, examples and tests use nothing else."""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).parent.parent

# Every public module: a dotted path with no part starting with an underscore.
PUBLIC = [
    "actors",
    "actors.integrations",
    "actors.lowlevel",
    "actors.resilience",
    "actors.services",
    "actors.services.anthropic",
    "actors.services.llm",
    "actors.services.mcp",
    "actors.services.sql",
    "actors.stores",
    "actors.stores.redis",
    "actors.testing",
    "actors.testing.mcp_server",
    "supervisor",
    "supervisor.fallback",
    "supervisor.groups",
    "supervisor.health",
]

# White-box tests of private pure cores (parsers, state machines, wire formats) and
# benchmarks of private paths: what they check has no public handle as exact. Each
# entry is (file, private module): why.
WHITE_BOX: dict[tuple[str, str], str] = {
    ("tests/actors/integrations/test_transport.py", "actors.integrations._client"): (
        "a reply made in the instant its caller is cancelled: no public call can time it"
    ),
    ("tests/actors/integrations/test_transport.py", "actors.integrations._reply"): (
        "the relay of a streamed answer, over arbitrary bytes (property test)"
    ),
    ("tests/actors/integrations/test_transport.py", "actors.services._wire"): (
        "the wire limits the relay above is built with"
    ),
    ("tests/actors/resilience/test_adaptive.py", "actors.resilience._pipeline"): (
        "the one pipeline with an adaptive limit in the bulkhead's place, alone"
    ),
    ("tests/actors/resilience/test_pipeline_hooks.py", "actors.resilience._pipeline"): (
        "the pipeline's hooks (retry_on, cost) alone; Service and resilient pass them on"
    ),
    ("tests/actors/resilience/test_breaker.py", "actors._clock"): (
        "the library's one clock reads exactly the loop's time on both backends"
    ),
    ("tests/actors/resilience/test_limit_headers.py", "actors.resilience._limit_headers"): (
        "the rate-limit header parser over arbitrary headers (property test)"
    ),
    ("tests/actors/resilience/test_retry.py", "actors.resilience._retry_after"): (
        "the retry-after parsers over arbitrary header values (property test)"
    ),
    ("tests/actors/resilience/test_unsettled.py", "actors.resilience._unsettled"): (
        "results whose attempt settles when their reader closes them, alone"
    ),
    ("tests/actors/services/llm_strategies.py", "actors.testing._mock_wire"): (
        "the mock's own encoders generate the wire input of the parsers' property tests"
    ),
    ("tests/actors/services/test_llm_secrets.py", "actors._redact"): (
        "the redaction core over arbitrary text (property test)"
    ),
    ("tests/actors/services/test_llm_wire.py", "actors.services._wire"): (
        "the SSE decoder and JSON loader over arbitrary bytes (property test)"
    ),
    ("tests/actors/test_classify.py", "actors._classify"): (
        "the readers classification is built on (status, headers, error codes, marks)"
    ),
    ("tests/benchmarks/emit_overhead.py", "actors._events"): (
        "measures the cost of the private event path itself"
    ),
    ("tests/benchmarks/emit_overhead.py", "supervisor.health._feed"): (
        "measures the dashboard's event feed as a sink of that path"
    ),
    ("tests/benchmarks/redis_limiter.py", "actors.stores._redis_client"): (
        "closes the baseline's plain client the way the stores close theirs"
    ),
    ("tests/stores/test_redis_cluster.py", "actors.stores._redis_client"): (
        "closes a plain cluster client the way the stores close theirs"
    ),
    ("tests/stores/test_redis_failures.py", "actors.stores._redis_client"): (
        "the client options reach coredis (TLS, timeouts), checked on the client itself"
    ),
    ("tests/stores/test_redis_limiter.py", "actors.stores._redis_limiter"): (
        "the Lua script against the Python algorithms, step by step (differential test)"
    ),
    ("tests/stores/test_redis_limiter.py", "actors.stores._redis_lua"): (
        "the same differential test, on a copy of the script with a test clock"
    ),
    ("tests/supervisor/groups/test_routing.py", "supervisor.groups._strategies"): (
        "ConsistentHash's dotted-path key reader, alone"
    ),
    ("tests/supervisor/groups/test_stream_recovery.py", "supervisor.groups._stream"): (
        "the stream relay's splice of a continuation, alone"
    ),
    ("tests/supervisor/health/test_dashboard.py", "actors._events"): (
        "emits a marker event the dashboard's feed must show"
    ),
    ("tests/supervisor/health/test_dashboard.py", "supervisor.health._feed"): (
        "the dashboard's bounded event feed and its sink's removal, alone"
    ),
    ("tests/supervisor/health/test_report.py", "supervisor.health._state"): (
        "reports built from the pure health state machine, driven with explicit times"
    ),
    ("tests/supervisor/health/test_state.py", "supervisor.health._state"): (
        "the pure health state machine (hysteresis, dependencies), with explicit times"
    ),
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


def _discovered() -> list[str]:
    found = []
    for package in ("actors", "supervisor"):
        found.append(package)
        root = _module(package)
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            parts = info.name.split(".")
            if not any(part.startswith("_") for part in parts):
                found.append(info.name)
    return sorted(found)


def _isort_key(name: str) -> tuple[int, list[int | str]]:
    """RUF022's order: SCREAMING_CASE, then CamelCase, then the rest; naturally within."""
    if name.isupper() or (name.upper() == name and "_" in name):
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    natural: list[int | str] = [
        int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)
    ]
    return group, natural


def _exports() -> Iterator[tuple[str, str, object]]:
    for package in PUBLIC:
        module = _module(package)
        for name in module.__all__:
            yield package, name, getattr(module, name)


def test_public_modules_are_the_listed_ones() -> None:
    """The modules without an underscore in their path are exactly PUBLIC."""
    assert _discovered() == PUBLIC


@pytest.mark.parametrize("package", PUBLIC)
def test_all_is_sorted_and_complete(package: str) -> None:
    """__all__ is sorted (RUF022's order), names each export once, and a package's names
    every public attribute."""
    module = _module(package)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_key)
    assert len(exported) == len(set(exported))
    if not hasattr(module, "__path__"):  # a module with code: what it defines is exported
        defined = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and (isinstance(value, type) or inspect.isfunction(value))
            and value.__module__ == package
        }
        assert defined <= set(exported)
        return
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert public == set(exported)


@pytest.mark.parametrize("package", PUBLIC)
def test_exports_claim_their_public_module(package: str) -> None:
    """Every exported class and function reports the public module as its module."""
    for name in _module(package).__all__:
        value = getattr(_module(package), name)
        if isinstance(value, type) or inspect.isfunction(value):
            assert value.__module__ == package, name


def test_each_name_is_exported_once() -> None:
    """No name, and no object, is exported from two public modules."""
    by_name: dict[str, list[str]] = {}
    by_object: dict[int, list[str]] = {}
    for package, name, value in _exports():
        by_name.setdefault(name, []).append(package)
        if isinstance(value, type) or callable(value):
            by_object.setdefault(id(value), []).append(f"{package}.{name}")
    assert {name: where for name, where in by_name.items() if len(where) > 1} == {}
    assert [where for where in by_object.values() if len(where) > 1] == []


def _attribute_docstring(name: str, value: object) -> str | None:
    """The string literal after the module-level assignment that made `value`."""
    for module in list(sys.modules.values()):
        if not module.__name__.startswith(("actors", "supervisor")):
            continue
        if vars(module).get(name) is not value or not getattr(module, "__file__", None):
            continue
        body = ast.parse(Path(module.__file__ or "").read_text()).body
        for statement, following in itertools.pairwise(body):
            targets = (
                statement.targets
                if isinstance(statement, ast.Assign)
                else [statement.target]
                if isinstance(statement, ast.AnnAssign)
                else []
            )
            if (
                any(isinstance(t, ast.Name) and t.id == name for t in targets)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                return following.value.value
    return None


def test_every_export_has_a_docstring() -> None:
    """Every exported class and function has its own docstring; every constant or alias
    a docstring after its assignment."""
    missing = []
    for package, name, value in _exports():
        if isinstance(value, type):
            doc = vars(value).get("__doc__")
        elif inspect.isroutine(value):
            doc = value.__doc__
        else:  # a constant or a type alias
            doc = _attribute_docstring(name, value)
        if not (doc and doc.strip()):
            missing.append(f"{package}.{name}")
    assert missing == []


def test_every_export_appears_in_the_docs() -> None:
    """Every exported name is mentioned somewhere under docs/."""
    text = "\n".join(page.read_text() for page in ROOT.joinpath("docs").rglob("*.md"))
    missing = [
        f"{package}.{name}"
        for package, name, _ in _exports()
        if not re.search(rf"\b{re.escape(name)}\b", text)
    ]
    assert missing == []


def _sources() -> Iterator[tuple[str, str]]:
    """Every Python source a user reads: tests, examples, docs scripts and code blocks."""
    for folder in ("tests", "examples", "docs"):
        for path in sorted(ROOT.joinpath(folder).rglob("*.py")):
            yield str(path.relative_to(ROOT)), path.read_text()
    for page in [ROOT / "README.md", *sorted(ROOT.joinpath("docs").rglob("*.md"))]:
        blocks = re.findall(r"```py(?:thon)?\n(.*?)```", page.read_text(), re.S)
        for index, block in enumerate(blocks):
            yield f"{page.relative_to(ROOT)}#{index}", block


def _private_imports(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        modules = (
            [node.module]
            if isinstance(node, ast.ImportFrom) and node.module and not node.level
            else [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else []
        )
        for module in modules:
            parts = module.split(".")
            if parts[0] in ("actors", "supervisor") and any(p.startswith("_") for p in parts):
                found.add(module)
    return found


def test_docs_examples_and_tests_import_only_public_modules() -> None:
    """No private module is imported outside the packages, but the listed white-box tests."""
    used = {(path, module) for path, source in _sources() for module in _private_imports(source)}
    assert sorted(used - WHITE_BOX.keys()) == []
    assert sorted(WHITE_BOX.keys() - used) == []  # the list holds no stale entry


def test_supervisor_uses_only_public_and_low_level_names_of_actors() -> None:
    """The supervisor package is built on `actors` through its public modules and
    `actors.lowlevel` only (the two-package split is a real layering)."""
    used = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted(ROOT.joinpath("supervisor").rglob("*.py"))
        for module in _private_imports(path.read_text())
        if module.startswith("actors")
    }
    assert sorted(used) == []


def test_import_actors_stays_light() -> None:
    """Importing actors does not import optional extras or the supervisor."""
    code = (
        "import sys, actors; "
        "bad = [m for m in ('httpx', 'httpx2', 'mcp', 'psycopg', 'coredis', "
        "'prometheus_client', 'supervisor', 'trio') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
