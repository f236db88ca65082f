"""CPython's test_concurrent_futures against rdispy.Executor: embedded, and a client of two
`rdispy worker` nodes (see cpython_futures for what is run, how, and what is skipped and why).

    python -m pytest tests/conformance/test_cpython_futures.py -rs -q
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from rdispy.server import EmbeddedServer
from tests.conformance import cpython_futures
from tests.conformance.executors import CLUSTER_VAR, URL_VAR

pytestmark = pytest.mark.integration

_suite, _reason = cpython_futures.load()
if _suite is None:
    pytest.skip(_reason, allow_module_level=True)

_NODES: list[cpython_futures.Nodes] = []


@pytest.fixture(scope="module")
def cpython_nodes(
    server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[cpython_futures.Nodes]:
    """The cluster variant's two nodes, for every Cluster test of this module."""
    folder, _ = cpython_futures.locate()
    assert folder is not None
    nodes = cpython_futures.Nodes(
        server.url, f"cpy{uuid.uuid4().hex[:8]}", folder, tmp_path_factory.mktemp("nodes")
    )
    saved = {name: os.environ.get(name) for name in (URL_VAR, CLUSTER_VAR)}
    os.environ[URL_VAR], os.environ[CLUSTER_VAR] = nodes.url, nodes.cluster
    _NODES.append(nodes)
    yield nodes
    _NODES.remove(nodes)
    nodes.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    left = [p for p in nodes.procs if p.poll() is None]
    assert not left, f"nodes still running: {[p.pid for p in left]}"


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    """The leak check of tests/conftest.py, but for the cluster variant's nodes: they live for
    the module, and replace the consumers the crash tests kill (checked when they stop)."""

    def mine() -> set[int]:
        nodes: set[int] = set()
        for n in _NODES:
            nodes |= n.tree()
        return {p.pid for p in psutil.Process().children(recursive=True)} - nodes

    before = mine()
    yield
    deadline = time.monotonic() + 5.0
    leaked: set[int] = set()
    while time.monotonic() < deadline:
        leaked = {
            pid
            for pid in mine() - before
            if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        }
        if not leaked:
            return
        time.sleep(0.05)
    details: list[Any] = []
    for pid in leaked:
        try:
            proc = psutil.Process(pid)
            details.append(f"{pid} {' '.join(proc.cmdline())}")
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    pytest.fail(f"test leaked processes: {details}")


globals().update(cpython_futures.build(_suite, "Embedded", __name__))
for _name, _cls in cpython_futures.build(_suite, "Cluster", __name__).items():
    globals()[_name] = pytest.mark.usefixtures("cpython_nodes")(_cls)
TestRemoteFuture = cpython_futures.remote_future_tests(_suite, __name__)
del _name, _cls  # else pytest collects the last class a second time under this name
