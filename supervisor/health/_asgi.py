"""`health_app`: a dependency-free ASGI 3 app with /healthz, /readyz and /metrics.

Mount it in any ASGI server or framework (hypercorn, uvicorn, Starlette's `Mount`);
paths are matched after removing the scope's `root_path`.

=============  ==================================================  ==================
path           200 when                                            otherwise
=============  ==================================================  ==================
``/healthz``   the monitor runs (liveness)                         503
``/readyz``    every required service is ready (see HealthReport)  503
``/metrics``   prometheus-client is installed                      501 (404: disabled)
=============  ==================================================  ==================

`/healthz` answers ``{"status": "alive"}`` (or ``"stopped"``); `/readyz` answers the
`HealthReport.to_dict()` JSON; `/metrics` answers Prometheus text exposition with
prometheus-client's content type. Only GET and HEAD are allowed (405 otherwise).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

from supervisor.health._metrics import (
    PROMETHEUS_MISSING,
    make_prometheus_registry,
    prometheus_available,
    prometheus_exposition,
)
from supervisor.health._monitor import HealthMonitor

__all__ = ["health_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON = b"application/json"
_TEXT = b"text/plain; charset=utf-8"


async def _respond(send: Send, status: int, body: bytes, content_type: bytes, head: bool) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})


def _json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def health_app(
    monitor: HealthMonitor,
    *,
    metrics: bool = True,
    extra_metrics: Callable[[], Iterator[Any]] | None = None,
) -> ASGIApp:
    """Returns an ASGI app serving the monitor's health endpoints.

    Args:
        monitor: The monitor to report on; it may start running after the app does.
        metrics: Serve `/metrics` (404 when False).
        extra_metrics: Yields further prometheus-client metric families at each scrape
            (e.g. `ResponseCache.prometheus_families`).
    """
    registry: Any = None
    if metrics and prometheus_available():
        registry = make_prometheus_registry(monitor.report, extra_metrics)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if kind != "http":
            return  # websockets are not served; the server closes the connection
        path: str = scope.get("path", "/")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        method = scope.get("method", "GET")
        head = method == "HEAD"
        if path not in ("/healthz", "/readyz", "/metrics"):
            await _respond(send, 404, _json({"error": "not found", "path": path}), _JSON, head)
            return
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, _json({"error": "method not allowed"}), _JSON, head)
            return
        if path == "/healthz":
            alive = monitor.running
            body = _json({"status": "alive" if alive else "stopped"})
            await _respond(send, 200 if alive else 503, body, _JSON, head)
        elif path == "/readyz":
            report = monitor.report()
            status = 200 if report.ready and monitor.running else 503
            await _respond(send, status, _json(report.to_dict()), _JSON, head)
        elif not metrics:
            await _respond(send, 404, _json({"error": "metrics are disabled"}), _JSON, head)
        elif registry is None:
            await _respond(send, 501, PROMETHEUS_MISSING.encode(), _TEXT, head)
        else:
            body, content_type = prometheus_exposition(registry)
            await _respond(send, 200, body, content_type.encode(), head)

    return app
