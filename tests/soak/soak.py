"""The soak run: a supervised tree of service actors under load, with injected faults
and periodic crashes, checking the runtime's promises as it goes.

Short mode (CI, a few seconds per backend) runs from `tests/soak/test_soak.py`; the long
mode runs by hand: `python -m tests.soak.soak --requests 200000 [--backend trio]`.

Invariants checked and printed:
- no call resolved after its deadline (plus a small scheduling slack);
- every request accounted for: ok + error + fallback == sent;
- no task and no connection left after shutdown (opened == closed);
- long mode: RSS flat within 10 % between the first and the last quarter.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from typing import Any

import anyio
import attrs
import structlog

import supervisor as sv
from actors import ActorConfig, PoolConfig, Service, ServiceConfig
from actors.resilience import RetryPolicy
from actors.testing import (
    ChaosClient,
    ChaosConfig,
    LoadConfig,
    LoadReport,
    count_tasks,
    run_load,
)
from tests.actors.services.fake import Backend, FakeClient

SERVICES = ("llm", "db", "tools")


@attrs.define
class SoakResult:
    backend: str
    report: LoadReport
    opened: int
    closed: int
    tasks_before: int
    tasks_after: int
    rss_quarters: list[int]
    restarts: int
    injected_errors: int
    injected_crashes: int

    def violations(self, *, check_rss: bool) -> list[str]:
        problems = []
        if self.report.late:
            problems.append(f"{self.report.late} calls resolved after their deadline")
        if not self.report.accounted:
            problems.append("requests unaccounted for")
        if self.opened != self.closed:
            problems.append(f"connections opened {self.opened} != closed {self.closed}")
        if self.tasks_after > self.tasks_before:
            problems.append(f"tasks left: {self.tasks_after - self.tasks_before}")
        if check_rss and len(self.rss_quarters) == 4:
            first, last = self.rss_quarters[0], self.rss_quarters[-1]
            if last > first * 1.10:
                problems.append(f"RSS grew {last / first - 1:.1%} (first {first}, last {last})")
        return problems

    def summary(self) -> str:
        lines = [
            f"[{self.backend}] {self.report.summary()}",
            f"  connections opened {self.opened} / closed {self.closed}; tasks before "
            f"{self.tasks_before} / after {self.tasks_after}; restarts {self.restarts}; injected "
            f"errors {self.injected_errors}, crashes {self.injected_crashes}",
        ]
        if self.rss_quarters:
            lines.append(f"  RSS by quarter (KiB): {self.rss_quarters}")
        return "\n".join(lines)


def rss_kib() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * 4
    except OSError:  # pragma: no cover - not Linux
        return 0


async def soak(requests: int, *, seed: int = 1, track_rss: bool = False) -> SoakResult:
    import sniffio

    rng = random.Random(seed)
    backends = {name: Backend(latency=0.001) for name in SERVICES}
    injectors: dict[str, ChaosClient[Any, Any, Any]] = {}

    def make_client(name: str) -> Any:
        def build() -> ChaosClient[Any, Any, Any]:
            client = ChaosClient(
                FakeClient(backends[name], name=name),
                ChaosConfig(error_rate=0.2, crash_every=997, seed=seed),
                injector=injectors[name].injector if name in injectors else None,
            )
            injectors.setdefault(name, client)
            return client

        return build

    retry = RetryPolicy(attempts=2, backoff_initial=0.001, backoff_max=0.005, budget_ratio=None)
    services = {
        name: Service(
            name,
            make_client(name),
            ServiceConfig(
                retry=retry,
                breaker=None,
                pool=PoolConfig(max_size=8, max_idle=None, max_lifetime=None),
                actor=ActorConfig(call_timeout=1.0, mailbox_size=200),
            ),
        )
        for name in SERVICES
    }
    spec = sv.SupervisorSpec(
        id="soak",
        max_restarts=10_000,
        period=1.0,
        backoff=sv.Backoff(min=0.001, max=0.01, jitter=0.1),
        children=[
            sv.ChildSpec(id=name, factory=svc.actor, config=svc.config.actor)
            for name, svc in services.items()
        ],
    )
    tasks_before = count_tasks()
    quarters: list[int] = []
    async with sv.start(spec) as sup:
        refs = {name: sup.ref(name) for name in SERVICES}
        targets = [rng.choice(SERVICES) for _ in range(requests)]

        async def call(index: int) -> Any:
            if track_rss and index and index % (requests // 4) == 0:
                quarters.append(rss_kib())
            return await refs[targets[index]].call(f"r{index}", timeout=1.0)

        report = await run_load(
            call, LoadConfig(callers=50, requests=requests, timeout=1.0, slack=0.05)
        )
        if track_rss:
            quarters.append(rss_kib())
        restarts = sum(child.restarts for child in sup.which_children())
    await anyio.sleep(0.05)  # let cancelled helper tasks unwind
    return SoakResult(
        backend=sniffio.current_async_library(),
        report=report,
        opened=sum(b.opened for b in backends.values()),
        closed=sum(b.closed for b in backends.values()),
        tasks_before=tasks_before,
        tasks_after=count_tasks(),
        rss_quarters=quarters[-4:] if track_rss else [],
        restarts=restarts,
        injected_errors=sum(c.stats.errors for c in injectors.values()),
        injected_crashes=sum(c.stats.crashes for c in injectors.values()),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--backend", choices=["asyncio", "trio", "both"], default="both")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    failed = False
    for backend in ("asyncio", "trio") if args.backend == "both" else (args.backend,):
        result = anyio.run(
            lambda: soak(args.requests, track_rss=args.requests >= 40_000), backend=backend
        )
        print(result.summary())
        problems = result.violations(check_rss=args.requests >= 40_000)
        for problem in problems:
            print(f"  VIOLATION: {problem}")
        failed = failed or bool(problems)
    print("invariants held" if not failed else "INVARIANTS VIOLATED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
