"""A Redis that restarts empty loses no submitted job: clients send again what is unfinished,
workers re-register and recreate their group; and nobody crashes while it is away."""

from __future__ import annotations

import time

import pytest

import rdispy
from rdispy.nodes import live_nodes
from rdispy.server import EmbeddedServer, free_port
from tests.conftest import HEARTBEAT
from tests.faults.figures import execution_spread, report
from tests.faults.ledger import executions, record, wait_rows

pytestmark = pytest.mark.integration


@pytest.fixture
def restartable_server():
    port = free_port()
    servers = [EmbeddedServer(port=port).start()]

    def restart(down_for: float = 0.0) -> EmbeddedServer:
        servers[-1].kill()
        time.sleep(down_for)
        servers.append(EmbeddedServer(port=port).start())
        return servers[-1]

    yield servers[0], restart
    for server in servers:
        server.stop()


@pytest.mark.parametrize("down_for", [0.0, 3.0])
def test_jobs_survive_a_server_that_restarts_empty(
    restartable_server, cluster, keys, start_worker, tmp_path, down_for
):
    server, restart = restartable_server
    ledger = tmp_path / "ledger"
    node = start_worker(server.url, 2)
    with rdispy.Executor(server.url, cluster=cluster) as ex:
        futures = [ex.submit(record, str(ledger), f"j{i}", 0.3) for i in range(20)]
        wait_rows(ledger, 3)
        t_fault = time.monotonic()
        fresh = restart(down_for)
        t_back = time.monotonic()
        results = [f.result(60) for f in futures]
        t_done = time.monotonic()
        assert results == [f"j{i}" for i in range(20)]  # each exactly once, in its own future
        counts = executions(ledger)
        assert set(counts) == {f"j{i}" for i in range(20)}
        assert max(counts.values()) <= 2
        report(
            f"11 Redis restarts empty (down {down_for:g} s)",
            outage_s=t_back - t_fault,
            recovery_s=t_done - t_back,
            executions=execution_spread(counts),
            jobs_lost=0,
        )
        assert ex.submit(pow, 2, 4).result(30) == 16
    assert node.proc.poll() is None  # the worker rode it out
    import redis

    client = redis.Redis.from_url(fresh.url)
    deadline = time.monotonic() + HEARTBEAT * 10
    while not live_nodes(client, keys) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [n["name"] for n in live_nodes(client, keys)] == [node.name]
    client.close()


def test_a_frozen_redis_declares_no_node_dead_and_runs_no_job_twice(
    restartable_server, cluster, start_worker, tmp_path
):
    import os
    import signal

    server, _ = restartable_server
    ledger = tmp_path / "ledger"
    nodes = [start_worker(server.url, 1, "n1"), start_worker(server.url, 1, "n2")]
    with rdispy.Executor(server.url, cluster=cluster) as ex:
        futures = [ex.submit(record, str(ledger), f"j{i}", 3.0) for i in range(2)]
        wait_rows(ledger, 2)
        os.kill(server.pid, signal.SIGSTOP)  # unreachable for 8 heartbeat TTLs
        time.sleep(HEARTBEAT * 5 * 8)
        os.kill(server.pid, signal.SIGCONT)
        assert sorted(f.result(60) for f in futures) == ["j0", "j1"]
        assert ex.submit(pow, 2, 5).result(30) == 32
    assert executions(ledger) == {"j0": 1, "j1": 1}
    for node in nodes:
        assert node.proc.poll() is None  # nobody crashed
        assert "restarting consumers" not in node.output()  # nor was declared dead
