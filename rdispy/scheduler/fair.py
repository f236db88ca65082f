"""The fair scheduler behind SharedJobCluster and `rdispy scheduler`.

Clients of a shared cluster queue their jobs in their own stream (``queue:<client>``); the
scheduler keeps the shared stream short (about two jobs per live core not yet handed to a
consumer) and refills it round-robin, one job from each non-empty client queue in turn, so a
client that queued ten thousand jobs does not starve one that queued ten.  Each move is one
atomic script, and all state is in Redis: any number of schedulers may run, and one that dies
loses nothing; a restarted one carries on.

The client queues are found in an index (``keys.fair_queues``), never by scanning the keyspace
on the periodic path: a client adds itself to the index before and after each batch it queues,
and the scheduler drops a client only in the script that finds its queue empty.  One SCAN at
start (and after each outage) indexes queues that an older client, or one killed in the middle
of a write, left out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from rdispy import connection, defaults, wire
from rdispy.keys import CONSUMER_GROUP, Keys
from rdispy.nodes import live_nodes
from rdispy.scripts import Scripts
from rdispy.streams import ensure_group

log = logging.getLogger(__name__)

#: Jobs per live core the shared stream may hold before they are handed to consumers.
DEPTH_PER_CORE = 2
#: Seconds between passes when there is nothing to move.
IDLE_PAUSE = 0.02
#: Seconds a scheduler's heartbeat lasts.
HEARTBEAT_TTL = 3


class FairScheduler:
    """Round-robin mover from client queues into the shared stream."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self.scripts = Scripts(client)
        self._stop = threading.Event()
        self._next = 0  # where the round-robin resumes
        self._cores = (0.0, 1)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Move jobs until ``stop()``; rides out Redis outages with a capped backoff."""
        ready = False  # the group made and the queues indexed: at start and after each outage
        backoff = 0.05
        while not self._stop.is_set():
            try:
                if not ready:
                    ensure_group(self.client, self.keys)
                    self.index_queues()
                    ready = True
                moved = self.step()
                backoff = 0.05
            except redis.RedisError as exc:
                ready = False
                log.warning("scheduler: Redis unreachable (%s); retrying in %.2fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if not moved:
                self._stop.wait(IDLE_PAUSE)

    def index_queues(self) -> int:
        """Add every client queue in the keyspace to the index (one SCAN, at start); returns
        how many were missing from it."""
        head, tail = self.keys.fair_queue("\0").split("\0")
        found = {
            key.decode()[len(head) : len(key) - len(tail) or None]
            for key in self.client.scan_iter(match=self.keys.fair_queue("*"), _type="stream")
        }
        if not found:
            return 0
        added = self.client.zadd(self.keys.fair_queues, dict.fromkeys(found, time.time()), nx=True)
        return int(added or 0)

    def step(self) -> int:
        """One pass: beat, then move up to the room left in the shared stream.  Returns moved."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.keys.scheduler, "1", ex=HEARTBEAT_TTL)
        pipe.xinfo_groups(self.keys.jobs)
        pipe.zrange(self.keys.fair_queues, 0, -1)
        _, groups, clients = pipe.execute()
        room = DEPTH_PER_CORE * self._live_cores() - _undelivered(groups, self._length)
        if room <= 0 or not clients:
            return 0
        queues = sorted(c.decode() for c in clients)
        moved = 0
        while room > 0 and queues:
            self._next %= len(queues)
            client_id = queues[self._next]
            if self._move_oldest(client_id):
                moved += 1
                room -= 1
                self._next += 1
            else:
                queues.pop(self._next)  # empty now; the rest keep their turn order
        return moved

    def _move_oldest(self, client_id: str) -> bool:
        queue = self.keys.fair_queue(client_id)
        oldest: Any = self.client.xrange(queue, "-", "+", count=1)
        if not oldest:
            self.scripts.forget_queue(keys=[queue, self.keys.fair_queues], args=[client_id])
            return False
        eid, fields = oldest[0]
        job = self.keys.job(fields.get(wire.F.ID, b"").decode())
        self.scripts.move(keys=[queue, self.keys.jobs, job], args=[eid, defaults.JOB_TTL])
        return True  # moved, or cancelled meanwhile: either way this queue had its turn

    def _live_cores(self) -> int:
        checked, cores = self._cores
        if time.monotonic() - checked > 1.0:
            cores = sum(int(n.get("cpus", 0)) for n in live_nodes(self.client, self.keys)) or 1
            self._cores = (time.monotonic(), cores)
        return cores

    def _length(self) -> int:
        return int(self.client.xlen(self.keys.jobs))


def _undelivered(groups: Any, length: Callable[[], int]) -> int:
    """Entries of the shared stream no consumer has been handed yet (from XINFO GROUPS; servers
    too old to report the lag are asked for the stream's length)."""
    for group in groups:
        if group["name"] in (CONSUMER_GROUP, CONSUMER_GROUP.encode()):
            lag = group.get("lag")
            if lag is not None:
                return int(lag)
            return length() - int(group.get("pending", 0))
    return 0


def running(client: redis.Redis, keys: Keys) -> bool:
    """Whether any fair scheduler has beaten recently."""
    return bool(client.exists(keys.scheduler))


def start_thread(url: str, keys: Keys) -> tuple[FairScheduler, threading.Thread]:
    """A scheduler in a daemon thread of this process (what SharedJobCluster does by default)."""
    scheduler = FairScheduler(connection.connect(url), keys)
    thread = threading.Thread(target=scheduler.run, name="rdispy-scheduler", daemon=True)
    thread.start()
    return scheduler, thread
