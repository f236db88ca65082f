"""Replica failover (fault test 14): a lagging replica is promoted (REPLICAOF NO ONE) and the
clients' and workers' address is pointed at it, as Sentinel or a DNS/proxy switch does.  Writes
the primary had acknowledged but not yet replicated are gone; the client finds the jobs it had
submitted that the new primary does not hold and sends them again; every job resolves exactly
once.  The replication link runs through a proxy that holds its traffic, which makes the lag
real: the replica never sees the primary's last writes."""

from __future__ import annotations

import time
from concurrent.futures import as_completed

import pytest
import redis

from tests.faults.figures import duplicate_results, execution_spread, report, watch_duplicates
from tests.faults.ledger import executions, record
from tests.faults.proxy import Proxy
from tests.helpers import DEADLINE, executor, wait_until

pytestmark = pytest.mark.integration


def test_promoting_a_lagging_replica_loses_no_job(
    private_server, cluster, start_worker, tmp_path, caplog
):
    watch_duplicates(caplog)
    primary = private_server()
    assert primary.port is not None
    link = Proxy(primary.port).start()  # the replication link
    replica = private_server(extra_args=("--replicaof", "127.0.0.1", str(link.port)))
    front = Proxy(primary.port).start()  # what clients and workers connect to
    url = f"redis://127.0.0.1:{front.port}/0"
    admin_p, admin_r = redis.Redis.from_url(primary.url), redis.Redis.from_url(replica.url)
    ledger = tmp_path / "ledger"
    try:
        wait_until(
            lambda: admin_r.info("replication").get("master_link_status") == "up", "replication"
        )
        node = start_worker(url, 2, "n1")
        with executor(url, cluster=cluster) as ex:
            early = [ex.submit(record, str(ledger), f"a{i}", 0.2) for i in range(10)]
            assert [f.result(DEADLINE) for f in early[:4]] == ["a0", "a1", "a2", "a3"]
            assert admin_p.execute_command("WAIT", 1, 5000) == 1  # the replica has caught up
            link.hold()  # from now on the replica lags
            late = [ex.submit(record, str(ledger), f"b{i}", 0.2) for i in range(10)]
            wait_until(lambda: all(f.entry_id for f in late), "the late jobs acknowledged")
            time.sleep(0.3)
            t_fault = time.monotonic()
            primary.kill()
            admin_r.execute_command("REPLICAOF", "NO", "ONE")  # promote the lagging replica
            assert replica.port is not None
            front.switch(replica.port)
            t_switched = time.monotonic()
            futures = early + late
            first = next(as_completed(futures, DEADLINE)) and time.monotonic()
            results = [f.result(DEADLINE) for f in futures]
            t_done = time.monotonic()
            assert results == [f"a{i}" for i in range(10)] + [f"b{i}" for i in range(10)]
            assert ex.submit(pow, 2, 7).result(DEADLINE) == 128
        resent = [r.getMessage() for r in caplog.records if "jobs it lost again" in r.getMessage()]
        assert resent and "sending 0 " not in resent[-1], resent  # it found what was lost
        counts = executions(ledger)
        assert len(counts) == 20 and max(counts.values()) <= 3
        assert node.proc.poll() is None
        report(
            "14 lagging replica promoted (REPLICAOF NO ONE), proxy switched",
            switch_s=t_switched - t_fault,
            first_result_after_switch_s=first - t_switched,
            recovery_s=t_done - t_switched,
            client_resent=resent[-1],
            executions=execution_spread(counts),
            jobs_lost=0,
            duplicate_results_ignored_by_client=duplicate_results(caplog),
        )
    finally:
        front.stop()
        link.stop()
        admin_p.close()
        admin_r.close()
