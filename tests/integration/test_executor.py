"""What rdispy.Executor adds to the concurrent.futures contract (job details, captured output,
closures, ``buffersize``, what Redis holds), against a cluster of two `rdispy worker` processes
and against the embedded default.  The contract itself, shown on the standard executors too, is
in test_executor_contract.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

import rdispy
from rdispy.keys import Keys
from tests.helpers import wait_until

pytestmark = pytest.mark.integration


class Boom(Exception):
    pass


class Unpicklable(Exception):
    def __init__(self) -> None:
        super().__init__("cannot travel")
        self.lock = threading.Lock()


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


def test_map_yields_results_before_the_failing_item_of_one_chunk(executor):
    # a process pool's map fails the whole chunk; the contract (chunksize 1) is in
    # test_executor_contract.py
    def fail_at_3(x):
        if x == 3:
            raise Boom("three")
        return x

    results = executor.map(fail_at_3, range(6), chunksize=6)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(Boom, match="three"):
        next(results)


def test_unpicklable_exception_becomes_remote_error(executor):
    def raise_unpicklable():
        raise Unpicklable()

    with pytest.raises(rdispy.RemoteError, match="Unpicklable: cannot travel") as info:
        executor.submit(raise_unpicklable).result(30)
    assert "raise_unpicklable" in info.value.traceback
    assert info.value.job_id


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
        # nothing was queued for Redis (so nothing is still on its way: no sleep needed)
        assert not ex._dispatcher.sender.outbox
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
        # collected results are deleted (in batches, as the reader goes on: poll, not a sleep)
        wait_until(lambda: rclient.xlen(results_key) == 0, "the collected results' deletion")
    assert rclient.xlen(keys.jobs) == 0  # acknowledged entries are deleted
    assert rclient.xpending(keys.jobs, "consumers")["pending"] == 0
    streams = {keys.jobs, *(k.decode() for k in rclient.keys(keys.node_jobs("*")))}
    for stream in streams:
        assert rclient.xlen(stream) == 0  # job streams hold only unfinished jobs
    bounded = (keys.nodes, keys.counters, keys.latency, keys.recent, keys.clients)  # fixed size
    for key in rclient.keys(f"{keys.base}:*"):
        if key.decode() not in (*streams, *bounded):
            assert rclient.ttl(key) > 0, key  # everything else expires
