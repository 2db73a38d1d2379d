"""Quiet by default, loud when asked: the library writes nothing until logging is configured."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import structlog

import supervisor as sv
from actors import Actor, correlation_id
from actors.testing import capture_events

pytestmark = pytest.mark.anyio

# A tree whose worker crashes on every call and is restarted each time; exits 0 only if
# the crashes and restarts really happened. The first argument is the backend, the
# second how the application configures logging (nothing, stdlib or structlog).
TREE = textwrap.dedent(
    """
    import logging, sys
    import anyio, structlog
    import supervisor as sv
    from actors import Actor

    class Boom(Actor):
        async def handle(self, msg):
            raise RuntimeError("boom " + "x" * 1000)  # a big local for a locals renderer

    async def main():
        spec = sv.SupervisorSpec(
            id="app",
            max_restarts=20,
            backoff=sv.Backoff.none(),
            children=[sv.ChildSpec(id="worker", factory=Boom)],
        )
        async with sv.start(spec) as sup:
            for _ in range(3):
                try:
                    await sup.ref("worker").call("go", timeout=1)
                except Exception:
                    pass
                await anyio.sleep(0.05)
            return sup.which_children()[0].restarts

    if sys.argv[2] == "stdlib":
        logging.basicConfig(level=logging.INFO)
    elif sys.argv[2] == "structlog":
        structlog.configure(processors=[structlog.processors.KeyValueRenderer()])
    sys.exit(0 if anyio.run(main, backend=sys.argv[1]) >= 3 else 3)
    """
)


def run_tree(backend: str, logging_setup: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", TREE, backend, logging_setup],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def unconfigured() -> Iterator[None]:
    """structlog as a fresh application has it (not configured), restored afterwards."""
    was_configured = structlog.is_configured()
    saved = structlog.get_config()
    structlog.reset_defaults()
    yield
    if was_configured:
        structlog.configure(**saved)
    else:
        structlog.reset_defaults()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records(unconfigured: None) -> Iterator[list[logging.LogRecord]]:
    """The records an application's handler on the "actors" logger receives."""
    handler = Records()
    logger = logging.getLogger("actors")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


class Boom(Actor[str, str]):
    async def handle(self, msg: str) -> str:
        raise RuntimeError("boom")


async def crash_once() -> None:
    """Starts a tree, crashes its worker once under correlation id "req-1", stops it."""
    spec = sv.SupervisorSpec(
        id="app", backoff=sv.Backoff.none(), children=[sv.ChildSpec(id="w", factory=Boom)]
    )
    async with sv.start(spec) as sup:
        with correlation_id("req-1"), pytest.raises(RuntimeError, match="boom"):
            await sup.ref("w").call("go", timeout=1)
        await anyio.sleep(0.01)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_unconfigured_run_with_crashes_prints_nothing(backend: str) -> None:
    """With nothing configured, a tree that crashes and restarts writes nothing at all."""
    result = run_tree(backend, "none")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_basic_config_shows_events_with_plain_tracebacks() -> None:
    """After logging.basicConfig the events appear on stderr, tracebacks without locals."""
    result = run_tree("asyncio", "stdlib")
    assert result.returncode == 0
    assert "INFO:actors:supervisor.started supervisor='app'" in result.stderr
    assert "ERROR:actors:actor.crashed correlation_id=" in result.stderr
    assert "RuntimeError: boom" in result.stderr
    assert "locals" not in result.stderr
    assert "x" * 1000 + "'" not in result.stderr.replace("boom ", "")  # no repr of locals
    assert result.stdout == ""


def test_structlog_configured_gets_the_events() -> None:
    """After structlog.configure the events go through the application's processors."""
    result = run_tree("trio", "structlog")
    assert result.returncode == 0
    assert "event='actor.crashed'" in result.stdout
    assert "event='supervisor.child_restarted'" in result.stdout
    assert result.stderr == ""


async def test_stdlib_records_carry_name_fields_and_correlation_id(
    records: list[logging.LogRecord],
) -> None:
    """A handler on "actors" gets records with `event`, `event_fields` and the bound id."""
    await crash_once()
    crashed = [r for r in records if getattr(r, "event", None) == "actor.crashed"]
    assert len(crashed) == 1
    record: Any = crashed[0]
    assert record.levelno == logging.ERROR
    assert record.event_fields["correlation_id"] == "req-1"
    assert record.event_fields["actor"] == "app/w"
    assert isinstance(record.exc_info[1], RuntimeError)
    assert record.getMessage().startswith("actor.crashed correlation_id='req-1' actor='app/w'")
    assert record.pathname.endswith("_actor.py")  # where the library emitted it


async def test_structlog_events_carry_exc_info_and_correlation_id(unconfigured: None) -> None:
    """With structlog configured, a failure event holds the exception itself as exc_info."""
    capture = structlog.testing.LogCapture()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    await crash_once()
    [crashed] = [e for e in capture.entries if e["event"] == "actor.crashed"]
    assert crashed["correlation_id"] == "req-1"
    assert crashed["error_type"] == "RuntimeError"
    assert isinstance(crashed["exc_info"], RuntimeError)


async def test_nothing_reaches_stdlib_without_handlers(unconfigured: None) -> None:
    """With only the library's NullHandler, no record is even made (the quiet path is cheap)."""
    made: list[logging.LogRecord] = []
    factory = logging.getLogRecordFactory()

    def counting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        made.append(record)
        return record

    root = logging.getLogger()
    handlers = root.handlers[:]  # pytest's own capture handlers, as if none were set
    root.handlers.clear()
    logging.setLogRecordFactory(counting)
    try:
        await crash_once()
    finally:
        logging.setLogRecordFactory(factory)
        root.handlers[:] = handlers
    assert [r for r in made if r.name == "actors"] == []


async def test_capture_events_leaves_structlog_unconfigured(unconfigured: None) -> None:
    """capture_events() captures the library's events, then restores the quiet state."""
    with capture_events() as events:
        await crash_once()
    [crashed] = [e for e in events if e["event"] == "actor.crashed"]
    assert crashed["correlation_id"] == "req-1"
    assert not structlog.is_configured()
