"""The node's heartbeat, and what it tells: whether this node was declared dead, and which
other nodes are lost.

Each beat sweeps stale handoff folders, refreshes the name lease and rewrites the node's record
with its TTL.  A beat that finds our record gone while one of our jobs is now owned by another
consumer, or a result of ours dropped as taken over, means others declared this node dead: the
supervisor then comes back as a new incarnation.  The times of successful beats tell a lost
node (Redis was there all along) from a Redis outage (every record expired at once), which sets
how long a missing node's jobs wait before they are taken.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import time
from collections.abc import Mapping
from typing import Protocol

import redis

from rdispy import defaults, handoff, wire
from rdispy.keys import Keys
from rdispy.nodes import NodeRecord, heartbeat, live_nodes
from rdispy.worker.lease import NameLease
from rdispy.worker.recovery import Recoverer
from rdispy.worker.slots import Slots

log = logging.getLogger(__name__)


class Named(Protocol):
    """A consumer process, as the supervisor tracks it."""

    name: str


class Heartbeat:
    """The node's beats, with what they find out."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        signer: wire.Signer,
        record: NodeRecord,
        slots: Slots,
        children: Mapping[int, Named],
        recoverer: Recoverer,
        lease: NameLease,
        interval: float,
    ) -> None:
        self.client = client
        self.keys = keys
        self.signer = signer
        self.record = record
        self.name = record.name
        self.slots = slots
        self.children = children  # the supervisor's consumers, by slot
        self.recoverer = recoverer
        self.lease = lease
        self.interval = interval
        self.registered = False  # a beat has registered this incarnation
        self._fenced_seen = 0  # dropped results already accounted for
        # when our heartbeats succeeded (monotonic), to tell a lost node from a Redis outage
        self._beats: collections.deque[float] = collections.deque(
            maxlen=4 * defaults.HEARTBEATS_MISSED
        )

    def beat(self, stopping: bool) -> bool:
        """One heartbeat; True if this node was declared dead (it must reincarnate)."""
        with contextlib.suppress(OSError):
            handoff.sweep()  # handoff folders of crashed clients on this host
        if not self.lease.refresh():
            return False
        try:
            known = heartbeat(
                self.client,
                self.keys,
                self.record,
                self.slots.weight_total(),
                self.slots.done(),
                self.interval * defaults.HEARTBEATS_MISSED,
                self.signer,
            )
        except redis.RedisError as exc:
            log.warning("node %s: heartbeat failed: %s", self.name, exc)
            return False
        self._beats.append(time.monotonic())
        fenced = self.slots.fenced_total()  # results dropped since the last beat: jobs taken
        dropped, self._fenced_seen = fenced > self._fenced_seen, fenced
        # A dropped result means a job of ours was taken over: we were declared dead, even if
        # the beat that found our record gone came before our consumers tried to publish.
        if (
            self.registered
            and not stopping
            and (dropped or (not known and self._jobs_taken_over()))
        ):
            return True
        self.registered = True
        return False

    def _jobs_taken_over(self) -> bool:
        """Our record had gone (a partition, or a Redis that was frozen, unreachable or
        restarted): were we declared dead, that is, does another consumer now own a job one of
        ours is running?  If not, this beat has re-registered us and nothing needs redoing."""
        streams = (self.keys.jobs, self.keys.node_jobs(self.name))
        for slot, child in self.children.items():
            current = self.slots.running(slot)
            if current and not any(
                self.recoverer.still_owns(child.name, s, current.entry_id) for s in streams
            ):
                return True
        return False

    def lost_node_grace(self) -> float:
        """How long a node must stay out of the live records before its jobs are taken.  When
        Redis was frozen or unreachable, every record expires at once as it resumes, so then
        live nodes get a whole TTL to re-register.  When our own heartbeats went through, each
        on time, for longer than a TTL, Redis was there all along and a missing record means a
        lost node: one heartbeat is enough (a frozen node's jobs move about a TTL sooner)."""
        beat = self.interval
        ttl = beat * defaults.HEARTBEATS_MISSED
        now = time.monotonic()
        window = [t for t in self._beats if now - t <= ttl + 2 * beat]
        steady = (
            bool(window)
            and now - window[-1] <= 1.5 * beat
            and window[0] <= now - ttl  # the window is covered, from its start
            and all(b - a <= 1.5 * beat for a, b in itertools.pairwise(window))
        )
        return beat if steady else ttl

    def settle_lost_nodes(self) -> None:
        try:
            live = {
                n["name"]: n.get("incarnation", "")
                for n in live_nodes(self.client, self.keys, self.signer)
            }
            self.recoverer.settle_lost_nodes(live, self.lost_node_grace())
        except redis.RedisError as exc:
            log.warning("node %s: lost-node scan failed: %s", self.name, exc)
