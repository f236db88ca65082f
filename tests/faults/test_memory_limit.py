"""faults.md test 8: a job over its node's ``--memory-limit`` fails alone with
MemoryLimitExceeded (caught by the consumer's RLIMIT_DATA, or by the supervisor's watch on the
resident memory of the job's whole process group), never by the kernel's OOM killer; the other
consumers keep running, the consumer is replaced, the node's heartbeat never lapses."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

import rdispy
from rdispy.keys import Keys
from tests.conftest import HEARTBEAT
from tests.faults.figures import ResultCounter, pending_total
from tests.faults.ledger import executions, record, wait_rows
from tests.helpers import DEADLINE, executor, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="rlimits and /proc: Linux"),
]

LIMIT = 256 * 1024 * 1024


def hog(ledger: str, size: int) -> int:
    """Allocate ``size`` bytes at once (and touch them)."""
    record(ledger, "hog")
    block = b"x" * size
    return len(block)


def hog_with_children(ledger: str, children: int, size: int) -> int:
    """Start ``children`` processes that each fill ``size`` bytes (each under the rlimit, all
    together over it), then wait for them."""
    record(ledger, "family")
    fill = f"import time; b = b'x' * {size}; time.sleep(600)"
    procs = [subprocess.Popen([sys.executable, "-c", fill]) for _ in range(children)]
    Path(ledger + ".pids").write_text(" ".join(str(p.pid) for p in procs))
    return sum(p.wait() for p in procs)


class HeartbeatWatch:
    """Polls the node record's TTL from another thread: it must never run out."""

    def __init__(self, url: str, key: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.key = key
        self.ttls: list[int] = []
        self.incarnations: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT / 5):
            self.ttls.append(int(self.client.pttl(self.key)))  # type: ignore[arg-type]
            self.incarnations.add(self.client.hget(self.key, "incarnation") or b"")  # type: ignore[arg-type]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()


@pytest.fixture
def watch(redis_url: str, keys: Keys) -> Iterator[dict[str, HeartbeatWatch]]:
    watches: dict[str, HeartbeatWatch] = {}
    yield watches
    for w in watches.values():
        w.stop()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("how", ["rlimit", "group-rss"])
def test_job_over_its_memory_limit_fails_alone(
    redis_url, rclient, cluster, keys, start_worker, tmp_path, figures, watch, how
):
    ledger = tmp_path / "ledger"
    worker = start_worker(redis_url, 2, "node1", "--memory-limit", "256MB")
    supervisor = psutil.Process(worker.pid)
    watch["node1"] = beat = HeartbeatWatch(redis_url, keys.node("node1"))
    with executor(redis_url, cluster=cluster, max_retries=2) as ex:
        results = ResultCounter(ex)
        bystander = ex.submit(record, str(ledger), "bystander", 40 * HEARTBEAT)
        other = int(wait_rows(ledger, 1)[0][1])
        if how == "rlimit":
            job = ex.submit(hog, str(ledger), 1024**3)  # 1 GB at once
        else:
            job = ex.submit(hog_with_children, str(ledger), 3, 120 * 1024 * 1024)
        victim = int(wait_rows(ledger, 2)[1][1])
        figures.fault()
        with pytest.raises(rdispy.MemoryLimitExceeded) as info:
            job.result(DEADLINE)
        figures.detected()
        message = str(info.value)
        assert info.value.job_id == job.job_id and job.job_id in message
        assert f"{LIMIT:,} bytes" in message and "--memory-limit" in message
        if how == "rlimit":
            assert "ran out of the memory limit" in message  # MemoryError under RLIMIT_DATA
        else:
            assert "with the processes it started" in message  # the supervisor's RSS watch
            pids = [int(p) for p in Path(f"{ledger}.pids").read_text().split()]
            wait_until(lambda: all(gone(p) for p in pids), "the job's children to be killed")
        wait_until(lambda: gone(victim), "the hog's consumer to go")
        fresh = worker.wait_consumers(2)
        assert victim not in {p.pid for p in fresh} and other in {p.pid for p in fresh}
        figures.recovered()
        assert bystander.result(DEADLINE) == "bystander"  # the other consumer kept running
        assert ex.submit(pow, 2, 5).result(DEADLINE) == 32  # the replacement serves
        duplicates = results.duplicates(wait=HEARTBEAT * 2)
    assert duplicates == 0
    runs = executions(ledger)
    tag = "hog" if how == "rlimit" else "family"
    assert runs == {"bystander": 1, tag: 1}  # not retried: it would fail the same way
    assert supervisor.is_running() and worker.proc.poll() is None  # no OOM kill of the node
    beat.stop()
    assert beat.ttls and min(beat.ttls) > 0, beat.ttls  # the heartbeat never lapsed
    assert len(beat.incarnations) == 1  # never declared dead, never reincarnated
    assert pending_total(rclient, keys, "node1") == 0
    figures.outcome(runs, ["bystander", tag], 2, duplicates, fault=f"memory limit, {how}")
