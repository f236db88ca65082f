"""A cluster's nodes, queues, clients and counters, read out of Redis into plain dataclasses
(``ClusterState``, by ``read_state``) for `rdispy status`, the web monitor and its metrics; also
the clusters one Redis holds (``list_clusters``).  Nothing here writes.

One ``read_state`` call costs a few pipelined round trips whatever the cluster's size (node
records, per-stream group info, counters).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from rdispy import stats, wire
from rdispy.keys import CONSUMER_GROUP, Keys
from rdispy.monitor.replies import as_float, as_str, entry_time
from rdispy.nodes import live_nodes

#: Version of the JSON that `rdispy status --json` and the monitor's API return.  It goes up
#: when a field changes meaning or goes away; new fields may appear without it changing.
SCHEMA_VERSION = 1

#: Seconds without a touch of its record after which a client with no results waiting is not
#: listed (a running client touches it every second).
CLIENT_GONE = 60.0


@dataclass
class NodeState:
    name: str
    address: str
    host: str
    cores: int
    busy: int
    jobs_done: int
    heartbeat_age: float  # seconds since its last heartbeat
    version: str  # rdispy version
    python: str
    cloudpickle: str
    incarnation: str
    relay: str  # the relay it came through, or "direct"
    pid: int
    started: float
    platform: str


@dataclass
class QueueState:
    stream: str  # the key
    kind: str  # "shared", "node" or "client" (a SharedJobCluster client's fair queue)
    owner: str  # node name or client id ("" for the shared queue)
    length: int  # entries in the stream: queued plus taken by consumers
    pending: int  # taken by a consumer and not finished
    queued: int  # not taken yet
    oldest_age: float | None  # seconds since the oldest entry was added


@dataclass
class ClientState:
    id: str
    host: str
    pid: int
    seen_age: float  # seconds since it last touched its record (every second while it runs)
    results_waiting: int  # results it has not collected


@dataclass
class ClusterState:
    cluster: str
    time: float
    nodes: list[NodeState]
    queues: list[QueueState]
    clients: list[ClientState]
    dead_letters: int
    counters: dict[str, int]
    latency: dict[str, float]
    clusters: list[str] = field(default_factory=list)  # every cluster in this Redis, if listed
    schema: int = SCHEMA_VERSION

    @property
    def cores(self) -> int:
        return sum(n.cores for n in self.nodes)

    @property
    def busy(self) -> int:
        return sum(n.busy for n in self.nodes)

    @property
    def queued(self) -> int:
        return sum(q.queued for q in self.queues)

    @property
    def running(self) -> int:
        return sum(q.pending for q in self.queues)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["totals"] = {
            "nodes": len(self.nodes),
            "cores": self.cores,
            "busy": self.busy,
            "queued": self.queued,
            "running": self.running,
        }
        return out


def list_clusters(client: redis.Redis, prefix: str = "rdispy", limit: int = 1000) -> list[str]:
    """Names of the clusters with a node or job registry in this Redis (SCAN, so cache it)."""
    found: set[str] = set()
    for pattern in (f"{prefix}:{{*}}:jobs", f"{prefix}:{{*}}:nodes"):
        for key in client.scan_iter(match=pattern, count=1000):
            name = as_str(key)[len(prefix) + 2 :].split("}", 1)[0]
            if name:
                found.add(name)
            if len(found) >= limit:
                break
    return sorted(found)


def read_state(client: redis.Redis, keys: Keys, signer: wire.Signer | None = None) -> ClusterState:
    """Nodes, queues, clients and counters of one cluster (with an enabled ``signer``, only
    nodes whose record carries a valid signature)."""
    now = time.time()
    nodes = [_node(rec, now) for rec in live_nodes(client, keys, signer)]
    nodes.sort(key=lambda n: n.name)
    node_names = sorted({n.name for n in nodes} | registered_node_names(client, keys))
    client_ids = [as_str(c) for c in client.zrange(keys.clients, 0, -1)]  # type: ignore[union-attr]
    streams = [(keys.jobs, "shared", "")]
    streams += [(keys.node_jobs(n), "node", n) for n in node_names]
    streams += [(keys.fair_queue(c), "client", c) for c in queued_clients(client, keys)]
    queues = _queues(client, streams, now)
    pipe = client.pipeline(transaction=False)
    for cid in client_ids:
        pipe.hgetall(keys.client(cid))
        pipe.xlen(keys.results(cid))
    pipe.xlen(keys.dead_letters)
    pipe.hgetall(keys.counters)
    pipe.hgetall(keys.latency)
    replies = pipe.execute()
    clients = []
    for i, cid in enumerate(client_ids):
        record, waiting = replies[2 * i], replies[2 * i + 1]
        if not record:
            continue  # gone (its record expired)
        rec = {as_str(k): as_str(v) for k, v in record.items()}
        seen_age = max(0.0, now - as_float(rec.get("seen"), now))
        if seen_age > CLIENT_GONE and not waiting:
            continue  # a client that went away and left nothing to collect
        clients.append(
            ClientState(
                id=cid,
                host=rec.get("host", ""),
                pid=int(as_float(rec.get("pid"))),
                seen_age=seen_age,
                results_waiting=int(waiting),
            )
        )
    dead, raw_counters, raw_latency = replies[-3:]
    counters = {name: 0 for name in stats.COUNTERS}
    counters.update({as_str(k): int(as_float(v)) for k, v in raw_counters.items()})
    latency = {as_str(k): as_float(v) for k, v in raw_latency.items()}
    return ClusterState(keys.cluster, now, nodes, queues, clients, int(dead), counters, latency)


def queued_clients(client: redis.Redis, keys: Keys) -> list[str]:
    """Clients whose fair queue may hold jobs (the fair scheduler's index: a client that died
    with jobs queued stays in it until they are moved)."""
    return sorted(as_str(c) for c in client.zrange(keys.fair_queues, 0, -1))  # type: ignore[union-attr]


def registered_node_names(client: redis.Redis, keys: Keys) -> set[str]:
    """Names of the nodes in the cluster's node registry (live or not)."""
    return {as_str(n) for n in client.zrange(keys.nodes, 0, -1)}  # type: ignore[union-attr]


def _node(rec: dict[str, str], now: float) -> NodeState:
    return NodeState(
        name=rec.get("name", "?"),
        address=rec.get("ip", ""),
        host=rec.get("host", ""),
        cores=int(as_float(rec.get("cpus"))),
        busy=int(as_float(rec.get("busy"))),
        jobs_done=int(as_float(rec.get("done"))),
        heartbeat_age=max(0.0, now - as_float(rec.get("hb"), now)),
        version=rec.get("rdispy", ""),
        python=rec.get("python", ""),
        cloudpickle=rec.get("cloudpickle", ""),
        incarnation=rec.get("incarnation", ""),
        relay=rec.get("relay") or "direct",
        pid=int(as_float(rec.get("pid"))),
        started=as_float(rec.get("started")),
        platform=rec.get("platform", ""),
    )


def _queues(
    client: redis.Redis, streams: list[tuple[str, str, str]], now: float
) -> list[QueueState]:
    pipe = client.pipeline(transaction=False)
    for key, _, _ in streams:
        pipe.xlen(key)
        pipe.xrange(key, "-", "+", count=1)
        pipe.xpending(key, CONSUMER_GROUP)
    replies = pipe.execute(raise_on_error=False)
    out = []
    for i, (key, kind, owner) in enumerate(streams):
        length, first, summary = replies[3 * i : 3 * i + 3]
        length = length if isinstance(length, int) else 0
        if kind != "shared" and length == 0:
            continue  # an idle node's or client's empty queue says nothing
        pending = int(summary.get("pending", 0)) if isinstance(summary, dict) else 0
        if kind == "client":
            pending = 0  # a fair queue has no consumers: the scheduler moves its entries
        oldest = now - entry_time(first[0][0]) if isinstance(first, list) and first else None
        out.append(
            QueueState(
                stream=key,
                kind=kind,
                owner=owner,
                length=length,
                pending=pending,
                queued=max(0, length - pending),
                oldest_age=None if oldest is None else max(0.0, oldest),
            )
        )
    return out
