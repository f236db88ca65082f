"""Bad input gets a clear error and changes nothing (faults.md tests 15, 21 and 22).

- 21: a payload one byte over ``max_payload`` raises PayloadTooLarge in the client before anything
  is written (key set, DBSIZE, the job stream's length and last id, blob keys unchanged); a payload
  of exactly the limit round-trips with an identical sha256; an unpicklable argument or function
  raises SerializationError at submit.
- 22: a result over the worker's ``--max-result`` fails that job alone with ResultTooLarge; the
  consumer survives, nothing oversized is left in Redis, the next job runs.
- 15: with ``maxmemory`` and ``noeviction`` an overflowing submit fails its future with a clear
  BrokerError and leaves no half-written job; an evicting ``maxmemory-policy`` is refused by the
  worker and the client (read from INFO, as managed services forbid CONFIG), or only warned about
  with ``--allow-eviction``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
from typing import Any

import psutil
import pytest
import redis

import rdispy
from rdispy import serialization
from rdispy.keys import CONSUMER_GROUP, Keys
from tests.faults.ledger import record, tags
from tests.helpers import DEADLINE, executor, wait_until

pytestmark = pytest.mark.integration

#: Deadlines in this file: generous multiples of the heartbeat (correctness bounds, not speed).


def cluster_keys(r: redis.Redis, keys: Keys, pattern: str = "*") -> list[bytes]:
    return sorted(r.scan_iter(match=f"{keys.base}:{pattern}", count=1000))


def snapshot(r: redis.Redis, keys: Keys) -> dict[str, object]:
    """Everything a submit could have written to."""
    stream: Any = r.xinfo_stream(keys.jobs)
    return {
        "dbsize": r.dbsize(),
        "keys": cluster_keys(r, keys),
        "blobs": cluster_keys(r, keys, "blob:*"),
        "jobs length": stream["length"],
        "jobs last id": stream["last-generated-id"],
    }


def sha_and_data(data: bytes) -> tuple[str, bytes]:
    return hashlib.sha256(data).hexdigest(), data


def note(ledger: str, tag: str, data: bytes = b"") -> str:
    """A job: note ``tag`` in the ledger (``data`` only gives the job its size)."""
    return str(record(ledger, tag))


def bytes_pickling_to(size: int, seed: int = 21) -> bytes:
    """Random bytes whose pickled job arguments ``((data,), {})`` are exactly ``size`` bytes."""
    rng = random.Random(seed)
    n = size - len(serialization.dumps(((b"",), {})))
    for _ in range(5):
        data = rng.randbytes(n)
        got = len(serialization.dumps(((data,), {})))
        if got == size:
            return data
        n += size - got
    raise AssertionError(f"cannot build arguments that pickle to {size} bytes")


def bytes_result_of(size: int) -> int:
    """The length n of ``b"r" * n`` whose pickled result is exactly ``size`` bytes."""
    n = size - len(serialization.dumps(b""))
    for _ in range(5):
        got = len(serialization.dumps(b"r" * n))
        if got == size:
            return n
        n += size - got
    raise AssertionError(f"cannot build a result that pickles to {size} bytes")


# -- 21: arguments too large, unpicklable ----------------------------------------------------------

LIMIT = 256 * 1024


def test_payload_over_the_limit_is_refused_before_anything_is_written(
    private_server, start_worker, cluster, tmp_path
):
    srv = private_server()
    r = redis.Redis.from_url(srv.url)
    keys = Keys(cluster)
    ledger = str(tmp_path / "ledger")
    start_worker(srv.url, 1)
    with executor(srv.url, cluster=cluster, max_payload=LIMIT) as ex:
        exact = bytes_pickling_to(LIMIT)
        over = exact + b"!"
        assert len(serialization.dumps(((over,), {}))) == LIMIT + 1
        before = snapshot(r, keys)

        refused = ex.submit(note, ledger, "over", over)
        assert refused.done()
        with pytest.raises(rdispy.PayloadTooLarge, match=f"over the limit of {LIMIT:,} bytes"):
            refused.result(0)
        with pytest.raises(rdispy.PayloadTooLarge):  # map is all or nothing: the small one too
            list(ex.map(note, [ledger, ledger], ["small", "over"], [b"", over], chunksize=1))
        assert snapshot(r, keys) == before

        # exactly the limit goes through, byte for byte
        digest, data = ex.submit(sha_and_data, exact).result(DEADLINE)
        assert digest == hashlib.sha256(exact).hexdigest() == hashlib.sha256(data).hexdigest()
        assert data == exact
        # what the refused submits queued (nothing) would have gone out before this one
        assert ex.submit(note, ledger, "after").result(DEADLINE) == "after"
    assert tags(tmp_path / "ledger") == ["after"]
    assert r.xlen(keys.jobs) == 0
    assert r.xpending(keys.jobs, CONSUMER_GROUP)["pending"] == 0
    r.close()


class HoldsALock:
    """A callable that cannot be pickled (it holds a lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self) -> int:
        return 1


def test_unpicklable_argument_or_function_is_refused_at_submit(
    private_server, start_worker, cluster
):
    srv = private_server()
    r = redis.Redis.from_url(srv.url)
    keys = Keys(cluster)
    start_worker(srv.url, 1)
    with executor(srv.url, cluster=cluster) as ex:
        before = snapshot(r, keys)
        with pytest.raises(rdispy.SerializationError, match="cannot pickle the arguments.*lock"):
            ex.submit(len, [threading.Lock()]).result(0)
        with pytest.raises(rdispy.SerializationError, match="cannot pickle the function.*lock"):
            ex.submit(HoldsALock()).result(0)
        assert snapshot(r, keys) == before
        assert ex.submit(len, [1, 2]).result(DEADLINE) == 2  # the executor is unharmed
    assert r.xlen(keys.jobs) == 0
    r.close()


# -- 22: result too large --------------------------------------------------------------------------

RESULT_LIMIT = 64 * 1024


def big_result(n: int) -> bytes:
    return b"r" * n


def test_result_over_the_limit_fails_that_job_alone(redis_url, rclient, cluster, start_worker):
    keys = Keys(cluster)
    worker = start_worker(redis_url, 1, "node1", "--max-result", str(RESULT_LIMIT))
    (consumer,) = worker.wait_consumers(1)
    with executor(redis_url, cluster=cluster) as ex:
        fits = bytes_result_of(RESULT_LIMIT)
        assert len(ex.submit(big_result, fits).result(DEADLINE)) == fits  # exactly the limit

        too_big = ex.submit(big_result, fits + 1)
        with pytest.raises(
            rdispy.ResultTooLarge,
            match=f"result of {RESULT_LIMIT + 1:,} bytes is over the limit of {RESULT_LIMIT:,}",
        ) as info:
            too_big.result(DEADLINE)
        assert info.value.job_id == too_big.job_id
        with pytest.raises(rdispy.ResultTooLarge):  # a map chunk's results count together
            list(ex.map(big_result, [10, RESULT_LIMIT], chunksize=2))

        after = ex.submit(os.getpid)
        assert after.result(DEADLINE) == consumer.pid  # the same consumer runs the next job
        # read results leave the client's stream once nothing is pending
        wait_until(lambda: rclient.xlen(keys.results(ex.client_id)) == 0, "results to be read")
        # nothing oversized anywhere: no partial result, no stray blob
        for key in cluster_keys(rclient, keys):
            usage = rclient.memory_usage(key) or 0
            assert usage < RESULT_LIMIT, (key, usage)
    assert worker.proc.poll() is None
    assert [p.pid for p in worker.wait_consumers(1)] == [consumer.pid]
    assert psutil.Process(consumer.pid).is_running()
    assert rclient.xlen(keys.jobs) == 0
    assert rclient.xpending(keys.jobs, CONSUMER_GROUP)["pending"] == 0


# -- 15: Redis memory full -------------------------------------------------------------------------

JOB_BYTES = 200 * 1024


def test_full_memory_fails_the_submit_clearly_and_half_writes_nothing(
    private_server, start_worker, cluster, tmp_path
):
    srv = private_server()  # noeviction, as EmbeddedServer configures it
    r = redis.Redis.from_url(srv.url)
    keys = Keys(cluster)
    ledger = str(tmp_path / "ledger")
    with executor(srv.url, cluster=cluster) as ex:
        used = int(r.info("memory")["used_memory"])
        r.config_set("maxmemory", used + 2 * 1024 * 1024)
        accepted: list[rdispy.RemoteFuture] = []
        refused = None
        for i in range(40):  # no worker yet: the queue fills up
            future = ex.submit(note, ledger, f"job{i}", b"\x00" * JOB_BYTES)
            wait_until(lambda f=future: f.done() or f.entry_id is not None, f"job{i} sent")
            if future.done():
                refused = future
                break
            accepted.append(future)
        assert refused is not None, "memory never filled up"
        assert accepted, "not even one job fitted"
        with pytest.raises(rdispy.BrokerError, match="OOM .*maxmemory") as info:
            refused.result(0)
        assert refused.job_id in str(info.value)

        # no half-written job: no entry, no job record; an orphaned blob only with a TTL
        entries: Any = r.xrange(keys.jobs)
        assert [fields[b"id"].decode() for _, fields in entries] == [f.job_id for f in accepted]
        assert not r.exists(keys.job(refused.job_id))
        for blob in cluster_keys(r, keys, "blob:*"):
            assert r.ttl(blob) > 0, blob

        r.config_set("maxmemory", 0)  # memory freed: the queued jobs run, the refused one never
        start_worker(srv.url, 2)
        assert [f.result(DEADLINE) for f in accepted] == [f"job{i}" for i in range(len(accepted))]
        assert ex.submit(note, ledger, "later").result(DEADLINE) == "later"
    assert sorted(tags(tmp_path / "ledger")) == sorted(
        [f"job{i}" for i in range(len(accepted))] + ["later"]
    )
    r.close()


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl"])
def test_an_evicting_memory_policy_is_refused_by_worker_and_client(
    private_server, start_worker, cluster, policy
):
    srv = private_server(extra_args=("--maxmemory-policy", policy))
    threads = set(threading.enumerate())
    with pytest.raises(rdispy.ConfigError, match=f"maxmemory-policy {policy}") as info:
        rdispy.Executor(srv.url, cluster=cluster)
    assert set(threading.enumerate()) <= threads  # the refused client left no thread behind
    assert "--allow-eviction" in str(info.value) and "RDISPY_ALLOW_EVICTION" in str(info.value)
    worker = start_worker(srv.url, 1, wait_ready=False)
    code = worker.proc.wait(DEADLINE)
    out = worker.output()
    assert code != 0, out
    assert f"maxmemory-policy {policy}" in out and "--allow-eviction" in out
    assert "Traceback" not in out


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl", "noeviction"])
def test_an_evicting_policy_allowed_is_warned_about_by_worker_and_client(
    private_server, start_worker, cluster, caplog, monkeypatch, policy
):
    srv = private_server(extra_args=("--maxmemory-policy", policy))
    worker = start_worker(srv.url, 1, None, "--allow-eviction")
    monkeypatch.setenv("RDISPY_ALLOW_EVICTION", "1")
    with caplog.at_level(logging.WARNING, logger="rdispy"):
        with executor(srv.url, cluster=cluster) as ex:
            assert ex.submit(pow, 2, 3).result(DEADLINE) == 8
    client_warned = [
        rec
        for rec in caplog.records
        if rec.name == "rdispy.connection"
        and rec.levelno >= logging.WARNING
        and f"maxmemory-policy {policy}" in rec.getMessage()
        and "evict" in rec.getMessage()
    ]
    line = f"WARNING rdispy.connection: Redis at {srv.url} has maxmemory-policy {policy}"
    if policy == "noeviction":
        assert not client_warned
        assert "maxmemory-policy" not in worker.output()
    else:
        assert len(client_warned) == 1
        assert line in worker.output()  # the worker has logged it by the time it serves


def test_the_policy_is_read_without_config_as_managed_services_forbid_it(
    private_server, start_worker, cluster
):
    """A user that may not run CONFIG (ElastiCache, Memorystore, Azure) still has the policy
    checked: it is read from INFO memory."""
    srv = private_server(extra_args=("--maxmemory-policy", "volatile-lru"))
    admin = redis.Redis(port=srv.port)
    admin.execute_command("ACL", "SETUSER", "managed", "on", ">pw", "~*", "&*", "+@all", "-config")
    url = srv.url.replace("redis://", "redis://managed:pw@")
    with pytest.raises(rdispy.ConfigError, match="maxmemory-policy volatile-lru"):
        rdispy.Executor(url, cluster=cluster)
    admin.config_set("maxmemory-policy", "noeviction")
    start_worker(url, 1)
    with executor(url, cluster=cluster) as ex:
        assert ex.submit(pow, 2, 5).result(DEADLINE) == 32
    refusals: Any = admin.execute_command("ACL", "LOG")
    assert not [entry for entry in refusals if "config" in repr(entry).lower()]
    admin.close()
