"""A consumer that dies mid-job: its job is retried while retries remain, then fails with
WorkerCrashed naming the cause; jobs it had only taken are not charged; the node keeps serving.

faults.md tests 1 and 2 (a consumer dies mid-job, every way, reentrant or not), 6 (poison jobs
that kill their interpreter) and 7 (a job that hangs past its timeout, blocking signals in C
with a sleeping grandchild).
"""

from __future__ import annotations

import ctypes
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

import rdispy
import rdispy as dispy
from rdispy.keys import Keys
from tests.conftest import HEARTBEAT
from tests.faults.figures import ResultCounter, pending_total
from tests.faults.ledger import note, record, rows, wait_rows
from tests.helpers import DEADLINE, wait_until

pytestmark = pytest.mark.integration


def die(ledger: str, how: str) -> None:
    note(ledger, how)
    if how == "exit":
        os._exit(7)
    if how == "segfault":
        ctypes.string_at(0)
    if how == "sysexit":
        sys.exit(3)
    if how == "exit0":
        os._exit(0)
    if how == "selfkill":
        os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("retries,executions", [(2, 2), (0, 1)])
def test_sigkilled_consumer_job_is_retried_or_fails_clearly(
    redis_url, cluster, start_worker, tmp_path, retries, executions
):
    ledger = tmp_path / "ledger"
    start_worker(redis_url, 2)
    with rdispy.Executor(redis_url, cluster=cluster, max_retries=retries) as ex:
        victim = ex.submit(record, str(ledger), "victim", 1.0)
        pid = int(wait_rows(ledger, 1)[0][1])
        bystanders = [ex.submit(record, str(ledger), f"b{i}", 0.05) for i in range(6)]
        os.kill(pid, 9)
        if executions == 2:
            assert victim.result(30) == "victim"
        else:
            with pytest.raises(rdispy.WorkerCrashed, match="SIGKILL") as info:
                victim.result(30)
            assert info.value.job_id == victim.job_id
        assert [f.result(30) for f in bystanders] == [f"b{i}" for i in range(6)]
    runs = [r[0] for r in rows(ledger)]
    assert runs.count("victim") == executions
    assert all(runs.count(f"b{i}") == 1 for i in range(6))


@pytest.mark.parametrize("retries", [1, 0])
@pytest.mark.parametrize(
    "how,cause",
    [
        ("exit", "exit code 7"),
        ("exit0", "exit code 0"),
        ("segfault", "SIGSEGV"),
        ("selfkill", "SIGKILL"),
    ],
)
def test_job_that_kills_its_interpreter_stops_after_its_retries(
    redis_url, rclient, cluster, start_worker, tmp_path, figures, how, cause, retries
):
    """Test 6: WorkerCrashed with the cause after max_retries + 1 runs; the node is not declared
    dead; the crash is charged to this job alone, never to the bystanders running beside it."""
    keys = Keys(cluster)
    ledger, others = tmp_path / "ledger", tmp_path / "others"
    worker = start_worker(redis_url, 2)
    incarnation = rclient.hget(keys.node(worker.name), "incarnation")
    with rdispy.Executor(redis_url, cluster=cluster, max_retries=retries) as ex:
        results = ResultCounter(ex)
        poison = ex.submit(die, str(ledger), how)
        wait_rows(ledger, 1)
        figures.fault()
        bystanders = [ex.submit(record, str(others), f"b{i}", 0.05) for i in range(8)]
        with pytest.raises(rdispy.WorkerCrashed, match=cause) as info:
            poison.result(DEADLINE)
        figures.detected()
        assert info.value.job_id == poison.job_id
        assert [f.result(DEADLINE) for f in bystanders] == [f"b{i}" for i in range(8)]
        figures.recovered()
        assert ex.submit(pow, 2, 3).result(DEADLINE) == 8  # the node still serves
        duplicates = results.duplicates(wait=HEARTBEAT * 2)
    assert duplicates == 0
    assert len(rows(ledger)) == retries + 1  # max_retries + 1 executions, no more
    assert Counter(r[0] for r in rows(others)) == {f"b{i}": 1 for i in range(8)}
    assert rclient.hget(keys.node(worker.name), "incarnation") == incarnation  # not declared dead
    assert worker.proc.poll() is None
    worker.wait_consumers(2)
    assert pending_total(rclient, keys, worker.name) == 0
    figures.outcome(
        Counter({"poison": len(rows(ledger)), **Counter(r[0] for r in rows(others))}),
        ["poison", *(f"b{i}" for i in range(8))],
        resolved=9,
        duplicates=duplicates,
        fault=f"poison {how}, max_retries={retries}",
    )


def test_sys_exit_in_a_job_is_the_jobs_own_error(redis_url, cluster, start_worker, tmp_path):
    start_worker(redis_url, 1)
    with rdispy.Executor(redis_url, cluster=cluster) as ex:
        with pytest.raises(SystemExit):
            ex.submit(die, str(tmp_path / "ledger"), "sysexit").result(30)
        assert ex.submit(pow, 2, 2).result(30) == 4


def crash_with_time(ledger: str) -> None:
    note(ledger, time.time())
    os._exit(9)


def test_poison_job_retries_are_spaced_by_a_growing_backoff(
    redis_url, cluster, start_worker, tmp_path
):
    ledger = tmp_path / "ledger"
    start_worker(redis_url, 2)
    with rdispy.Executor(redis_url, cluster=cluster, max_retries=2) as ex:
        with pytest.raises(rdispy.WorkerCrashed, match="exit code 9"):
            ex.submit(crash_with_time, str(ledger)).result(60)
        healthy = [ex.submit(pow, 2, i) for i in range(10)]  # bystanders are unaffected
        assert [f.result(30) for f in healthy] == [2**i for i in range(10)]
    times = [float(t) for t, _ in rows(ledger)]
    assert len(times) == 3  # max_retries + 1, no crash loop
    gaps = [b - a for a, b in zip(times[:-1], times[1:], strict=True)]
    assert gaps[0] >= 0.5 * 0.9 and gaps[1] >= 1.0 * 0.9  # RETRY_BACKOFF doubling


# -- tests 1 and 2: a consumer dies mid-job, every way, with and without retries -----------------

JOBS, SECONDS, CONSUMERS = 24, 0.5, 4


def victim_or_bystander(ledger: str, marker: str, tag: str, how: str, seconds: float) -> str:
    """Note the execution; the victim's first attempt dies ``how`` (self-inflicted ways), or
    waits for the test to signal its consumer (external ways)."""
    first = tag == "victim" and not os.path.exists(marker)
    note(ledger, tag)
    if first:
        open(marker, "w").close()
        time.sleep(0.2)
        if how == "exit1":
            os._exit(1)
        if how == "segfault":
            ctypes.string_at(0)
        if how == "sysexit3":
            sys.exit(3)
    time.sleep(seconds)
    return tag


#: way -> (the victim's executions with retries, its failure without, whether it is replaced)
WAYS = {
    "sigkill": (2, "killed by signal SIGKILL", True),
    "sigterm": (1, None, True),  # SIGTERM drains: the job finishes, then the consumer is replaced
    "exit1": (2, "exit code 1", True),
    "segfault": (2, "killed by signal SIGSEGV", True),
    "sysexit3": (1, "SystemExit", False),  # sys.exit in a job is the job's own result
}


@pytest.mark.parametrize("reentrant", [True, False], ids=["reentrant", "not-reentrant"])
@pytest.mark.parametrize("how", list(WAYS))
def test_consumer_dying_mid_job_every_way(
    redis_url, rclient, cluster, start_worker, tmp_path, figures, how, reentrant
):
    """Tests 1 and 2: one node, 4 consumers, 24 jobs; the victim's consumer dies mid-job.
    Reentrant (max_retries=2): every result exactly once, the victim re-run once, the rest run
    once.  Not reentrant: the victim ends Abandoned naming the signal or exit code, run once."""
    keys = Keys(cluster)
    ledger, marker = tmp_path / "ledger", tmp_path / "marker"
    worker = start_worker(redis_url, CONSUMERS)
    original = {p.pid for p in worker.wait_consumers(CONSUMERS)}
    victim_at = random.Random(f"{how}-{reentrant}").randrange(CONSUMERS)
    tags = [f"b{i}" for i in range(JOBS)]
    tags[victim_at] = "victim"
    retried, failure, replaced = WAYS[how]
    with dispy.JobCluster(
        victim_or_bystander,
        reentrant=reentrant,
        max_retries=2 if reentrant else 0,
        redis_url=redis_url,
        cluster=cluster,
    ) as c:
        results = ResultCounter(c)
        jobs = {tag: c.submit(str(ledger), str(marker), tag, how, SECONDS) for tag in tags}
        wait_until(lambda: any(r[0] == "victim" for r in rows(ledger)), "the victim to start")
        pid = int(next(r for r in rows(ledger) if r[0] == "victim")[1])
        time.sleep(0.05)
        figures.fault()
        if how == "sigkill":
            os.kill(pid, signal.SIGKILL)
        elif how == "sigterm":
            os.kill(pid, signal.SIGTERM)
        if replaced:
            wait_until(
                lambda: {p.pid for p in worker.wait_consumers(CONSUMERS)} - original,
                "a replacement consumer",
            )
            figures.detected()
        outcomes = {tag: job(timeout=DEADLINE) for tag, job in jobs.items()}
        figures.recovered()
        victim = jobs["victim"]
        duplicates = results.duplicates(wait=HEARTBEAT * 2)
    assert duplicates == 0
    runs = Counter(r[0] for r in rows(ledger))
    for tag in tags:
        if tag != "victim":
            assert outcomes[tag] == tag and runs[tag] == 1, (tag, runs[tag])
    if how == "sysexit3":
        assert victim.status == dispy.DispyJob.Terminated and "SystemExit" in victim.exception
        assert runs["victim"] == 1
    elif reentrant or failure is None:
        assert outcomes["victim"] == "victim" and victim.status == dispy.DispyJob.Finished
        assert runs["victim"] == (retried if reentrant else 1)
    else:
        assert outcomes["victim"] is None and victim.status == dispy.DispyJob.Abandoned
        assert re.search(f"WorkerCrashed.*{failure}", victim.exception), victim.exception
        assert runs["victim"] == 1
    assert max(runs.values()) <= (3 if reentrant else 1)
    assert worker.proc.poll() is None and len(worker.wait_consumers(CONSUMERS)) == CONSUMERS
    assert pending_total(rclient, keys, worker.name) == 0
    figures.outcome(
        runs,
        tags,
        resolved=sum(job.future.done() for job in jobs.values()),
        duplicates=duplicates,
        fault=f"consumer {how}, reentrant={reentrant}",
    )


# -- test 7: a job that hangs past its timeout -----------------------------------------------------


def hang_in_c(pidfile: str, ledger: str) -> None:
    """Block SIGTERM/SIGINT, start a sleeping grandchild, then spin inside the regex engine (C
    code that never returns to the interpreter, so no Python-level handler could run)."""
    note(ledger, "hang")
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    child = subprocess.Popen(["sleep", "600"])
    Path(pidfile).write_text(str(child.pid))
    re.match(r"(a+)+$", "a" * 64 + "b")  # catastrophic backtracking: hours of C


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_job_hanging_past_its_timeout_is_killed_with_its_group(
    redis_url, rclient, cluster, start_worker, tmp_path, figures
):
    """Test 7: TimeoutError within timeout + kill grace; the consumer and its whole process
    group, the grandchild included, are gone; a fresh consumer replaces it; no retry."""
    keys = Keys(cluster)
    pidfile, ledger = tmp_path / "grandchild", tmp_path / "ledger"
    worker = start_worker(redis_url, 2)
    timeout, grace = 2.0, 2.0  # RDISPY_KILL_GRACE default
    with dispy.JobCluster(
        hang_in_c, timeout=timeout, max_retries=2, redis_url=redis_url, cluster=cluster
    ) as c:
        results = ResultCounter(c)
        job = c.submit(str(pidfile), str(ledger))
        consumer = int(wait_rows(ledger, 1)[0][1])
        wait_until(pidfile.exists, "the grandchild to start")
        started = time.monotonic()
        figures.fault()
        grandchild = int(pidfile.read_text())
        assert job(timeout=DEADLINE) is None
        figures.detected()
        elapsed = time.monotonic() - started
        assert job.status == dispy.DispyJob.Terminated
        assert "JobTimeout" in job.exception and "timeout of 2s" in job.exception
        assert isinstance(job.future.exception(), TimeoutError)
        assert elapsed <= timeout + grace + 4 * HEARTBEAT + 1.0, elapsed  # bound, not a speed test
        wait_until(lambda: gone(consumer) and gone(grandchild), "consumer and grandchild gone")
        fresh = worker.wait_consumers(2)
        assert consumer not in {p.pid for p in fresh}
        figures.recovered()
        duplicates = results.duplicates(wait=HEARTBEAT * 2)
    assert duplicates == 0
    assert len(rows(ledger)) == 1  # no retry: a timeout is not retried
    assert pending_total(rclient, keys, worker.name) == 0
    figures.outcome(
        Counter(r[0] for r in rows(ledger)), ["hang"], 1, duplicates, fault="timeout, C spin"
    )
