"""The limiter store in Redis: one atomic Lua script per operation, on the server's clock."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from actors.resilience._limit_algorithms import GCRA, LimitConfig, SlidingWindow, TokenBucket
from actors.resilience._limiter_store import LimitRequest, MemoryLimiterStore
from actors.stores._redis_client import STORE_ERRORS
from actors.stores._redis_lua import LIMITER_SCRIPT
from actors.stores._redis_options import FailurePolicy

if TYPE_CHECKING:
    from actors.stores.redis import RedisStores

__all__ = ["RedisLimiterStore", "script_params"]


def script_params(config: LimitConfig) -> tuple[str, str, str]:
    """The script's kind and two parameters for `config`."""
    if isinstance(config, TokenBucket):
        return "t", repr(float(config.max_cost)), repr(config.mean_rate)
    if isinstance(config, GCRA):
        return "g", repr(config.emission_interval), repr(config.burst_tolerance)
    if isinstance(config, SlidingWindow):
        return "s", repr(float(config.limit)), repr(float(config.window))
    raise TypeError(
        f"the Redis limiter store supports TokenBucket, GCRA and SlidingWindow, "
        f"not {type(config).__name__}"
    )


@attrs.define(eq=False)
class RedisLimiterStore:
    """A `LimiterStore` in Redis, with a failure policy; get it from `RedisStores.limiter_store`.

    Every method is one atomic script on the server's clock (the `now` argument is used
    only by the local fallback, and to turn a hold's end into a duration). Keys are
    ``"<app>:limiter:{<group>}<rest of the limiter key>"``: the group is a hash tag, so
    all the keys of one limiter (and its hold, ``"...{<group>}#hold"``) live in one
    cluster slot.

    Attributes:
        policy: What to do while Redis is unreachable.
    """

    _stores: RedisStores = attrs.field(alias="_stores", repr=False)
    policy: FailurePolicy
    _local: MemoryLimiterStore = attrs.field(factory=MemoryLimiterStore, init=False, repr=False)
    _param_cache: dict[LimitConfig, tuple[str, str, str]] = attrs.field(
        factory=dict, init=False, repr=False
    )
    _scaled_cache: dict[LimitConfig, LimitConfig] = attrs.field(
        factory=dict, init=False, repr=False
    )
    _prefix: str = attrs.field(init=False, repr=False)
    _margin: str = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        options = self._stores.options
        self._prefix = f"{options.app}:limiter:"
        self._margin = repr(options.expiry_margin)

    def redis_key(self, group: str, key: str) -> str:
        """The Redis key holding the state of limiter key `key` of `group`."""
        if not key.startswith(group):
            raise ValueError(f"key {key!r} is not in group {group!r}")
        return f"{self._prefix}{{{group}}}{key[len(group) :]}"

    def hold_key(self, group: str) -> str:
        """The Redis key holding `group`'s hold."""
        return f"{self._prefix}{{{group}}}#hold"

    async def _run(
        self, op: str, group: str, requests: Sequence[LimitRequest], extra: str = ""
    ) -> tuple[bool, float] | None:
        """Runs the script; `None` when Redis is unavailable (or just failed)."""
        stores = self._stores
        if not stores._available:
            return None
        cache = self._param_cache
        keys = [self.hold_key(group)]
        args = [op, self._margin]
        if extra:
            args.append(extra)
        for key, config, cost in requests:
            keys.append(self.redis_key(group, key))
            params = cache.get(config)
            if params is None:
                params = cache[config] = script_params(config)
            args.extend(params)
            args.append(repr(float(cost)))
        try:
            reply = await stores._eval("_limiter_sha", LIMITER_SCRIPT, keys, args)
        except STORE_ERRORS as exc:
            stores._failed(exc)
            return None
        return reply[0] == 1, float(reply[1])

    def _scale(self, config: LimitConfig) -> LimitConfig:
        scaled = self._scaled_cache.get(config)
        if scaled is None:
            script_params(config)  # TypeError for anything but the three configs
            replicas = self.policy.replicas
            scaled = config if replicas == 1 else config.scaled(1.0 / replicas)
            self._scaled_cache[config] = scaled
        return scaled

    def _fallback_decide(
        self, group: str, requests: Sequence[LimitRequest], now: float
    ) -> tuple[bool, float]:
        stores = self._stores
        if self.policy.mode == "fail_closed":
            stores.closed_rejections += 1
            return False, stores._retry_after()
        stores.fallback_decisions += 1
        local = []
        excess = []
        for key, config, cost in requests:
            scaled = self._scale(config)
            # A cost above the scaled capacity waits for a full local limit, then goes
            # into debt (it could never be admitted otherwise).
            fits = min(cost, scaled.max_cost)
            local.append((key, scaled, fits))
            excess.append(cost - fits)
        admitted, retry_after = self._local.decide_nowait(group, local, now)
        if admitted:
            for (key, scaled, _), extra in zip(local, excess, strict=True):
                if extra > 0:
                    self._local.charge_nowait(key, scaled, extra, now)
        return admitted, retry_after

    async def decide(
        self, group: str, requests: Sequence[LimitRequest], *, now: float
    ) -> tuple[bool, float]:
        """Admits every `(key, config, cost)` or none, atomically on the server.

        A checkpoint while Redis is available (one round trip, bounded by `op_timeout`
        and the enclosing cancel scopes); while it is not, answers at once by the
        policy (the limiter's `acquire` is the checkpoint then). Fail-open also charges
        what Redis admitted to the local 1/N limits (in memory, no round trip), so an
        outage starts from what this replica used of its share, not from a full one.
        Cancellation during the round trip propagates; the server may have admitted the
        request (those units are lost, erring on the safe side).

        Raises:
            TypeError: A config other than TokenBucket, GCRA or SlidingWindow.
        """
        result = await self._run("d", group, requests)
        if result is None:
            return self._fallback_decide(group, requests, now)
        if result[0] and self.policy.mode == "fail_open":
            for key, config, cost in requests:  # this replica's share, for an outage
                self._local.charge_nowait(key, self._scale(config), cost, now)
        return result

    async def charge(
        self, group: str, key: str, config: LimitConfig, cost: float, *, now: float
    ) -> None:
        """Consumes (refunds when negative) `cost`; fail-open also in its local 1/N limits.

        Fail-closed drops a charge made while Redis is down (nothing was admitted then).
        """
        await self._run("c", group, ((key, config, cost),))
        if self.policy.mode == "fail_open":  # mirrored, shared or not (see `decide`)
            self._local.charge_nowait(key, self._scale(config), cost, now)

    async def wait_time(
        self, group: str, key: str, config: LimitConfig, cost: float, *, now: float
    ) -> float:
        """Seconds until `cost` could be admitted (by the policy while Redis is down)."""
        result = await self._run("w", group, ((key, config, cost),))
        if result is not None:
            return result[1]
        if self.policy.mode == "fail_closed":
            return self._stores._retry_after()
        scaled = self._scale(config)
        return self._local.wait_time_nowait(group, key, scaled, min(cost, scaled.max_cost), now)

    async def available(self, group: str, key: str, config: LimitConfig, *, now: float) -> float:
        """Units available now (0 while Redis is down and the policy is fail-closed)."""
        result = await self._run("a", group, ((key, config, 0.0),))
        if result is not None:
            return result[1]
        if self.policy.mode == "fail_closed":
            return 0.0
        return self._local.available_nowait(key, self._scale(config), now)

    async def resync(
        self, group: str, key: str, config: LimitConfig, remaining: float, *, now: float
    ) -> None:
        """Lowers the key's availability to at most `remaining` (fail-open: also the local
        1/N limit to 1/N of it)."""
        await self._run("r", group, ((key, config, remaining),))
        if self.policy.mode == "fail_open":  # mirrored, shared or not (see `decide`)
            share = remaining / self.policy.replicas
            self._local.resync_nowait(key, self._scale(config), share, now)

    async def hold(self, group: str, until: float, *, now: float) -> None:
        """Holds `group` for `until - now` seconds on the server's clock (for every
        replica); also locally, so the hold outlasts an outage."""
        self._local.hold_nowait(group, until)
        await self._run("h", group, (), repr(max(0.0, until - now)))
