"""faults.md test 10: a node whose wall clock is an hour ahead or behind.  Liveness comes only
from Redis-side TTLs (and, within a host, the monotonic clock), never from comparing wall clocks
across hosts: the skewed node's jobs are never taken back early, it never takes others' jobs,
and when it is SIGKILLed its jobs are still taken back on the missed-heartbeat evidence.

The skew is applied to the worker's Python (``time.time`` and ``time.time_ns``) by a
``sitecustomize`` module on its PYTHONPATH, so the test needs neither root nor libfaketime."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from rdispy.keys import Keys
from tests.conftest import HEARTBEAT
from tests.faults.figures import ResultCounter, pending_total
from tests.faults.ledger import executions, record, rows, wait_rows
from tests.helpers import DEADLINE, executor

pytestmark = pytest.mark.integration

T_DEAD = HEARTBEAT * 5  # HEARTBEATS_MISSED intervals
OFFSET_VAR = "RDISPY_TEST_CLOCK_OFFSET"

SITECUSTOMIZE = f'''
import os, time

_offset = float(os.environ.get("{OFFSET_VAR}") or 0)
if _offset:
    _time, _time_ns = time.time, time.time_ns
    time.time = lambda: _time() + _offset
    time.time_ns = lambda: _time_ns() + int(_offset * 1e9)
'''


def note(ledger: str, tag: str, seconds: float, skewed_seconds: float | None = None) -> str:
    """Record the execution; sleep ``skewed_seconds`` instead when run on the skewed node."""
    if os.environ.get(OFFSET_VAR) and skewed_seconds is not None:
        seconds = skewed_seconds
    return str(record(ledger, tag, seconds))


@pytest.mark.parametrize("offset", [3600.0, -3600.0], ids=["ahead-1h", "behind-1h"])
def test_skewed_node_is_never_reclaimed_early_and_is_reclaimed_when_killed(
    redis_url, rclient, cluster, start_worker, tmp_path, monkeypatch, figures, offset
):
    keys = Keys(cluster)
    ledger = tmp_path / "ledger"
    hook = tmp_path / "clockhook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv(OFFSET_VAR, str(offset))
    skewed = start_worker(redis_url, 1, "skewed")
    monkeypatch.delenv(OFFSET_VAR)
    honest = start_worker(redis_url, 1, "honest")
    beat = float(rclient.hget(keys.node("skewed"), "hb"))
    assert abs(beat - time.time() - offset) < 60, "the clock hook is not in force"
    skewed_pids = {p.pid for p in skewed.consumers()}

    with executor(redis_url, cluster=cluster, max_retries=2) as ex:
        results = ResultCounter(ex)
        # 1. one long job on each node: neither may be taken back while both beat
        long_jobs = [ex.submit(note, str(ledger), f"long{i}", 4 * T_DEAD) for i in range(2)]
        assert sorted(f.result(DEADLINE) for f in long_jobs) == ["long0", "long1"]
        ran_on = {int(pid) for tag, pid in rows(ledger)}
        assert ran_on & skewed_pids and ran_on - skewed_pids  # one ran on each node
        assert executions(ledger) == {"long0": 1, "long1": 1}

        # 2. jobs that stall only on the skewed node; then it dies and its job is taken back
        stalls = [ex.submit(note, str(ledger), f"c{i}", 0.01, 600.0) for i in range(4)]
        stuck = None
        deadline = time.monotonic() + DEADLINE
        while stuck is None and time.monotonic() < deadline:
            stuck = next((t for t, p in rows(ledger) if t[0] == "c" and p in skewed_pids), None)
            time.sleep(HEARTBEAT / 10)
        assert stuck is not None, "no job reached the skewed node"
        figures.fault()
        for proc in [*skewed.consumers(), psutil.Process(skewed.pid)]:
            proc.kill()
        skewed.proc.wait(5)
        wait_rows(ledger, 7)  # the stuck job's second run, on the honest node
        figures.detected()
        assert sorted(f.result(DEADLINE) for f in stalls) == [f"c{i}" for i in range(4)]
        figures.recovered()
        duplicates = results.duplicates(wait=HEARTBEAT * 2)
    runs = executions(ledger)
    assert duplicates == 0
    assert runs == {"long0": 1, "long1": 1, **{f"c{i}": 1 + (f"c{i}" == stuck) for i in range(4)}}
    assert figures.detected_at is not None and figures.fault_at is not None
    # the record's TTL plus the lost-node scan's own grace (a further TTL), with room for noise
    assert figures.detected_at - figures.fault_at < 2 * T_DEAD + 8 * HEARTBEAT + 2.0
    assert honest.proc.poll() is None
    assert pending_total(rclient, keys, "skewed", "honest") == 0
    figures.outcome(
        runs,
        ["long0", "long1", *(f"c{i}" for i in range(4))],
        6,
        duplicates,
        fault=f"clock skew {offset:+.0f}s, then SIGKILL",
    )
