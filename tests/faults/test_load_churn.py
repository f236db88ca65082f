"""10,000 queued jobs with node churn (fault test 20): every 2 s a seeded schedule adds a node,
stops one gracefully (SIGTERM) or SIGKILLs one.  Every result arrives exactly once, no job runs
more than max_retries + 1 times, a graceful stop hands its work back at once (no wait for the
heartbeat TTL), and afterwards nothing is pending, no process is left and Redis holds little
more than before (a small record per job, until its TTL)."""

from __future__ import annotations

import random
import signal
import time

import pytest
import redis

from rdispy import defaults
from rdispy.keys import CONSUMER_GROUP
from rdispy.nodes import live_nodes
from tests.conftest import HEARTBEAT
from tests.faults.figures import duplicate_results, execution_spread, report, watch_duplicates
from tests.faults.ledger import executions, record
from tests.helpers import executor, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOBS = 10_000
MAX_RETRIES = 2
T_DEAD = HEARTBEAT * defaults.HEARTBEATS_MISSED
#: Bytes a finished job may leave behind until its record's TTL: its job record with its attempt
#: history (~600 bytes: an attempt's JSON is longer than a compact hash field, README "How much
#: Redis holds").
PER_JOB = 700


def pending_of(probe: redis.Redis, stream: str, node: str) -> int:
    try:
        consumers = probe.xinfo_consumers(stream, CONSUMER_GROUP)
    except redis.ResponseError:
        return 0
    return sum(c["pending"] for c in consumers if c["name"].decode().startswith(f"{node}/"))


@pytest.mark.timeout(300)
def test_ten_thousand_jobs_with_nodes_joining_leaving_and_dying(
    private_server, cluster, keys, start_worker, tmp_path, caplog
):
    server = private_server()
    watch_duplicates(caplog)
    ledger = tmp_path / "ledger"
    probe = redis.Redis.from_url(server.url)
    memory_before = probe.info("memory")["used_memory"]
    rng = random.Random(20)
    live = [start_worker(server.url, 1 + i % 2, f"n{i}") for i in range(4)]
    added, handbacks, kills = 4, [], 0
    schedule: list[str] = []
    with executor(server.url, cluster=cluster, max_retries=MAX_RETRIES) as ex:
        t0 = time.monotonic()
        futures = [ex.submit(record, str(ledger), i, 0.01) for i in range(JOBS)]
        next_churn = time.monotonic() + 2.0
        while not all(f.done() for f in futures):
            time.sleep(0.05)
            if time.monotonic() < next_churn:
                continue
            next_churn = time.monotonic() + 2.0
            # only nodes that have registered are stopped (one still starting holds nothing)
            ready = [n for n in live if probe.exists(keys.node(n.name))]
            action = rng.choice(["add", "term", "kill"]) if len(ready) > 2 else "add"
            schedule.append(action)
            if action == "add":
                live.append(
                    start_worker(server.url, rng.choice([1, 2]), f"n{added}", wait_ready=False)
                )
                added += 1
                continue
            node = ready[rng.randrange(len(ready))]
            live.remove(node)
            if action == "kill":
                node.proc.kill()  # the supervisor; its consumers die with it (parent-death signal)
                node.proc.wait()
                kills += 1
                continue
            t_term = time.monotonic()
            node.proc.send_signal(signal.SIGTERM)
            assert node.proc.wait(60) == 0, node.output()
            handback = time.monotonic() - t_term
            # drained: its taken-but-unstarted jobs are back in the queue, its record is gone
            assert pending_of(probe, keys.jobs, node.name) == 0
            assert pending_of(probe, keys.node_jobs(node.name), node.name) == 0
            assert not probe.exists(keys.node(node.name))
            handbacks.append(handback)
        results = [f.result(0) for f in futures]
        elapsed = time.monotonic() - t0
    assert results == list(range(JOBS))  # each exactly once, in its own future
    counts = executions(ledger)
    assert len(counts) == JOBS
    assert max(counts.values()) <= MAX_RETRIES + 1
    assert duplicate_results(caplog) == 0
    assert probe.xpending(keys.jobs, CONSUMER_GROUP)["pending"] == 0
    assert probe.xlen(keys.jobs) == 0
    for node in live:
        node.stop()
    wait_until(lambda: not live_nodes(probe, keys), "every node record gone")
    memory_after = probe.info("memory")["used_memory"]
    assert memory_after - memory_before < JOBS * PER_JOB + 2_000_000
    report(
        "20 10k jobs of 10 ms, churn every 2 s (seed 20)",
        elapsed_s=elapsed,
        schedule=" ".join(schedule),
        nodes_killed=kills,
        graceful_handback_s_max=max(handbacks, default=0.0),
        t_dead_s=T_DEAD,
        executions=execution_spread(counts),
        jobs_lost=0,
        duplicate_results=duplicate_results(caplog),
        redis_memory_growth_bytes=memory_after - memory_before,
        memory_bound_bytes=JOBS * PER_JOB + 2_000_000,
    )
    probe.close()
