"""The client's link to the cluster: the facade over the parts that send jobs and collect results.

    Dispatcher.submit --pickle, size check, sign (Encoder, caller's thread)--> Ledger (futures,
        entries) and Sender.push --> the outbox
    Sender (the submitting thread, or the sender thread: see sender) --pipelined XADD-->
        <cluster>:jobs, a node's own stream, or this client's fair queue
    <cluster>:results:<client> --XREAD (a waiting caller through the future's Owner, or the
        results thread: see reader)--> Results.resolve --> future.set_result / set_exception
    ResultReader.run, every CHECK_INTERVAL --> Upkeep.checks (client record, server restarts,
        lost entries, the owned embedded node) --> Sender.push (jobs to send again)
    RemoteFuture.cancel / running --Owner.cancel_remote / taken--> Dispatcher (this module)

One unit per job: ``encoder`` (calls into signed entries), ``ledger`` (what was sent and is not
collected), ``sender`` (the outbox and its thread), ``reader`` (who reads the result stream),
``results`` (entries into futures), ``upkeep`` (periodic checks).  This module builds and wires
them, and keeps what a caller asks for: submit, cancel, move, sessions' end, close.

A function is pickled once per dispatcher and stored as a content-addressed blob before the first
job that names it is sent; jobs carry only its digest.  Results are deleted from the stream once
read, so the stream holds only what this client has not collected yet.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import redis

from rdispy import connection, defaults, handoff, stats, wire
from rdispy.client.encoding import Encoder
from rdispy.client.future import RemoteFuture
from rdispy.client.ledger import Ledger
from rdispy.client.reader import ResultReader
from rdispy.client.results import EVENT_KINDS, Results
from rdispy.client.sender import Sender
from rdispy.client.upkeep import Upkeep
from rdispy.errors import BrokerError, ConfigError, ExecutorBroken
from rdispy.keys import CONSUMER_GROUP, Keys
from rdispy.scripts import Scripts
from rdispy.streams import ensure_group

log = logging.getLogger(__name__)


class Dispatcher:
    """Sends jobs and collects results for one client process (the ``Owner`` of its futures)."""

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
        self.results_key = keys.results(self.client_id)
        self.client = connection.connect(url)
        connection.wait_for(self.client, url, connect_timeout)
        self.ledger = Ledger(self.client, keys, None)
        self._futures, self._sent = self.ledger.futures, self.ledger.sent  # (bench/memory.py)
        self._closed = threading.Event()
        self.sender = Sender(self.ledger, self._closed, f"rdispy-send-{self.client_id[:6]}")
        self.upkeep = Upkeep(self.ledger, self.sender, self.client_id, alive)
        self.periodic = self.upkeep.periodic  # run by the results thread every second
        try:
            ensure_group(self.client, keys)
            connection.eviction_policy(self.client, url)
            self.upkeep.start()
        except (redis.RedisError, ConfigError) as exc:
            self._closed.set()
            self.sender.join()
            self.client.close()
            if isinstance(exc, ConfigError):
                raise
            raise BrokerError(
                f"Redis at {connection.redact(url)} refused the client: "
                f"{connection.error_text(exc)} (see the README's ACL section)"
            ) from exc
        self.scripts = Scripts(self.client)
        self.handoff = self.ledger.handoff = (
            None if keep_results else _handoff_folder(self.client_id)
        )
        self._seq = itertools.count(1)
        self.encoder = Encoder(self.ledger, self.signer, self.client_id, max_payload, max_retries)
        latency = stats.LatencyTally()  # results received, flushed with their deletion
        self.results = Results(
            self.ledger,
            self.signer,
            self.results_key,
            latency,
            self.sender.lock,
            self.dest_path,
            echo_output,
        )
        self.reader = ResultReader(
            self.client,
            self.results_key,
            keys.latency,
            keep_results,
            self.results.resolve,
            self.ledger.futures.__len__,
            latency,
            self._closed,
            self.check_owner,
        )
        self.sender.start()
        # a client that reattaches adopts its unfinished jobs before it reads any result
        self.recovered = self._adopt_unfinished() if client_id else []
        self._listener = threading.Thread(
            target=self.reader.run,
            args=(self.upkeep.checks,),
            name=f"rdispy-results-{self.client_id[:6]}",
            daemon=True,
        )
        self._listener.start()

    @property
    def broken(self) -> ExecutorBroken | None:
        """Why no job can be submitted any more (the owned nodes died, or the executor broke)."""
        return self.upkeep.broken

    @broken.setter
    def broken(self, error: ExecutorBroken | None) -> None:
        self.upkeep.broken = error

    @property
    def dropped_events(self) -> int:
        """Provisional results nodes dropped because this client left too many unread."""
        return self.upkeep.dropped_events

    def _adopt_unfinished(self) -> list[RemoteFuture]:
        """Futures for every job this client id submitted that it has not collected: results
        waiting in its stream, and jobs still queued or running (dispy's recover_jobs)."""
        found: dict[str, RemoteFuture] = {}
        for key in self.ledger.job_streams(self.client_id):
            for eid, fields in self.ledger.entries(key):
                if fields.get(wire.F.CLIENT, b"").decode() == self.client_id:
                    future = RemoteFuture(fields[wire.F.ID].decode(), self)
                    future.stream, future.entry_id = key, eid
                    future.chunk_calls = _chunk_calls(fields)
                    found[future.job_id] = future
                    self._sent[future.job_id] = fields
        for _, fields in self.ledger.entries(self.results_key):
            kind = fields.get(wire.F.KIND)
            if wire.F.ID in fields and kind not in EVENT_KINDS and kind != b"wake":
                job_id = fields[wire.F.ID].decode()
                future = found.setdefault(job_id, RemoteFuture(job_id, self))
                if future.chunk_calls is None:
                    future.chunk_calls = _chunk_calls(fields)
        for job_id, future in found.items():
            self._futures[job_id] = future
            self._seq = itertools.count(max(next(self._seq), _seq_of(job_id) + 1))
        return sorted(found.values(), key=lambda f: _seq_of(f.job_id))

    # -- sending -------------------------------------------------------------------------------

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
        digest, blob, label = self.encoder.function_blob(fn)
        node = (header or {}).get(wire.N.PLACED)
        stream = self.keys.node_jobs(str(node)) if node else self.keys.jobs
        signed_for = stream
        if self.fair and not node:
            stream = self.keys.fair_queue(self.client_id)  # moved verbatim by the scheduler
        batch: list[tuple[RemoteFuture, wire.Fields]] = []
        try:
            for call in calls:
                seq = next(self._seq)
                job_id = f"{self.client_id}-{seq}"
                fields = self.encoder.job(
                    call, seq, job_id, (digest, label), kind, header, signed_for
                )
                future = RemoteFuture(job_id, self)
                future.stream = stream
                batch.append((future, fields))
        except BaseException:
            for _, fields in batch:
                self.ledger.remove_handoff(fields)
            raise
        if blob is not None:
            self.encoder.remember(fn, digest, label, blob)
            self.sender.push(self.keys.blob(digest), blob)
        for future, fields in batch:
            self._futures[future.job_id] = future
            self._sent[future.job_id] = fields
            self.sender.push(future, fields)
        if len(self._futures) == len(batch):  # nothing else in flight: send from this thread
            self.sender.send_now()
        else:
            self.sender.flush()
        self.reader.submitted()
        return [future for future, _ in batch]

    # -- cancelling, moving, sessions ---------------------------------------------------------

    def cancel_remote(self, future: RemoteFuture, forget: bool = True) -> bool:
        """Withdraw a job no consumer has been handed yet; True means it will never run."""
        with self.sender.lock:  # the job is either still queued here, or sent with a known id
            try:
                self.sender.settle()
            except redis.RedisError as exc:
                log.warning("cannot cancel job %s: %s", future.job_id, exc)
                return False
            if future.entry_id is None:
                withdrawn = self.sender.withdraw(future)
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
            self.ledger.forget(future.job_id)
        return withdrawn

    def taken(self, future: RemoteFuture) -> bool:
        """Whether a consumer has been handed ``future``'s job (it runs, or ran)."""
        if future.entry_id is None:
            try:
                self.sender.settle()
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
        self.ledger.blob_data[digest] = data
        return digest

    def move(
        self, future: RemoteFuture, node: str, placed: Mapping[str, object | None] | None = None
    ) -> bool:
        """Send a job that no consumer has taken to another node, with the entry fields that
        follow the node it is on (``placed``; None removes a field); False if it was taken."""
        fields = self._sent.get(future.job_id)
        if fields is None or not self.cancel_remote(future, forget=False):
            return False
        placed = dict(placed or {})
        fields = {k: v for k, v in fields.items() if k != wire.F.SIG and k.decode() not in placed}
        fields.update(wire.encode({**placed, wire.N.PLACED: node}))  # (encode drops the Nones)
        future.stream = self.keys.node_jobs(node)
        future.entry_id = None
        self._sent[future.job_id] = self.signer.sign(future.stream, fields)
        self.sender.push(future, self._sent[future.job_id])
        self.sender.flush()
        return True

    def end_session(self, session: str, remove_files: bool) -> None:
        """Tell every node a cluster session is over: consumers run its cleanup function and,
        with ``remove_files``, the session's folder goes."""
        message = {
            wire.N.OP: "close",
            wire.N.CLOSED_SESSION: session,
            wire.N.REMOVE: int(remove_files),
        }
        fields = self.signer.sign(self.keys.control, wire.encode(message))
        with contextlib.suppress(redis.RedisError):
            self.client.xadd(self.keys.control, fields, maxlen=1000, approximate=True)  # type: ignore[arg-type]

    def stop_running(self, job_id: str) -> None:
        """Ask the node running ``job_id`` to stop it (SIGTERM, then SIGKILL after a grace)."""
        fields = self.signer.sign(
            self.keys.control, wire.encode({wire.N.OP: "cancel", wire.N.ID: job_id})
        )
        self.client.xadd(self.keys.control, fields, maxlen=1000, approximate=True)  # type: ignore[arg-type]

    def pending(self) -> list[RemoteFuture]:
        return self.ledger.pending()

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

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the client's threads and close its connections; when no job of it is left
        pending, also remove what it leaves in Redis (its read results, its record), so that
        operators do not see a closed client (a detached one keeps them for its successor)."""
        if os.getpid() != self.owner_pid:
            return  # a forked child's copy: the parent's connections and records are not its
        self._closed.set()
        self.sender.flush()
        self.reader.wake()
        with contextlib.suppress(redis.RedisError):  # end the listener's blocking read now
            self.client.xadd(self.results_key, {wire.N.KIND: "wake"})
        self.sender.join()
        if self._listener.is_alive() and threading.current_thread() is not self._listener:
            self._listener.join(5)
        if not self.keep_results and not self.pending():
            self.upkeep.remove_client_record(self.results_key)
        self.client.close()
        if self.handoff is not None:
            self.handoff.close()


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


def _chunk_calls(fields: dict[bytes, bytes]) -> int | None:
    """The call count of a map chunk's job or result entry (-1: a chunk of unknown size), None
    for a single call."""
    if fields.get(wire.F.KIND) == b"chunk":
        count = fields.get(wire.F.CALLS, b"")
    elif wire.F.CHUNK_CALLS in fields:
        count = fields[wire.F.CHUNK_CALLS]
    else:
        return None
    return int(count) if count.isdigit() else -1


def _seq_of(job_id: str) -> int:
    tail = job_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0
