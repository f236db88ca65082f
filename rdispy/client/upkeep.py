"""The client's periodic health checks, run by the results thread every CHECK_INTERVAL.

    ResultReader.run (baton held) --checks()--> Upkeep
    Upkeep --alive()? --> the owned embedded node: if dead, every pending future fails
           --periodic[]--> the JobCluster's own checks (stranded jobs, node watch)
           --HSET/EXPIRE/ZADD, INFO server--> the client record, the server's run id
           --a new run id--> Sender.push (blobs and unfinished jobs again); True: the reader
               rereads its stream from the start
           --the cluster's count of deleted pending entries grew--> JobLost for ours that are gone

A server that came back empty lost the client record too: everything unfinished is sent again.
One that kept its data (AOF, a replica) may have lost the last writes before the crash: jobs no
stream holds and that have no result are sent again.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis

from rdispy import defaults, wire
from rdispy.client.ledger import Ledger
from rdispy.client.sender import Sender
from rdispy.errors import ExecutorBroken, JobLost
from rdispy.streams import ensure_group

if TYPE_CHECKING:
    from rdispy.client.future import RemoteFuture

log = logging.getLogger(__name__)


class Upkeep:
    """The client record and what the results thread checks every CHECK_INTERVAL."""

    def __init__(
        self,
        ledger: Ledger,
        sender: Sender,
        client_id: str,
        alive: Callable[[], bool] | None,
    ) -> None:
        self._ledger = ledger
        self._client = ledger.client
        self._keys = ledger.keys
        self._sender = sender
        self._client_id = client_id
        self._alive = alive  # health of the nodes this client owns (the embedded default)
        self.broken: ExecutorBroken | None = None
        self.periodic: list[Callable[[], None]] = []  # run by the results thread every second
        #: provisional results nodes dropped because this client left too many unread
        self.dropped_events = 0
        self._lost_now = self._lost_seen = 0  # the cluster's count of deleted pending entries
        self._run_id = ""

    def start(self) -> None:
        """The first touch of the client record (at construction): the run id to compare to."""
        self._run_id = self.touch_client_record()
        self._lost_seen = self._lost_now

    def checks(self) -> bool:
        """What the results thread checks every CHECK_INTERVAL (holding the reader's baton);
        True when the server restarted, and the result stream must be read from its start."""
        self._check_owned_nodes()
        for check in self.periodic:
            check()
        return self._server_lost_our_state()

    def _check_owned_nodes(self) -> None:
        """Fail every pending job at once if the nodes this client owns have died."""
        if self._alive is None or self.broken is not None or self._alive():
            return
        self.broken = ExecutorBroken(
            "the embedded server or local node died; pending jobs cannot finish "
            "(see the log above for why, and create a new Executor)"
        )
        log.error("%s", self.broken)
        for future in self._ledger.pending():
            self._ledger.forget(future.job_id)
            future.set_exception(self.broken)

    def touch_client_record(self) -> str:
        """Refresh this client's record (and its expiry); returns the server's run id.  Also
        reads how many pending entries nodes found deleted (``_lost_now``)."""
        pipe = self._client.pipeline(transaction=False)
        pipe.info("server")
        key = self._keys.client(self._client_id)
        pipe.hset(
            key, mapping={"pid": os.getpid(), "host": socket.gethostname(), "seen": time.time()}
        )
        pipe.expire(key, defaults.RESULT_TTL)
        pipe.hget(self._keys.counters, "lost")
        pipe.hget(key, "dropped")
        now = time.time()
        pipe.zadd(self._keys.clients, {self._client_id: now})
        pipe.zremrangebyscore(self._keys.clients, 0, now - defaults.RESULT_TTL)
        replies = pipe.execute()
        self._lost_now = int(replies[3] or 0)
        dropped = int(replies[4] or 0)
        if dropped > self.dropped_events:
            log.warning(
                "%d provisional results were dropped because this client's result stream was "
                "full (it read too slowly); final results are never dropped",
                dropped - self.dropped_events,
            )
            self.dropped_events = dropped
        return str(replies[0]["run_id"])

    def remove_client_record(self, results_key: str) -> None:
        """Remove the client's results stream and record (a closed client with nothing left)."""
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(results_key, self._keys.client(self._client_id))
        pipe.zrem(self._keys.clients, self._client_id)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("client %s: its results stream and record stay (%s)", self._client_id, exc)

    def _server_lost_our_state(self) -> bool:
        """Notice a server that restarted, or a replica that took over, and send again every
        unfinished job it does not hold (see the module docstring).  Returns True on a restart
        (the caller rereads its result stream from the start).
        """
        existed = bool(self._client.exists(self._keys.client(self._client_id)))
        run_id = self.touch_client_record()
        lost, self._lost_seen = self._lost_now > self._lost_seen, self._lost_now
        if run_id == self._run_id:
            if lost:
                self._fail_missing()
            return False
        self._run_id = run_id
        ensure_group(self._client, self._keys)
        futures, sent = self._ledger.futures, self._ledger.sent
        if existed:
            missing = self._missing_jobs()
            log.warning(
                "Redis restarted with its data (or a replica took over); sending %d jobs it lost "
                "again",
                len(missing),
            )
        else:
            missing = [futures[job_id] for job_id in sent if job_id in futures]
            log.warning("Redis restarted empty; sending %d unfinished jobs again", len(missing))
        if missing:
            for digest, blob in self._ledger.blob_data.items():
                self._sender.push(self._keys.blob(digest), blob)
        for future in missing:
            fields = sent.get(future.job_id)
            if fields is not None and not future.done():
                future.entry_id = None
                self._sender.push(future, fields)
        self._sender.flush()
        return True

    def _missing_jobs(self) -> list[RemoteFuture]:
        """Our sent, unfinished jobs that no job stream holds and that have no result: what a
        server lost.  Queues are read before the shared stream, which jobs move into."""
        self._sender.settle()  # entry ids of jobs sent without waiting
        candidates = {
            job_id: future
            for job_id, future in list(self._ledger.futures.items())
            if not future.done() and future.entry_id is not None
        }
        if not candidates:
            return []
        for key in reversed(self._ledger.job_streams(self._client_id)):
            for _, fields in self._ledger.entries(key):
                candidates.pop(fields.get(wire.F.ID, b"").decode(errors="replace"), None)
        if not candidates:
            return []
        pipe = self._client.pipeline(transaction=False)
        for job_id in candidates:
            pipe.hget(self._keys.job(job_id), "st")
        states = pipe.execute()
        return [f for f, st in zip(candidates.values(), states, strict=True) if st != b"done"]

    def _fail_missing(self) -> None:
        """Some node found pending entries deleted: fail those of our jobs with JobLost."""
        for future in self._missing_jobs():
            self._ledger.forget(future.job_id)
            log.error("job %s: its entry was deleted from Redis before it ran", future.job_id)
            future.set_exception(
                JobLost(
                    "its entry was deleted from Redis while queued or pending (by XDEL, XTRIM "
                    "or eviction); submit it again",
                    future.job_id,
                )
            )
