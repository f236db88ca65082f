"""Whole nodes lost (SIGKILL, or frozen past their heartbeat TTL as in a partition): their jobs
are taken back on the evidence of missed heartbeats, never of idle time, and each result reaches
the client exactly once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

import rdispy
from rdispy.monitor.state import read_state
from rdispy.nodes import live_nodes
from tests.conftest import HEARTBEAT
from tests.faults.figures import ResultCounter, pending_total
from tests.faults.ledger import executions, record, rows, wait_rows
from tests.helpers import wait_until

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
    redis_url, rclient, cluster, keys, start_worker, tmp_path
):
    ledger = tmp_path / "ledger"
    start_worker(redis_url, 1, "busy")
    start_worker(redis_url, 1, "idle")  # an idle node that could steal the job, but must not
    with rdispy.Executor(redis_url, cluster=cluster) as ex:
        long = ex.submit(record, str(ledger), "long", T_DEAD * 4)
        assert long.result(60) == "long"
    assert executions(ledger) == {"long": 1}
    assert pending_total(rclient, keys, "busy", "idle") == 0


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


JOBS, SECONDS = 40, 0.5


def rerun_elsewhere(ledger: Path, pids: set[int]) -> bool:
    """Whether a job first run by one of ``pids`` has run again in another process."""
    first: dict[str, int] = {}
    for tag, pid in rows(ledger):
        if first.get(tag) in pids and pid not in pids:
            return True
        first.setdefault(tag, pid)
    return False


@pytest.mark.parametrize("reentrant", [True, False], ids=["reentrant", "not-reentrant"])
def test_whole_node_crash_under_load(
    redis_url, rclient, cluster, keys, start_worker, tmp_path, figures, reentrant
):
    """Test 4: two nodes share the queue; node A's supervisor and every consumer's process group
    are SIGKILLed at once.  A's in-flight jobs finish on B exactly once (reentrant) or end as
    NodeLost (not), A's record expires, everything else runs once."""
    ledger = tmp_path / "ledger"
    a = start_worker(redis_url, 2, "node-a")
    start_worker(redis_url, 2, "node-b")
    a_pids = {p.pid for p in a.consumers()}
    tags = [f"j{i}" for i in range(JOBS)]
    with rdispy.Executor(redis_url, cluster=cluster, max_retries=2 if reentrant else 0) as ex:
        results = ResultCounter(ex)
        futures = {tag: ex.submit(record, str(ledger), tag, SECONDS) for tag in tags}
        deadline = time.monotonic() + 30
        while len({pid for _, pid in rows(ledger) if pid in a_pids}) < 2:
            assert time.monotonic() < deadline, "node A never got busy"
            time.sleep(0.01)
        figures.fault()
        os.kill(a.pid, signal.SIGKILL)
        for pid in a_pids:
            os.killpg(pid, signal.SIGKILL)  # each consumer leads its job's process group
        a.proc.wait(5)

        def charged() -> bool:  # a lost attempt was counted: the job was requeued or failed
            ids = [f.job_id for f in futures.values()]
            return any(rclient.hget(keys.job(i), "n") for i in ids)

        wait_until(charged, "node A's jobs to be taken back", 60)
        figures.detected()
        if reentrant:  # requeued at the back of the queue: they run again after the backlog
            wait_until(lambda: rerun_elsewhere(ledger, a_pids), "a job of node A to run again", 60)
        outcomes: dict[str, object] = {}
        for tag, future in futures.items():
            try:
                outcomes[tag] = future.result(60)
            except rdispy.NodeLost as exc:
                outcomes[tag] = exc
        figures.recovered()
        duplicates = results.duplicates(wait=HEARTBEAT * 2)
    runs = executions(ledger)
    first_pid = {}
    for tag, pid in rows(ledger):
        first_pid.setdefault(tag, pid)
    lost_on_a = [t for t in tags if runs[t] == 2 or isinstance(outcomes[t], rdispy.NodeLost)]
    assert 1 <= len(lost_on_a) <= 2  # at most A's two running jobs
    assert all(first_pid[t] in a_pids for t in lost_on_a)
    for tag in tags:
        if tag not in lost_on_a:
            assert outcomes[tag] == tag and runs[tag] == 1
        elif reentrant:
            assert outcomes[tag] == tag and runs[tag] == 2
        else:
            assert runs[tag] == 1 and "node-a" in str(outcomes[tag])
    assert duplicates == 0
    wait_until_gone = time.monotonic() + T_DEAD * 4
    while rclient.exists(keys.node("node-a")) and time.monotonic() < wait_until_gone:
        time.sleep(HEARTBEAT / 5)
    assert not rclient.exists(keys.node("node-a"))  # its record expired
    assert {n["name"] for n in live_nodes(rclient, keys)} == {"node-b"}
    # what `rdispy status` shows: node A is gone from the live nodes
    assert [n.name for n in read_state(rclient, keys).nodes] == ["node-b"]
    assert pending_total(rclient, keys, "node-a", "node-b") == 0
    figures.outcome(
        runs, tags, len(outcomes), duplicates, fault=f"node SIGKILL, reentrant={reentrant}"
    )


def test_a_frozen_nodes_job_moves_once_its_record_lapses_not_a_second_ttl_later(
    redis_url, cluster, start_worker, tmp_path
):
    """A node frozen (or cut off) while Redis answers everyone else: its job is taken over once
    its record has lapsed (a TTL after its last heartbeat) and a heartbeat more, never sooner.
    Only after a Redis outage do the others wait a further TTL (test_redis_outage), where every
    record lapses at once; before, a lost node's job always waited that second TTL too."""
    beat = 1.0
    ttl = beat * 5  # HEARTBEATS_MISSED
    ledger = tmp_path / "ledger"
    workers = [start_worker(redis_url, 1, name, "--heartbeat", str(beat)) for name in "ab"]
    time.sleep(ttl + 2 * beat)  # long enough for their beats to show Redis steady
    with rdispy.Executor(redis_url, cluster=cluster, max_retries=1) as ex:
        job = ex.submit(record, str(ledger), "job", 1.0)
        ((_, pid),) = wait_rows(ledger, 1)
        frozen = next(w for w in workers if pid in {c.pid for c in w.consumers()})
        freeze(frozen.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            assert job.result(30) == "job"
            took_over = time.monotonic() - frozen_at - 1.0  # the rerun sleeps 1 s
        finally:
            freeze(frozen.pid, signal.SIGCONT)
    assert executions(ledger) == {"job": 2}
    assert ttl - beat <= took_over < 2 * ttl - beat / 2, took_over
