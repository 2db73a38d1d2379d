"""An in-process fake service: scripted outcomes, counted connections.

Each request takes the next scripted outcome (then `Backend.default`):

- ``"ok"`` (any string): answered ``f"{outcome}:{request}"``;
- ``"hang"``: never answers (until cancelled);
- an exception instance: raised;
- a `Reply`: returned as is (a response object: its status is judged by the HTTP
  kinds, its ``tokens`` are the usage the limits reconcile to, its headers resync them);
- a callable: called with the request, its result returned as a string.

`client_factory(backend, kind=..., classifier=...)` builds clients of any kind; the
default is the LLM kind, whose classifier judges every outcome unless one is given.
`scripted_function(backend, **layers)` is the same client's request as a plain async
function under `@resilient(**layers)`, so one script can drive both surfaces.
`Held(name, release)` answers each request once `release` is set (in-flight gauges).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import attrs

from actors import (
    KINDS,
    ActorConfig,
    Classifier,
    PoolConfig,
    ServiceClient,
    ServiceConfig,
    ServiceKind,
    ServiceResponseError,
    ServiceUnavailable,
)
from actors.resilience import BreakerConfig, ResilientFunction, RetryPolicy, resilient


@attrs.frozen
class Reply:
    """A response the fake returns as is."""

    text: str = "ok"
    status_code: int = 200
    headers: Mapping[str, str] = attrs.field(factory=dict)
    tokens: float | None = None


@attrs.define
class Backend:
    """The fake remote service's behaviour and what it saw (shared by all incarnations)."""

    outcomes: list[Any] = attrs.field(factory=list)  # consumed per request; then `default`
    default: Any = "ok"
    latency: float = 0.0
    estimate: float = 0.0  # the "tokens" each request is estimated to cost
    requests: int = 0
    opened: int = 0
    closed: int = 0
    probe_ok: bool = True
    cancelled: int = 0

    def next_outcome(self) -> Any:
        return self.outcomes.pop(0) if self.outcomes else self.default


class FakeConn:
    def __init__(self, number: int) -> None:
        self.number = number


class FakeClient(ServiceClient[FakeConn, Any, Any]):
    """Answers f"{outcome}:{request}", returns a scripted `Reply`, or raises the scripted
    exception."""

    kind = KINDS["llm"]
    cost_keys = frozenset({"requests", "tokens"})

    def __init__(
        self, backend: Backend, name: str = "fake", *, classifier: Classifier | None = None
    ) -> None:
        super().__init__(name)
        self.backend = backend
        self._classifier = classifier

    def classifier(self) -> Classifier:
        return self._classifier if self._classifier is not None else self.kind.classifier

    async def connect(self) -> FakeConn:
        self.backend.opened += 1
        return FakeConn(self.backend.opened)

    async def close(self, conn: FakeConn) -> None:
        self.backend.closed += 1

    async def request(self, conn: FakeConn, request: Any) -> Any:
        backend = self.backend
        backend.requests += 1
        outcome = backend.next_outcome()
        try:
            if outcome == "hang":
                await anyio.sleep(math.inf)
            if backend.latency:
                await anyio.sleep(backend.latency)
        except anyio.get_cancelled_exc_class():
            backend.cancelled += 1
            raise
        if isinstance(outcome, Exception):
            raise outcome
        if isinstance(outcome, Reply):
            return outcome
        if callable(outcome):
            return str(outcome(request))
        return f"{outcome}:{request}"

    async def probe(self, conn: FakeConn) -> None:
        if not self.backend.probe_ok:
            raise ServiceUnavailable(self.name, "probe failed")

    def costs(self, request: Any) -> Mapping[str, float]:
        return {"requests": 1.0, "tokens": self.backend.estimate}

    def usage(self, response: Any) -> Mapping[str, float]:
        if isinstance(response, Reply) and response.tokens is not None:
            return {"tokens": response.tokens}
        return {}

    def rate_headers(self, response_or_error: object) -> Mapping[str, str] | None:
        headers = getattr(response_or_error, "headers", None)
        return dict(headers) if isinstance(headers, Mapping) else None


_CLIENTS: dict[str, type[FakeClient]] = {
    name: type(f"Fake{name.title()}Client", (FakeClient,), {"kind": kind})
    for name, kind in KINDS.items()
}


FAST_RETRY = RetryPolicy(attempts=3, backoff_initial=0.0, backoff_max=0.0, budget_ratio=None)
"""Three attempts, no backoff, no budget."""


def count_breaker(calls: int, *, open_duration: float = 10.0) -> BreakerConfig:
    """A breaker deciding over the last `calls` calls, opening at 50 % failures."""
    return BreakerConfig(
        window="count",
        window_size=calls,
        minimum_calls=calls,
        failure_rate_threshold=0.5,
        open_duration=open_duration,
        open_jitter=0.0,
        half_open_permits=1,
    )


def config(**changes: Any) -> ServiceConfig:
    """A service config with `FAST_RETRY`, no breaker, no limits, a pool of 4 and a 5 s
    call timeout, with `changes` applied."""
    base = ServiceConfig(
        retry=FAST_RETRY,
        breaker=None,
        pool=PoolConfig(max_size=4, acquire_timeout=5.0, max_idle=None, max_lifetime=None),
        actor=ActorConfig(call_timeout=5.0),
    )
    return attrs.evolve(base, **changes)


def unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("fake", "connection reset")


def status(status_code: int, **kwargs: Any) -> ServiceResponseError:
    return ServiceResponseError("fake", status_code, **kwargs)


def client_factory(
    backend: Backend,
    *,
    kind: ServiceKind | str = "llm",
    classifier: Classifier | None = None,
) -> Callable[[], FakeClient]:
    """Builds fake clients of `kind` (its classifier unless `classifier` is given)."""
    cls = _CLIENTS[kind if isinstance(kind, str) else kind.name]
    return lambda: cls(backend, classifier=classifier)


def scripted_function(backend: Backend, **layers: Any) -> ResilientFunction[[Any], Any]:
    """The fake client's request on one connection, decorated with `resilient(**layers)`."""
    client = FakeClient(backend)
    conn = FakeConn(0)

    @resilient(**layers)
    async def call(request: Any) -> Any:
        return await client.request(conn, request)

    return call


class Held(ServiceClient[None, str, str]):
    """Answers each request once `release` is set."""

    def __init__(self, name: str, release: anyio.Event) -> None:
        super().__init__(name)
        self.release = release

    async def connect(self) -> None:
        return None

    async def request(self, conn: None, request: str) -> str:
        await self.release.wait()
        return request
