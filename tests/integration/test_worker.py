"""`rdispy worker`: registration, heartbeats, consumer restarts, draining, waiting for Redis."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

import rdispy
from rdispy import defaults
from rdispy.nodes import live_nodes
from rdispy.server import EmbeddedServer, free_port
from tests.conftest import HEARTBEAT
from tests.faults.ledger import record, rows, wait_rows

pytestmark = pytest.mark.integration


def wait_until(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def record_start(path: str, seconds: float) -> int:
    record(path, "start", seconds)
    return os.getpid()


def test_node_registers_with_its_identity_and_heartbeat_expires(
    redis_url, keys, start_worker, rclient
):
    worker = start_worker(redis_url, 2, "node-x")
    record = wait_until(lambda: live_nodes(rclient, keys), what="registration")[0]
    assert record["name"] == "node-x" and record["cpus"] == "2"
    assert record["ip"] == "127.0.0.1" and int(record["pid"]) == worker.pid
    for field in ("host", "python", "cloudpickle", "rdispy", "incarnation", "hb"):
        assert record[field]
    ttl_ms = rclient.pttl(keys.node("node-x"))
    assert 0 < ttl_ms <= HEARTBEAT * defaults.HEARTBEATS_MISSED * 1000
    # the heartbeat is what keeps it: a stopped (SIGSTOP) node expires
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: not rclient.exists(keys.node("node-x")), HEARTBEAT * 8, "expiry")
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    wait_until(lambda: rclient.exists(keys.node("node-x")), HEARTBEAT * 8, "re-registration")


def test_sigkilled_consumer_is_replaced_and_node_keeps_serving(redis_url, cluster, start_worker):
    worker = start_worker(redis_url, 2)
    victim = worker.wait_consumers(2)[0]
    victim.kill()
    victim.wait(5)
    replaced = wait_until(
        lambda: (
            (kids := worker.wait_consumers(2)) and victim.pid not in {k.pid for k in kids} and kids
        ),
        what="replacement consumer",
    )
    assert len(replaced) == 2
    with rdispy.Executor(redis_url, cluster=cluster) as ex:
        assert list(ex.map(abs, range(-20, 0), chunksize=1)) == list(range(20, 0, -1))


def test_sigterm_drains_running_jobs_and_deregisters(
    redis_url, cluster, keys, start_worker, rclient, tmp_path
):
    ledger = tmp_path / "started"
    worker = start_worker(redis_url, 1)
    with rdispy.Executor(redis_url, cluster=cluster) as ex:
        running = ex.submit(record_start, str(ledger), 1.5)
        wait_rows(ledger, 1)  # the job started
        queued = ex.submit(record_start, str(ledger), 0)
        os.kill(worker.pid, signal.SIGTERM)
        assert running.result(30) > 0  # the running job finishes and its result arrives
        assert worker.proc.wait(15) == 0
        assert not rclient.exists(keys.node(worker.name))
        assert not queued.done()  # no new job was taken while draining
        assert len(rows(ledger)) == 1
        second = start_worker(redis_url, 1, "node-late")
        assert queued.result(30) in {p.pid for p in psutil.Process(second.pid).children()}


def test_worker_waits_for_a_redis_that_starts_later(cluster, start_worker, tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    worker = start_worker(url, 1, "patient", wait_ready=False)
    wait_until(lambda: "waiting for Redis" in worker.output(), 10, "waiting log line")
    assert worker.proc.poll() is None
    server = EmbeddedServer(port=port).start()
    try:
        worker.wait_consumers(1, 15)
        with rdispy.Executor(url, cluster=cluster) as ex:
            assert ex.submit(pow, 3, 3).result(30) == 27
        assert "connected to Redis" in worker.output()
    finally:
        worker.stop()
        server.stop()


def test_worker_without_url_is_a_usage_error(tmp_path: Path):
    from click.testing import CliRunner

    from rdispy.cli import main

    result = CliRunner().invoke(main, ["worker"], env={"RDISPY_REDIS": ""})
    assert result.exit_code == 2 and "no Redis URL" in result.output
