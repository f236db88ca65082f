"""Redis unreachable for 30 s (fault test 13): clients and workers wait with a capped backoff and
do not crash, running jobs keep running and publish once Redis is back, a submit made during the
outage is buffered in the client and sent afterwards, and no node is declared dead."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import as_completed

import pytest

from tests.faults.figures import duplicate_results, execution_spread, report, watch_duplicates
from tests.faults.ledger import executions, record, wait_rows
from tests.helpers import DEADLINE, executor

pytestmark = pytest.mark.integration

OUTAGE = 30.0


def test_redis_frozen_for_30s_loses_nothing_and_declares_no_node_dead(
    private_server, cluster, start_worker, tmp_path, caplog
):
    server = private_server()
    watch_duplicates(caplog)
    ledger = tmp_path / "ledger"
    nodes = [start_worker(server.url, 2, "n1"), start_worker(server.url, 2, "n2")]
    with executor(server.url, cluster=cluster) as ex:
        running = [ex.submit(record, str(ledger), f"r{i}", 4.0) for i in range(4)]
        queued = [ex.submit(record, str(ledger), f"q{i}", 0.2) for i in range(8)]
        wait_rows(ledger, 4)
        assert server.pid is not None
        os.kill(server.pid, signal.SIGSTOP)
        t_fault = time.monotonic()
        try:
            time.sleep(2.0)
            # buffered: submit returns at once and the job goes out when Redis is back
            during = ex.submit(record, str(ledger), "during", 0.0)
            submit_took = time.monotonic() - t_fault - 2.0
            assert submit_took < 1.0
            time.sleep(OUTAGE - 2.0)
            assert not during.done()
            for node in nodes:
                assert node.proc.poll() is None
        finally:
            os.kill(server.pid, signal.SIGCONT)
        t_back = time.monotonic()
        futures = [*running, *queued, during]
        first = next(as_completed(futures, DEADLINE)) and time.monotonic()
        results = [f.result(DEADLINE) for f in futures]
        t_done = time.monotonic()
        assert results == [f"r{i}" for i in range(4)] + [f"q{i}" for i in range(8)] + ["during"]
        assert ex.submit(pow, 2, 6).result(DEADLINE) == 64
    counts = executions(ledger)
    assert set(counts.values()) == {1}, counts  # nothing ran twice: nobody took a job over
    assert duplicate_results(caplog) == 0
    for node in nodes:
        assert node.proc.poll() is None  # rode it out
        out = node.output()
        assert "restarting consumers" not in out  # was not declared dead
        assert "stopped heartbeating" not in out  # nor declared another node dead
    report(
        "13 Redis frozen 30 s (SIGSTOP) with jobs running",
        outage_s=t_back - t_fault,
        submit_during_outage_s=submit_took,
        first_result_after_resume_s=first - t_back,
        recovery_s=t_done - t_back,
        executions=execution_spread(counts),
        nodes_declared_dead=0,
        jobs_lost=0,
        duplicate_results=duplicate_results(caplog),
    )
