"""A client that crashes can reattach by its client id and collect its jobs (dispy's
recover_jobs): results that waited for it, and jobs still queued or running."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rdispy
from tests.faults.ledger import executions

pytestmark = pytest.mark.integration

CLIENT = textwrap.dedent("""
    import sys, time, rdispy
    from tests.faults.ledger import record
    ex = rdispy.Executor(sys.argv[1], cluster=sys.argv[2])
    futures = [ex.submit(record, sys.argv[3], f"j{i}", 0.2) for i in range(30)]
    print(ex.client_id, flush=True)
    for future in futures[:5]:
        future.result(30)
    print("collected 5", flush=True)
    time.sleep(60)
""")


def test_crashed_client_reattaches_and_collects_every_uncollected_job(
    redis_url, cluster, start_worker, tmp_path
):
    ledger = tmp_path / "ledger"
    start_worker(redis_url, 2)
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT, redis_url, cluster, str(ledger)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    client_id = proc.stdout.readline().strip()
    assert proc.stdout.readline().strip() == "collected 5"
    proc.kill()
    proc.wait()
    proc.stdout.close()
    with rdispy.Executor(redis_url, cluster=cluster, client_id=client_id) as ex:
        futures = ex.recover_jobs()
        tags = {f.job_id: f.result(60) for f in futures}
        # every job the crashed client had not collected comes back, each exactly once
        assert len(futures) == len(tags) >= 25
        assert set(tags.values()) >= {f"j{i}" for i in range(5, 30)}
        assert ex.submit(pow, 2, 2).result(30) == 4  # and the session goes on
    assert set(executions(ledger).values()) == {1}
