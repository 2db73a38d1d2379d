"""The quota figure with 8 replicas sharing one provider quota through a Redis Cluster.

Run: python tests/benchmarks/quota_replicas.py [--quick] [--json PATH]  (needs redis-server)

The provider, the workload, the goodput and the report are `quota.py`'s (its mock
provider in its own process, one API key per scenario, 50 agent workers in all, mixed
prompt sizes). Here the workers are spread over 8 OS processes (`REPLICAS`), half on
asyncio and half on trio, each with its own LLM service actor (`ServiceConfig.for_llm`
given the provider's limits, as in `quota.py`) whose limits and breaker live in a
local Redis Cluster of 3 masters with one replica each (started here in temporary
directories, stopped at the end; everything on 127.0.0.1). Each replica's limiter store
is fail-open with 1/8 of each limit (the policy `docs/replicas.md` recommends for an
API that answers 429 itself), except in the fail-closed failover scenario.

Scenarios, each of the same length as `quota.py`'s:

- *cold* and *full* window, as in `quota.py`;
- *failover, fail-open* and *failover, fail-closed*: a cold window during which, at
  mid-run, the master serving the limiter's slot is killed (SIGKILL, no `WAIT` first: a
  real crash); its replica is promoted after `cluster-node-timeout` (1 s) and an
  election. Afterwards the killed node is started again and rejoins as a replica.

Besides `quota.py`'s columns it reports, for the failover scenarios, how long the
stores were unavailable (the longest total of any replica, and the time from the kill
to the last `store.recovered`), how many outages the replicas saw, what the limiters
admitted without Redis (the units reserved by local, fail-open decisions) against what
the policy allows (each replica 1/N of the limit per window: `limit * (1 + outage /
window)` for all of them together; fail-closed allows nothing), and when the retried
429s came (before the kill, within one window after it). Ratios are reported, never
enforced. `--quick` runs only the fail-open failover, in two 3 s windows (~15-20 s).
"""

from __future__ import annotations

import functools
import json
import math
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks._cli import parse_args, write_json
from tests.benchmarks._provider import provider
from tests.benchmarks.quota import (
    LATENCY,
    WORKERS,
    Tally,
    drive,
    fill,
    llm_service,
    print_rows,
    provider_limits,
    reset_provider,
    serving,
)

if TYPE_CHECKING:
    from actors.resilience import LimitConfig
    from actors.stores.redis import RedisLimiterStore, RedisStores
    from actors.testing import RedisCluster, RedisServer

REPLICAS = 8
APP = "quota-bench"

# name, pre-filled window, failure policy, master killed mid-run
SCENARIOS = (
    ("cold", False, "fail_open", False),
    ("full", True, "fail_open", False),
    ("failover, fail-open", False, "fail_open", True),
    ("failover, fail-closed", False, "fail_closed", True),
)
QUICK_SCENARIOS = ("failover, fail-open",)


def _service_name(scenario: str) -> str:
    return "quota-" + "".join(c for c in scenario if c.isalnum())


def _slot_key(service: str) -> str:
    """A key in the slot of `service`'s limits (they share the hash tag)."""
    return f"{APP}:limiter:{{actors:{service}}}#hold"


# ------------------------------------------------------------------ one replica


class LocalAdmissions:
    """The replica's limiter store: the Redis one, counting what it admitted without
    Redis (decisions the failure policy took locally), per limit."""

    def __init__(self, store: RedisLimiterStore, stores: RedisStores) -> None:
        self.store = store
        self.stores = stores
        self.admitted: dict[str, float] = {}

    def _count(self, requests: Sequence[tuple[str, LimitConfig, float]]) -> None:
        if not self.stores.available:  # the store answered by its policy
            for key, _, cost in requests:
                limit = key.rpartition(":")[2]
                self.admitted[limit] = self.admitted.get(limit, 0.0) + cost

    async def decide(
        self, group: str, requests: Sequence[tuple[str, LimitConfig, float]], *, now: float
    ) -> tuple[bool, float]:
        admitted, retry_after = await self.store.decide(group, requests, now=now)
        if admitted:
            self._count(requests)
        return admitted, retry_after

    async def charge(
        self, group: str, key: str, config: LimitConfig, cost: float, *, now: float
    ) -> None:
        await self.store.charge(group, key, config, cost, now=now)
        if self.store.policy.mode == "fail_open":  # fail-closed drops them
            self._count(((key, config, cost),))

    async def wait_time(
        self, group: str, key: str, config: LimitConfig, cost: float, *, now: float
    ) -> float:
        return await self.store.wait_time(group, key, config, cost, now=now)

    async def available(self, group: str, key: str, config: LimitConfig, *, now: float) -> float:
        return await self.store.available(group, key, config, now=now)

    async def resync(
        self, group: str, key: str, config: LimitConfig, remaining: float, *, now: float
    ) -> None:
        await self.store.resync(group, key, config, remaining, now=now)

    async def hold(self, group: str, until: float, *, now: float) -> None:
        await self.store.hold(group, until, now=now)


async def _line(stream: IO[str]) -> dict[str, Any]:
    line = await anyio.to_thread.run_sync(stream.readline)
    if not line:
        raise EOFError
    result: dict[str, Any] = json.loads(line)
    return result


def _say(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


async def _run_scenario(stores: RedisStores, index: int, command: dict[str, Any]) -> None:
    from actors.lowlevel import subscribe
    from actors.stores.redis import FailurePolicy

    policy = (
        FailurePolicy.fail_open(replicas=REPLICAS)
        if command["policy"] == "fail_open"
        else FailurePolicy.fail_closed()
    )
    store = LocalAdmissions(stores.limiter_store(policy), stores)
    service = command["service"]
    await stores.breaker_store.load(service)  # join the shared breaker state
    llm = llm_service(
        command["url"],
        command["key"],
        command["limits"],
        command["window"],
        name=service,
        limiter_store=store,
        breaker_store=stores.breaker_store,
    )
    changes: list[tuple[str, float]] = []
    throttled_at: list[float] = []

    def sink(event: str, _level: str, fields: Any) -> None:
        if event in ("store.unavailable", "store.recovered"):
            changes.append((event, time.time()))
        elif event == "retry.scheduled" and "server_delay" in fields:  # a 429's retry
            throttled_at.append(time.time())

    tally = Tally()
    async with serving(llm) as call:
        _say({"ready": index})
        go = await _line(sys.stdin)
        unsubscribe = subscribe(sink)
        try:
            await drive(call, go["end_at"] - time.time(), tally, seed=index, workers=go["workers"])
        finally:
            unsubscribe()
    tally.throttled = llm.stats.verdicts.get("throttled", 0)
    _say(
        {
            "tally": tally.dump(),
            "changes": changes,
            "throttled_at": throttled_at,
            "local": dict(store.admitted),
        }
    )


async def replica(index: int) -> None:
    """One replica: reads the cluster's URL, opens the stores, then runs the scenarios
    the parent sends."""
    import actors.services.llm  # noqa: F401 - imported while the cluster forms
    from actors.stores.redis import open_redis_stores

    cluster_url = (await _line(sys.stdin))["cluster"]
    async with open_redis_stores(url=cluster_url, cluster=True, app=APP) as stores:
        _say({"ready": index})
        while True:
            try:
                command = await _line(sys.stdin)
            except EOFError:
                return
            await _run_scenario(stores, index, command)


# ------------------------------------------------------------------ the parent


class Replicas:
    """The replica processes and their line protocol (JSON lines on stdin / stdout).
    They start (and import) while the cluster forms; `send` them its URL first."""

    def __init__(self) -> None:
        self.processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--replica",
                    str(index),
                    "asyncio" if index % 2 == 0 else "trio",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for index in range(REPLICAS)
        ]

    def send(self, messages: Sequence[dict[str, Any]]) -> None:
        for process, message in zip(self.processes, messages, strict=True):
            assert process.stdin is not None
            process.stdin.write(json.dumps(message) + "\n")
            process.stdin.flush()

    def receive(self) -> list[dict[str, Any]]:
        replies = []
        for index, process in enumerate(self.processes):
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"replica {index} died (exit {process.wait()})")
            replies.append(json.loads(line))
        return replies

    def close(self) -> None:
        for process in self.processes:
            if process.stdin is not None:
                process.stdin.close()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _outage(replies: list[dict[str, Any]], killed_at: float) -> dict[str, Any]:
    """What the replicas saw of the failover: outages, and how long the stores were down
    (the longest total of any replica; from the kill to the last recovery)."""
    downtimes: list[float] = []
    last = -math.inf
    outages = 0
    for reply in replies:
        down = 0.0
        since: float | None = None
        for event, at in reply["changes"]:
            if event == "store.unavailable" and since is None:
                since, outages = at, outages + 1
            elif event == "store.recovered" and since is not None:
                down, since, last = down + at - since, None, max(last, at)
        downtimes.append(down)
    return {
        "outages_seen": outages,
        "replicas_that_saw_it": sum(down > 0 for down in downtimes),
        "unavailable_s": max(downtimes),
        "last_recovered_s": last - killed_at,
    }


def run_scenario(
    cluster: RedisCluster,
    group: Replicas,
    url: str,
    scenario: tuple[str, bool, str, bool],
    window: float,
    seconds: float,
) -> tuple[dict[str, Any], RedisServer | None]:
    """Runs one scenario on every replica; its row, and the master it killed (if any)."""
    name, full, policy, failover = scenario
    limits = provider_limits(window)
    service = _service_name(name)
    key = f"sk-replicas-{service}"
    anyio.run(reset_provider, url, limits, window)
    command = {
        "url": url,
        "key": key,
        "service": service,
        "policy": policy,
        "limits": limits,
        "window": window,
    }
    group.send([command] * REPLICAS)
    group.receive()  # every replica's actor is up
    started = time.time()
    prefilled = anyio.run(functools.partial(fill, url, key, int(limits["tokens"]))) if full else 0
    end_at = started + seconds
    group.send([{"end_at": end_at, "workers": n} for n in _shares(WORKERS, REPLICAS)])
    old = None
    if failover:
        time.sleep(max(0.0, started + seconds / 2 - time.time()))
        slot = _slot_key(service)
        killed_at = time.time()
        old = cluster.fail_over(slot)
        cluster.wait_promoted(slot, old)
        promoted_s = time.time() - killed_at
    replies = group.receive()
    elapsed = time.time() - started
    tally = Tally()
    tally.prefilled = prefilled
    for reply in replies:
        tally.merge(reply["tally"])
    row = tally.row(limits["tokens"] * seconds / window - prefilled, elapsed)
    row["policy"] = policy
    if old is not None:
        local = {limit: sum(r["local"].get(limit, 0.0) for r in replies) for limit in limits}
        outage = _outage(replies, killed_at)
        allowed = 0.0 if policy == "fail_closed" else 1 + outage["unavailable_s"] / window
        throttled = [at - killed_at for reply in replies for at in reply["throttled_at"]]
        row["failover"] = {
            "killed_at_s": killed_at - started,
            "retried_429s_before_kill": sum(at < 0 for at in throttled),
            "retried_429s_in_the_window_after": sum(0 <= at < window for at in throttled),
            "promoted_s": promoted_s,
            **outage,
            "local_requests": local["requests"],
            "local_tokens": local["tokens"],
            "local_share_of_limit": {
                limit: local[limit] / limits[limit] for limit in ("requests", "tokens")
            },
            "policy_allows_share_of_limit": allowed,
        }
    return row, old


def _print_failover(rows: dict[str, dict[str, Any]]) -> None:
    for name, row in rows.items():
        fo = row.get("failover")
        if fo is None:
            continue
        shares = fo["local_share_of_limit"]
        print(
            f"  {name}: replica promoted {fo['promoted_s']:.2f} s after the kill; "
            f"stores unavailable {fo['unavailable_s']:.2f} s at most per replica, last "
            f"recovery {fo['last_recovered_s']:.2f} s after the kill ({fo['outages_seen']} "
            f"outages seen by {fo['replicas_that_saw_it']} replicas); admitted without Redis "
            f"{fo['local_requests']:g} requests and {fo['local_tokens']:g} tokens = "
            f"{shares['requests']:.2f} / {shares['tokens']:.2f} of the limits "
            f"(policy allows {fo['policy_allows_share_of_limit']:.2f}); 429s retried "
            f"before the kill {fo['retried_429s_before_kill']}, in the window after it "
            f"{fo['retried_429s_in_the_window_after']}"
        )


def main() -> int:
    from actors.testing import redis_cluster, redis_server_path

    args = parse_args(__doc__, quick_help="the fail-open failover in two 3 s windows, for CI")
    if redis_server_path() is None:
        print("redis-server is not installed (apt-get install redis-server): nothing to run")
        return 0
    window, windows = (3.0, 2) if args.quick else (20.0, 3)
    seconds = window * windows
    scenarios = [s for s in SCENARIOS if not args.quick or s[0] in QUICK_SCENARIOS]
    limits = provider_limits(window)
    rows: dict[str, dict[str, Any]] = {}
    clusters: list[RedisCluster] = []
    group = Replicas()
    try:
        with ExitStack() as stack:

            def form_cluster() -> None:  # while the provider and the replicas start
                clusters.append(stack.enter_context(redis_cluster(masters=3, replicas=1)))

            url = stack.enter_context(provider(LATENCY, form_cluster))
            cluster = clusters[0]
            group.send([{"cluster": cluster.url}] * REPLICAS)
            group.receive()  # every replica connected to the cluster
            for number, scenario in enumerate(scenarios):
                row, killed = run_scenario(cluster, group, url, scenario, window, seconds)
                rows[scenario[0]] = row
                if killed is not None and number + 1 < len(scenarios):
                    killed.start()  # rejoins as a replica of the promoted node
                    cluster.wait_ok()
                    cluster.wait_synced()
    finally:
        group.close()
    print_rows(
        f"{REPLICAS} replicas ({REPLICAS // 2} asyncio, {REPLICAS // 2} trio) sharing the "
        f"quota through a 3-master Redis Cluster: provider {limits['requests']:g} requests "
        f"and {limits['tokens']:g} tokens per {window:g} s window, {seconds:g} s run, "
        f"{WORKERS} workers in all",
        {f"ours, {name}": row for name, row in rows.items()},
    )
    _print_failover(rows)
    write_json(
        args.json,
        {
            "replicas": REPLICAS,
            "window_s": window,
            "run_s": seconds,
            "limits_per_window": limits,
            "workers": WORKERS,
            "scenarios": rows,
        },
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--replica":
        anyio.run(replica, int(sys.argv[2]), backend=sys.argv[3])
    else:
        sys.exit(main())
