"""Trimming never loses a pending job (fault test 16): job streams are never trimmed by length
(an entry leaves only when its result is published, its job cancelled or refused), and an entry
deleted by hand while pending fails its job with a typed JobLost instead of vanishing."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis

import rdispy
from rdispy.keys import CONSUMER_GROUP
from tests.faults.figures import report
from tests.faults.ledger import executions, gated, rows, wait_rows
from tests.helpers import DEADLINE, executor, wait_until

pytestmark = pytest.mark.integration

JOBS = 400


def test_nothing_pending_is_trimmed_and_a_deleted_pending_entry_fails_with_job_lost(
    redis_url, cluster, keys, start_worker, tmp_path
):
    ledger, gate = tmp_path / "ledger", tmp_path / "gate"
    node = start_worker(redis_url, 2, "n1")
    probe = redis.Redis.from_url(redis_url)
    with executor(redis_url, cluster=cluster) as ex:
        futures = {f"j{i}": ex.submit(gated, str(ledger), f"j{i}", str(gate)) for i in range(JOBS)}
        wait_rows(ledger, 2)
        wait_until(lambda: all(f.entry_id for f in futures.values()), "every job sent")
        assert probe.xlen(keys.jobs) == JOBS  # all there, the two running ones included
        assert probe.xpending(keys.jobs, CONSUMER_GROUP)["pending"] == 2
        victim_tag, victim_pid = rows(ledger)[0]
        victim = futures.pop(victim_tag)
        assert victim.entry_id is not None
        probe.xdel(keys.jobs, victim.entry_id)  # an operator trims a pending entry away
        t_fault = time.monotonic()
        os.kill(victim_pid, signal.SIGKILL)  # and its consumer dies: nobody can publish it
        with pytest.raises(rdispy.JobLost, match="deleted from Redis"):
            victim.result(DEADLINE)
        detected = time.monotonic() - t_fault
        gate.touch()
        assert {tag: f.result(DEADLINE) for tag, f in futures.items()} == {t: t for t in futures}
    assert probe.xpending(keys.jobs, CONSUMER_GROUP)["pending"] == 0
    assert probe.xlen(keys.jobs) == 0
    counts = executions(ledger)
    assert counts[victim_tag] == 1 and set(counts.values()) == {1} and len(counts) == JOBS
    assert node.proc.poll() is None
    probe.close()
    report(
        "16 pending entry deleted (XDEL) and its consumer SIGKILLed",
        detection_s=detected,
        job_lost_raised=1,
        others_completed=JOBS - 1,
        executions_max=max(counts.values()),
        pending_after=0,
    )
