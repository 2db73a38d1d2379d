"""The circuit-breaker store in Redis: a local copy, pushed and pulled by a sync task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import anyio
import attrs

from actors._events import emit
from actors.resilience._breaker import BreakerRecord, BreakerState
from actors.stores._redis_client import STORE_ERRORS, server_time
from actors.stores._redis_lua import BREAKER_SCRIPT

if TYPE_CHECKING:
    from actors.stores.redis import RedisStores

__all__ = ["RedisBreakerStore", "breaker_prefix"]

_STATES: Final = {state.value: state for state in BreakerState}


def breaker_prefix(app: str) -> str:
    """The prefix of `app`'s breaker keys (a hash tag: one cluster slot for them all)."""
    return f"{{{app}:breaker}}:"


@attrs.define(eq=False)
class RedisBreakerStore:
    """A `BreakerStateStore` shared through Redis; get it from `RedisStores.breaker_store`.

    `get` and `set` never block: they read and write a local copy. A background task
    (run by `open_redis_stores`) pushes each `set` at once and pulls every record every
    `sync_interval`. Timestamps are translated between this process's clock and the
    server's (`TIME`), measured at every sync. Keys are ``"{<app>:breaker}:<name>"``: the
    hash tag keeps every breaker of an application in one cluster slot, so one script
    syncs them all.
    """

    _stores: RedisStores = attrs.field(alias="_stores", repr=False)
    _records: dict[str, BreakerRecord] = attrs.field(factory=dict, init=False, repr=False)
    _wanted: set[str] = attrs.field(factory=set, init=False, repr=False)
    _dirty: set[str] = attrs.field(factory=set, init=False, repr=False)
    _wake: anyio.Event = attrs.field(factory=anyio.Event, init=False, repr=False)
    syncs: int = attrs.field(default=0, init=False, repr=False)
    adoptions: int = attrs.field(default=0, init=False, repr=False)

    def get(self, name: str) -> BreakerRecord | None:
        """The local copy of breaker `name`'s record (`None`: not known yet)."""
        record = self._records.get(name)
        if record is None:
            self._wanted.add(name)
        return record

    def set(self, name: str, record: BreakerRecord) -> None:
        """Stores `record` locally and schedules its push (not a checkpoint)."""
        self._records[name] = record
        self._dirty.add(name)
        self._wake.set()

    async def load(self, *names: str) -> None:
        """Reads the shared records of `names` now (one round trip), before creating breakers.

        A checkpoint. If Redis is unavailable the names are pulled at the next sync
        after recovery; it never raises for a store error.
        """
        self._wanted.update(names)
        await self.sync()

    async def sync(self) -> None:
        """Pushes local transitions and pulls the others' (one round trip).

        A checkpoint; does nothing while Redis is unavailable. Cancellation leaves the
        pushed records marked for the next sync.
        """
        stores = self._stores
        names = list(self._records.keys() | self._wanted)
        offset = stores._offset
        if not names or not stores._available or offset is None:
            return
        prefix = breaker_prefix(stores.options.app)
        dirty, self._dirty = self._dirty, set()
        before = {name: self._records.get(name) for name in names}
        args = [
            self._dump(record, offset) if name in dirty and record is not None else ""
            for name, record in before.items()
        ]
        start = anyio.current_time()
        try:
            reply = await stores._eval(
                "_breaker_sha", BREAKER_SCRIPT, [prefix + name for name in names], args
            )
        except STORE_ERRORS as exc:
            self._dirty |= dirty
            stores._failed(exc)
            return
        except BaseException:
            self._dirty |= dirty
            raise
        end = anyio.current_time()
        offset = stores._offset = server_time(reply[0], reply[1]) - (start + end) / 2
        self.syncs += 1
        self._wanted.difference_update(names)
        for name, pushed, raw in zip(names, args, reply[2:], strict=True):
            text = raw.decode()
            if not text:  # never stored, or the server lost it: re-seed from our copy
                if self._records.get(name) is not None:
                    self._dirty.add(name)
                    self._wake.set()
                continue
            if text == pushed:
                continue
            try:
                remote = self._load(text, offset)
            except (ValueError, KeyError):
                emit("store.bad_record", level="warning", store="redis", breaker=name)
                continue
            current = self._records.get(name)
            if (
                current is None
                or remote.generation > current.generation
                or (
                    remote.generation == current.generation
                    and current is before[name]
                    and remote.state is not current.state
                )
            ):
                self._records[name] = remote
                self.adoptions += 1

    def _reseed(self) -> None:
        """Schedules a push of every local record (after an outage: the server may be new)."""
        self._dirty.update(self._records)
        self._wake.set()

    async def _sync_loop(self) -> None:
        interval = self._stores.options.sync_interval
        while True:
            with anyio.move_on_after(interval):
                await self._wake.wait()
            self._wake = anyio.Event()
            await self.sync()

    @staticmethod
    def _dump(record: BreakerRecord, offset: float) -> str:
        since = "" if record.since is None else repr(record.since + offset)
        return (
            f"{record.generation}|{record.state.value}|{since}|"
            f"{record.open_duration!r}|{record.open_base!r}"
        )

    @staticmethod
    def _load(text: str, offset: float) -> BreakerRecord:
        generation, state, since, duration, base = text.split("|")
        return BreakerRecord(
            state=_STATES[state],
            generation=int(generation),
            since=float(since) - offset if since else None,
            open_duration=float(duration),
            open_base=float(base),
        )
