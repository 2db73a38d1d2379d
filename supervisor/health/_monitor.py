"""`HealthMonitor`: one probe loop per service, feeding the health state machine.

::

    async with open_health_monitor() as monitor:
        monitor.add("llm", llm_ref.probe, HealthConfig(interval=5, timeout=1), breaker=llm_breaker)
        ...
        monitor.status("llm")         # HealthStatus.HEALTHY / DEGRADED / UNHEALTHY
        monitor.report().to_dict()    # JSON for /readyz

A probe is any zero-argument async callable: it returns (anything) when the service
is fine and raises when it is not. A probe that raises an `Exception` or runs past
its `timeout` is a failed probe; it never stops the monitor. Cancellation is never a
failure: stopping the monitor cancels running probes and records nothing.

Probes should not queue behind requests: pass a probe that does not go through the
service's request mailbox (a service actor's control-lane `probe`), so a full mailbox
never starves it.
"""

from __future__ import annotations

import random as _random_module
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol, cast

import anyio
import anyio.abc
import attrs

from actors import ConfigError
from actors.lowlevel import emit
from actors.lowlevel import now_or_none as _now_or_none
from actors.resilience import BreakerState, BreakerTransition, CircuitBreaker
from supervisor.health._metrics import record_probe, record_transition
from supervisor.health._report import HealthReport, ServiceHealth
from supervisor.health._state import (
    HealthConfig,
    HealthStatus,
    HealthTable,
    HealthTransition,
    ServiceState,
)

__all__ = [
    "HealthListener",
    "HealthMonitor",
    "Probe",
    "open_health_monitor",
    "restarts_from",
    "watch_children",
]

Probe = Callable[[], Awaitable[object]]
"""A zero-argument async callable; it raises when the service is not fine."""

PROBE_TIMEOUT = "ProbeTimeout"
"""The `last_error` of a probe that ran past its timeout."""


class HealthListener(Protocol):
    """Called synchronously with every health transition; must be quick, must not block."""

    def __call__(self, transition: HealthTransition, /) -> None:
        """Observes one transition (an exception it raises is reported and ignored)."""


def _now() -> float:
    """`anyio.current_time()`, or 0.0 outside an event loop (configuration before `run`)."""
    return _now_or_none() or 0.0


@attrs.define(eq=False)
class _Entry:
    name: str
    probe: Probe
    config: HealthConfig
    breaker: CircuitBreaker | None
    listener: Callable[[BreakerTransition], None] | None = None
    scope: anyio.CancelScope | None = None


@attrs.define(eq=False)
class HealthMonitor:
    """Schedules probes and keeps the health of every registered service.

    Create it with `open_health_monitor`, or construct it and run it in your own task
    group with `await tg.start(monitor.run)`. Services can be added before or while it
    runs.

    Attributes:
        restarts: Returns the restart count of a service by name (or `None`), for
            reports; e.g. `restarts_from(sup)`.
        random: Returns a float in [0, 1) for the interval jitter.
    """

    restarts: Callable[[str], int | None] | None = None
    random: Callable[[], float] = attrs.field(default=_random_module.random, repr=False)
    _table: HealthTable = attrs.field(factory=HealthTable, init=False, repr=False)
    _entries: dict[str, _Entry] = attrs.field(factory=dict, init=False, repr=False)
    _reasons: dict[str, str] = attrs.field(factory=dict, init=False, repr=False)
    _listeners: list[HealthListener] = attrs.field(factory=list, init=False, repr=False)
    _tg: anyio.abc.TaskGroup | None = attrs.field(default=None, init=False, repr=False)

    # ----------------------------------------------------------------- configuration

    def add(
        self,
        name: str,
        probe: Probe,
        config: HealthConfig | None = None,
        *,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        """Monitors a service; its probe loop starts now if the monitor runs.

        The service starts HEALTHY (or what its breaker and dependencies imply); the
        first probe runs at once, the next ones every `config.interval` (± jitter)
        from the start of the previous one.

        Args:
            probe: E.g. `service_ref.probe`; must not go through the request mailbox.
            config: Defaults to `HealthConfig()`.
            breaker: The service's breaker: its OPEN / HALF_OPEN states feed the status.

        Raises:
            ConfigError: A taken or empty name, a probe that is not callable, a
                dependency on itself or a dependency cycle.
        """
        config = HealthConfig() if config is None else config
        if not callable(probe):
            raise ConfigError("probe", probe, "must be a zero-argument async callable")
        if breaker is not None and not isinstance(breaker, CircuitBreaker):
            raise ConfigError("breaker", breaker, "must be a CircuitBreaker")
        now = _now()
        transitions = self._table.add(name, config, now=now)
        entry = _Entry(name, probe, config, breaker)
        self._entries[name] = entry
        self._reasons[name] = "initial"
        if breaker is not None:

            def on_breaker(transition: BreakerTransition) -> None:
                self._publish(self._table.set_breaker(name, transition.to_state, now=transition.at))

            entry.listener = on_breaker
            breaker.add_listener(on_breaker)
            transitions += self._table.set_breaker(name, breaker.state, now=now)
        self._publish(transitions)
        if self._tg is not None:
            self._tg.start_soon(self._loop, entry, name=f"health probe {name}")

    def remove(self, name: str) -> None:
        """Stops probing `name` and forgets it (dependants stop counting it).

        Raises:
            UnknownService: No such service.
        """
        self._table.get(name)
        entry = self._entries.pop(name)
        if entry.scope is not None:
            entry.scope.cancel()
        if entry.breaker is not None and entry.listener is not None:
            entry.breaker.remove_listener(entry.listener)
        self._reasons.pop(name, None)
        self._publish(self._table.remove(name, now=_now()))

    def add_listener(self, listener: HealthListener) -> None:
        """Calls `listener(transition)` synchronously on every status change."""
        self._listeners.append(listener)

    def remove_listener(self, listener: HealthListener) -> None:
        """Stops calling `listener` (no error if it was not added)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    # ----------------------------------------------------------------- queries

    @property
    def running(self) -> bool:
        """Whether `run` is active (what `/healthz` reports)."""
        return self._tg is not None

    def breaker_of(self, name: str) -> CircuitBreaker | None:
        """The breaker watched for `name` (`None` if it has none).

        Raises:
            UnknownService: No such service.
        """
        self._table.get(name)
        return self._entries[name].breaker

    def names(self) -> list[str]:
        """Monitored service names, in the order they were added."""
        return self._table.names()

    def __contains__(self, name: object) -> bool:
        return name in self._table

    def status(self, name: str) -> HealthStatus:
        """The current status of `name` (cheap: a dict lookup).

        Raises:
            UnknownService: No such service.
        """
        return self._table.get(name).status

    def service(self, name: str) -> ServiceHealth:
        """A snapshot of `name`.

        Raises:
            UnknownService: No such service.
        """
        return self._snapshot(self._table.get(name))

    def report(self) -> HealthReport:
        """A snapshot of every service, aggregated (see `HealthReport`)."""
        return HealthReport.of(map(self._snapshot, self._table.states()), at=_now())

    def _snapshot(self, state: ServiceState) -> ServiceHealth:
        name = state.name
        return ServiceHealth.from_state(
            state, reason=self._reasons.get(name, "initial"), restarts=self._restarts(name)
        )

    def _restarts(self, name: str) -> int | None:
        if self.restarts is None:
            return None
        try:
            return self.restarts(name)
        except Exception as exc:  # a broken provider must not break reporting
            emit(
                "health.restarts_failed",
                level="warning",
                service=name,
                error_type=type(exc).__name__,
            )
            return None

    # ----------------------------------------------------------------- running

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[HealthMonitor] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Runs every probe loop until cancelled; `task_status.started(self)` at once.

        Not a checkpoint before it has started the loops. Cancelling it stops every
        loop (a running probe is cancelled and not recorded) and leaves the recorded
        state as it was.

        Raises:
            RuntimeError: The monitor is already running.
        """
        if self._tg is not None:
            raise RuntimeError("the health monitor is already running")
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                for entry in self._entries.values():
                    tg.start_soon(self._loop, entry, name=f"health probe {entry.name}")
                emit("health.monitor_started", services=len(self._entries))
                task_status.started(self)
                await anyio.sleep_forever()
            finally:
                self._tg = None
                emit("health.monitor_stopped")

    async def _loop(self, entry: _Entry) -> None:
        with anyio.CancelScope() as scope:
            entry.scope = scope
            config = entry.config
            while True:
                start = anyio.current_time()
                await self._probe(entry)
                jitter = config.jitter
                factor = 1.0 + jitter * (2.0 * self.random() - 1.0) if jitter else 1.0
                await anyio.sleep_until(start + config.interval * factor)

    async def probe_now(self, name: str) -> bool:
        """Runs one probe of `name` now (outside its schedule) and records it.

        A checkpoint; takes at most the service's probe timeout. Cancellation records
        nothing and propagates.

        Returns:
            Whether the probe succeeded.

        Raises:
            UnknownService: No such service.
        """
        self._table.get(name)
        return await self._probe(self._entries[name])

    async def _probe(self, entry: _Entry) -> bool:
        name = entry.name
        error: str | None = None
        start = anyio.current_time()
        with anyio.move_on_after(entry.config.timeout) as scope:
            try:
                await entry.probe()
            except Exception as exc:
                error = type(exc).__name__
        now = anyio.current_time()
        if error is None and scope.cancelled_caught:
            error = PROBE_TIMEOUT
        ok = error is None
        if name not in self._entries:  # removed while probing
            return ok
        latency = now - start
        emit(
            "health.probed",
            level="debug",
            service=name,
            ok=ok,
            latency=latency,
            error_type=error,
        )
        record_probe(name, ok=ok, latency=latency)
        transitions = self._table.record_probe(name, ok=ok, now=now, latency=latency, error=error)
        breaker = entry.breaker
        if breaker is not None:  # catch up with changes the listener cannot see
            transitions += self._table.set_breaker(name, _effective(breaker, now), now=now)
        self._publish(transitions)
        return ok

    def _publish(self, transitions: list[HealthTransition]) -> None:
        for tr in transitions:
            self._reasons[tr.service] = tr.reason
            emit(
                "health.changed",
                level="warning" if tr.to_status is HealthStatus.UNHEALTHY else "info",
                service=tr.service,
                **{"from": tr.from_status.value, "to": tr.to_status.value},
                reason=tr.reason,
            )
            record_transition(
                tr.service,
                tr.from_status.value,
                tr.to_status.value,
                tr.reason,
                tr.to_status.severity,
            )
            for listener in list(self._listeners):
                try:
                    listener(tr)
                except Exception as exc:  # a listener must not break the monitor
                    emit(
                        "health.listener_failed",
                        level="error",
                        service=tr.service,
                        error_type=type(exc).__name__,
                    )


def _effective(breaker: CircuitBreaker, now: float) -> BreakerState:
    """The breaker's state, with an OPEN breaker past its open duration as HALF_OPEN.

    A breaker only leaves OPEN at its next `acquire`; for health, one that is due for
    trial calls is already half-open (DEGRADED rather than UNHEALTHY).
    """
    state = breaker.state
    if state is BreakerState.OPEN and breaker.metrics(now).retry_after <= 0:
        return BreakerState.HALF_OPEN
    return state


@asynccontextmanager
async def open_health_monitor(
    *,
    restarts: Callable[[str], int | None] | None = None,
    random: Callable[[], float] = _random_module.random,
) -> AsyncIterator[HealthMonitor]:
    """Runs a `HealthMonitor` for the duration of the block.

    Leaving the block cancels every probe loop (running probes are cancelled and not
    recorded). An exception from the block propagates.

    Args:
        restarts: See `HealthMonitor.restarts`.
        random: See `HealthMonitor.random`.
    """
    monitor = HealthMonitor(restarts=restarts, random=random)
    body_error: Exception | None = None
    async with anyio.create_task_group() as tg:
        await tg.start(monitor.run)
        try:
            yield monitor
        except Exception as exc:  # re-raised below, outside the task group (unwrapped)
            body_error = exc
        finally:
            tg.cancel_scope.cancel()
    if body_error is not None:
        raise body_error


def _default_probe_of(ref: Any) -> Probe | None:
    probe = getattr(ref, "probe", None)
    return probe if callable(probe) else None


def watch_children(
    monitor: HealthMonitor,
    sup: Any,
    *,
    probe_of: Callable[[Any], Probe | None] = _default_probe_of,
    config_of: Callable[[str], HealthConfig | None] | None = None,
    breaker_of: Callable[[Any], CircuitBreaker | None] | None = None,
) -> list[str]:
    """Monitors every worker child of a supervisor tree that has a probe.

    Walks `sup` and its nested supervisors in start order; a worker is monitored under
    its actor's name, `ref.name`, which is its full path ("agent/db",
    "agent/tools/mcp"): the name routers (`target`) and the registry ask the health
    source by default. Children already monitored, not started, or without a probe are
    skipped, so calling it again after `start_child` adds only the new ones. Refs are
    stable across restarts, so entries survive restarts; call `monitor.remove(name)`
    when you terminate or delete a child for good.

    Args:
        monitor: The monitor to add to.
        sup: A running `supervisor.Supervisor`.
        probe_of: The probe of a child's ref, or `None` to skip it (default: the
            ref's `probe` method if it has one).
        config_of: The `HealthConfig` of a child by its path relative to `sup`
            ("db", "tools/mcp"); `None` for the defaults.
        breaker_of: The breaker of a child's ref (`None`: no breaker signal).

    Returns:
        The names added, in order.

    Raises:
        ConfigError: As `HealthMonitor.add` (e.g. a dependency cycle in the configs).
    """
    added: list[str] = []
    pending: list[tuple[str, Any]] = [("", sup)]
    while pending:
        prefix, node = pending.pop(0)
        for child in node.which_children():
            path = prefix + child.id
            if child.kind == "supervisor":
                pending.append((f"{path}/", node.supervisor(child.id)))
                continue
            ref = child.ref
            if ref is None or ref.name in monitor:
                continue
            probe = probe_of(ref)
            if probe is None:
                continue
            config = config_of(path) if config_of is not None else None
            breaker = breaker_of(ref) if breaker_of is not None else None
            monitor.add(ref.name, probe, config, breaker=breaker)
            added.append(ref.name)
    return added


def restarts_from(sup: Any) -> Callable[[str], int | None]:
    """A restart-count provider: one lookup per path segment, never a tree walk.

    Service names are full child paths, as `ref.name` and `watch_children` use them
    ("agent/db", "agent/tools/mcp"); paths relative to `sup` ("db") work too.

    Args:
        sup: A running `supervisor.Supervisor` (its `restarts_of(path)`).
    """
    return cast("Callable[[str], int | None]", sup.restarts_of)
