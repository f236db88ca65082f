"""The I/O and bookkeeping beside placement, for a client that places jobs on nodes (JobCluster).

``rdispy.scheduler.placement`` chooses a node from node loads and selectors and does no I/O.
This module gives it its inputs and keeps the client's side of the count: ``NodeLoads`` reads
the live nodes' loads from Redis (node records and the length of each node's own job stream),
at most every quarter second, and adds the jobs this client placed since; ``NodeCaps`` keeps
``set_node_cpus`` caps, the jobs placed per node that have not ended, and the jobs held back
while every node they may run on is at its cap.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

import redis

from rdispy import avail, wire
from rdispy.keys import Keys
from rdispy.nodes import live_nodes
from rdispy.scheduler.placement import NodeLoad

#: Seconds a snapshot of node loads is used before it is read again.
MAX_AGE = 0.25

Job = TypeVar("Job")


class NodeLoads:
    """Live nodes and their load: one snapshot from Redis, refreshed at most every ``max_age``
    seconds, and the jobs this client placed on each node since that snapshot was taken."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        signer: wire.Signer | None = None,
        max_age: float = MAX_AGE,
    ) -> None:
        self.client, self.keys, self.signer = client, keys, signer
        self.max_age = max_age
        self._snapshot: tuple[float, list[NodeLoad]] = (0.0, [])
        self._placed: dict[str, int] = {}  # jobs placed per node since the snapshot

    def current(self) -> list[NodeLoad]:
        """The live nodes and their load as of the latest snapshot (read again when older than
        ``max_age``; a new snapshot starts the count of jobs placed since afresh)."""
        taken, loads = self._snapshot
        if time.monotonic() - taken < self.max_age:
            return loads
        records = live_nodes(self.client, self.keys, self.signer)
        pipe = self.client.pipeline(transaction=False)
        for rec in records:
            pipe.xlen(self.keys.node_jobs(rec["name"]))
        loads = [
            NodeLoad(
                rec["name"],
                rec.get("ip", ""),
                int(rec.get("cpus", 1)),
                int(rec.get("busy", 0)),
                int(queued),
                rec.get("platform", ""),
                avail.from_record(rec),
            )
            for rec, queued in zip(records, pipe.execute(), strict=True)
        ]
        self._snapshot, self._placed = (time.monotonic(), loads), {}
        return loads

    def with_placed(self, load: NodeLoad) -> NodeLoad:
        """``load`` with the jobs this client placed on that node since the snapshot queued."""
        return dataclasses.replace(load, queued=load.queued + self._placed.get(load.name, 0))

    def note_placed(self, name: str) -> None:
        """A job was just placed on node ``name``."""
        self._placed[name] = self._placed.get(name, 0) + 1


class NodeCaps(Generic[Job]):
    """At most so many of one cluster's jobs at once on a node (dispy's ``set_node_cpus``).

    Counts the cluster's jobs placed on each node that have not ended, and holds, in order, the
    jobs that found every node they may run on at its cap, until one has room.  ``lock`` guards
    the held jobs (re-entrant: releasing one may hold another)."""

    def __init__(self) -> None:
        self.caps: dict[str, int] = {}  # node -> most jobs of ours at once there
        self.outstanding: dict[str, int] = {}  # node -> jobs of ours placed there, not ended
        self.held: collections.deque[Job] = collections.deque()  # waiting for room
        self.lock = threading.RLock()

    def set(self, name: str, cpus: int) -> None:
        self.caps[name] = cpus

    def under(self, name: str) -> bool:
        """Whether one more job of ours may go to node ``name``."""
        cap = self.caps.get(name)
        return cap is None or self.outstanding.get(name, 0) < cap

    def all_full(self, eligible: Iterable[NodeLoad]) -> bool:
        """Eligible nodes exist and every one is at its cap (else: send, or fail for want of a
        node)."""
        nodes = list(eligible)
        return bool(nodes) and not any(self.under(n.name) for n in nodes)

    def placed(self, name: str) -> None:
        """A job of ours was sent to node ``name``."""
        self.outstanding[name] = self.outstanding.get(name, 0) + 1

    def ended(self, name: str) -> None:
        """A job of ours placed on node ``name`` ended."""
        self.outstanding[name] -= 1

    def hold(self, job: Job) -> None:
        with self.lock:
            self.held.append(job)

    def withdraw(self, job: Job) -> bool:
        """Take ``job`` out of the held ones; whether it was there."""
        with self.lock:
            if job in self.held:
                self.held.remove(job)
                return True
            return False

    def release(self, full: Callable[[Job], bool], send: Callable[[Job], None]) -> None:
        """Send held jobs, in order, while the first one's nodes are not all ``full``."""
        with self.lock:
            while self.held and not full(self.held[0]):
                send(self.held.popleft())
