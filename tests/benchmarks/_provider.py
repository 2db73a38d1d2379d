"""The mock LLM provider in its own process, so that a benchmark's CPU time is the
client's alone (the server's work belongs to the remote service, not to the caller).
(Not a benchmark itself: `.ci/run` skips files starting with `_`.)

Run: python -m tests.benchmarks._provider PORT LATENCY (what `provider` starts).
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def provider(latency: float, starting: Callable[[], None] | None = None) -> Iterator[str]:
    """Runs a `MockLLM` answering after `latency` seconds in its own process (hypercorn,
    asyncio); yields its URL once it serves.

    Args:
        latency: The mock's latency per request, in seconds.
        starting: Called while the process starts (other setup that can overlap it).
    """
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.benchmarks._provider", str(port), repr(latency)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        if starting is not None:
            starting()
        url = f"http://127.0.0.1:{port}"
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for _ in range(100):  # until it answers (an open port is not enough)
            try:
                with direct.open(f"{url}/health", timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _serve(port: int, latency: float) -> None:
    from actors.testing import MockLLM, serve_mock_llm

    async with serve_mock_llm(MockLLM(latency=latency), port=port):
        await anyio.sleep(math.inf)


if __name__ == "__main__":
    anyio.run(_serve, int(sys.argv[1]), float(sys.argv[2]))
