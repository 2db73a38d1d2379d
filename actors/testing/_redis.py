"""A real `redis-server` for tests: free loopback port, temp dir, no persistence.

::

    with redis_server(password="s3cret") as server:
        ...  # server.url, server.password
        server.kill()       # SIGKILL: Redis is gone (connections refused)
        server.restart()    # same port, empty data
        server.pause()      # SIGSTOP: connections hang (timeouts)
        server.resume()

Synchronous on purpose (subprocess management), so it works from any fixture and
from either anyio backend.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import attrs

from actors.testing._databases import _free_port

__all__ = ["RedisServer", "redis_server", "redis_server_path"]

_START_TIMEOUT = 10.0


def redis_server_path() -> str | None:
    """The `redis-server` executable on PATH (or /usr/bin, /usr/sbin), or `None`."""
    return shutil.which("redis-server") or shutil.which(
        "redis-server", path="/usr/bin:/usr/sbin:/usr/local/bin"
    )


def _ping(port: int, password: str | None, timeout: float) -> bool:
    """True when the server answers PING (after AUTH when a password is set)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            request = b""
            if password is not None:
                secret = password.encode()
                request += b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret)
            request += b"*1\r\n$4\r\nPING\r\n"
            sock.sendall(request)
            reply = b""
            while b"PONG" not in reply and b"-" not in reply[:1]:
                chunk = sock.recv(1024)
                if not chunk:
                    return False
                reply += chunk
            return b"PONG" in reply
    except OSError:
        return False


@attrs.define(eq=False)
class RedisServer:
    """One `redis-server` process on 127.0.0.1; create it with `redis_server()`.

    Attributes:
        port: The loopback port (kept across `restart`).
        password: The `requirepass` value, or `None`.
        directory: Its temporary working directory.
    """

    port: int
    password: str | None = attrs.field(repr=lambda v: "None" if v is None else "'***'")
    directory: str
    executable: str
    _process: subprocess.Popen[bytes] | None = attrs.field(default=None, repr=False)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` (without the password)."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the process is alive (it may be paused)."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Starts the server and waits (up to 10 s) until it answers PING.

        Raises:
            RuntimeError: It did not answer in time (its log is in the message).
        """
        args = [
            self.executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.directory,
            "--logfile",
            os.path.join(self.directory, "redis.log"),
        ]
        if self.password is not None:
            args += ["--requirepass", self.password]
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if _ping(self.port, self.password, 0.5):
                return
            time.sleep(0.01)
        self.kill()
        raise RuntimeError(f"redis-server did not start on port {self.port}:\n{self._log()}")

    def _log(self) -> str:
        try:
            with open(os.path.join(self.directory, "redis.log")) as log:
                return log.read()[-2000:]
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """Kills the server at once (SIGKILL) and waits for it; idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
            process.wait(timeout=10)

    def restart(self) -> None:
        """Kills the server if it runs, then starts a fresh, empty one on the same port."""
        self.kill()
        self.start()

    def pause(self) -> None:
        """Freezes the server (SIGSTOP): it accepts nothing and answers nothing."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Resumes a paused server (SIGCONT)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)


@contextmanager
def redis_server(*, password: str | None = None) -> Iterator[RedisServer]:
    """Runs a fresh `redis-server` for the block, then stops it and removes its directory.

    Raises:
        FileNotFoundError: `redis-server` is not installed (Debian: `redis-server`).
        RuntimeError: It did not start.
    """
    executable = redis_server_path()
    if executable is None:
        raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
    with tempfile.TemporaryDirectory(prefix="actors-redis-") as directory:
        server = RedisServer(
            port=_free_port(), password=password, directory=directory, executable=executable
        )
        server.start()
        try:
            yield server
        finally:
            server.kill()
