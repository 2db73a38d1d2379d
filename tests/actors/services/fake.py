"""An in-process fake service: scripted outcomes, counted connections."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import anyio
import attrs

from actors import ServiceResponseError, ServiceUnavailable
from actors.services import ServiceClient


@attrs.define
class Backend:
    """The fake remote service's behaviour and what it saw (shared by all incarnations)."""

    outcomes: list[Any] = attrs.field(factory=list)  # consumed per request; then `default`
    default: Any = "ok"
    latency: float = 0.0
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


class FakeClient(ServiceClient[FakeConn, str, str]):
    """Answers f"{outcome}:{request}", or raises the scripted exception."""

    service_type = "llm"

    def __init__(self, backend: Backend, name: str = "fake") -> None:
        super().__init__(name)
        self.backend = backend

    async def connect(self) -> FakeConn:
        self.backend.opened += 1
        return FakeConn(self.backend.opened)

    async def close(self, conn: FakeConn) -> None:
        self.backend.closed += 1

    async def request(self, conn: FakeConn, request: str) -> str:
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
        if callable(outcome):
            return str(outcome(request))
        return f"{outcome}:{request}"

    async def probe(self, conn: FakeConn) -> None:
        if not self.backend.probe_ok:
            raise ServiceUnavailable(self.name, "probe failed")


def unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("fake", "connection reset")


def status(status_code: int, **kwargs: Any) -> ServiceResponseError:
    return ServiceResponseError("fake", status_code, **kwargs)


def client_factory(backend: Backend) -> Callable[[], FakeClient]:
    return lambda: FakeClient(backend)
