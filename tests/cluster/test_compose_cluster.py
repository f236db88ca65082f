"""compose.yaml's cluster in network namespaces: jobs reach every worker, the isolated one only
through the relay, and the faults of a real network (fault tests 4, 5, 24 and 26 of
/work/shared/guides/faults.md): a link cut longer and shorter than the dead-node time, the relay
SIGKILLed and restarted, a worker's whole namespace deleted.

Invariants are checked on an execution ledger (a file every job appends to, outside Redis) and
on the futures: every job resolves once with its own result, and runs twice only when its node
was cut off or lost while running it."""

from __future__ import annotations

import collections
import os
import time
from concurrent.futures import wait
from pathlib import Path
from typing import Any

import pytest

import rdispy
from tests.cluster.conftest import HEARTBEAT, TTL, WORKERS, Running
from tests.faults.ledger import nodes, record
from tests.helpers import executor

pytestmark = pytest.mark.slow

#: Seconds each job of a fault test runs: long enough to be cut off in the middle of it.
JOB = 2.0


def ledger_job(ledger: str, tag: int, seconds: float) -> tuple[int, str]:
    """Note ``tag`` (with its node and pid) in the ledger, sleep, return (tag, node)."""
    from rdispy import job_context

    record(ledger, tag, seconds)
    return tag, job_context.current().node


def rows(ledger: Path) -> list[tuple[int, str]]:
    """(tag, node) of each execution, the tags as the ints they were."""
    return [(int(tag), node) for tag, node in nodes(ledger)]


def executions(ledger: Path) -> collections.Counter[int]:
    return collections.Counter(tag for tag, _ in rows(ledger))


def submit(ex: object, ledger: Path, count: int, seconds: float) -> list[object]:
    return [ex.submit(ledger_job, str(ledger), i, seconds) for i in range(count)]  # type: ignore[attr-defined]


def test_jobs_run_on_all_three_workers_the_isolated_one_through_the_relay(
    compose_cluster: Running, tmp_path: Path
) -> None:
    running = compose_cluster
    ledger = tmp_path / "ledger"
    nodes = running.nodes()
    assert nodes["worker3"].get("relay") == "relay", nodes["worker3"]
    assert "relay" not in nodes["worker1"] and "relay" not in nodes["worker2"]
    # the isolated worker registered its own address (on the isolated network), seen via relay
    assert nodes["worker3"]["ip"] == running.net.address("worker3")

    with executor(running.url, secret=running.secret) as ex:
        futures = submit(ex, ledger, 36, 0.3)
        results = [f.result(timeout=60) for f in futures]  # type: ignore[attr-defined]
    assert sorted(tag for tag, _ in results) == list(range(36))
    assert {node for _, node in results} == set(WORKERS)
    assert set(executions(ledger).values()) == {1}

    # no route from the isolated namespace to the server; the relay is reachable
    probe = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)"
    redis_host = running.net.address("redis")
    direct = running.net.run("worker3", ["python3", "-c", probe, redis_host, "6379"])
    assert direct.returncode != 0 and "unreachable" in direct.stderr.lower(), direct
    via = running.net.run("worker3", ["python3", "-c", probe, "relay", "6380"])
    assert via.returncode == 0, via.stderr

    # the relay forwards only rdispy's commands on the cluster's keys and signed registrations
    forge = (
        "import redis\n"
        "r = redis.Redis(host='relay', port=6380)\n"
        "for name, call in [\n"
        "    ('forged', lambda: r.hset('rdispy:{default}:node:evil', mapping={'name': 'evil',"
        " 'cpus': '64', 'incarnation': 'x'})),\n"
        "    ('foreign', lambda: r.set('elsewhere', 1)),\n"
        "    ('flush', lambda: r.flushall()),\n"
        "    ('eval', lambda: r.eval('return 1', 0)),\n"
        "]:\n"
        "    try:\n"
        "        call(); print(name, 'ACCEPTED')\n"
        "    except redis.ResponseError as exc:\n"
        "        print(name, 'refused', exc)\n"
    )
    out = running.net.run("worker3", ["python3", "-c", forge])
    assert out.returncode == 0, out.stderr
    assert "ACCEPTED" not in out.stdout and out.stdout.count("refused") == 4, out.stdout
    assert not running.client.exists("rdispy:{default}:node:evil")
    assert not running.client.exists("elsewhere")

    # the compose file's own client service runs its example job set on the three workers
    running.net.start("client")
    proc = running.net.services["client"].proc
    assert proc is not None
    assert proc.wait(90) == 0, running.net.output("client")
    assert all(f"{w}:" in running.net.output("client") for w in WORKERS)


def _running_on(ledger: Path, node: str, at_least: int = 1) -> bool:
    """Whether ``node`` has started at least that many jobs."""
    return sum(1 for _, n in rows(ledger) if n == node) >= at_least


def check_lost_node(ledger: Path, futures: list[object], count: int, lost: str) -> set[int]:
    """Every job resolved once with its own result; a job ran twice only when ``lost`` had it
    and its result came from another node (taken over), never more; returns the jobs taken
    over from ``lost``."""
    results = dict(f.result(timeout=5) for f in futures)  # type: ignore[attr-defined]
    assert sorted(results) == list(range(count))
    ran = executions(ledger)
    assert set(ran) == set(range(count))
    on_lost = {tag for tag, node in rows(ledger) if node == lost}
    taken_over = {tag for tag in on_lost if results[tag] != lost}
    assert taken_over, f"no job of {lost} was taken over: {rows(ledger)}"
    for tag, times in ran.items():
        assert times == (2 if tag in taken_over else 1), (tag, times, rows(ledger))
    return taken_over


def _cut_link_while_busy(running: Running, ledger: Path, node: str, seconds: float) -> list[Any]:
    """Submit 12 jobs, cut ``node``'s link for ``seconds`` once it runs two of them, heal it;
    the futures, all resolved."""
    with executor(running.url, secret=running.secret) as ex:
        futures = submit(ex, ledger, 12, JOB)
        running.wait(lambda: _running_on(ledger, node, 2), f"{node} running two jobs")
        running.net.link_down(node)
        time.sleep(seconds)
        running.net.link_up(node)
        done, _ = wait(futures, timeout=60)  # type: ignore[arg-type]
        assert len(done) == len(futures)
    return list(futures)


def test_link_cut_longer_than_dead_time_reassigns_then_node_returns_new(
    compose_cluster: Running, tmp_path: Path
) -> None:
    running, ledger = compose_cluster, tmp_path / "ledger"
    before = running.nodes()["worker1"]["incarnation"]
    futures = _cut_link_while_busy(running, ledger, "worker1", 2 * TTL + 4 * HEARTBEAT + 2)
    check_lost_node(ledger, futures, 12, "worker1")  # cut well past dead + takeover time
    # worker1 comes back as a new incarnation, its late results dropped
    running.wait(
        lambda: running.nodes().get("worker1", {}).get("incarnation", before) != before,
        "worker1 back as a new incarnation",
    )
    assert "dropped" in running.net.output("worker1") or "incarnation" in running.net.output(
        "worker1"
    )


def test_link_cut_shorter_than_dead_time_reassigns_nothing(
    compose_cluster: Running, tmp_path: Path
) -> None:
    running, ledger = compose_cluster, tmp_path / "ledger"
    before = running.nodes()["worker1"]["incarnation"]
    futures = _cut_link_while_busy(running, ledger, "worker1", 2 * HEARTBEAT)
    assert sorted(f.result()[0] for f in futures) == list(range(12))  # type: ignore[attr-defined]
    assert set(executions(ledger).values()) == {1}, rows(ledger)
    assert running.nodes()["worker1"]["incarnation"] == before


def test_relay_sigkill_reassigns_its_nodes_jobs_and_they_return_after_restart(
    compose_cluster: Running, tmp_path: Path
) -> None:
    running, ledger = compose_cluster, tmp_path / "ledger"
    before = running.nodes()["worker3"]["incarnation"]
    with executor(running.url, secret=running.secret) as ex:
        futures = submit(ex, ledger, 12, JOB)
        running.wait(lambda: _running_on(ledger, "worker3", 2), "worker3 running two jobs")
        running.net.kill("relay")
        done, _ = wait(futures, timeout=60)  # type: ignore[arg-type]
        assert len(done) == len(futures)
        check_lost_node(ledger, futures, 12, "worker3")
        assert "worker3" not in running.nodes()
        running.net.start("relay")
        running.wait(
            lambda: running.nodes().get("worker3", {}).get("incarnation", before) != before,
            "worker3 back through the restarted relay as a new incarnation",
        )
        assert running.nodes()["worker3"]["relay"] == "relay"
        assert ex.submit(os.getpid).result(timeout=30) > 0  # the cluster works on


def test_deleted_worker_namespace_jobs_finish_elsewhere(
    compose_cluster: Running, tmp_path: Path
) -> None:
    running, ledger = compose_cluster, tmp_path / "ledger"
    with executor(running.url, secret=running.secret) as ex:
        futures = submit(ex, ledger, 12, JOB)
        running.wait(lambda: _running_on(ledger, "worker2", 2), "worker2 running two jobs")
        running.net.delete_namespace("worker2")
        done, _ = wait(futures, timeout=60)  # type: ignore[arg-type]
        assert len(done) == len(futures)
        check_lost_node(ledger, futures, 12, "worker2")
    assert "worker2" not in running.nodes()


def test_relay_sigkill_abandons_non_reentrant_jobs_behind_it(
    compose_cluster: Running, tmp_path: Path
) -> None:
    """dispy's reentrant=False: jobs of nodes lost with the relay end Abandoned, run once."""
    running, ledger = compose_cluster, tmp_path / "ledger"
    jc = rdispy.JobCluster(
        ledger_job, reentrant=False, secret=running.secret, redis_url=running.url
    )
    try:
        jobs = [jc.submit(str(ledger), i, JOB) for i in range(12)]
        running.wait(lambda: _running_on(ledger, "worker3", 2), "worker3 running two jobs")
        running.net.kill("relay")
        for job in jobs:
            job()
        on_lost = {tag for tag, node in rows(ledger) if node == "worker3"}
        abandoned = {i for i, job in enumerate(jobs) if job.status == rdispy.DispyJob.Abandoned}
        finished = {i for i, job in enumerate(jobs) if job.status == rdispy.DispyJob.Finished}
        assert abandoned and abandoned <= on_lost, (abandoned, on_lost)
        assert finished | abandoned == set(range(12))
        assert all(jobs[i].result == (i, jobs[i].result[1]) for i in finished)
        assert set(executions(ledger).values()) == {1}, rows(ledger)
    finally:
        jc.close()
