"""The outbox and the sender thread: how signed job entries and blobs reach Redis.

    Dispatcher.submit --push (blob key, bytes) and (future, entry)--> outbox
    outbox --pipelined SET NX / XADD / HINCRBY (the submitting thread when nothing else is in
        flight, else the sender thread)--> <cluster>:blob:*, the job streams
    replies --entry ids (or Redis refusing a job)--> future.entry_id / future.set_exception

A submit with nothing else in flight sends from its own thread and leaves the replies unread
(``Link.owed``); they are read every UNREAD_SENDS sends, by ``settle`` (whoever needs entry ids
calls it: cancel, taken, the upkeep), or by the sender thread once idle.  A send whose connection
failed may have reached the server: its jobs are marked uncertain and put back in the outbox, and
the next send first looks for them in their streams and job records (``_not_yet_sent``), so that
no job runs twice.  The send lock is held while items leave the outbox for Redis, and by whoever
changes where a sent job is (cancel, a "moved" event).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from functools import partial
from typing import Any

import redis

from rdispy import connection, defaults, stats, wire
from rdispy.client.future import RemoteFuture
from rdispy.client.ledger import Ledger
from rdispy.errors import BrokerError
from rdispy.link import Link, has_large

log = logging.getLogger(__name__)

#: What waits in the outbox: (blob key, bytes) or (future, job entry fields).
Outgoing = tuple[str | RemoteFuture, wire.Fields | bytes]

#: Sends whose replies a direct submit leaves unread before it reads them all (one recv).
UNREAD_SENDS = 32


class Sender:
    """The outbox of one client and the thread that empties it."""

    def __init__(self, ledger: Ledger, closed: threading.Event, name: str) -> None:
        self._ledger = ledger
        self._keys = ledger.keys
        self._closed = closed
        self.outbox: deque[Outgoing] = deque()
        self._uncertain: set[str] = set()  # jobs whose send failed after it may have arrived
        self.lock = threading.RLock()  # held while items leave the outbox for Redis
        self._link = Link(ledger.client)  # connects on its first send
        self._wakeup = threading.Condition()
        self._idle = False
        self._blobs_touched = time.monotonic()
        self._thread = threading.Thread(target=self._send_loop, name=name, daemon=True)

    def start(self) -> None:
        """Start the sender thread."""
        self._thread.start()

    def push(self, target: str | RemoteFuture, item: wire.Fields | bytes) -> None:
        """Queue a blob (its key and bytes) or a job (its future and signed entry)."""
        self.outbox.append((target, item))

    def send_now(self) -> None:
        """Send the outbox from this thread, sparing a hand-off's latency, unless someone else
        is sending (then the sender thread is woken); the replies (entry ids) are read in one
        go every UNREAD_SENDS sends, by ``settle`` (before anything needs them), or by the
        sender thread once idle."""
        if not self.lock.acquire(blocking=False):
            self.flush()
            return
        try:
            self._send_outbox(wait=False)
            if self._link.owed >= UNREAD_SENDS:
                self._link.settle()
        except (redis.ConnectionError, redis.TimeoutError):
            self.flush()  # the sender thread retries with backoff
        finally:
            self.lock.release()

    def flush(self) -> None:
        """Wake the sender thread if it sleeps; it sends everything queued in one pipeline."""
        if self._idle:
            with self._wakeup:
                self._wakeup.notify()

    def withdraw(self, future: RemoteFuture) -> bool:
        """Take a job out of the outbox before it is sent (send lock held); True if it was there."""
        queued = [item for item in self.outbox if item[0] is future]
        for item in queued:
            self.outbox.remove(item)
        return bool(queued)

    def settle(self) -> None:
        """Read the replies of jobs sent without waiting (their entry ids, or Redis refusing
        them); whoever needs entry ids calls this first."""
        with self.lock:
            if self._link.owed:
                self._link.settle()

    def _send_loop(self) -> None:
        backoff = 0.05
        while not self._closed.is_set():
            with self._wakeup:
                # idle is raised before the check, so a submit that misses the check notifies
                self._idle = True
                while not self.outbox and not self._closed.is_set():
                    if not self._wakeup.wait(0.5):
                        break
                self._idle = False
            try:
                if self._link.owed:  # replies a submit left unread
                    self.settle()
                while self.outbox:
                    with self.lock:
                        self._send_outbox()
                backoff = 0.05
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("cannot send jobs to Redis (%s); retrying in %.2fs", exc, backoff)
                self._closed.wait(backoff)
                backoff = min(backoff * 2, defaults.MAX_BACKOFF)

    def _send_outbox(self, wait: bool = True) -> None:
        """Send up to 1000 queued items in one pipeline (caller holds the send lock); with
        ``wait`` False their replies are read by the next send or ``settle``."""
        batch: list[Outgoing] = []
        while self.outbox and len(batch) < 1000:
            batch.append(self.outbox.popleft())
        if self._uncertain:
            try:
                batch = self._not_yet_sent(batch)
            except (redis.ConnectionError, redis.TimeoutError):
                self.outbox.extendleft(reversed(batch))
                raise
        commands: list[tuple[Any, ...]] = []
        queued = self._fair_clients(batch)
        if queued:  # indexed before and after the jobs: see scheduler/fair.py
            commands.append(("ZADD", self._keys.fair_queues, *_scored(queued)))
        lead = len(commands)
        large = False
        for target, item in batch:
            if isinstance(target, str):  # a function blob, sent before the jobs that name it
                assert isinstance(item, bytes)
                commands.append(("SET", target, item, "NX", "EX", defaults.BLOB_TTL))
                large = large or has_large((item,))
            else:
                assert isinstance(item, dict)
                stream = target.stream
                commands.append(("XADD", stream, "*", *itertools.chain(*item.items())))
                large = large or has_large(item.values())
        if queued:
            commands.append(("ZADD", self._keys.fair_queues, *_scored(queued)))
        jobs = sum(isinstance(target, RemoteFuture) for target, _ in batch)
        if jobs:
            commands.append(("HINCRBY", self._keys.counters, stats.SUBMITTED, jobs))
        if time.monotonic() - self._blobs_touched > defaults.BLOB_TTL / 4:
            for _, digest, _ in self._ledger.functions.values():
                commands.append(("EXPIRE", self._keys.blob(digest), defaults.BLOB_TTL))
            self._blobs_touched = time.monotonic()
        self._link.send(commands, partial(self._sent_replies, batch, lead), large=large)
        if wait:
            self._link.settle()

    def _fair_clients(self, batch: list[Outgoing]) -> set[str]:
        """The clients whose fair queue this batch writes to (this client's, if any)."""
        head = self._keys.fair_queue("")
        return {
            target.stream[len(head) :]
            for target, _ in batch
            if isinstance(target, RemoteFuture) and target.stream.startswith(head)
        }

    def _sent_replies(self, batch: list[Outgoing], lead: int, replies: list[Any] | None) -> None:
        """Apply the replies of a batch sent (after ``lead`` replies of other commands): entry
        ids, or Redis refusing a job; ``None`` when the connection failed first (the caller
        holds the send lock)."""
        if replies is None:
            # the server may have run some of these commands: look before sending them again
            self._uncertain.update(t.job_id for t, _ in batch if isinstance(t, RemoteFuture))
            self.outbox.extendleft(reversed(batch))
            return
        for (target, _), reply in zip(batch, replies[lead:], strict=False):
            if not isinstance(target, RemoteFuture):
                continue
            if isinstance(reply, Exception):
                self._ledger.forget(target.job_id)
                refused = connection.error_text(reply)
                target.set_exception(
                    BrokerError(f"job {target.job_id}: Redis refused the job: {refused}")
                )
            else:
                target.entry_id = reply

    def _not_yet_sent(self, batch: list[Outgoing]) -> list[Outgoing]:
        """``batch`` without the jobs that reached the server although their send failed (the
        reply was lost, or a frozen server ran them when it woke): those would run twice."""
        uncertain = {
            t.job_id: t
            for t, _ in batch
            if isinstance(t, RemoteFuture) and t.job_id in self._uncertain
        }
        if not uncertain:
            return batch
        found: dict[str, bytes] = {}
        for stream in {future.stream for future in uncertain.values()}:
            for eid, fields in self._ledger.entries(stream):
                job_id = fields.get(wire.F.ID, b"").decode(errors="replace")
                if job_id in uncertain:
                    found[job_id] = eid
        pipe = self._ledger.client.pipeline(transaction=False)
        for job_id in uncertain:
            # finished, charged a lost attempt, or moved out of a fair queue; not merely a
            # record of an earlier copy's dropped attempt (a server that lost the job keeps that)
            pipe.hmget(self._keys.job(job_id), "st", "n", "e")
        for job_id, marks in zip(uncertain, pipe.execute(), strict=True):
            if any(mark is not None for mark in marks):
                found.setdefault(job_id, b"")  # it ran, was retried or moved on: it arrived
        for job_id, eid in found.items():
            uncertain[job_id].entry_id = eid or None
        self._uncertain.difference_update(uncertain)
        if found:
            log.info("%d jobs reached Redis although their send failed; not sent again", len(found))
        return [
            item
            for item in batch
            if not (isinstance(item[0], RemoteFuture) and item[0].job_id in found)
        ]

    def join(self) -> None:
        """Wait for the sender thread to end (the caller set the closed event and flushed),
        then close its connection."""
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(5)
        self._link.close()


def _scored(clients: set[str]) -> list[Any]:
    """ZADD's score-member pairs: each client scored by when it last queued a batch."""
    now = time.time()
    return [part for client in sorted(clients) for part in (now, client)]
