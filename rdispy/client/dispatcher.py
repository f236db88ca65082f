"""The client's link to the cluster: turns calls into signed job entries, sends them in pipelined
batches, and turns result entries back into resolved futures.

    submit(fn, args) --pickle, size check (caller's thread)--> outbox
    outbox --pipelined XADD (whoever flushes)--> <cluster>:jobs
    <cluster>:results:<client> --XREAD (listener thread)--> future.set_result / set_exception

A function is pickled once per dispatcher and stored as a content-addressed blob before the first
job that names it is sent; jobs carry only its digest.  Results are deleted from the stream once
read, so the stream holds only what this client has not collected yet.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

import redis

from rdispy import connection, defaults, serialization, wire
from rdispy.client.future import RemoteFuture
from rdispy.errors import BrokerError, RdispyError, WorkerCrashed
from rdispy.keys import Keys
from rdispy.scripts import Scripts
from rdispy.worker.consumer import ensure_group

log = logging.getLogger(__name__)

Call = tuple[tuple[Any, ...], dict[str, Any]]


class Dispatcher:
    """Sends jobs and collects results for one client process."""

    def __init__(
        self,
        url: str,
        keys: Keys,
        secret: str | None = None,
        max_payload: int = defaults.MAX_PAYLOAD,
        max_retries: int = defaults.MAX_RETRIES,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.keys = keys
        self.signer = wire.Signer(secret)
        self.max_payload = max_payload
        self.max_retries = max_retries
        self.client_id = uuid.uuid4().hex[:16]
        self.results_key = keys.results(self.client_id)
        self.client = connection.connect(url)
        connection.wait_for(self.client, url, connect_timeout)
        ensure_group(self.client, keys)
        self.scripts = Scripts(self.client)
        self._seq = itertools.count(1)
        self._functions: dict[int, tuple[Callable[..., Any], str]] = {}
        self._blobs_touched = time.monotonic()
        self._futures: dict[str, RemoteFuture] = {}
        self._outbox: deque[tuple[str, wire.Fields | bytes]] = deque()
        self._wakeup = threading.Condition()
        self._sender_idle = False
        self._closed = threading.Event()
        self._sender = threading.Thread(
            target=self._send_loop, name=f"rdispy-send-{self.client_id[:6]}", daemon=True
        )
        self._sender.start()
        self._listener = threading.Thread(
            target=self._listen, name=f"rdispy-results-{self.client_id[:6]}", daemon=True
        )
        self._listener.start()

    # -- sending -------------------------------------------------------------------------------

    def _function_blob(self, fn: Callable[..., Any]) -> tuple[str, bytes | None]:
        """Digest of ``fn``'s blob, and its bytes when they still have to be uploaded."""
        known = self._functions.get(id(fn))
        if known is not None and known[0] is fn:
            return known[1], None
        data = serialization.dumps(fn, "function")
        wire.check_size(data, self.max_payload)
        return wire.blob_digest(data), data

    def submit(
        self, fn: Callable[..., Any], calls: Iterable[Any], kind: str = "call"
    ) -> list[RemoteFuture]:
        """Queue one job per element of ``calls`` (an ``(args, kwargs)`` pair, or a list of them
        for a map chunk).  Everything is pickled and checked before anything is queued, so a
        bad argument leaves Redis untouched; the function blob goes out just before its first job.
        """
        if self._closed.is_set():
            raise RuntimeError("cannot submit after the executor was shut down")
        digest, blob = self._function_blob(fn)
        batch: list[tuple[RemoteFuture, wire.Fields]] = []
        for call in calls:
            job_id = f"{self.client_id}-{next(self._seq)}"
            payload = serialization.dumps(call, "arguments", job_id)
            wire.check_size(payload, self.max_payload, job_id)
            fields = self.signer.sign(
                self.keys.jobs,
                wire.encode(
                    {
                        "id": job_id,
                        "c": self.client_id,
                        "fn": digest,
                        "k": kind,
                        "p": payload,
                        "r": self.max_retries,
                        "t": repr(time.time()),
                    }
                ),
            )
            batch.append((RemoteFuture(job_id, self), fields))
        if blob is not None:
            self._functions[id(fn)] = (fn, digest)
            self._outbox.append((self.keys.blob(digest), blob))
        for future, fields in batch:
            self._futures[future.job_id] = future
            self._outbox.append((self.keys.jobs, fields))
        self.flush()
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
                    self._wakeup.wait(0.5)
                self._sender_idle = False
            try:
                while self._outbox:
                    self._send_outbox()
                backoff = 0.05
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("cannot send jobs to Redis (%s); retrying in %.2fs", exc, backoff)
                self._closed.wait(backoff)
                backoff = min(backoff * 2, defaults.MAX_BACKOFF)

    def _send_outbox(self) -> None:
        batch: list[tuple[str, wire.Fields | bytes]] = []
        while self._outbox and len(batch) < 1000:
            batch.append(self._outbox.popleft())
        pipe = self.client.pipeline(transaction=False)
        for key, item in batch:
            if isinstance(item, bytes):  # a function blob, sent before the jobs that name it
                pipe.set(key, item, nx=True, ex=defaults.BLOB_TTL)
            else:
                pipe.xadd(key, item)  # type: ignore[arg-type]
        if time.monotonic() - self._blobs_touched > defaults.BLOB_TTL / 4:
            for _, digest in self._functions.values():
                pipe.expire(self.keys.blob(digest), defaults.BLOB_TTL)
            self._blobs_touched = time.monotonic()
        try:
            pipe.execute()
        except Exception:
            self._outbox.extendleft(reversed(batch))
            raise

    def cancel_remote(self, job_id: str) -> bool:
        """Mark a job cancelled unless a consumer has taken it; True means it will never run."""
        try:
            done = bool(self.scripts.cancel(keys=[self.keys.job(job_id)], args=[defaults.JOB_TTL]))
        except redis.RedisError as exc:
            log.warning("cannot cancel job %s: %s", job_id, exc)
            return False
        if done:
            self._futures.pop(job_id, None)
        return done

    def cancel_all(self) -> None:
        """Cancel every job not yet taken by a consumer (one round trip)."""
        pending = [f for f in list(self._futures.values()) if not f.done()]
        if not pending:
            return
        pipe = self.client.pipeline(transaction=False)
        for future in pending:
            self.scripts.cancel(
                keys=[self.keys.job(future.job_id)], args=[defaults.JOB_TTL], client=pipe
            )
        for future, done in zip(pending, pipe.execute(), strict=True):
            if done:
                self._futures.pop(future.job_id, None)
                Future.cancel(future)  # the plain local cancel, no second round trip

    # -- receiving -----------------------------------------------------------------------------

    def pending(self) -> list[RemoteFuture]:
        return [f for f in list(self._futures.values()) if not f.done()]

    def _listen(self) -> None:
        last = b"0"
        backoff = 0.05
        reader = connection.connect(self.url)
        while not self._closed.is_set():
            reply: Any
            try:
                reply = reader.xread({self.results_key: last}, count=1000, block=200)
                backoff = 0.05
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("result stream unreachable (%s); retrying in %.2fs", exc, backoff)
                self._closed.wait(backoff)
                backoff = min(backoff * 2, defaults.MAX_BACKOFF)
                continue
            if not reply:
                continue
            entries = reply[0][1]
            for _, fields in entries:
                self._resolve(fields)
            last = entries[-1][0]
            try:
                reader.xdel(self.results_key, *(eid for eid, _ in entries))
            except redis.RedisError as exc:
                log.debug("could not delete collected results: %s", exc)
        reader.close()

    def _resolve(self, fields: dict[bytes, bytes]) -> None:
        try:
            self.signer.verify(self.results_key, fields)
        except RdispyError as exc:
            log.error("ignoring a result entry: %s", exc)
            return
        job_id = fields[b"id"].decode()
        future = self._futures.pop(job_id, None)
        if future is None or future.done():
            log.debug("result for unknown or finished job %s ignored", job_id)
            return
        future.node = fields.get(b"node", b"").decode() or None
        future.pid = int(fields[b"pid"]) if b"pid" in fields else None
        future.start_time = float(fields[b"t0"]) if b"t0" in fields else None
        future.end_time = float(fields[b"t1"]) if b"t1" in fields else None
        future.stdout = fields.get(b"out", b"").decode(errors="replace")
        future.stderr = fields.get(b"err", b"").decode(errors="replace")
        kind = fields.get(b"k")
        try:
            if kind == b"ok":
                future.set_result(serialization.loads(fields[b"p"], "result", job_id))
            elif kind == b"exc":
                future.set_exception(serialization.load_exception(fields[b"p"], job_id))
            elif kind == b"lost":
                why = fields.get(b"why", b"").decode()
                future.set_exception(WorkerCrashed(f"{why}; no retries left", job_id, why))
            else:
                future.set_exception(BrokerError(f"job {job_id}: unknown result kind {kind!r}"))
        except RdispyError as exc:
            future.set_exception(exc)

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        self._closed.set()
        self.flush()
        for thread in (self._sender, self._listener):
            if thread.is_alive() and threading.current_thread() is not thread:
                thread.join(5)
        self.client.close()
