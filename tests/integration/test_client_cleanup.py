"""A cleanly closed client leaves nothing in Redis (issue 14, item 9): its read results, its
record and its entry in the clients set go; a detached one with jobs still out keeps them for
the client that reattaches."""

from __future__ import annotations

import time

import pytest
import redis

import rdispy
from rdispy.keys import Keys

pytestmark = pytest.mark.integration


def client_traces(r: redis.Redis, keys: Keys, client_id: str) -> dict[str, object]:
    return {
        "results": r.exists(keys.results(client_id)),
        "record": r.exists(keys.client(client_id)),
        "listed": r.zscore(keys.clients, client_id),
    }


def test_a_closed_client_removes_its_results_and_record(redis_url, cluster, start_worker):
    start_worker(redis_url, 2)
    r = redis.Redis.from_url(redis_url)
    keys = Keys(cluster)
    with rdispy.Executor(redis_url, cluster=cluster) as ex:
        assert list(ex.map(pow, range(50), [2] * 50, chunksize=1)) == [n * n for n in range(50)]
        assert [ex.submit(pow, n, 3).result(30) for n in range(5)] == [n**3 for n in range(5)]
        client_id = ex.client_id
        assert client_traces(r, keys, client_id)["listed"] is not None
    assert client_traces(r, keys, client_id) == {"results": 0, "record": 0, "listed": None}
    r.close()


def test_a_detached_client_with_jobs_out_keeps_them_for_its_successor(
    redis_url, cluster, start_worker
):
    start_worker(redis_url, 1)
    r = redis.Redis.from_url(redis_url)
    keys = Keys(cluster)
    ex = rdispy.Executor(redis_url, cluster=cluster)
    ex.submit(time.sleep, 0.5)
    client_id = ex.client_id
    ex.detach()
    traces = client_traces(r, keys, client_id)
    assert traces["record"] == 1 and traces["listed"] is not None
    with rdispy.Executor(redis_url, cluster=cluster, client_id=client_id) as again:
        [future] = again.recover_jobs()
        assert future.result(30) is None
    assert client_traces(r, keys, client_id) == {"results": 0, "record": 0, "listed": None}
    r.close()
