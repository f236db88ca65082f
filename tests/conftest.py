"""Shared fixtures: a real server from the embedded wheel, real `rdispy worker` processes, and a
leak check after every test (no process a test started may outlive it)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import psutil
import pytest
import redis

from rdispy.keys import Keys
from rdispy.server import EmbeddedServer, free_port

#: Short intervals so that detection deadlines in tests are a few seconds.
HEARTBEAT = 0.25
ROOT = Path(__file__).resolve().parent.parent


def _become_subreaper() -> None:
    """Orphans of our children (a consumer whose supervisor was killed) are re-parented to the
    test process instead of init, so the leak check below still sees them (Linux only)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


_become_subreaper()


def _descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.fixture(autouse=True)
def _pickle_test_functions_by_value(request: pytest.FixtureRequest) -> None:
    """Worker processes cannot import test modules; ship their functions by value, as cloudpickle
    does for functions defined in a user's __main__."""
    module = getattr(request, "module", None)
    if module is not None:
        cloudpickle.register_pickle_by_value(module)


@pytest.fixture(scope="session")
def server() -> Iterator[EmbeddedServer]:
    """One TCP server for the session; tests isolate themselves by cluster name."""
    srv = EmbeddedServer(port=free_port()).start()
    yield srv
    srv.stop()


@pytest.fixture
def private_server() -> Iterator[Callable[..., EmbeddedServer]]:
    """Start servers with special settings for one test; all are stopped afterwards.  Request it
    before ``start_worker`` so that workers are stopped before their server."""
    started: list[EmbeddedServer] = []

    def start(**options: Any) -> EmbeddedServer:
        srv = EmbeddedServer(port=free_port(), **options)
        started.append(srv)
        return srv.start()

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def redis_url(server: EmbeddedServer) -> str:
    return server.url


@pytest.fixture
def rclient(server: EmbeddedServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url)
    yield client
    client.close()


@pytest.fixture
def cluster() -> str:
    """A fresh cluster name: its keys are disjoint from every other test's."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def keys(cluster: str) -> Keys:
    return Keys(cluster)


class Worker:
    """A `rdispy worker` subprocess."""

    def __init__(self, proc: subprocess.Popen[bytes], name: str, log: Path) -> None:
        self.proc, self.name, self.log = proc, name, log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def consumers(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []

    def wait_consumers(self, count: int, timeout: float = 10.0) -> list[psutil.Process]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kids = [p for p in self.consumers() if p.is_running() and p.status() != "zombie"]
            if len(kids) == count:
                return kids
            time.sleep(0.02)
        raise AssertionError(f"worker {self.name} has not {count} consumers: {self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                for child in self.consumers():
                    child.kill()
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def start_worker(cluster: str, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start `rdispy worker` processes for this test's cluster; all are stopped afterwards."""
    started: list[Worker] = []

    def start(
        url: str, cpus: int = 2, name: str | None = None, *extra: str, wait_ready: bool = True
    ) -> Worker:
        name = name or f"node{len(started) + 1}"
        log = tmp_path / f"{name}.log"
        env = dict(os.environ, RDISPY_HEARTBEAT=str(HEARTBEAT), PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rdispy",
                "-v",
                "worker",
                "--redis",
                url,
                "--cpus",
                str(cpus),
                "--name",
                name,
                "--cluster",
                cluster,
                *extra,
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        worker = Worker(proc, name, log)
        started.append(worker)
        if wait_ready:
            worker.wait_consumers(cpus)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def embedded() -> Iterator[Any]:
    """The embedded default with two consumers (a private server and a local node)."""
    import rdispy

    ex = rdispy.Executor(max_workers=2)
    yield ex
    ex._dispatcher.cancel_all()  # withdraw the queued, close now
    ex.detach()


@pytest.fixture(autouse=True)
def no_leaked_processes(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a process behind (the session server excepted)."""
    before = _descendants()
    yield
    deadline = time.monotonic() + 5.0
    leaked: set[int] = set()
    while time.monotonic() < deadline:
        leaked = {
            pid
            for pid in _descendants() - before
            if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        }
        if not leaked:
            return
        time.sleep(0.05)
    details = []
    for pid in leaked:
        try:
            proc = psutil.Process(pid)
            details.append(f"{pid} {' '.join(proc.cmdline())}")
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    pytest.fail(f"test leaked processes: {details}")


# -- `rdispy relay` processes (tests/integration/test_relay.py, tests/faults/test_tls.py) --------


class Relay:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_relay(cluster: str, tmp_path: Path) -> Iterator[Callable[..., Relay]]:
    started: list[Relay] = []

    def start(url: str, *extra: str) -> Relay:
        port = free_port()
        log = tmp_path / f"relay{len(started)}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "rdispy", "-v", "relay", "--redis", url,
             "--listen", f"127.0.0.1:{port}", "--cluster", cluster, "--name", "r1", *extra],
            stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT,
            env=dict(os.environ, RDISPY_HEARTBEAT=str(HEARTBEAT)),
        )  # fmt: skip
        relay = Relay(proc, port, log)
        started.append(relay)
        deadline = time.monotonic() + 30
        while not _listening(port) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, relay.output()
        return relay

    yield start
    for relay in started:
        if relay.proc.poll() is None:
            relay.proc.send_signal(signal.SIGTERM)
            relay.proc.wait(10)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False
