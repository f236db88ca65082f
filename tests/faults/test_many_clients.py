"""Many concurrent clients on one cluster (fault test 18): 20 SharedJobCluster processes of 500
jobs each, some with an identically named function whose body differs.  Each gets only its own
results, exactly once, computed by its own version of the function; SIGKILL of 3 clients leaves
the others unaffected; every client makes progress in every 10 s window (nobody starves)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from rdispy.keys import CONSUMER_GROUP
from tests.faults.figures import report

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]

CLIENTS, JOBS, KILLED = 20, 500, 3
WINDOW = 10.0

#: The function is defined in the client's __main__ from source, so each version is pickled by
#: value under the same name ``compute``.
CLIENT = textwrap.dedent("""
    import json, sys, time
    import rdispy as dispy

    url, cluster, version, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    exec(f"def compute(i):\\n    return ({version}, i * {version + 2})\\n")
    times = []
    c = dispy.SharedJobCluster(
        compute, redis_url=url, cluster=cluster, scheduler=False,
        callback=lambda job: times.append(time.monotonic()),
    )
    started = time.monotonic()
    jobs = [c.submit(i) for i in range(count)]
    print("submitted", flush=True)
    results = [job(timeout=240) for job in jobs]
    c.close()
    expected = [(version, i * (version + 2)) for i in range(count)]
    marks = sorted([started, *times])
    print(json.dumps({
        "ok": [tuple(r) for r in results] == expected,
        "callbacks": len(times),
        "max_gap": max(b - a for a, b in zip(marks, marks[1:])),
        "took": marks[-1] - started,
    }), flush=True)
""")


@pytest.mark.timeout(400)
def test_twenty_clients_each_get_their_own_results_and_none_starves(
    redis_url, cluster, keys, start_worker
):
    start_worker(redis_url, 2, "node-a")
    start_worker(redis_url, 2, "node-b")
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "rdispy", "scheduler", "--redis", redis_url, "--cluster", cluster],
        cwd=ROOT,
    )
    clients: list[subprocess.Popen[str]] = []
    try:
        for n in range(CLIENTS):
            clients.append(
                subprocess.Popen(
                    [sys.executable, "-c", CLIENT, redis_url, cluster, str(n % 4), str(JOBS)],
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                )
            )
        for proc in clients:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "submitted"
        time.sleep(1.0)
        for proc in clients[:KILLED]:  # three clients die with jobs queued and running
            proc.kill()
            proc.wait()
        outcomes = []
        for proc in clients[KILLED:]:
            out, _ = proc.communicate(timeout=300)
            assert proc.returncode == 0, out
            outcomes.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in clients:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout:
                proc.stdout.close()
        scheduler.send_signal(signal.SIGTERM)
        scheduler.wait(10)
    assert all(o["ok"] for o in outcomes)  # own results, own function version, in order
    assert all(o["callbacks"] == JOBS for o in outcomes)  # each job resolved exactly once
    worst_gap = max(o["max_gap"] for o in outcomes)
    assert worst_gap < WINDOW  # progress in every 10 s window
    probe = redis.Redis.from_url(redis_url)
    report(
        "18 20 SharedJobCluster clients x 500 jobs, 3 SIGKILLed",
        survivors=len(outcomes),
        jobs_per_client=JOBS,
        longest_client_s=max(o["took"] for o in outcomes),
        worst_gap_between_results_s=worst_gap,
        wrong_or_duplicate_results=0,
        pending_now=probe.xpending(keys.jobs, CONSUMER_GROUP)["pending"],
    )
    probe.close()
