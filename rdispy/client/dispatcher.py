"""The client's link to the cluster: turns calls into signed job entries, sends them in pipelined
batches, and turns result entries back into resolved futures.

    submit(fn, args) --pickle, size check (caller's thread)--> outbox
    outbox --pipelined XADD (whoever flushes)--> <cluster>:jobs
    <cluster>:results:<client> --XREAD (a waiting caller, or the results thread: see reader)-->
        future.set_result / set_exception

A function is pickled once per dispatcher and stored as a content-addressed blob before the first
job that names it is sent; jobs carry only its digest.  Results are deleted from the stream once
read, so the stream holds only what this client has not collected yet.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any

import redis

from rdispy import connection, defaults, handoff, serialization, stats, wire
from rdispy.client.future import RemoteFuture
from rdispy.client.reader import ResultReader
from rdispy.errors import (
    BrokerError,
    ExecutorBroken,
    JobError,
    JobLost,
    JobRefused,
    JobTerminated,
    JobTimeout,
    MemoryLimitExceeded,
    NodeLost,
    RdispyError,
    WorkerCrashed,
    also_as,
    broken_pool,
)
from rdispy.keys import CONSUMER_GROUP, Keys
from rdispy.link import Link, has_large
from rdispy.scripts import Scripts
from rdispy.streams import ensure_group

log = logging.getLogger(__name__)

#: What waits in the outbox: (blob key, bytes) or (future, job entry fields).
_Outgoing = tuple[str | RemoteFuture, wire.Fields | bytes]

#: Result-stream kinds that report progress rather than end a job.
EVENT_KINDS = (b"run", b"prov", b"file", b"excl", b"need", b"moved")


#: Sends whose replies a direct submit leaves unread before it reads them all (one recv).
UNREAD_SENDS = 32


class Dispatcher:
    """Sends jobs and collects results for one client process."""

    def __init__(
        self,
        url: str,
        keys: Keys,
        secret: str | None = None,
        max_payload: int = defaults.MAX_PAYLOAD,
        max_retries: int = defaults.MAX_RETRIES,
        connect_timeout: float = defaults.WAIT_FOR_REDIS,
        client_id: str | None = None,
        alive: Callable[[], bool] | None = None,
        dest_path: str | os.PathLike[str] | None = None,
        fair: bool = False,
        keep_results: bool = False,
        echo_output: bool = False,
    ) -> None:
        self.url = url
        #: The process that made this client: a child forked from it must not use it (its
        #: results would go to this process's futures), nor close it.
        self.owner_pid = os.getpid()
        self.echo_output = echo_output  # write jobs' output to this process's stdout/stderr
        # results stay in Redis after they are read, for a client that reattaches, until they
        # are RESULT_TTL old (payloads then go through Redis: a handed-over file is read once)
        self.keep_results = keep_results
        self.keys = keys
        self.signer = wire.Signer(secret)
        self.max_payload = max_payload
        self.max_retries = max_retries
        self.client_id = client_id or uuid.uuid4().hex[:16]
        self.fair = fair  # jobs go to this client's fair queue, fed to nodes round-robin
        self.dest_path = Path(dest_path or os.getcwd())  # where files sent by jobs land
        self._alive = alive  # health of the nodes this client owns (the embedded default)
        self.broken: ExecutorBroken | None = None
        self.results_key = keys.results(self.client_id)
        #: provisional results nodes dropped because this client left too many unread
        self.dropped_events = 0
        self._lost_now = self._lost_seen = 0  # the cluster's count of deleted pending entries
        self.client = connection.connect(url)
        connection.wait_for(self.client, url, connect_timeout)
        try:
            ensure_group(self.client, keys)
            connection.eviction_policy(self.client, url)
            self._run_id = self._touch_client_record()
            self._lost_seen = self._lost_now
        except redis.RedisError as exc:
            self.client.close()
            raise BrokerError(
                f"Redis at {connection.redact(url)} refused the client: "
                f"{connection.error_text(exc)} (see the README's ACL section)"
            ) from exc
        self.scripts = Scripts(self.client)
        self.handoff = None if keep_results else _handoff_folder(self.client_id)
        self._uploaded: set[str] = set()  # jobs whose handed-over payload a consumer fetched
        self._seq = itertools.count(1)
        # id(fn) -> (fn, or a weak reference to it where it takes one, so that the cache keeps
        # no object alive; its blob's digest; its label for the job entries' ``fq`` field)
        self._functions: dict[int, tuple[Any, str, bytes]] = {}
        self._blobs_touched = time.monotonic()
        self._futures: dict[str, RemoteFuture] = {}
        # what it takes to send unfinished jobs again if the server restarts empty
        self._sent: dict[str, wire.Fields] = {}
        self._blob_data: dict[str, bytes] = {}
        self.periodic: list[Callable[[], None]] = []  # run by the results thread every second
        self._latency = stats.LatencyTally()  # results received, flushed with their deletion
        self._outbox: deque[_Outgoing] = deque()
        self._uncertain: set[str] = set()  # jobs whose send failed after it may have arrived
        self._send_lock = threading.RLock()  # held while items leave the outbox for Redis
        self._send_link = Link(self.client)
        self._wakeup = threading.Condition()
        self._sender_idle = False
        self._closed = threading.Event()
        self._reader = ResultReader(
            self.client,
            self.results_key,
            keys.latency,
            keep_results,
            self._resolve,
            self._futures.__len__,
            self._latency,
            self._closed,
        )
        self._sender = threading.Thread(
            target=self._send_loop, name=f"rdispy-send-{self.client_id[:6]}", daemon=True
        )
        self._sender.start()
        # a client that reattaches adopts its unfinished jobs before it reads any result
        self.recovered = self._adopt_unfinished() if client_id else []
        self._listener = threading.Thread(
            target=self._reader.run,
            args=(self._checks,),
            name=f"rdispy-results-{self.client_id[:6]}",
            daemon=True,
        )
        self._listener.start()

    def _adopt_unfinished(self) -> list[RemoteFuture]:
        """Futures for every job this client id submitted that it has not collected: results
        waiting in its stream, and jobs still queued or running (dispy's recover_jobs)."""
        found: dict[str, RemoteFuture] = {}
        for key in self._job_streams():
            for eid, fields in self._entries(key):
                if fields.get(b"c", b"").decode() == self.client_id:
                    future = RemoteFuture(fields[b"id"].decode(), self)
                    future.stream, future.entry_id = key, eid
                    future.chunk_calls = _chunk_calls(fields)
                    found[future.job_id] = future
                    self._sent[future.job_id] = fields
        for _, fields in self._entries(self.results_key):
            kind = fields.get(b"k")
            if b"id" in fields and kind not in EVENT_KINDS and kind != b"wake":
                job_id = fields[b"id"].decode()
                future = found.setdefault(job_id, RemoteFuture(job_id, self))
                if future.chunk_calls is None:
                    future.chunk_calls = _chunk_calls(fields)
        for job_id, future in found.items():
            self._futures[job_id] = future
            self._seq = itertools.count(max(next(self._seq), _seq_of(job_id) + 1))
        return sorted(found.values(), key=lambda f: _seq_of(f.job_id))

    def _job_streams(self) -> list[str]:
        """The shared job stream and every node's own."""
        nodes = self.client.scan_iter(match=self.keys.node_jobs("*"), _type="stream")
        own_queue = self.keys.fair_queue(self.client_id)
        return [self.keys.jobs, own_queue, *(key.decode() for key in nodes)]

    def _entries(self, key: str) -> Iterable[tuple[bytes, dict[bytes, bytes]]]:
        start = "-"
        while True:
            batch: Any = self.client.xrange(key, start, "+", count=1000)
            yield from batch
            if len(batch) < 1000:
                return
            start = "(" + batch[-1][0].decode()

    # -- sending -------------------------------------------------------------------------------

    def _function_blob(self, fn: Callable[..., Any]) -> tuple[str, bytes | None, bytes]:
        """Digest of ``fn``'s blob, its bytes when they still have to be uploaded, and its label
        (``fq``: computed with the blob, once per function, then read from the same cache)."""
        known = self._functions.get(id(fn))
        if known is not None:
            held = known[0]
            if held is fn or (isinstance(held, weakref.ref) and held() is fn):
                return known[1], None, known[2]
        data = serialization.dumps(fn, "function")
        wire.check_size(data, self.max_payload)
        return wire.blob_digest(data), data, wire.function_label(fn)

    def _arguments(self, call: Any, seq: int, job_id: str) -> dict[str, object]:
        """Payload fields of one job: pickled inline, or (large, with a same-host folder)
        pickled straight into a handoff file that the entry names."""
        small = 0 <= serialization.plain_size(call) < handoff.MIN_BYTES // 2
        if small or self.handoff is None:
            if small:
                payload = serialization.dumps_plain(call)
            else:
                payload = serialization.dumps(call, "arguments", job_id)
            wire.check_size(payload, self.max_payload, job_id)
            if self.handoff is None:
                return {"p": payload}
            return {"p": payload, "sm": self.handoff.address}
        spool = handoff.Spool(self.handoff, f"a-{seq}")
        try:
            serialization.dump(call, spool, "arguments", job_id)
            wire.check_size(spool.size, self.max_payload, job_id)
            inline = spool.finish()
        except BaseException:
            spool.discard()
            raise
        if inline is not None:
            return {"p": inline, "sm": self.handoff.address}
        return {"sm": self.handoff.address, "pf": spool.name, "pz": spool.digest}

    def submit(
        self,
        fn: Callable[..., Any],
        calls: Iterable[Any],
        kind: str = "call",
        header: dict[str, object] | None = None,
    ) -> list[RemoteFuture]:
        """Queue one job per element of ``calls`` (an ``(args, kwargs)`` pair, or a list of them
        for a map chunk).  Everything is pickled and checked before anything is queued, so a
        bad argument leaves Redis untouched; the function blob goes out just before its first job.
        ``header`` adds entry fields (timeout, session, events; see ``wire``).
        """
        self.check_owner()
        if self.broken is not None:
            raise self.broken
        if self._closed.is_set():
            raise RuntimeError("cannot submit after the executor was shut down")
        digest, blob, label = self._function_blob(fn)
        node = (header or {}).get("nd")
        stream = self.keys.node_jobs(str(node)) if node else self.keys.jobs
        signed_for = stream
        if self.fair and not node:
            stream = self.keys.fair_queue(self.client_id)  # moved verbatim by the scheduler
        batch: list[tuple[RemoteFuture, wire.Fields]] = []
        try:
            for call in calls:
                seq = next(self._seq)
                job_id = f"{self.client_id}-{seq}"
                extra = self._arguments(call, seq, job_id)
                fields = wire.encode(
                    {
                        "id": job_id,
                        "c": self.client_id,
                        "fn": digest,
                        "fq": label,
                        "k": kind,
                        "n": len(call) if kind == "chunk" else None,
                        **extra,
                        "r": self.max_retries,
                        "t": repr(time.time()),
                        "rt": serialization.RUNTIME,
                        **(header or {}),
                    }
                )
                future = RemoteFuture(job_id, self)
                future.stream = stream
                batch.append((future, self.signer.sign(signed_for, fields)))
        except BaseException:
            for _, fields in batch:
                self._remove_handoff(fields)
            raise
        if blob is not None:
            try:
                self._functions[id(fn)] = (weakref.ref(fn), digest, label)
            except TypeError:  # builtins take no weak reference (and keep nothing alive)
                self._functions[id(fn)] = (fn, digest, label)
            self._blob_data[digest] = blob
            self._outbox.append((self.keys.blob(digest), blob))
        for future, fields in batch:
            self._futures[future.job_id] = future
            self._sent[future.job_id] = fields
            self._outbox.append((future, fields))
        if len(self._futures) == len(batch) and self._send_lock.acquire(blocking=False):
            # nothing else in flight: send from this thread, sparing a hand-off's latency; the
            # replies (entry ids) are read in one go every UNREAD_SENDS sends, by ``settle``
            # (before anything needs them), or by the sender once idle
            try:
                self._send_outbox(wait=False)
                if self._send_link.owed >= UNREAD_SENDS:
                    self._send_link.settle()
            except (redis.ConnectionError, redis.TimeoutError):
                self.flush()  # the sender thread retries with backoff
            finally:
                self._send_lock.release()
        else:
            self.flush()
        self._reader.submitted()
        return [future for future, _ in batch]

    def flush(self) -> None:
        """Wake the sender thread if it sleeps; it sends everything queued in one pipeline."""
        if self._sender_idle:
            with self._wakeup:
                self._wakeup.notify()

    def _send_loop(self) -> None:
        backoff = 0.05
        while not self._closed.is_set():
            with self._wakeup:
                # idle is raised before the check, so a submit that misses the check notifies
                self._sender_idle = True
                while not self._outbox and not self._closed.is_set():
                    if not self._wakeup.wait(0.5):
                        break
                self._sender_idle = False
            try:
                if self._send_link.owed:  # replies a submit left unread
                    self.settle()
                while self._outbox:
                    with self._send_lock:
                        self._send_outbox()
                backoff = 0.05
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("cannot send jobs to Redis (%s); retrying in %.2fs", exc, backoff)
                self._closed.wait(backoff)
                backoff = min(backoff * 2, defaults.MAX_BACKOFF)

    def settle(self) -> None:
        """Read the replies of jobs sent without waiting (their entry ids, or Redis refusing
        them); whoever needs entry ids calls this first."""
        with self._send_lock:
            if self._send_link.owed:
                self._send_link.settle()

    def _send_outbox(self, wait: bool = True) -> None:
        """Send up to 1000 queued items in one pipeline (caller holds the send lock); with
        ``wait`` False their replies are read by the next send or ``settle``."""
        batch: list[_Outgoing] = []
        while self._outbox and len(batch) < 1000:
            batch.append(self._outbox.popleft())
        if self._uncertain:
            try:
                batch = self._not_yet_sent(batch)
            except (redis.ConnectionError, redis.TimeoutError):
                self._outbox.extendleft(reversed(batch))
                raise
        commands: list[tuple[Any, ...]] = []
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
        jobs = sum(isinstance(target, RemoteFuture) for target, _ in batch)
        if jobs:
            commands.append(("HINCRBY", self.keys.counters, stats.SUBMITTED, jobs))
        if time.monotonic() - self._blobs_touched > defaults.BLOB_TTL / 4:
            for _, digest, _ in self._functions.values():
                commands.append(("EXPIRE", self.keys.blob(digest), defaults.BLOB_TTL))
            self._blobs_touched = time.monotonic()
        self._send_link.send(commands, partial(self._sent_replies, batch), large=large)
        if wait:
            self._send_link.settle()

    def _sent_replies(self, batch: list[_Outgoing], replies: list[Any] | None) -> None:
        """Apply the replies of a batch sent: entry ids, or Redis refusing a job; ``None``
        when the connection failed first (the caller holds the send lock)."""
        if replies is None:
            # the server may have run some of these commands: look before sending them again
            self._uncertain.update(t.job_id for t, _ in batch if isinstance(t, RemoteFuture))
            self._outbox.extendleft(reversed(batch))
            return
        for (target, _), reply in zip(batch, replies, strict=False):
            if not isinstance(target, RemoteFuture):
                continue
            if isinstance(reply, Exception):
                self._forget(target.job_id)
                refused = connection.error_text(reply)
                target.set_exception(
                    BrokerError(f"job {target.job_id}: Redis refused the job: {refused}")
                )
            else:
                target.entry_id = reply

    def _not_yet_sent(self, batch: list[_Outgoing]) -> list[_Outgoing]:
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
            for eid, fields in self._entries(stream):
                job_id = fields.get(b"id", b"").decode(errors="replace")
                if job_id in uncertain:
                    found[job_id] = eid
        pipe = self.client.pipeline(transaction=False)
        for job_id in uncertain:
            # finished, charged a lost attempt, or moved out of a fair queue; not merely a
            # record of an earlier copy's dropped attempt (a server that lost the job keeps that)
            pipe.hmget(self.keys.job(job_id), "st", "n", "e")
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

    def cancel_remote(self, future: RemoteFuture, forget: bool = True) -> bool:
        """Withdraw a job no consumer has been handed yet; True means it will never run."""
        with self._send_lock:  # the job is either still queued here, or sent with a known id
            try:
                self.settle()
            except redis.RedisError as exc:
                log.warning("cannot cancel job %s: %s", future.job_id, exc)
                return False
            if future.entry_id is None:
                queued = [item for item in self._outbox if item[0] is future]
                for item in queued:
                    self._outbox.remove(item)
                withdrawn = bool(queued)
            else:
                try:
                    withdrawn = bool(
                        self.scripts.cancel(
                            keys=[future.stream, self.keys.job(future.job_id), self.keys.jobs],
                            args=[CONSUMER_GROUP, future.entry_id],
                        )
                    )
                except redis.RedisError as exc:
                    log.warning("cannot cancel job %s: %s", future.job_id, exc)
                    return False
        if withdrawn and forget:
            self._forget(future.job_id)
        return withdrawn

    def taken(self, future: RemoteFuture) -> bool:
        """Whether a consumer has been handed ``future``'s job (it runs, or ran)."""
        if future.entry_id is None:
            try:
                self.settle()
            except redis.RedisError:
                return False
            if future.entry_id is None:
                return False  # still in the outbox
        try:
            return bool(
                self.scripts.taken(
                    keys=[future.stream, self.keys.job(future.job_id), self.keys.jobs],
                    args=[CONSUMER_GROUP, future.entry_id],
                )
            )
        except redis.RedisError as exc:
            log.warning("cannot ask whether job %s runs: %s", future.job_id, exc)
            return False

    def cancel_all(self) -> None:
        """Cancel every job no consumer has been handed yet."""
        for future in self.pending():
            future.cancel()

    def upload_blob(self, data: bytes) -> str:
        """Store a blob (a dependency file, a manifest) now; returns its digest."""
        wire.check_size(data, self.max_payload)
        digest = wire.blob_digest(data)
        self.client.set(self.keys.blob(digest), data, nx=True, ex=defaults.BLOB_TTL)
        self._blob_data[digest] = data
        return digest

    def move(self, future: RemoteFuture, node: str) -> bool:
        """Send a job that no consumer has taken to another node; False if it was taken."""
        fields = self._sent.get(future.job_id)
        if fields is None or not self.cancel_remote(future, forget=False):
            return False
        fields = dict(fields)
        fields[b"nd"] = node.encode()
        future.stream = self.keys.node_jobs(node)
        future.entry_id = None
        self._sent[future.job_id] = self.signer.sign(future.stream, fields)
        self._outbox.append((future, self._sent[future.job_id]))
        self.flush()
        return True

    def end_session(self, session: str, remove_files: bool) -> None:
        """Tell every node a cluster session is over: consumers run its cleanup function and,
        with ``remove_files``, the session's folder goes."""
        message = {"op": "close", "session": session, "rm": int(remove_files)}
        fields = self.signer.sign(self.keys.control, wire.encode(message))
        with contextlib.suppress(redis.RedisError):
            self.client.xadd(self.keys.control, fields, maxlen=1000, approximate=True)  # type: ignore[arg-type]

    def stop_running(self, job_id: str) -> None:
        """Ask the node running ``job_id`` to stop it (SIGTERM, then SIGKILL after a grace)."""
        fields = self.signer.sign(self.keys.control, wire.encode({"op": "cancel", "id": job_id}))
        self.client.xadd(self.keys.control, fields, maxlen=1000, approximate=True)  # type: ignore[arg-type]

    def _forget(self, job_id: str) -> None:
        self._futures.pop(job_id, None)
        self._remove_handoff(self._sent.pop(job_id, None), job_id)

    def _remove_handoff(self, fields: wire.Fields | None, job_id: str | None = None) -> None:
        """Remove a job's argument file (and the blob a consumer on another host fetched)."""
        if fields is None or self.handoff is None or b"pf" not in fields:
            return
        handoff.remove(self.handoff.path, fields[b"pf"].decode())
        if job_id in self._uploaded:
            self._uploaded.discard(job_id)
            with contextlib.suppress(redis.RedisError):
                self.client.delete(self.keys.blob(fields[b"pz"].decode()))

    def _upload_handoff(self, job_id: str) -> None:
        """A consumer that cannot read the job's argument file asks for it through Redis."""
        fields = self._sent.get(job_id)
        if fields is None or self.handoff is None or b"pf" not in fields:
            return
        data = handoff.read(self.handoff.path, fields[b"pf"].decode(), fields[b"pz"].decode())
        key = self.keys.blob(fields[b"pz"].decode())
        self.client.set(key, data, nx=True, ex=defaults.BLOB_TTL)
        self._uploaded.add(job_id)

    # -- receiving -----------------------------------------------------------------------------

    def pending(self) -> list[RemoteFuture]:
        return [f for f in list(self._futures.values()) if not f.done()]

    def wait_for(self, future: RemoteFuture, timeout: float | None) -> None:
        """Read results in the calling thread while it waits for ``future`` (see ``reader``)."""
        self.check_owner()
        self._reader.wait_for(future, timeout)

    def reachable(self) -> bool:
        """Whether Redis answers now."""
        try:
            self.client.ping()
        except redis.RedisError:
            return False
        return True

    def check_owner(self) -> None:
        """Raise ExecutorBroken in a process forked from the one that made this client."""
        if os.getpid() != self.owner_pid:
            raise ExecutorBroken(
                f"this executor belongs to process {self.owner_pid}, and process {os.getpid()} "
                "is a child forked from it: its results would reach the parent, so it cannot "
                "be used here; create a new rdispy.Executor in the child"
            )

    def want_results(self) -> None:
        """Have the results thread read now: someone waits without reading themselves."""
        self._reader.wake()

    def _checks(self) -> None:
        """What the results thread checks every CHECK_INTERVAL (holding the reader's baton)."""
        self._check_owned_nodes()
        for check in self.periodic:
            check()
        if self._server_lost_our_state():
            self._reader.restart()

    def _check_owned_nodes(self) -> None:
        """Fail every pending job at once if the nodes this client owns have died."""
        if self._alive is None or self.broken is not None or self._alive():
            return
        self.broken = ExecutorBroken(
            "the embedded server or local node died; pending jobs cannot finish "
            "(see the log above for why, and create a new Executor)"
        )
        log.error("%s", self.broken)
        for future in self.pending():
            self._forget(future.job_id)
            future.set_exception(self.broken)

    def _touch_client_record(self) -> str:
        """Refresh this client's record (and its expiry); returns the server's run id.  Also
        reads how many pending entries nodes found deleted (``_lost_now``)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.info("server")
        key = self.keys.client(self.client_id)
        pipe.hset(
            key, mapping={"pid": os.getpid(), "host": socket.gethostname(), "seen": time.time()}
        )
        pipe.expire(key, defaults.RESULT_TTL)
        pipe.hget(self.keys.counters, "lost")
        pipe.hget(key, "dropped")
        now = time.time()
        pipe.zadd(self.keys.clients, {self.client_id: now})
        pipe.zremrangebyscore(self.keys.clients, 0, now - defaults.RESULT_TTL)
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

    def _server_lost_our_state(self) -> bool:
        """Notice a server that restarted, or a replica that took over, and send again every
        unfinished job it does not hold.

        A server that came back empty lost our client record too: everything unfinished is sent
        again.  One that kept its data (AOF, a replica) may have lost the last writes before
        the crash: jobs no stream holds and that have no result are sent again.  Returns True
        on a restart (the caller rereads its result stream from the start).
        """
        existed = bool(self.client.exists(self.keys.client(self.client_id)))
        run_id = self._touch_client_record()
        lost, self._lost_seen = self._lost_now > self._lost_seen, self._lost_now
        if run_id == self._run_id:
            if lost:
                self._fail_missing()
            return False
        self._run_id = run_id
        ensure_group(self.client, self.keys)
        if existed:
            missing = self._missing_jobs()
            log.warning(
                "Redis restarted with its data (or a replica took over); sending %d jobs it lost "
                "again",
                len(missing),
            )
        else:
            missing = [self._futures[job_id] for job_id in self._sent if job_id in self._futures]
            log.warning("Redis restarted empty; sending %d unfinished jobs again", len(missing))
        if missing:
            for digest, blob in self._blob_data.items():
                self._outbox.append((self.keys.blob(digest), blob))
        for future in missing:
            fields = self._sent.get(future.job_id)
            if fields is not None and not future.done():
                future.entry_id = None
                self._outbox.append((future, fields))
        self.flush()
        return True

    def _missing_jobs(self) -> list[RemoteFuture]:
        """Our sent, unfinished jobs that no job stream holds and that have no result: what a
        server lost.  Queues are read before the shared stream, which jobs move into."""
        self.settle()  # entry ids of jobs sent without waiting
        candidates = {
            job_id: future
            for job_id, future in list(self._futures.items())
            if not future.done() and future.entry_id is not None
        }
        if not candidates:
            return []
        for key in reversed(self._job_streams()):
            for _, fields in self._entries(key):
                candidates.pop(fields.get(b"id", b"").decode(errors="replace"), None)
        if not candidates:
            return []
        pipe = self.client.pipeline(transaction=False)
        for job_id in candidates:
            pipe.hget(self.keys.job(job_id), "st")
        states = pipe.execute()
        return [f for f, st in zip(candidates.values(), states, strict=True) if st != b"done"]

    def _fail_missing(self) -> None:
        """Some node found pending entries deleted: fail those of our jobs with JobLost."""
        for future in self._missing_jobs():
            self._forget(future.job_id)
            log.error("job %s: its entry was deleted from Redis before it ran", future.job_id)
            future.set_exception(
                JobLost(
                    "its entry was deleted from Redis while queued or pending (by XDEL, XTRIM "
                    "or eviction); submit it again",
                    future.job_id,
                )
            )

    def _resolve(self, fields: dict[bytes, bytes]) -> None:
        try:
            self.signer.verify(self.results_key, fields)
        except RdispyError as exc:
            self._unverified(fields, exc)
            return
        job_id = fields[b"id"].decode()
        kind = fields.get(b"k")
        if kind == b"refused":
            self._refused(job_id, fields, None)
            return
        if kind in EVENT_KINDS:
            self._event(job_id, kind, fields)
            return
        sent = self._sent.pop(job_id, None)
        self._remove_handoff(sent, job_id)
        future = self._futures.pop(job_id, None)
        if future is None or future.done():
            log.debug("result for unknown or finished job %s ignored", job_id)
            return
        if sent is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._latency.add(time.time() - float(sent[b"t"]))
        self._take_header(future, fields)
        try:
            if kind == b"ok":
                future.set_result(serialization.loads(self._result_bytes(fields), "result", job_id))
            elif kind == b"exc":
                future.set_exception(serialization.load_exception(fields[b"p"], job_id))
            elif kind == b"lost":
                future.set_exception(lost_error(fields, job_id))
            elif kind == b"cancelled":  # withdrawn from its queue by someone else (the monitor)
                if not Future.cancel(future):
                    future.set_exception(JobTerminated(_text(fields, b"why"), job_id))
                else:
                    future.set_running_or_notify_cancel()
            else:
                future.set_exception(BrokerError(f"job {job_id}: unknown result kind {kind!r}"))
        except RdispyError as exc:
            future.set_exception(exc)

    def _take_header(self, future: RemoteFuture, fields: dict[bytes, bytes]) -> None:
        """Where and when the job ran, and what it printed (echoed here when asked)."""
        future.ip_addr = fields.get(b"ip", b"").decode(errors="replace") or None
        future.node = fields.get(b"node", b"").decode(errors="replace") or None
        try:
            future.pid = int(fields[b"pid"]) if b"pid" in fields else None
            future.start_time = float(fields[b"t0"]) if b"t0" in fields else None
            future.end_time = float(fields[b"t1"]) if b"t1" in fields else None
        except ValueError:
            log.error(
                "job %s: malformed result header; its times and pid are left out", future.job_id
            )
        future.stdout = fields.get(b"out", b"").decode(errors="replace")
        future.stderr = fields.get(b"err", b"").decode(errors="replace")
        if self.echo_output and (future.stdout or future.stderr):
            _echo(future.stdout, future.stderr)

    def _unverified(self, fields: dict[bytes, bytes], error: RdispyError) -> None:
        """A result entry without a valid signature is ignored (a forged result must not stop
        the real one), except a refusal notice: it carries no code, and the job it names fails
        (refused by a node of another secret, or of none) rather than waiting forever."""
        kind = fields.get(b"k")
        job_id = fields.get(b"id", b"").decode(errors="replace")
        if kind != b"refused" or job_id not in self._futures:
            log.error("ignoring a result entry: %s", error)
            return
        self._refused(job_id, fields, None)

    def _refused(self, job_id: str, fields: dict[bytes, bytes], error: RdispyError | None) -> None:
        """Fail a job that a node refused to run, or whose result could not be verified."""
        future = self._futures.pop(job_id, None)
        self._remove_handoff(self._sent.pop(job_id, None), job_id)
        if future is None or future.done():
            return
        node = fields.get(b"node", b"").decode(errors="replace") or "?"
        if error is None:
            reason = _text(fields, b"why")
            message = f"node {node} refused to run it: {reason}"
        else:
            reason = str(error)
            message = f"its result from node {node} cannot be trusted: {reason}"
        if "secret" in reason or "sign" in reason:
            message += (
                "; the client and every node must share one secret (secret= or "
                f"${defaults.ENV_SECRET} here, --secret or ${defaults.ENV_SECRET} on the nodes)"
            )
        log.error("job %s: %s", job_id, message)
        future.set_exception(JobRefused(message, job_id, node, reason))

    def _result_bytes(self, fields: dict[bytes, bytes]) -> bytes:
        """The pickled result: inline, or in a file a consumer on this host handed over."""
        if b"pf" not in fields:
            return fields[b"p"]
        name, job_id = fields[b"pf"], fields[b"id"].decode()
        if self.handoff is None or not wire.is_file_name(name) or not name.startswith(b"r-"):
            raise BrokerError(f"job {job_id}: result handed over in a file it cannot read")
        try:
            return handoff.read(self.handoff.path, name.decode(), fields[b"pz"].decode(), job_id)
        except OSError as exc:
            raise BrokerError(f"job {job_id}: its result file is unreadable: {exc}") from exc
        finally:
            handoff.remove(self.handoff.path, name.decode())

    def _event(self, job_id: str, kind: bytes, fields: dict[bytes, bytes]) -> None:
        """A job's progress: started ("run"), a provisional result ("prov"), a file ("file")."""
        future = self._futures.get(job_id)
        if future is None:
            return
        try:
            if kind == b"run":
                future.mark_running()
                future.start_time = float(fields.get(b"t0", b"0"))
                future.node = fields.get(b"node", b"").decode() or None
                future.ip_addr = fields.get(b"ip", b"").decode() or None
                future.notify("run", None)
            elif kind == b"prov":
                future.notify(
                    "prov", serialization.loads(fields[b"p"], "provisional result", job_id)
                )
            elif kind == b"file":
                path = self._save_file(fields, job_id)
                future.notify("file", path)
            elif kind == b"need":
                self._upload_handoff(job_id)
            elif kind == b"moved":  # handed to a node of our runtime: where to cancel it now
                with self._send_lock:
                    future.stream = fields[b"stream"].decode()
                    future.entry_id = fields[b"eid"]
                log.info(
                    "job %s handed to node %s, which runs this client's Python and cloudpickle",
                    job_id,
                    fields.get(b"node", b"").decode(errors="replace"),
                )
            elif kind == b"excl":
                node = fields.get(b"node", b"").decode(errors="replace")
                ip = fields.get(b"ip", b"").decode(errors="replace")
                future.notify("excl", (node, ip, fields.get(b"why", b"").decode(errors="replace")))
        except (RdispyError, OSError, redis.RedisError) as exc:
            log.error("job %s: could not take its %s: %s", job_id, kind.decode(), exc)

    def _save_file(self, fields: dict[bytes, bytes], job_id: str) -> Path:
        """Write a file a job sent into dest_path, refusing names that would leave it."""
        name = fields.get(b"name", b"").decode(errors="replace")
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or ".." in parts or "\x00" in name:
            raise JobError(f"refused file name {name[:80]!r} sent by the job", job_id)
        target = self.dest_path.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            raise JobError(f"refused file {name!r}: a link is in its place", job_id)
        target.write_bytes(fields.get(b"p", b""))
        target.chmod(int(fields.get(b"mode", b"420")) & 0o755)
        return target

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the client's threads and close its connections; when no job of it is left
        pending, also remove what it leaves in Redis (its read results, its record), so that
        operators do not see a closed client (a detached one keeps them for its successor)."""
        if os.getpid() != self.owner_pid:
            return  # a forked child's copy: the parent's connections and records are not its
        self._closed.set()
        self.flush()
        self._reader.wake()
        with contextlib.suppress(redis.RedisError):  # end the listener's blocking read now
            self.client.xadd(self.results_key, {"k": "wake"})
        for thread in (self._sender, self._listener):
            if thread.is_alive() and threading.current_thread() is not thread:
                thread.join(5)
        self._send_link.close()
        if not self.keep_results and not self.pending():
            self._remove_client_record()
        self.client.close()
        if self.handoff is not None:
            self.handoff.close()

    def _remove_client_record(self) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.results_key, self.keys.client(self.client_id))
        pipe.zrem(self.keys.clients, self.client_id)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("client %s: its results stream and record stay (%s)", self.client_id, exc)


def lost_error(fields: dict[bytes, bytes], job_id: str) -> JobError:
    """The error of a job stopped on its node, or whose last permitted attempt died with its
    consumer or node."""
    why = fields.get(b"why", b"").decode()
    cause = fields.get(b"cause")
    if cause == b"timeout":
        return JobTimeout(why, job_id)
    if cause == b"cancel":
        return JobTerminated(why, job_id)
    if cause == b"memory":
        return MemoryLimitExceeded(
            f"{why}; give it less data or start the node with a larger --memory-limit", job_id
        )
    message = f"{why}; no retries left (raise max_retries to re-run such jobs)"
    if cause == b"node":
        return NodeLost(message, job_id)
    # also what ProcessPoolExecutor raises when a worker dies
    return also_as(WorkerCrashed, broken_pool())(message, job_id, why)


def _handoff_folder(client_id: str) -> handoff.Folder | None:
    """This client's same-host handoff folder, after removing those of crashed clients; None
    when the handoff is off or the host has no usable folder for it."""
    if not handoff.enabled():
        return None
    try:
        handoff.sweep()
        return handoff.Folder(client_id)
    except OSError as exc:
        log.warning("same-host handoff unavailable (%s); large payloads go through Redis", exc)
        return None


def _echo(out: str, err: str) -> None:
    """A job's output, written here as if it had run in this process (``sys.stdout`` at the
    time, so that redirections and captures see it)."""
    for text, stream in ((out, sys.stdout), (err, sys.stderr)):
        if text and stream is not None:
            with contextlib.suppress(OSError, ValueError):  # closed, or a broken pipe
                stream.write(text)
                stream.flush()


def _chunk_calls(fields: dict[bytes, bytes]) -> int | None:
    """The call count of a map chunk's job or result entry (-1: a chunk of unknown size), None
    for a single call."""
    if fields.get(b"k") == b"chunk":
        count = fields.get(b"n", b"")
    elif b"ck" in fields:
        count = fields[b"ck"]
    else:
        return None
    return int(count) if count.isdigit() else -1


def _text(fields: dict[bytes, bytes], name: bytes) -> str:
    return fields.get(name, b"").decode(errors="replace")


def _seq_of(job_id: str) -> int:
    tail = job_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0
