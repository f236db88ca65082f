"""A consumer that dies mid-job: its job is retried while retries remain, then fails with
WorkerCrashed naming the cause; jobs it had only taken are not charged; the node keeps serving."""

from __future__ import annotations

import ctypes
import os
import sys
import time
from pathlib import Path

import pytest

import rdispy

pytestmark = pytest.mark.integration


def ledgered(ledger: str, seconds: float, value: object) -> object:
    with open(ledger, "a") as f:
        f.write(f"{value} {os.getpid()}\n")
    time.sleep(seconds)
    return value


def die(ledger: str, how: str) -> None:
    with open(ledger, "a") as f:
        f.write(f"{how} {os.getpid()}\n")
    if how == "exit":
        os._exit(7)
    if how == "segfault":
        ctypes.string_at(0)
    if how == "sysexit":
        sys.exit(3)


def rows(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def wait_rows(path: Path, count: int, timeout: float = 20.0) -> list[list[str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(rows(path)) >= count:
            return rows(path)
        time.sleep(0.02)
    raise AssertionError(f"ledger has {rows(path)}")


@pytest.mark.parametrize("retries,executions", [(2, 2), (0, 1)])
def test_sigkilled_consumer_job_is_retried_or_fails_clearly(
    redis_url, cluster, start_worker, tmp_path, retries, executions
):
    ledger = tmp_path / "ledger"
    start_worker(redis_url, 2)
    with rdispy.Executor(redis_url, cluster=cluster, max_retries=retries) as ex:
        victim = ex.submit(ledgered, str(ledger), 1.0, "victim")
        pid = int(wait_rows(ledger, 1)[0][1])
        bystanders = [ex.submit(ledgered, str(ledger), 0.05, f"b{i}") for i in range(6)]
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


@pytest.mark.parametrize("how,cause", [("exit", "exit code 7"), ("segfault", "SIGSEGV")])
def test_job_that_kills_its_interpreter_stops_after_its_retries(
    redis_url, cluster, start_worker, tmp_path, how, cause
):
    ledger = tmp_path / "ledger"
    start_worker(redis_url, 2)
    with rdispy.Executor(redis_url, cluster=cluster, max_retries=1) as ex:
        with pytest.raises(rdispy.WorkerCrashed, match=cause):
            ex.submit(die, str(ledger), how).result(30)
        assert ex.submit(pow, 2, 3).result(30) == 8  # the node still serves
    assert len(rows(ledger)) == 2  # max_retries + 1 executions, no more


def test_sys_exit_in_a_job_is_the_jobs_own_error(redis_url, cluster, start_worker, tmp_path):
    start_worker(redis_url, 1)
    with rdispy.Executor(redis_url, cluster=cluster) as ex:
        with pytest.raises(SystemExit):
            ex.submit(die, str(tmp_path / "ledger"), "sysexit").result(30)
        assert ex.submit(pow, 2, 2).result(30) == 4


def crash_with_time(ledger: str) -> None:
    with open(ledger, "a") as f:
        f.write(f"{time.time()}\n")
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
    times = [float(t) for t in ledger.read_text().split()]
    assert len(times) == 3  # max_retries + 1, no crash loop
    gaps = [b - a for a, b in zip(times[:-1], times[1:], strict=True)]
    assert gaps[0] >= 0.5 * 0.9 and gaps[1] >= 1.0 * 0.9  # RETRY_BACKOFF doubling
