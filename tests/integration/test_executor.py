"""Executor conformance: the concurrent.futures contract, against a cluster of two `rdispy worker`
processes and against the embedded default."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, as_completed, wait
from concurrent.futures import TimeoutError as FuturesTimeout
from pathlib import Path

import pytest
import redis

import rdispy
from rdispy.keys import Keys

pytestmark = pytest.mark.integration


class Boom(Exception):
    pass


class Unpicklable(Exception):
    def __init__(self) -> None:
        super().__init__("cannot travel")
        self.lock = threading.Lock()


def raise_boom(x: int) -> int:
    raise Boom(f"boom {x}")


def sleep_then(seconds: float, value: object, ledger: str | None = None) -> object:
    if ledger:
        with open(ledger, "a") as f:
            f.write(f"{value} {os.getpid()}\n")
    time.sleep(seconds)
    return value


def ledger_rows(path: Path) -> list[str]:
    return path.read_text().split("\n")[:-1] if path.exists() else []


@pytest.fixture(params=["cluster", "embedded"])
def executor(request, redis_url, cluster, start_worker) -> Iterator[rdispy.Executor]:
    if request.param == "cluster":
        start_worker(redis_url, 1, "node-a")
        start_worker(redis_url, 1, "node-b")
        ex = rdispy.Executor(redis_url, cluster=cluster)
    else:
        ex = rdispy.Executor(max_workers=2)
    yield ex
    ex._dispatcher.cancel_all()  # withdraw the queued, close now
    ex.detach()


def test_submit_returns_result_and_job_details(executor):
    future = executor.submit(pow, 2, 10)
    assert future.result(timeout=30) == 1024
    assert future.node and future.pid and future.start_time <= future.end_time


def test_closures_and_lambdas_defined_here_run(executor):
    offset = 7
    assert executor.submit(lambda x: x + offset, 5).result(30) == 12


def test_stdout_and_stderr_are_captured(executor):
    def noisy(x):
        import sys

        print("hello", x)
        print("oops", file=sys.stderr)
        return x

    future = executor.submit(noisy, 3)
    assert future.result(30) == 3
    assert future.stdout == "hello 3\n" and future.stderr == "oops\n"


def test_map_is_ordered_with_several_iterables_and_chunksizes(executor):
    expected = [pow(a, b) for a, b in zip(range(50), range(50, 0, -1), strict=True)]
    assert list(executor.map(pow, range(50), range(50, 0, -1))) == expected
    assert list(executor.map(pow, range(50), range(50, 0, -1), chunksize=1)) == expected
    assert list(executor.map(pow, range(50), range(50, 0, -1), chunksize=7)) == expected
    assert list(executor.map(pow, [], [])) == []


def test_map_reads_input_lazily_with_buffersize(executor):
    seen = []

    def source():
        for i in range(20):
            seen.append(i)
            yield i

    results = executor.map(abs, source(), buffersize=2)
    assert len(seen) == 2
    assert next(results) == 0
    assert list(results) == list(range(1, 20))


def test_map_timeout_raises_timeout_error(executor):
    results = executor.map(sleep_then, [3], [1])
    with pytest.raises(FuturesTimeout):
        list(executor.map(sleep_then, [3], [1], timeout=0.3))
    assert list(results) == [1]


def test_map_yields_results_before_the_failing_item(executor):
    def fail_at_3(x):
        if x == 3:
            raise Boom("three")
        return x

    results = executor.map(fail_at_3, range(6), chunksize=6)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(Boom, match="three"):
        next(results)


def test_exception_keeps_type_and_remote_traceback(executor):
    future = executor.submit(raise_boom, 4)
    with pytest.raises(Boom, match="boom 4") as info:
        future.result(30)
    cause = info.value.__cause__
    assert cause is not None and "raise_boom" in str(cause) and "Traceback" in str(cause)


def test_unpicklable_exception_becomes_remote_error(executor):
    def raise_unpicklable():
        raise Unpicklable()

    with pytest.raises(rdispy.RemoteError, match="Unpicklable: cannot travel") as info:
        executor.submit(raise_unpicklable).result(30)
    assert "raise_unpicklable" in info.value.traceback
    assert info.value.job_id


def test_wait_and_as_completed_work_on_remote_futures(executor):
    slow = executor.submit(sleep_then, 1.0, "slow")
    fast = executor.submit(sleep_then, 0.0, "fast")
    done, _ = wait([slow, fast], timeout=30, return_when=FIRST_COMPLETED)
    assert fast in done
    assert [f.result() for f in as_completed([slow, fast], timeout=30)][-1] == "slow"
    done, not_done = wait([slow, fast], timeout=30, return_when=ALL_COMPLETED)
    assert not not_done


def test_cancel_succeeds_only_before_start_and_cancelled_jobs_never_run(executor, tmp_path):
    ledger = tmp_path / "ledger"
    blockers = [executor.submit(sleep_then, 1.5, f"b{i}", str(ledger)) for i in range(2)]
    deadline = time.monotonic() + 20
    while len(ledger_rows(ledger)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    queued = [executor.submit(sleep_then, 0, f"q{i}", str(ledger)) for i in range(6)]
    assert all(f.cancel() for f in queued[:4])
    assert all(f.cancelled() for f in queued[:4])
    assert not blockers[0].cancel()  # running: cannot be cancelled
    assert [f.result(30) for f in queued[4:]] == ["q4", "q5"]
    assert [f.result(30) for f in blockers] == ["b0", "b1"]
    ran = {row.split()[0] for row in ledger_rows(ledger)}
    assert ran == {"b0", "b1", "q4", "q5"}


def test_shutdown_waits_and_then_refuses_new_work(executor):
    futures = [executor.submit(sleep_then, 0.2, i) for i in range(4)]
    executor.shutdown(wait=True)
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [0, 1, 2, 3]
    with pytest.raises(RuntimeError):
        executor.submit(pow, 1, 1)


def test_shutdown_cancel_futures_cancels_queued_jobs(executor, tmp_path):
    ledger = tmp_path / "ledger"
    running = [executor.submit(sleep_then, 1.0, f"r{i}", str(ledger)) for i in range(2)]
    deadline = time.monotonic() + 20
    while len(ledger_rows(ledger)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    queued = [executor.submit(sleep_then, 0, f"q{i}", str(ledger)) for i in range(5)]
    executor.shutdown(wait=True, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    assert [f.result() for f in running] == ["r0", "r1"]
    assert {row.split()[0] for row in ledger_rows(ledger)} == {"r0", "r1"}


def test_context_manager_shuts_down():
    with rdispy.Executor(max_workers=1) as ex:
        future = ex.submit(sleep_then, 0.1, "x")
    assert future.result(0) == "x"


def test_unpicklable_function_or_argument_fails_at_submit_and_writes_nothing(
    redis_url, cluster, start_worker
):
    start_worker(redis_url, 1)
    client = redis.Redis.from_url(redis_url)
    with rdispy.Executor(redis_url, cluster=cluster) as ex:
        before = sorted(client.keys(f"{Keys(cluster).base}:*"))
        lock = threading.Lock()
        with pytest.raises(rdispy.SerializationError, match="function"):
            ex.submit(lambda: lock).result(0)
        with pytest.raises(rdispy.SerializationError, match="arguments"):
            ex.submit(print, threading.Lock()).result(0)
        time.sleep(0.2)
        assert sorted(client.keys(f"{Keys(cluster).base}:*")) == before
        assert client.xlen(Keys(cluster).jobs) == 0
    with rdispy.Executor(redis_url, cluster=cluster, max_payload=1000) as small:
        before = sorted(client.keys(f"{Keys(cluster).base}:*"))
        with pytest.raises(rdispy.PayloadTooLarge, match="over the limit"):
            small.submit(len, b"x" * 2000).result(0)
        assert small.submit(len, b"x" * 10).result(30) == 10
    assert client.xlen(Keys(cluster).jobs) == 0
    client.close()


def test_function_is_pickled_once_and_stored_as_one_blob(redis_url, cluster, start_worker, rclient):
    start_worker(redis_url, 2)
    with rdispy.Executor(redis_url, cluster=cluster) as ex:

        def square(x):
            return x * x

        assert [f.result(30) for f in [ex.submit(square, i) for i in range(30)]] == [
            i * i for i in range(30)
        ]
        assert list(ex.map(square, range(30))) == [i * i for i in range(30)]
    blobs = rclient.keys(f"{Keys(cluster).base}:blob:*")
    assert len(blobs) == 1


def test_redis_holds_only_bounded_state_after_a_run(redis_url, cluster, start_worker, rclient):
    keys = Keys(cluster)
    start_worker(redis_url, 2)
    with rdispy.Executor(redis_url, cluster=cluster) as ex:
        assert len([f.result(30) for f in [ex.submit(abs, -i) for i in range(300)]]) == 300
        results_key = keys.results(ex.client_id)
        time.sleep(0.3)
        assert rclient.xlen(results_key) == 0  # collected results are deleted
    assert rclient.xlen(keys.jobs) == 0  # acknowledged entries are deleted
    assert rclient.xpending(keys.jobs, "consumers")["pending"] == 0
    streams = {keys.jobs, *(k.decode() for k in rclient.keys(keys.node_jobs("*")))}
    for stream in streams:
        assert rclient.xlen(stream) == 0  # job streams hold only unfinished jobs
    bounded = (keys.nodes, keys.counters, keys.latency, keys.recent, keys.clients)  # fixed size
    for key in rclient.keys(f"{keys.base}:*"):
        if key.decode() not in (*streams, *bounded):
            assert rclient.ttl(key) > 0, key  # everything else expires
