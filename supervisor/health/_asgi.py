"""`health_app`: a dependency-free ASGI 3 app with health endpoints and a live dashboard.

Mount it in any ASGI server or framework (hypercorn, uvicorn, Starlette's `Mount`);
paths are matched after removing the scope's `root_path`.

==============  =================================================  ==================
path            200 when                                           otherwise
==============  =================================================  ==================
``/healthz``    the monitor runs (liveness)                        503
``/readyz``     every required service is ready (see HealthReport) 503
``/metrics``    prometheus-client is installed                     501 (404: disabled)
``/tree``       always: the JSON snapshot (``actorvisor.tree/1``)  404: disabled
``/dashboard``  always: the live page (and its .js and .css)       404: disabled
==============  =================================================  ==================

`/healthz` answers ``{"status": "alive"}`` (or ``"stopped"``); `/readyz` answers the
`HealthReport.to_dict()` JSON; `/metrics` answers Prometheus text exposition with
prometheus-client's content type; `/tree` answers the snapshot documented in
docs/observability.md (``?since=N`` keeps only the events after sequence number N,
``?events=N`` at most N of them; 400 on a bad number). Only GET and HEAD are allowed
(405 otherwise).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from actors import ConfigError
from actors.lowlevel import check_non_negative_int
from supervisor.health._dashboard import ASSETS, CSP, asset
from supervisor.health._feed import open_feed
from supervisor.health._metrics import (
    PROMETHEUS_MISSING,
    make_prometheus_registry,
    prometheus_available,
    prometheus_exposition,
)
from supervisor.health._monitor import HealthMonitor
from supervisor.health._snapshot import Snapshotter, services_by_name

__all__ = ["health_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON = b"application/json"
_TEXT = b"text/plain; charset=utf-8"


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    head: bool,
    *,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})


def _json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def _query_int(scope: Scope, name: str, default: int) -> int | None:
    """A non-negative integer query parameter (`default` when absent, None when bad)."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    if not values:
        return default
    text = values[-1]
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


_SNAPSHOT_PATHS = ("/tree", *ASSETS)


def health_app(
    monitor: HealthMonitor,
    *,
    metrics: bool = True,
    extra_metrics: Callable[[], Iterator[Any]] | None = None,
    tree: Any = None,
    services: Mapping[str, Any] | Iterable[Any] | None = None,
    dashboard: bool = True,
    events: int = 200,
) -> ASGIApp:
    """Returns an ASGI app serving the monitor's health endpoints and the dashboard.

    Args:
        monitor: The monitor to report on; it may start running after the app does.
        metrics: Serve `/metrics` (404 when False).
        extra_metrics: Yields further prometheus-client metric families at each scrape
            (e.g. `ResponseCache.prometheus_families`).
        tree: A running `Supervisor` (the root) for `/tree` and the dashboard; without
            it they show the monitor's services only.
        services: The `Service` behind each worker, for its breaker, limits, call
            counters, latency and adaptive concurrency limit (also in `/metrics`): a
            mapping by actor path ("agent/llm") or path relative to `tree` ("llm"), or
            an iterable of services named by their child id. A `ServiceGroup` (by
            its actor's name, `group.ref.name`) shows its calls, and its members'
            services on their nodes.
        dashboard: Serve `/tree` and `/dashboard` (404 when False).
        events: Recent lifecycle events kept for the dashboard (0: none). The feed
            subscribes to the library's events for as long as the app exists.

    Raises:
        ConfigError: `events` is not an integer >= 0, or `tree` is not a supervisor.
    """
    check_non_negative_int("events", events)
    if tree is not None and not callable(getattr(tree, "tree", None)):
        raise ConfigError("tree", type(tree).__name__, "must be a running Supervisor")
    feed = open_feed(events) if dashboard and events else None
    snapshots = Snapshotter(monitor, tree, services_by_name(services), feed)
    registry: Any = None
    if metrics and prometheus_available():
        registry = make_prometheus_registry(
            monitor.report, extra_metrics, snapshots.adaptive_limits
        )

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
        known = path in ("/healthz", "/readyz", "/metrics") or (
            dashboard and path in _SNAPSHOT_PATHS
        )
        if not known:
            await _respond(send, 404, _json({"error": "not found", "path": path}), _JSON, head)
            return
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, _json({"error": "method not allowed"}), _JSON, head)
            return
        if path == "/tree":
            since, limit = _query_int(scope, "since", 0), _query_int(scope, "events", 100)
            if since is None or limit is None:
                error = _json({"error": "since and events must be integers >= 0"})
                await _respond(send, 400, error, _JSON, head)
                return
            body = _json(snapshots.snapshot(since=since, events=limit))
            await _respond(send, 200, body, _JSON, head)
        elif path in ASSETS:
            page, page_type = asset(path)
            csp = ((b"content-security-policy", CSP),)
            await _respond(send, 200, page, page_type, head, extra=csp)
        elif path == "/healthz":
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
