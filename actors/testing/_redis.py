"""Real `redis-server` processes for tests: one server (optionally TLS-only) or a cluster.

::

    with redis_server(password="s3cret") as server:
        ...  # server.url, server.password
        server.kill()       # SIGKILL: Redis is gone (connections refused)
        server.restart()    # same port, empty data
        server.pause()      # SIGSTOP: connections hang (timeouts)
        server.resume()

    with redis_server(tls=True) as server:         # TLS only, certificates made here
        ...  # server.url is rediss://; server.certificates has the CA, client cert, key

    with redis_cluster(masters=3, replicas=1) as cluster:
        ...  # cluster.url names one node; cluster.fail_over(key) kills the key's master

Free loopback ports, a temporary directory, no persistence. Certificates are made with
the `openssl` command (Debian's `openssl`, which `postgresql` and `ca-certificates`
bring along), a private CA valid for two days. Synchronous on purpose (subprocess
management), so it works from any fixture and from either anyio backend.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import attrs

from actors.testing._databases import _free_port

__all__ = [
    "RedisCluster",
    "RedisServer",
    "TLSFiles",
    "make_tls_files",
    "redis_cluster",
    "redis_server",
    "redis_server_path",
]

_START_TIMEOUT = 10.0
_CLUSTER_TIMEOUT = 30.0


def redis_server_path() -> str | None:
    """The `redis-server` executable on PATH (or /usr/bin, /usr/sbin), or `None`."""
    return shutil.which("redis-server") or shutil.which(
        "redis-server", path="/usr/bin:/usr/sbin:/usr/local/bin"
    )


@attrs.frozen(kw_only=True)
class TLSFiles:
    """PEM files of a private CA, a server certificate (for 127.0.0.1) and a client one.

    Attributes:
        ca: The CA certificate (what clients and the server trust).
        server_cert: The server's certificate, for ``127.0.0.1`` and ``localhost``.
        server_key: Its private key.
        client_cert: A client certificate signed by the same CA (mutual TLS).
        client_key: Its private key.
    """

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def _openssl(*args: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise FileNotFoundError("openssl is not installed (apt-get install openssl)")
    subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)


def make_tls_files(directory: str) -> TLSFiles:
    """Makes a CA and a server and a client certificate it signs, in `directory`.

    Raises:
        FileNotFoundError: The `openssl` command is missing.
        subprocess.CalledProcessError: openssl failed.
    """
    path = {name: os.path.join(directory, name) for name in ("ca", "server", "client")}
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *curve, "-keyout", f"{path['ca']}.key", "-out", f"{path['ca']}.crt",
        "-days", "2", "-subj", "/CN=actors test CA",
    )  # fmt: skip
    for name, extension in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        extfile = f"{path[name]}.ext"
        with open(extfile, "w") as ext:
            ext.write(extension + "\n")
        _openssl(
            "req", *curve, "-keyout", f"{path[name]}.key", "-out", f"{path[name]}.csr",
            "-subj", f"/CN=actors test {name}",
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{path[name]}.csr", "-CA", f"{path['ca']}.crt",
            "-CAkey", f"{path['ca']}.key", "-CAcreateserial", "-days", "2",
            "-extfile", extfile, "-out", f"{path[name]}.crt",
        )  # fmt: skip
    return TLSFiles(
        ca=f"{path['ca']}.crt",
        server_cert=f"{path['server']}.crt",
        server_key=f"{path['server']}.key",
        client_cert=f"{path['client']}.crt",
        client_key=f"{path['client']}.key",
    )


def _connect(port: int, tls: TLSFiles | None, timeout: float) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls is None:
        return sock
    context = ssl.create_default_context(cafile=tls.ca)
    context.load_cert_chain(tls.client_cert, tls.client_key)
    return context.wrap_socket(sock, server_hostname="127.0.0.1")


RESP = bytes | int | str | list["RESP"] | None
"""A decoded reply: bulk string (bytes), integer, status or error line (str), array."""


def _decode(buffer: bytes, start: int = 0) -> tuple[RESP, int] | None:
    """One RESP2 value at `start` and the index after it; None while incomplete."""
    end = buffer.find(b"\r\n", start)
    if end < 0:
        return None
    kind, head = buffer[start : start + 1], buffer[start + 1 : end]
    if kind in (b"+", b"-"):
        return head.decode(errors="replace"), end + 2
    if kind == b":":
        return int(head), end + 2
    if kind == b"$":
        length = int(head)
        if length < 0:
            return None, end + 2
        stop = end + 2 + length
        return (buffer[end + 2 : stop], stop + 2) if len(buffer) >= stop + 2 else None
    if kind == b"*":
        items: list[RESP] = []
        position = end + 2
        for _ in range(int(head)):
            decoded = _decode(buffer, position)
            if decoded is None:
                return None
            item, position = decoded
            items.append(item)
        return items, position
    raise ValueError(f"not a RESP reply: {buffer[start : start + 20]!r}")


def _command(
    port: int, password: str | None, tls: TLSFiles | None, *args: str, timeout: float = 0.5
) -> RESP | Exception:
    """Sends one command (after AUTH when a password is set); its decoded reply, or the
    error that kept it from answering."""
    request = b""
    expected = 1
    if password is not None:
        secret = password.encode()
        request += b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret)
        expected = 2
    request += b"*%d\r\n" % len(args)
    for arg in args:
        request += b"$%d\r\n%s\r\n" % (len(arg.encode()), arg.encode())
    try:
        with _connect(port, tls, timeout) as sock:
            sock.sendall(request)
            buffer = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return ConnectionError("closed before replying")
                buffer += chunk
                position, value = 0, None
                for _ in range(expected):
                    decoded = _decode(buffer, position)
                    if decoded is None:
                        break
                    value, position = decoded
                else:
                    return value
    except (OSError, ssl.SSLError) as exc:
        return exc


def _ping(port: int, password: str | None, tls: TLSFiles | None, timeout: float) -> bool:
    """True when the server answers PING (after AUTH when a password is set)."""
    return _command(port, password, tls, "PING", timeout=timeout) == "PONG"


@attrs.define(eq=False)
class RedisServer:
    """One `redis-server` process on 127.0.0.1; create it with `redis_server()`.

    Attributes:
        port: The loopback port (kept across `restart`); the TLS port for a TLS server.
        password: The `requirepass` value, or `None`.
        directory: Its temporary working directory.
        tls: The certificates of a TLS-only server, or `None`.
        cluster_port: The cluster bus port of a cluster node, or `None`.
    """

    port: int
    password: str | None = attrs.field(repr=lambda v: "None" if v is None else "'***'")
    directory: str
    executable: str
    tls: TLSFiles | None = None
    cluster_port: int | None = None
    _process: subprocess.Popen[bytes] | None = attrs.field(default=None, repr=False)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` (``rediss://`` with TLS; without the password)."""
        scheme = "redis" if self.tls is None else "rediss"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the process is alive (it may be paused)."""
        return self._process is not None and self._process.poll() is None

    def _args(self) -> list[str]:
        args = [self.executable, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", self.directory, "--logfile", os.path.join(self.directory, "redis.log")]
        if self.tls is None:
            args += ["--port", str(self.port)]
        else:
            args += ["--port", "0", "--tls-port", str(self.port)]
            args += ["--tls-cert-file", self.tls.server_cert, "--tls-key-file", self.tls.server_key]
            args += ["--tls-ca-cert-file", self.tls.ca, "--tls-auth-clients", "yes"]
        if self.cluster_port is not None:
            args += ["--cluster-enabled", "yes", "--cluster-port", str(self.cluster_port)]
            args += ["--cluster-config-file", os.path.join(self.directory, "nodes.conf")]
            args += ["--cluster-node-timeout", "1000", "--repl-diskless-sync-delay", "0"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        return args

    def start(self) -> None:
        """Starts the server and waits (up to 10 s) until it answers PING.

        Raises:
            RuntimeError: It did not answer in time (its log is in the message).
        """
        self._process = subprocess.Popen(
            self._args(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if _ping(self.port, self.password, self.tls, 0.5):
                return
            time.sleep(0.01)
        self.kill()
        raise RuntimeError(f"redis-server did not start on port {self.port}:\n{self._log()}")

    def command(self, *args: str) -> RESP | Exception:
        """Sends one command to this server: its decoded reply, or why it got none."""
        return _command(self.port, self.password, self.tls, *args)

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


def _executable() -> str:
    executable = redis_server_path()
    if executable is None:
        raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
    return executable


@contextmanager
def redis_server(*, password: str | None = None, tls: bool = False) -> Iterator[RedisServer]:
    """Runs a fresh `redis-server` for the block, then stops it and removes its directory.

    Args:
        password: A `requirepass` value.
        tls: Serve TLS only (no plain port), with certificates made for the block and
            client certificates required (`server.tls` has the files).

    Raises:
        FileNotFoundError: `redis-server` (or, for TLS, `openssl`) is not installed.
        RuntimeError: It did not start.
    """
    executable = _executable()
    with tempfile.TemporaryDirectory(prefix="actors-redis-") as directory:
        files = make_tls_files(directory) if tls else None
        server = RedisServer(
            port=_free_port(),
            password=password,
            directory=directory,
            executable=executable,
            tls=files,
        )
        server.start()
        try:
            yield server
        finally:
            server.kill()


@attrs.define(eq=False)
class RedisCluster:
    """A local Redis Cluster; create it with `redis_cluster()`.

    Attributes:
        nodes: Every node (masters first, as created; roles change on failover).
    """

    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        """The URL of the first node that is still running."""
        return next(node for node in self.nodes if node.running).url

    def info(self, node: RedisServer) -> dict[str, str]:
        """`CLUSTER INFO` of `node` as a dict (empty when it does not answer)."""
        reply = node.command("CLUSTER", "INFO")
        if not isinstance(reply, bytes):
            return {}
        pairs = (line.split(":", 1) for line in reply.decode(errors="replace").splitlines())
        return {pair[0]: pair[1].strip() for pair in pairs if len(pair) == 2}

    def master_of(self, key: str) -> RedisServer:
        """The node serving `key`'s slot now, as a running node sees it."""
        for node in self.nodes:
            if not node.running:
                continue
            slot, ranges = node.command("CLUSTER", "KEYSLOT", key), node.command("CLUSTER", "SLOTS")
            if not isinstance(slot, int) or not isinstance(ranges, list):
                continue
            for entry in ranges:
                assert isinstance(entry, list)
                start, end, master = entry[0], entry[1], entry[2]
                assert isinstance(start, int)
                assert isinstance(end, int)
                assert isinstance(master, list)
                if start <= slot <= end:
                    return next(other for other in self.nodes if other.port == master[1])
        raise RuntimeError(f"no running node knows the master of {key!r}")

    def wait_ok(self, timeout: float = _CLUSTER_TIMEOUT) -> None:
        """Waits until every running node says the cluster is ok with all slots served.

        Raises:
            RuntimeError: Not within `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            infos = [self.info(node) for node in self.nodes if node.running]
            if infos and all(
                info.get("cluster_state") == "ok" and info.get("cluster_slots_ok") == "16384"
                for info in infos
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the cluster is not ok: {[self.info(n) for n in self.nodes]}")

    def wait_synced(self, timeout: float = _CLUSTER_TIMEOUT) -> None:
        """Waits until every running replica is in sync with its master (so that it can
        take over).

        Raises:
            RuntimeError: Not within `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            replies = [node.command("INFO", "replication") for node in self.nodes if node.running]
            texts = [reply.decode() for reply in replies if isinstance(reply, bytes)]
            replicas = [text for text in texts if "role:slave" in text]
            if len(texts) == len(replies) and all(
                "master_link_status:up" in text for text in replicas
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("the cluster's replicas did not sync")

    def fail_over(self, key: str) -> RedisServer:
        """Kills the master serving `key` (SIGKILL) and returns it; a replica takes over
        within about two seconds (`cluster-node-timeout` is 1 s): `wait_promoted` waits."""
        master = self.master_of(key)
        master.kill()
        return master

    def wait_promoted(self, key: str, old: RedisServer, timeout: float = _CLUSTER_TIMEOUT) -> None:
        """Waits until a node other than `old` serves `key` and the cluster is ok.

        Raises:
            RuntimeError: Not within `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.master_of(key) is not old:
                    self.wait_ok(max(0.1, deadline - time.monotonic()))
                    return
            except RuntimeError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"no replica took over {key!r} from port {old.port}")


@contextmanager
def redis_cluster(*, masters: int = 3, replicas: int = 1) -> Iterator[RedisCluster]:
    """Runs a local cluster of `masters` masters with `replicas` replicas each.

    Created with ``redis-cli --cluster create``; `cluster-node-timeout` is 1 s, so a
    killed master's replica is promoted within about two seconds.

    Raises:
        FileNotFoundError: `redis-server` or `redis-cli` is not installed.
        RuntimeError: The cluster did not form.
    """
    executable = _executable()
    cli = shutil.which("redis-cli") or shutil.which("redis-cli", path="/usr/bin:/usr/local/bin")
    if cli is None:
        raise FileNotFoundError("redis-cli is not installed (apt-get install redis-tools)")
    with ExitStack() as stack:
        nodes = []
        for _ in range(masters * (1 + replicas)):
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="actors-rc-"))
            node = RedisServer(
                port=_free_port(),
                password=None,
                directory=directory,
                executable=executable,
                cluster_port=_free_port(),
            )
            stack.callback(node.kill)
            node.start()
            nodes.append(node)
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        cluster = RedisCluster(nodes=nodes)
        cluster.wait_ok()
        cluster.wait_synced()
        yield cluster
