"""ResponseCache against an obviously-right model: TTL, stale window and LRU bound."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from supervisor.fallback import ResponseCache, create_cache

TTL, STALE, SIZE = 3.0, 4.0, 3
KEYS = st.sampled_from("abcde")


class CacheMachine(RuleBasedStateMachine):
    """Random puts, lookups and clock steps; the model is a list in recency order."""

    def __init__(self) -> None:
        super().__init__()
        self.cache: ResponseCache[str, int] = create_cache(
            "m", ttl=TTL, stale_ttl=STALE, max_entries=SIZE
        )
        self.model: list[tuple[str, int, float]] = []  # (key, value, stored_at), LRU first
        self.now = 0.0
        self.counter = 0

    def _find(self, key: str) -> tuple[str, int, float] | None:
        return next((e for e in self.model if e[0] == key), None)

    def _touch(self, entry: tuple[str, int, float]) -> None:
        self.model.remove(entry)
        self.model.append(entry)

    @rule(step=st.sampled_from([0.0, 0.5, 1.0, 2.5, 4.0]))
    def tick(self, step: float) -> None:
        self.now += step

    @rule(key=KEYS)
    def put(self, key: str) -> None:
        self.counter += 1
        self.cache.put(key, self.counter, now=self.now)
        old = self._find(key)
        if old is not None:
            self.model.remove(old)
        self.model.append((key, self.counter, self.now))
        if len(self.model) > SIZE:
            self.model.pop(0)

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        entry = self._find(key)
        expected: tuple[bool, int | None] = (False, None)
        if entry is not None and self.now - entry[2] < TTL:
            expected = (True, entry[1])
            self._touch(entry)
        assert self.cache.get(key, now=self.now) == expected

    @rule(key=KEYS)
    def get_stale(self, key: str) -> None:
        entry = self._find(key)
        expected: tuple[bool, int | None] = (False, None)
        if entry is not None:
            if self.now - entry[2] < TTL + STALE:
                expected = (True, entry[1])
                self._touch(entry)
            else:
                self.model.remove(entry)
        assert self.cache.get_stale(key, now=self.now) == expected

    @invariant()
    def bounded(self) -> None:
        assert len(self.cache) == len(self.model) <= SIZE


CacheMachine.TestCase.settings = settings(max_examples=60, deadline=None)
test_cache_machine = CacheMachine.TestCase
