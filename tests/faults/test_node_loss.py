"""Whole nodes lost (SIGKILL, or frozen past their heartbeat TTL as in a partition): their jobs
are taken back on the evidence of missed heartbeats, never of idle time, and each result reaches
the client exactly once."""

from __future__ import annotations

import signal
import time

import psutil
import pytest

import rdispy
from rdispy.worker.node import live_nodes
from tests.conftest import HEARTBEAT
from tests.faults.ledger import executions, record, rows, wait_rows

pytestmark = pytest.mark.integration

T_DEAD = HEARTBEAT * 5  # HEARTBEATS_MISSED intervals


def freeze(pid: int, sig: int) -> None:
    procs = [psutil.Process(pid), *psutil.Process(pid).children()]
    for proc in procs:
        proc.send_signal(sig)


@pytest.mark.parametrize("retries", [1, 0])
def test_jobs_of_a_sigkilled_node_are_retried_or_fail_with_node_lost(
    redis_url, cluster, start_worker, tmp_path, retries
):
    ledger = tmp_path / "ledger"
    doomed = start_worker(redis_url, 2, "doomed")
    with rdispy.Executor(redis_url, cluster=cluster, max_retries=retries) as ex:
        futures = [ex.submit(record, str(ledger), f"j{i}", 2.0) for i in range(2)]
        wait_rows(ledger, 2)
        started = time.monotonic()
        for proc in [*doomed.consumers(), psutil.Process(doomed.pid)]:
            proc.kill()  # the whole node at once: nobody settles its entries locally
        doomed.proc.wait(5)
        start_worker(redis_url, 2, "survivor")
        if retries:
            assert sorted(f.result(30) for f in futures) == ["j0", "j1"]
            assert executions(ledger) == {"j0": 2, "j1": 2}
        else:
            for future in futures:
                with pytest.raises(rdispy.NodeLost, match="doomed.*stopped heartbeating"):
                    future.result(30)
            assert executions(ledger) == {"j0": 1, "j1": 1}
        assert time.monotonic() - started < T_DEAD + 10


def test_a_long_job_is_not_run_twice_while_its_node_is_alive(
    redis_url, cluster, start_worker, tmp_path
):
    ledger = tmp_path / "ledger"
    start_worker(redis_url, 1, "busy")
    start_worker(redis_url, 1, "idle")  # an idle node that could steal the job, but must not
    with rdispy.Executor(redis_url, cluster=cluster) as ex:
        long = ex.submit(record, str(ledger), "long", T_DEAD * 4)
        assert long.result(60) == "long"
    assert executions(ledger) == {"long": 1}


def test_a_partitioned_node_is_fenced_and_comes_back_as_a_new_incarnation(
    redis_url, cluster, keys, start_worker, tmp_path, rclient
):
    ledger = tmp_path / "ledger"
    frozen = start_worker(redis_url, 1, "frozen")
    with rdispy.Executor(redis_url, cluster=cluster, max_retries=2) as ex:
        job = ex.submit(record, str(ledger), "job", 1.0)
        wait_rows(ledger, 1)
        incarnation = rclient.hget(keys.node("frozen"), "incarnation")
        freeze(frozen.pid, signal.SIGSTOP)  # no heartbeats, no results: as if cut off
        try:
            start_worker(redis_url, 1, "rescuer")
            assert job.result(30) == "job"  # the rescuer ran it again
            assert executions(ledger) == {"job": 2}
        finally:
            freeze(frozen.pid, signal.SIGCONT)
        # the frozen consumer now finishes its job late: its result must be dropped
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            record_now = rclient.hget(keys.node("frozen"), "incarnation")
            if record_now and record_now != incarnation:
                break
            time.sleep(0.05)
        assert record_now and record_now != incarnation
        assert "incarnation" in frozen.output() and "restarting consumers" in frozen.output()
        names = {n["name"] for n in live_nodes(rclient, keys)}
        assert names == {"frozen", "rescuer"}
        again = ex.submit(record, str(ledger), "after", 0)
        assert again.result(30) == "after"
        time.sleep(HEARTBEAT * 2)
        results = rclient.xlen(keys.results(ex.client_id))
        assert results == 0  # no late duplicate is waiting for the client
    assert [tag for tag, _ in rows(ledger)].count("job") == 2
