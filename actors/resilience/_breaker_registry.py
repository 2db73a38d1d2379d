"""`BreakerRegistry`: the circuit breakers of many services, reported together."""

from __future__ import annotations

import random as _random_module
from collections.abc import Callable, Iterator

import attrs
from anyio import current_time

from actors._errors import ConfigError
from actors.resilience._breaker import (
    BreakerConfig,
    BreakerListener,
    BreakerMetrics,
    BreakerStateStore,
    CircuitBreaker,
    InMemoryBreakerStore,
    create_breaker,
)

__all__ = ["BreakerRegistry"]


@attrs.define(eq=False)
class BreakerRegistry:
    """Holds one breaker per service name, all sharing one state store.

    Owned by whoever creates it (a supervisor, an application): the library keeps no
    global registry.

    Attributes:
        default_config: The config of breakers created without one.
        store: Where every breaker's record lives (in memory unless given).
    """

    default_config: BreakerConfig = attrs.field(factory=BreakerConfig)
    store: BreakerStateStore = attrs.field(factory=InMemoryBreakerStore)
    random: Callable[[], float] = _random_module.random
    _breakers: dict[str, CircuitBreaker] = attrs.field(factory=dict, init=False)
    _listeners: list[BreakerListener] = attrs.field(factory=list, init=False)

    def get_or_create(
        self, name: str, config: BreakerConfig | None = None, *, now: float | None = None
    ) -> CircuitBreaker:
        """Returns the breaker called `name`, creating it on first use.

        Args:
            name: The service name.
            config: Defaults to `default_config`. Asking again with a different config
                is an error, so two callers cannot silently disagree.
            now: Creation time (see `create_breaker`).

        Raises:
            ConfigError: `name` exists with another config (field "config").
        """
        breaker = self._breakers.get(name)
        if breaker is not None:
            if config is not None and config != breaker.config:
                raise ConfigError(
                    "config", config, f"breaker {name!r} already exists with another config"
                )
            return breaker
        breaker = create_breaker(
            name,
            self.default_config if config is None else config,
            store=self.store,
            random=self.random,
            listeners=self._listeners,
            now=now,
        )
        self._breakers[name] = breaker
        return breaker

    def get(self, name: str) -> CircuitBreaker | None:
        """Returns the breaker called `name`, or `None`."""
        return self._breakers.get(name)

    def add_listener(self, listener: BreakerListener) -> None:
        """Calls `listener` on every transition of every breaker, present and future."""
        self._listeners.append(listener)
        for breaker in self._breakers.values():
            breaker.add_listener(listener)

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(tuple(self._breakers.values()))

    def __len__(self) -> int:
        return len(self._breakers)

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def snapshot(self, now: float | None = None) -> dict[str, BreakerMetrics]:
        """Returns every breaker's metrics by name, all taken at the same `now`."""
        if now is None:
            now = current_time()
        return {name: breaker.metrics(now) for name, breaker in self._breakers.items()}
