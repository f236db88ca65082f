"""Fixture for the network-namespace cluster tests: compose.yaml's services, each in its own
namespace, with short heartbeats.  Skipped with the reason where namespaces cannot be made."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from rdispy.keys import Keys
from rdispy.nodes import live_nodes
from rdispy.wire import Signer
from tests.cluster import netns

#: Heartbeat of the cluster's nodes: a node is dead after 5 missed ones (1.5 s), and its jobs are
#: taken over one more heartbeat TTL later (about 3 s in all).
HEARTBEAT = 0.3
TTL = 5 * HEARTBEAT
WORKERS = ("worker1", "worker2", "worker3")
#: The order of compose's depends_on: server first, the relay before the worker behind it.
ORDER = ("redis", "scheduler", "worker1", "worker2", "relay", "worker3")

_why_not = netns.available()


class Running:
    """A started cluster as the tests see it."""

    def __init__(self, cluster: netns.Cluster, secret: str) -> None:
        self.net = cluster
        self.secret = secret
        self.url = f"redis://{cluster.address('redis')}:6379"
        self.keys = Keys()
        self.signer = Signer(secret)
        self.client = redis.Redis.from_url(self.url, socket_timeout=10)

    def nodes(self) -> dict[str, dict[str, str]]:
        """Validly signed live node records by name."""
        return {n["name"]: n for n in live_nodes(self.client, self.keys, self.signer)}

    def wait(self, predicate: object, what: str, timeout: float = 40 * HEARTBEAT + 20) -> None:
        assert callable(predicate)
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                logs = "\n".join(
                    f"--- {n}\n{self.net.output(n)[-3000:]}" for n in self.net.services
                )
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
            time.sleep(0.05)


def _port_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), 0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture
def compose_cluster(tmp_path: Path) -> Iterator[Running]:
    if _why_not:
        pytest.skip(_why_not)
    secret = secrets.token_hex(16)
    env = {"RDISPY_HEARTBEAT": str(HEARTBEAT), "RDISPY_SECRET": secret}
    cluster = netns.Cluster(tmp_path, env)
    try:
        cluster.create()
        running = Running(cluster, secret)
        for name in ORDER:
            cluster.start(name)
            if name == "redis":
                running.wait(lambda: _port_open(cluster.address("redis"), 6379), "the server")
        running.wait(lambda: set(WORKERS) <= set(running.nodes()), "three registered nodes")
        yield running
        running.client.close()
    finally:
        cluster.close()
