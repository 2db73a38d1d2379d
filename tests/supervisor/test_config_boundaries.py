"""Every supervision config field is type- and range-checked, in Python and through the
dict/TOML loader, with a `ConfigError` naming the dotted path and the value; and the
whole tree, factories included, is validated before any child starts."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any, cast

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import supervisor as sv
from actors import ConfigError
from tests.supervisor.helpers import Log, Worker, worker

LOG = Log()
FACTORIES = {"worker": lambda: Worker("w", LOG)}
NAN, INF = math.nan, math.inf


def make_child(**kwargs: Any) -> sv.ChildSpec[Any, Any]:
    return sv.ChildSpec(**{"id": "a", "factory": lambda: Worker("a", LOG), **kwargs})


# -- Python constructors ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"id": " a"}, "id"),
        ({"id": None}, "id"),
        ({"restart": 5}, "restart"),
        ({"restart": ["permanent"]}, "restart"),
        ({"shutdown": NAN}, "shutdown"),
        ({"shutdown": -1}, "shutdown"),
        ({"shutdown": True}, "shutdown"),
        ({"shutdown": "5"}, "shutdown"),
        ({"significant": "false", "restart": "transient"}, "a.significant"),
        ({"significant": 1, "restart": "transient"}, "a.significant"),
        ({"config": {"call_timeout": 1}}, "a.config"),
        ({"while_restarting": "never"}, "while_restarting"),
        ({"on_crash": None}, "on_crash"),
        ({"factory": ["db"]}, "a.factory"),
    ],
)
def test_bad_child_spec_fields_are_refused(kwargs: dict[str, Any], field: str) -> None:
    """Each invalid ChildSpec field raises ConfigError naming it and the value."""
    with pytest.raises(ConfigError) as info:
        make_child(**kwargs)
    assert info.value.field == field
    assert info.value.value is next(iter(kwargs.values()))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"children": 5}, "children"),
        ({"children": "ab"}, "children"),
        ({"children": [5]}, "root.children"),
        ({"strategy": None}, "strategy"),
        ({"max_restarts": 2.0}, "root.max_restarts"),
        ({"period": NAN}, "period"),
        ({"period": -1}, "period"),
        ({"period": True}, "period"),
        ({"period": "5"}, "period"),
        ({"backoff": {"min": 1}}, "root.backoff"),
        ({"auto_shutdown": "sometimes"}, "auto_shutdown"),
        ({"shutdown": NAN}, "shutdown"),
        ({"significant": "yes"}, "root.significant"),
    ],
)
def test_bad_supervisor_spec_fields_are_refused(kwargs: dict[str, Any], field: str) -> None:
    """Each invalid SupervisorSpec field raises ConfigError naming it."""
    with pytest.raises(ConfigError) as info:
        sv.SupervisorSpec(id="root", **kwargs)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min": NAN}, "min"),
        ({"min": INF, "max": INF}, "min"),
        ({"min": True}, "min"),
        ({"min": "1"}, "min"),
        ({"max": INF}, "max"),
        ({"max": NAN}, "max"),
        ({"multiplier": NAN}, "multiplier"),
        ({"multiplier": INF}, "multiplier"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"jitter": NAN}, "jitter"),
        ({"jitter": -0.1}, "jitter"),
        ({"jitter": True}, "jitter"),
        ({"reset_after": NAN}, "reset_after"),
        ({"reset_after": -1}, "reset_after"),
    ],
)
def test_bad_backoff_fields_are_refused(kwargs: dict[str, Any], field: str) -> None:
    """Backoff refuses NaN, infinite delays, bools, strings and out-of-range values."""
    with pytest.raises(ConfigError) as info:
        sv.Backoff(**kwargs)
    assert info.value.field == field


def test_documented_limits_are_accepted() -> None:
    """Infinity where it means "no limit", zero where OTP allows it, are accepted."""
    spec = sv.SupervisorSpec(
        id="root",
        max_restarts=0,
        period=INF,
        shutdown=INF,
        backoff=sv.Backoff(min=0, max=0, reset_after=INF),
        children=[make_child(shutdown=INF)],
    )
    assert spec.max_restarts == 0
    assert spec.children[0].shutdown == INF


def test_backoff_delay_never_overflows() -> None:
    """A crash loop's thousandth consecutive restart waits `max`, not an OverflowError."""
    backoff = sv.Backoff(min=1, max=30, multiplier=2, jitter=0)
    assert backoff.delay(5000, random.Random(1)) == 30


def test_significant_child_under_auto_shutdown_never_is_refused() -> None:
    """A significant child needs auto_shutdown other than 'never' (OTP refuses that spec)."""
    job = make_child(restart="transient", significant=True)
    with pytest.raises(ConfigError) as info:
        sv.SupervisorSpec(id="root", children=[worker("x", LOG), job])
    assert info.value.field == "root.children[1].significant"
    assert info.value.value is True
    assert sv.SupervisorSpec(id="root", auto_shutdown="any_significant", children=[job])


# -- the dict / TOML loader -----------------------------------------------------------


def load(children: list[Any], **root: Any) -> sv.SupervisorSpec:
    return sv.spec_from_dict({"id": "agent", "children": children, **root}, FACTORIES)


@pytest.mark.parametrize(
    ("children", "root", "field", "value"),
    [
        (
            [{"id": "j", "factory": "worker", "restart": "transient", "significant": "false"}],
            {"auto_shutdown": "any_significant"},
            "agent.children[0].significant",
            "false",
        ),
        ([{"id": "db", "factory": ["db"]}], {}, "agent.children[0].factory", ["db"]),
        ([{"id": "db", "factory": "worker"}, {"id": "x"}], {}, "agent.children[1]", "x"),
        (
            [{"id": "db", "factory": "worker", "children": []}],
            {},
            "agent.children[0]",
            "db",
        ),
        ([{"factory": "worker"}], {}, "agent.children[0].id", None),
        (
            [{"id": "j", "factory": "worker", "restart": "transient", "significant": True}],
            {},
            "agent.children[0].significant",
            True,
        ),
        (
            [{"id": "db", "factory": "worker", "shutdown": NAN}],
            {},
            "agent.children[0].shutdown",
            NAN,
        ),
        ([{"id": "s", "children": [], "period": -1}], {}, "agent.children[0].period", -1),
        ([], {"backoff": {"min": INF}}, "agent.backoff.min", INF),
        ([], {"max_restarts": "3"}, "agent.max_restarts", "3"),
        (
            [{"id": "db", "factory": "worker", "call_timeout": True}],
            {},
            "agent.children[0].call_timeout",
            True,
        ),
    ],
)
def test_loader_names_the_dotted_path_and_value(
    children: list[Any], root: dict[str, Any], field: str, value: object
) -> None:
    """The loader refuses each invalid child or field with ConfigError naming its path."""
    with pytest.raises(ConfigError) as info:
        load(children, **root)
    assert info.value.field == field
    if isinstance(value, float) and math.isnan(value):
        assert isinstance(info.value.value, float)
        assert math.isnan(info.value.value)
    else:
        assert info.value.value == value


def test_toml_child_with_only_an_id_is_refused() -> None:
    """A TOML child table with only an id is an error, not an empty supervisor."""
    text = '[supervisor]\nid = "agent"\n\n[[supervisor.children]]\nid = "db"\n'
    with pytest.raises(ConfigError) as info:
        sv.spec_from_toml(text, FACTORIES)
    assert info.value.field == "agent.children[0]"


def test_toml_empty_supervisor_needs_explicit_children() -> None:
    """A nested supervisor of dynamic children only is declared with `children = []`."""
    text = '[supervisor]\nid = "agent"\n\n[[supervisor.children]]\nid = "pool"\nchildren = []\n'
    spec = sv.spec_from_toml(text, FACTORIES)
    (pool,) = spec.children
    assert isinstance(pool, sv.SupervisorSpec)
    assert pool.children == ()


KEYS = [
    "id",
    "factory",
    "children",
    "strategy",
    "restart",
    "shutdown",
    "significant",
    "max_restarts",
    "period",
    "backoff",
    "auto_shutdown",
    "call_timeout",
    "mailbox_size",
    "on_crash",
    "min",
    "zzz",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["worker", "db", "transient", "one_for_all", "brutal_kill", "a/b", ""]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(st.sampled_from(KEYS), values))
def test_loader_raises_only_config_errors(data: dict[str, Any]) -> None:
    """Whatever the input, the loader returns a spec or raises ConfigError."""
    try:
        spec = sv.spec_from_dict(data, FACTORIES)
    except ConfigError:
        return
    assert isinstance(spec, sv.SupervisorSpec)


# -- the whole tree is validated before anything starts -------------------------------


class BadConfig(Worker):
    def __init__(self, log: Log) -> None:
        raise ConfigError("read_timeout", -1, "must be a finite number >= 0")


def tree(log: Log, bad: sv.ChildSpec[Any, Any]) -> sv.SupervisorSpec:
    return sv.SupervisorSpec(
        id="root",
        children=[worker("a", log), sv.SupervisorSpec(id="sub", children=[worker("b", log), bad])],
    )


@pytest.mark.anyio
@pytest.mark.parametrize("entry", ["start", "start_tree"])
async def test_a_factory_config_error_aborts_the_start_before_any_child(entry: str) -> None:
    """A ConfigError from any child's factory is raised, naming the child's path, before
    any child has started (not an IntensityExceeded after its siblings ran)."""
    log = Log()
    spec = tree(log, sv.ChildSpec(id="db", factory=lambda: BadConfig(log)))
    if entry == "start":
        with pytest.raises(ConfigError) as info:
            async with sv.start(spec):
                pytest.fail("the tree started")
    else:
        async with anyio.create_task_group() as tg:
            with pytest.raises(ConfigError) as info:
                await tg.start(sv.start_tree, spec)
    assert info.value.field == "root/sub/db.read_timeout"
    assert info.value.value == -1
    assert log.starts() == []


class Wide(Worker):
    max_concurrency = 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (lambda: cast(Any, 42), "root/sub/db.factory"),
        (lambda: Wide("db", Log()), "root/sub/db.Wide.max_concurrency"),
    ],
    ids=["not-an-actor", "bad-max-concurrency"],
)
async def test_an_invalid_actor_aborts_the_start_before_any_child(
    factory: Callable[[], Any], field: str
) -> None:
    """A factory that does not return an Actor, or an actor with an invalid setting, is
    refused before any child starts."""
    log = Log()
    spec = tree(log, sv.ChildSpec(id="db", factory=factory))
    with pytest.raises(ConfigError) as info:
        async with sv.start(spec):
            pytest.fail("the tree started")
    assert info.value.field == field
    assert log.starts() == []


@pytest.mark.anyio
async def test_validation_builds_each_first_incarnation_once() -> None:
    """Validating calls each factory once; that actor is the first incarnation."""
    log = Log()
    made: list[Worker] = []

    def factory() -> Worker:
        made.append(Worker("a", log))
        return made[-1]

    spec = sv.SupervisorSpec(id="root", children=[sv.ChildSpec(id="a", factory=factory)])
    async with sv.start(spec) as sup:
        assert await sup.ref("a").call(1) == ("a", 1)
        assert len(made) == 1
        assert made[0].ref.name == "root/a"


@pytest.mark.anyio
async def test_start_child_with_a_bad_factory_is_a_config_error() -> None:
    """start_child raises the factory's ConfigError (naming the child) and adds nothing."""
    log = Log()
    async with sv.start(sv.SupervisorSpec(id="root")) as sup:
        with pytest.raises(ConfigError) as info:
            await sup.start_child(sv.ChildSpec(id="db", factory=lambda: BadConfig(log)))
        assert info.value.field == "root/db.read_timeout"
        assert sup.which_children() == []


@pytest.mark.anyio
async def test_start_child_refuses_a_significant_child_under_never() -> None:
    """A significant dynamic child is refused by a supervisor with auto_shutdown=never."""
    async with sv.start(sv.SupervisorSpec(id="root")) as sup:
        with pytest.raises(ConfigError, match="auto_shutdown"):
            await sup.start_child(make_child(restart="temporary", significant=True))
        assert sup.which_children() == []
