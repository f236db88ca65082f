"""Sentinel (issue 18, part 1): clients and workers given a ``redis+sentinel://`` URL follow a
failover without a restart.  A primary, a replica and three sentinels, all the bundled server
binary on loopback; the primary is SIGKILLed under load and every job still resolves once, with
its right value, through the replica the sentinels promote."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

import rdispy
from rdispy import connection
from rdispy.errors import ConfigError
from rdispy.server import EmbeddedServer, find_binary, free_port
from tests.helpers import DEADLINE, executor, wait_until

pytestmark = pytest.mark.integration

SERVICE = "rdispy-primary"


@dataclass
class SentinelGroup:
    primary: EmbeddedServer
    replica: EmbeddedServer
    ports: list[int]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def primary_port(self) -> int:
        return connection.sentinel_url(self.url).primary_address()[1]


def _sentinel_sees_the_replica(port: int) -> bool:
    with redis.Redis(port=port, socket_timeout=2) as sentinel:
        replicas: Any = sentinel.sentinel_slaves(SERVICE)
        return any("s_down" not in str(r.get("flags", "")) for r in replicas)


@pytest.fixture
def sentinels(
    private_server: Callable[..., EmbeddedServer], tmp_path: Path
) -> Iterator[SentinelGroup]:
    primary = private_server()
    replica = private_server(extra_args=("--replicaof", "127.0.0.1", str(primary.port)))
    ports = [free_port() for _ in range(3)]
    procs = []
    for port in ports:
        conf = tmp_path / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        procs.append(
            subprocess.Popen(
                [str(find_binary()), str(conf), "--sentinel"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    try:
        for port in ports:
            wait_until(lambda p=port: _answers(p) and _sentinel_sees_the_replica(p), "sentinels")
        yield SentinelGroup(primary, replica, ports)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)


def _answers(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=1) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def numbered(i: int) -> int:
    time.sleep(0.01)
    return i * 3


def test_a_failover_is_followed_and_every_job_resolves_once(sentinels, cluster, start_worker):
    worker = start_worker(sentinels.url, 2, "sentinel-node")
    with executor(sentinels.url, cluster=cluster) as ex:
        assert ex.submit(pow, 2, 8).result(DEADLINE) == 256
        futures = [ex.submit(numbered, i) for i in range(300)]
        wait_until(lambda: sum(f.done() for f in futures) >= 50, "some jobs done")
        assert sentinels.primary.process is not None
        sentinels.primary.process.kill()  # SIGKILL, under load
        assert [f.result(4 * DEADLINE) for f in futures] == [i * 3 for i in range(300)]
        assert sentinels.primary_port() == sentinels.replica.port  # the replica took over
        assert ex.submit(pow, 3, 3).result(DEADLINE) == 27  # new jobs go to the new primary
    assert worker.proc.poll() is None  # the worker followed it, no restart


def test_a_malformed_sentinel_url_is_refused_before_any_io():
    for url, why in [
        ("redis+sentinel://127.0.0.1:26379", "service name"),
        ("redis+sentinel://127.0.0.1/primary", "HOST:PORT"),
        ("redis+sentinel://127.0.0.1:1,h:x/primary", "HOST:PORT"),
    ]:
        with pytest.raises(ConfigError, match=why):
            rdispy.Executor(url, connect_timeout=1)


def test_a_relay_given_a_sentinel_url_follows_the_failover(
    sentinels, cluster, start_worker, start_relay
):
    relay = start_relay(sentinels.url, "--discovery-port", "0", "--secret", "sentinel-relay")
    worker = start_worker(relay.url, 2, "behind-relay", "--secret", "sentinel-relay")
    with executor(sentinels.url, cluster=cluster, secret="sentinel-relay") as ex:
        futures = [ex.submit(numbered, i) for i in range(200)]
        wait_until(lambda: sum(f.done() for f in futures) >= 30, "some jobs done")
        assert sentinels.primary.process is not None
        sentinels.primary.process.kill()
        assert [f.result(4 * DEADLINE) for f in futures] == [i * 3 for i in range(200)]
        assert {f.node for f in futures} == {"behind-relay"}
    assert worker.proc.poll() is None and relay.proc.poll() is None
