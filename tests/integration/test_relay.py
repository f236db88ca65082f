"""`rdispy relay` with real processes on one host: nodes work through it, it carries only
rdispy's worker commands on the cluster's keys, and with a secret only signed registrations
(fault tests 24 and 26, registration parts).  Network isolation itself is tested in
tests/cluster (namespaces)."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable

import pytest
import redis

import rdispy
from rdispy.errors import NoNodesError
from rdispy.keys import Keys
from rdispy.nodes import live_nodes
from rdispy.relay import discovery
from rdispy.wire import Signer
from tests.conftest import Relay
from tests.helpers import executor

SECRET = "relay-test-secret"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def test_worker_through_relay_runs_jobs_and_is_marked(
    redis_url: str,
    cluster: str,
    start_relay: Callable[..., Relay],
    start_worker: Callable[..., object],
    rclient: redis.Redis,
) -> None:
    relay = start_relay(redis_url, "--discovery-port", "0", "--secret", SECRET)
    start_worker(relay.url, 2, "behind", "--secret", SECRET)
    with executor(redis_url, cluster=cluster, secret=SECRET) as ex:
        futures = [ex.submit(pow, i, 2) for i in range(20)]
        assert [f.result(timeout=30) for f in futures] == [i * i for i in range(20)]
        assert {f.node for f in futures} == {"behind"}
    record = rclient.hgetall(Keys(cluster).node("behind"))
    assert record[b"relay"] == b"r1"
    assert record[b"ip"] == b"127.0.0.1"  # the node's own address, not the relay's
    assert live_nodes(rclient, Keys(cluster), Signer(SECRET))[0]["name"] == "behind"


def test_relay_refuses_what_rdispy_workers_do_not_do(
    redis_url: str, cluster: str, start_relay: Callable[..., Relay], rclient: redis.Redis
) -> None:
    relay = start_relay(redis_url, "--discovery-port", "0", "--secret", SECRET)
    keys = Keys(cluster)
    node = redis.Redis(port=relay.port)
    rclient.set("outside", "untouched")
    refused: list[Callable[[], object]] = [
        lambda: node.get("outside"),
        lambda: node.delete("outside"),
        lambda: node.flushall(),
        lambda: node.keys("*"),
        lambda: node.config_set("maxmemory-policy", "allkeys-lru"),
        lambda: node.eval("return redis.call('flushall')", 0),
        lambda: node.script_load("return 1"),
        lambda: node.evalsha("0" * 40, 0),
        lambda: node.xadd(f"{keys.base}x:jobs", {"a": 1}),  # another cluster's hash tag
        lambda: node.hset(keys.node("evil"), mapping={"name": "evil", "cpus": "64"}),  # unsigned
        lambda: node.hset(keys.node("evil"), mapping={"name": "other", "cpus": "64"}),
        lambda: node.hincrby(keys.node("evil"), "cpus", 1),
        lambda: node.select(1),
    ]
    for call in refused:
        with pytest.raises(redis.ResponseError, match="rdispy relay"):
            call()
    # a transaction with a refused command is discarded whole, as Redis does
    pipe = node.pipeline(transaction=True)
    pipe.set(f"{keys.base}:probe", 1)  # SET is not a worker command
    pipe.zadd(keys.nodes, {"evil": time.time()})
    with pytest.raises(redis.ResponseError):
        pipe.execute()
    assert rclient.zscore(keys.nodes, "evil") is None
    assert rclient.get("outside") == b"untouched"
    assert not rclient.exists(keys.node("evil"))
    assert "refused" in relay.output()
    # what rdispy's worker does passes: its keys, its scripts, a signed registration
    assert node.ping()
    assert node.xadd(keys.jobs, {"a": "1"})
    fields = Signer(SECRET).sign(keys.node("good"), {b"name": b"good", b"cpus": b"1"})
    assert node.hset(keys.node("good"), mapping=fields) == 5  # and the relay's mark
    assert rclient.hget(keys.node("good"), "relay") == b"r1"


def compute(n: int) -> int:
    return n + 1


def test_forged_registration_never_receives_work(
    redis_url: str, cluster: str, start_worker: Callable[..., object], rclient: redis.Redis
) -> None:
    """Fault 24 (registration): a node record written straight into Redis without the secret's
    signature is ignored by every reader that holds the secret."""
    keys = Keys(cluster)
    start_worker(redis_url, 1, "real", "--secret", SECRET)
    forged = {"name": "evil", "cpus": "64", "busy": "0", "incarnation": "x", "ip": "6.6.6.6"}
    rclient.hset(keys.node("evil"), mapping=forged)
    rclient.zadd(keys.nodes, {"evil": time.time() + 3600})
    assert [n["name"] for n in live_nodes(rclient, keys, Signer(SECRET))] == ["real"]
    assert {n["name"] for n in live_nodes(rclient, keys)} == {"real", "evil"}  # no secret

    jc = rdispy.JobCluster(
        compute, nodes=["evil"], secret=SECRET, redis_url=redis_url, cluster=cluster, node_wait=1.0
    )
    try:
        with pytest.raises(NoNodesError):
            jc.submit(1)()
    finally:
        jc.close()
    jc = rdispy.JobCluster(
        compute, nodes=["*"], secret=SECRET, redis_url=redis_url, cluster=cluster, node_wait=5.0
    )
    try:
        jobs = [jc.submit(i) for i in range(8)]
        assert [job() for job in jobs] == list(range(1, 9))
        assert {job.ip_addr for job in jobs} != {"6.6.6.6"}
    finally:
        jc.close()
    assert rclient.xlen(keys.node_jobs("evil")) == 0


def test_discovery_finds_the_relay_and_stop_is_clean(
    redis_url: str, cluster: str, start_relay: Callable[..., Relay]
) -> None:
    port = _free_udp_port()
    relay = start_relay(redis_url, "--discovery-port", str(port), "--secret", SECRET)
    # on the loopback only: a test broadcasts on the machine's networks only inside namespaces
    # (tests/cluster/test_discovery_interface.py)
    url = discovery.discover(cluster, SECRET, timeout=10, port=port, interface="lo")
    assert url.endswith(f":{relay.port}")
    assert redis.Redis.from_url(url).ping()
    with pytest.raises(rdispy.errors.BrokerError, match="no rdispy relay"):
        discovery.discover("another-cluster", SECRET, timeout=1, port=port, interface="lo")
    with pytest.raises(rdispy.errors.BrokerError):  # an answer under another secret is ignored
        discovery.discover(cluster, "wrong-secret", timeout=1, port=port, interface="lo")
    relay.proc.send_signal(signal.SIGTERM)
    assert relay.proc.wait(10) == 0
    assert "stopping" in relay.output()
