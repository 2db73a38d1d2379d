"""Serving an ASGI app on loopback with hypercorn, on asyncio or trio (extra `http`)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import sniffio

__all__ = ["serve_asgi"]


@asynccontextmanager
async def serve_asgi(
    app: Callable[..., Any],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    shutdown_timeout: float = 5.0,
    on_stop: Callable[[], None] | None = None,
) -> AsyncIterator[str]:
    """Serves `app` with hypercorn for the block and yields its base URL.

    The socket is bound before the block starts (so the URL works at once); the
    server runs on the current backend. Leaving the block stops it gracefully, waiting
    at most `shutdown_timeout` seconds before cancelling it.

    Args:
        app: An ASGI 3 application (e.g. `supervisor.health.health_app(monitor)`).
        host: The address to bind; loopback by default.
        port: The port; 0 picks a free one.
        shutdown_timeout: Longest wait for a graceful stop.
        on_stop: Called first when the block exits (e.g. to release hanging requests).

    Yields:
        `http://host:port`.

    Raises:
        ImportError: hypercorn is not installed (extra `http`).
        OSError: The address cannot be bound.
    """
    from hypercorn.config import Config

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        bound_port = sock.getsockname()[1]
    except BaseException:
        sock.close()
        raise
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns (and closes) the socket
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1.0
    config.keep_alive_timeout = 5.0
    stop = anyio.Event()
    if sniffio.current_async_library() == "trio":
        from hypercorn.trio import serve as trio_serve

        serve: Any = trio_serve
    else:
        from hypercorn.asyncio import serve as asyncio_serve

        serve = asyncio_serve
    async with anyio.create_task_group() as tg:
        tg.start_soon(_run, serve, app, config, stop)
        try:
            yield f"http://{host}:{bound_port}"
        finally:
            if on_stop is not None:
                on_stop()
            stop.set()
            tg.cancel_scope.deadline = anyio.current_time() + shutdown_timeout


async def _run(serve: Any, app: Any, config: Any, stop: anyio.Event) -> None:
    await serve(app, config, shutdown_trigger=stop.wait)
