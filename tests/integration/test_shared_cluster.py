"""SharedJobCluster: several client processes share the nodes, each gets only its own results,
and the fair scheduler keeps a big client from starving small ones; a scheduler that dies loses
nothing and a restarted one carries on."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import redis

import rdispy as dispy
from rdispy.keys import Keys
from rdispy.scheduler import fair
from rdispy.scripts import Scripts
from tests.faults.ledger import record, tags
from tests.helpers import DEADLINE, wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

CLIENT = textwrap.dedent("""
    import json, sys, time
    import rdispy as dispy

    def work(tag, i):
        time.sleep(0.05)
        return tag, i

    url, cluster, tag, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    c = dispy.SharedJobCluster(work, redis_url=url, cluster=cluster, scheduler=False)
    started = time.time()
    jobs = [c.submit(tag, i) for i in range(count)]
    print("submitted", flush=True)
    results = [job(timeout=120) for job in jobs]
    finished = time.time()
    c.close()
    ok = results == [[tag, i] for i in range(count)] or results == [(tag, i) for i in range(count)]
    print(json.dumps({"tag": tag, "ok": ok, "started": started, "finished": finished}), flush=True)
""")


def launch_client(url: str, cluster: str, tag: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CLIENT, url, cluster, tag, str(count)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def submitted(proc: subprocess.Popen[str]) -> subprocess.Popen[str]:
    """Wait until the client process has submitted all its jobs."""
    assert proc.stdout is not None and proc.stdout.readline().strip() == "submitted"
    return proc


def start_client(url: str, cluster: str, tag: str, count: int) -> subprocess.Popen[str]:
    return submitted(launch_client(url, cluster, tag, count))


def finish(proc: subprocess.Popen[str]) -> dict:
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def scheduler_process(redis_url, cluster):
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rdispy",
                "scheduler",
                "--redis",
                redis_url,
                "--cluster",
                cluster,
            ],
            cwd=ROOT,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


def test_four_clients_share_nodes_fairly_and_each_gets_its_own_results(
    redis_url, cluster, start_worker, scheduler_process
):
    start_worker(redis_url, 1, "node-a")
    start_worker(redis_url, 1, "node-b")
    scheduler_process()
    big = start_client(redis_url, cluster, "big", 240)  # 6 s of work on 2 cores
    # the small clients start together, so a slow interpreter start on a loaded machine delays
    # them once, not three times over
    small = [
        submitted(p) for p in [launch_client(redis_url, cluster, f"s{i}", 8) for i in range(3)]
    ]
    reports = [finish(p) for p in small]
    big_report = finish(big)
    assert big_report["ok"] and all(r["ok"] for r in reports)
    for report in reports:
        # round-robin: each small client is done long before the big one, not queued behind it
        assert report["finished"] < big_report["finished"] - 1.0, (report, big_report)


def test_a_scheduler_that_dies_loses_nothing_and_a_restarted_one_carries_on(
    redis_url, cluster, keys, start_worker, scheduler_process, rclient
):
    start_worker(redis_url, 2)
    first = scheduler_process()
    client = start_client(redis_url, cluster, "c", 60)
    time.sleep(0.7)
    first.send_signal(signal.SIGKILL)
    first.wait(5)
    time.sleep(0.5)
    queued = sum(rclient.xlen(k) for k in rclient.keys(keys.fair_queue("*")))
    assert queued > 0  # jobs wait in the client's queue, none lost
    scheduler_process()
    report = finish(client)
    assert report["ok"]


def test_shared_cluster_schedules_in_process_when_no_scheduler_runs(
    redis_url, cluster, start_worker
):
    start_worker(redis_url, 2)

    def double(x):
        return 2 * x

    with dispy.SharedJobCluster(double, redis_url=redis_url, cluster=cluster) as c:
        jobs = [c.submit(i) for i in range(10)]
        assert [job(timeout=30) for job in jobs] == [2 * i for i in range(10)]
        queued = c.submit(5)
        assert queued(timeout=30) == 10


def test_cancel_reaches_a_job_waiting_in_the_fair_queue(redis_url, cluster, start_worker, tmp_path):
    start_worker(redis_url, 1)
    ledger = tmp_path / "ledger"

    with dispy.SharedJobCluster(record, redis_url=redis_url, cluster=cluster) as c:
        blockers = [c.submit(str(ledger), f"b{i}", 0.5) for i in range(4)]
        victim = c.submit(str(ledger), "victim", 0)
        assert c.cancel(victim) == 0
        assert victim(timeout=30) is None and victim.status == dispy.DispyJob.Cancelled
        assert [job(timeout=30) for job in blockers] == [f"b{i}" for i in range(4)]
    ran = tags(ledger)
    assert "victim" not in ran and sorted(ran) == [f"b{i}" for i in range(4)]


def _scans(client: redis.Redis) -> int:
    stats: Any = client.info("commandstats")
    return int(stats.get("cmdstat_scan", {}).get("calls", 0))


def test_the_scheduler_finds_queues_by_their_index_not_by_scanning(
    private_server, cluster, start_worker
):
    """Idle or busy, a scheduler's passes scan nothing; a queue missing from the index (an
    older client, or one killed mid-write) is indexed by the one SCAN at its start."""
    srv = private_server()
    admin = redis.Redis(port=srv.port)
    keys = Keys(cluster)
    start_worker(srv.url, 2)
    with dispy.SharedJobCluster(pow, redis_url=srv.url, cluster=cluster, scheduler=False) as c:
        client_id = c._dispatcher.client_id
        jobs = [c.submit(2, i) for i in range(20)]
        wait_until(lambda: admin.xlen(keys.fair_queue(client_id)) == 20, "jobs queued")
        assert admin.zrange(keys.fair_queues, 0, -1) == [client_id.encode()]
        admin.delete(keys.fair_queues)  # as if a client had queued them without the index
        scheduler, thread = fair.start_thread(srv.url, keys)
        try:
            assert [job(timeout=DEADLINE) for job in jobs] == [2**i for i in range(20)]
            wait_until(lambda: not admin.exists(keys.fair_queues), "the empty queue forgotten")
            scans = _scans(admin)
            assert scans >= 1  # the one at start
            later = [c.submit(3, i) for i in range(20)]
            assert [job(timeout=DEADLINE) for job in later] == [3**i for i in range(20)]
            time.sleep(20 * fair.IDLE_PAUSE)  # idle passes
            assert _scans(admin) == scans
        finally:
            scheduler.stop()
            thread.join(5)
    admin.close()


def test_a_client_queue_is_forgotten_only_when_found_empty(redis_url, cluster, rclient):
    keys = Keys(cluster)
    scripts = Scripts(rclient)
    queue, index = keys.fair_queue("q1"), keys.fair_queues
    rclient.zadd(index, {"q1": 1.0})
    rclient.xadd(queue, {"id": "q1-1"})
    assert scripts.forget_queue(keys=[queue, index], args=["q1"]) == 0
    assert rclient.zscore(index, "q1") == 1.0
    rclient.delete(queue)
    assert scripts.forget_queue(keys=[queue, index], args=["q1"]) == 1
    assert rclient.zscore(index, "q1") is None
