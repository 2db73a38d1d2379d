"""The low-level interface: what owners of actors and libraries built on `actors` use.

In the spirit of `trio.lowlevel` and `anyio.lowlevel`: public, documented and kept
stable, but not what an application needs (it uses `open_actor`, `supervisor.start`,
refs and services). The `supervisor` package is built on `actors` through this module
and the public packages only.

Addresses and incarnations (how an owner drives an actor)::

    cell = Cell("worker", ActorConfig(), current_kernel())      # the address: STARTING
    incarnation = Incarnation(cell, MyActor(), owner)            # one life behind it
    host = create_task_host()                                    # where wake-ups start
    await tg.start(host.run)
    if not incarnation.launch(host, contextvars.copy_context(), task_status):
        tg.start_soon(incarnation.run)                           # (else: started asleep)
    ...
    await incarnation.stop(grace)                                # orderly, then hard
    host.close()

- `Cell`: the stable address (mailbox and state). Its state changes only through its
  transition methods (`mark_running`, `mark_stopping`, `mark_restarting`, `reopen`,
  `close`), which refuse with `RuntimeError` a move its life does not allow.
- `Incarnation`: one life of an actor behind a cell: `launch`/`run` start it, `stop`
  ends it in order, `crash` ends it abnormally; it reports to its `Owner`
  (`crashed` the moment it crashes, `exited` once handling has ended), which decides
  the cell's next state there.
- `Kernel` / `current_kernel`: the event loop's primitives (one-shot slots, `park`,
  deadlines, `now`), shared by every address in the loop.
- `TaskHost` / `create_task_host`: one task per owner under which hibernated actors'
  wake-ups start.

Shared pieces, so that code built on `actors` has one implementation of each idea:

- the clock: `now`, `now_or_none`, `current_clock` (the running loop's time; virtual
  clocks in tests drive it);
- the validators: attrs validators (`positive`, `finite_positive`, ...) and `check_*`
  functions, each raising `ConfigError(field, value, reason)`;
- configuration loading: `parse_toml`, `structure_config` (the strict loader every
  TOML/dict configuration goes through);
- events: `emit`, `emit_failure` (stable dotted names, as structlog events and
  metrics), `subscribe`;
- resilience: `Pipeline` (the one composition of retry, breaker, limits and bulkhead),
  `verdict_of` (the verdict an outcome was given), `server_delay` (what a server asked
  to wait), `RetryRun`, `kind_named`;
- tracing: `add_event` (an event on the current span);
- `publish`: gives a package's exports its public name as `__module__`.
"""

from actors._actor import Incarnation, Owner
from actors._classify import verdict_of
from actors._clock import Clock, current_clock, now, now_or_none
from actors._config import parse_toml, structure_config
from actors._events import Sink, emit, emit_failure, subscribe
from actors._host import TaskHost, create_task_host
from actors._kernel import Kernel, current_kernel
from actors._kinds import kind_named
from actors._public import publish
from actors._ref import Cell
from actors._tracing import add_event
from actors._validate import (
    at_least,
    check_finite_non_negative,
    check_finite_positive,
    check_id,
    check_instance,
    check_name,
    check_non_negative_int,
    check_number,
    check_positive_int,
    finite,
    finite_non_negative,
    finite_positive,
    fraction,
    instance_of,
    non_negative,
    non_negative_int,
    one_of,
    optional,
    positive,
    positive_int,
    unit_interval,
)
from actors.resilience._pipeline import Pipeline
from actors.resilience._retry import RetryRun
from actors.resilience._retry_after import server_delay

__all__ = [
    "Cell",
    "Clock",
    "Incarnation",
    "Kernel",
    "Owner",
    "Pipeline",
    "RetryRun",
    "Sink",
    "TaskHost",
    "add_event",
    "at_least",
    "check_finite_non_negative",
    "check_finite_positive",
    "check_id",
    "check_instance",
    "check_name",
    "check_non_negative_int",
    "check_number",
    "check_positive_int",
    "create_task_host",
    "current_clock",
    "current_kernel",
    "emit",
    "emit_failure",
    "finite",
    "finite_non_negative",
    "finite_positive",
    "fraction",
    "instance_of",
    "kind_named",
    "non_negative",
    "non_negative_int",
    "now",
    "now_or_none",
    "one_of",
    "optional",
    "parse_toml",
    "positive",
    "positive_int",
    "publish",
    "server_delay",
    "structure_config",
    "subscribe",
    "unit_interval",
    "verdict_of",
]

publish(globals(), "actors.lowlevel")
