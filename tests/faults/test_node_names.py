"""faults.md test 9: one node name, one live worker.  A worker's name is a lease (SET NX with the
heartbeat TTL, holding its incarnation) that every heartbeat refreshes: a second `rdispy worker
--name n1` while n1 lives refuses to start with a clear error and a non-zero exit, and never puts
a consumer into the group; n1 restarted after a crash takes the lapsed lease and first settles
what its predecessor left pending, each running entry counted as an attempt."""

from __future__ import annotations

import subprocess
from typing import Any

import psutil
import pytest

import rdispy
from rdispy.keys import CONSUMER_GROUP
from rdispy.streams import ConsumerName
from tests.conftest import HEARTBEAT
from tests.faults.figures import ResultCounter, pending_total
from tests.faults.ledger import executions, record, wait_rows
from tests.helpers import DEADLINE, executor, wait_until

pytestmark = pytest.mark.integration


def group_consumers(r: Any, keys: Any, node: str) -> list[ConsumerName]:
    found = []
    for stream in (keys.jobs, keys.node_jobs(node)):
        for info in r.xinfo_consumers(stream, CONSUMER_GROUP):
            name = ConsumerName.parse(info["name"])
            assert name is not None
            found.append(name)
    return found


def kill_node(worker: Any) -> None:
    for proc in [psutil.Process(worker.pid), *worker.consumers()]:
        proc.kill()
    worker.proc.wait(5)


def test_second_worker_with_a_live_name_refuses_to_start(
    redis_url, rclient, cluster, keys, start_worker, tmp_path
):
    ledger = tmp_path / "ledger"
    first = start_worker(redis_url, 2, "n1")
    incarnation = rclient.hget(keys.node("n1"), "incarnation").decode()
    with executor(redis_url, cluster=cluster) as ex:
        job = ex.submit(record, str(ledger), "long", 24 * HEARTBEAT)
        runner = wait_rows(ledger, 1)[0][1]
        second = start_worker(redis_url, 2, "n1", wait_ready=False)
        try:
            code = second.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the second n1 did not refuse: {second.output()}")
        assert code == 2  # a configuration error, as the CLI reports them
        out = second.output()
        assert "node name 'n1' is in use by a live worker" in out, out
        assert incarnation in out and "pick another --name" in out
        assert "Traceback" not in out
        # the live n1 is untouched: same incarnation, its consumers alone in the group
        assert rclient.hget(keys.node("n1"), "incarnation").decode() == incarnation
        names = group_consumers(rclient, keys, "n1")
        assert names and {n.incarnation for n in names} == {incarnation}
        assert len({(n.slot, n.nonce) for n in names}) == 2  # the live n1's two consumers only
        assert job.result(DEADLINE) == "long"
    assert executions(ledger) == {"long": 1}
    assert [r[1] for r in wait_rows(ledger, 1)] == [runner]
    assert first.proc.poll() is None
    assert pending_total(rclient, keys, "n1") == 0


@pytest.mark.parametrize("retries", [1, 0])
def test_restarted_node_settles_its_predecessors_entries_first(
    redis_url, rclient, cluster, keys, start_worker, tmp_path, figures, retries
):
    ledger = tmp_path / "ledger"
    old = start_worker(redis_url, 1, "n1")
    old_incarnation = rclient.hget(keys.node("n1"), "incarnation").decode()
    with executor(redis_url, cluster=cluster, max_retries=retries) as ex:
        results = ResultCounter(ex)
        job = ex.submit(record, str(ledger), "job", 4 * HEARTBEAT)
        wait_rows(ledger, 1)
        figures.fault()
        kill_node(old)  # nobody settles its entries: it is the only node
        new = start_worker(redis_url, 1, "n1")  # restarted at once under the same name
        if retries:
            wait_rows(ledger, 2)
            figures.detected()
            assert job.result(DEADLINE) == "job"
            assert executions(ledger) == {"job": 2}  # the lost run counted as an attempt
        else:
            with pytest.raises(rdispy.NodeLost, match="node n1 restarted") as info:
                job.result(DEADLINE)
            figures.detected()
            assert old_incarnation in str(info.value)
            assert executions(ledger) == {"job": 1}
        figures.recovered()
        wait_until(lambda: "settled 1 entries left by a previous run" in new.output(), "the log")
        incarnation = rclient.hget(keys.node("n1"), "incarnation").decode()
        assert incarnation != old_incarnation
        assert ex.submit(pow, 3, 2).result(DEADLINE) == 9
        assert {n.incarnation for n in group_consumers(rclient, keys, "n1")} == {incarnation}
        duplicates = results.duplicates(wait=HEARTBEAT * 2)
    assert duplicates == 0
    assert pending_total(rclient, keys, "n1") == 0
    figures.outcome(
        executions(ledger), ["job"], 1, duplicates, fault=f"node restarted, max_retries={retries}"
    )
