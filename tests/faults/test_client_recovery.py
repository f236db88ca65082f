"""A client that crashes can reattach by its client id and collect its jobs (dispy's
recover_jobs): results that waited for it, and jobs still queued or running."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rdispy
from rdispy import defaults
from tests.faults.ledger import executions

pytestmark = pytest.mark.integration

CLIENT = textwrap.dedent("""
    import sys, time, rdispy
    from tests.faults.ledger import record
    ex = rdispy.Executor(sys.argv[1], cluster=sys.argv[2], keep_results=sys.argv[4] == "keep")
    futures = [ex.submit(record, sys.argv[3], f"j{i}", 0.2) for i in range(30)]
    print(ex.client_id, flush=True)
    for future in futures[:int(sys.argv[5])]:
        future.result(30)
    time.sleep(1)  # the listener deletes what it read (unless told to keep it)
    print("collected", flush=True)
    time.sleep(60)
""")


def crash_after(redis_url: str, cluster: str, ledger: Path, collect: int, keep: bool) -> str:
    """Run a client that submits 30 jobs, reads ``collect`` results and is SIGKILLed; its id."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CLIENT,
            redis_url,
            cluster,
            str(ledger),
            "keep" if keep else "-",
            str(collect),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    client_id = proc.stdout.readline().strip()
    assert proc.stdout.readline().strip() == "collected"
    proc.kill()
    proc.wait()
    proc.stdout.close()
    return client_id


def test_crashed_client_reattaches_and_collects_every_uncollected_job(
    redis_url, cluster, start_worker, tmp_path
):
    ledger = tmp_path / "ledger"
    start_worker(redis_url, 2)
    client_id = crash_after(redis_url, cluster, ledger, 5, keep=False)
    with rdispy.Executor(redis_url, cluster=cluster, client_id=client_id) as ex:
        futures = ex.recover_jobs()
        tags = {f.job_id: f.result(60) for f in futures}
        # every job the crashed client had not collected comes back, each exactly once
        assert len(futures) == len(tags) >= 25
        assert set(tags.values()) >= {f"j{i}" for i in range(5, 30)}
        assert ex.submit(pow, 2, 2).result(30) == 4  # and the session goes on
    assert set(executions(ledger).values()) == {1}


@pytest.mark.parametrize("keep", [True, False])
def test_a_client_that_kept_its_results_gets_every_one_again_and_they_expire(
    redis_url, cluster, keys, rclient, start_worker, tmp_path, keep
):
    ledger = tmp_path / "ledger"
    start_worker(redis_url, 2)
    client_id = crash_after(redis_url, cluster, ledger, 30, keep=keep)
    futures = rdispy.recover(redis_url, client_id, cluster=cluster, timeout=60)
    if not keep:
        assert futures == []  # it had read every result: nothing is left to collect
        return
    # every result comes back although the crashed client had read them all, each exactly once
    assert [f.result(0) for f in futures] == [f"j{i}" for i in range(30)]
    assert set(executions(ledger).values()) == {1}
    # recover() collected everything and closed cleanly: the results stream is gone, and the
    # job records expire with the result TTL
    assert rclient.exists(keys.results(client_id)) == 0
    for future in futures:
        assert 0 < rclient.ttl(keys.job(future.job_id)) <= defaults.RESULT_TTL


MAPPER = textwrap.dedent("""
    import sys, time, rdispy
    def slow_square(n):
        time.sleep(0.05)
        if n == 13:
            raise ValueError("thirteen")
        return n * n
    ex = rdispy.Executor(sys.argv[1], cluster=sys.argv[2])
    chunksize = int(sys.argv[3])
    results = ex.map(slow_square, range(20), chunksize=chunksize)
    print(ex.client_id, flush=True)
    print("collected", flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize("chunksize", [1, 4])
def test_recovered_map_jobs_give_one_future_per_call_with_its_value(
    redis_url, cluster, start_worker, chunksize
):
    start_worker(redis_url, 2)
    proc = subprocess.Popen(
        [sys.executable, "-c", MAPPER, redis_url, cluster, str(chunksize)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    client_id = proc.stdout.readline().strip()
    assert proc.stdout.readline().strip() == "collected"
    proc.kill()
    proc.wait()
    proc.stdout.close()
    futures = rdispy.recover(redis_url, client_id, cluster=cluster, timeout=60)
    assert len(futures) == 20
    assert all(f.done() for f in futures)
    for n, future in enumerate(futures):
        if n == 13:
            with pytest.raises(ValueError, match="thirteen"):
                future.result(0)
        elif chunksize > 1 and 13 < n < 16:  # after the error in its chunk: never run
            with pytest.raises(rdispy.JobError, match="earlier call of its map chunk"):
                future.result(0)
        else:
            assert future.result(0) == n * n
