"""Result entries turned into resolved futures: final results, progress events, refusals.

    ResultReader (whoever holds its baton) --resolve(fields)--> Results
    Results --verify the signature, then by the entry's kind:
        "ok" / "exc" / "lost" / "cancelled"  --> future.set_result / set_exception / cancel
        "run" / "prov" / "file" / "excl"     --> future.mark_running / future.notify
        "need"                               --> Ledger.upload_handoff (argument file via Redis)
        "moved"                              --> future.stream / entry_id (send lock held)
        "refused" (signed or not)            --> future.set_exception(JobRefused)

A final result removes the job from the ledger (and its argument file); its payload is inline or
in a same-host handoff file that is read once and removed.  Files sent by jobs are written under
``dest_path``, refusing names that would leave it.  A result entry without a valid signature is
ignored, except a refusal notice (see ``_unverified``).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

import redis

from rdispy import defaults, handoff, serialization, stats, wire
from rdispy.client.ledger import Ledger
from rdispy.errors import (
    BrokerError,
    JobError,
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

if TYPE_CHECKING:
    from rdispy.client.future import RemoteFuture

log = logging.getLogger(__name__)

#: Result-stream kinds that report progress rather than end a job.
EVENT_KINDS = (b"run", b"prov", b"file", b"excl", b"need", b"moved")


class Results:
    """Applies the entries of one client's result stream to its futures."""

    def __init__(
        self,
        ledger: Ledger,
        signer: wire.Signer,
        results_key: str,
        latency: stats.LatencyTally,
        send_lock: threading.RLock,
        dest_path: Path,
        echo_output: bool,
    ) -> None:
        self._ledger = ledger
        self._signer = signer
        self._results_key = results_key
        self._latency = latency  # results received, flushed by the reader with their deletion
        self._send_lock = send_lock
        self._dest_path = dest_path  # where files sent by jobs land
        self._echo_output = echo_output  # write jobs' output to this process's stdout/stderr

    def resolve(self, fields: dict[bytes, bytes]) -> None:
        """Apply one result entry (called by whoever holds the reader's baton)."""
        try:
            self._signer.verify(self._results_key, fields)
        except RdispyError as exc:
            self._unverified(fields, exc)
            return
        header = wire.ResultHeader.decode(fields)
        job_id, kind = header.job_id, header.kind
        if kind == b"refused":
            self._refused(header, None)
            return
        if kind in EVENT_KINDS:
            self._event(header, fields)
            return
        sent = self._ledger.sent.pop(job_id, None)
        self._ledger.remove_handoff(sent, job_id)
        future = self._ledger.futures.pop(job_id, None)
        if future is None or future.done():
            log.debug("result for unknown or finished job %s ignored", job_id)
            return
        if sent is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._latency.add(time.time() - float(sent[wire.F.SENT]))
        self._take_header(future, header)
        try:
            if kind == b"ok":
                data = self._result_bytes(job_id, fields)
                future.set_result(serialization.loads(data, "result", job_id))
            elif kind == b"exc":
                future.set_exception(serialization.load_exception(fields[wire.F.PAYLOAD], job_id))
            elif kind == b"lost":
                future.set_exception(lost_error(header))
            elif kind == b"cancelled":  # withdrawn from its queue by someone else (the monitor)
                if not Future.cancel(future):
                    future.set_exception(JobTerminated(header.why, job_id))
                else:
                    future.set_running_or_notify_cancel()
            else:
                future.set_exception(BrokerError(f"job {job_id}: unknown result kind {kind!r}"))
        except RdispyError as exc:
            future.set_exception(exc)

    def _take_header(self, future: RemoteFuture, header: wire.ResultHeader) -> None:
        """Where and when the job ran, and what it printed (echoed here when asked)."""
        future.ip_addr = header.ip
        future.node = header.node
        future.pid = header.pid
        future.start_time = header.started
        future.end_time = header.ended
        if header.malformed:
            log.error(
                "job %s: malformed result header; its times and pid are left out", future.job_id
            )
        future.stdout = header.stdout
        future.stderr = header.stderr
        if self._echo_output and (future.stdout or future.stderr):
            _echo(future.stdout, future.stderr)

    def _unverified(self, fields: dict[bytes, bytes], error: RdispyError) -> None:
        """A result entry without a valid signature is ignored (a forged result must not stop
        the real one), except a refusal notice: it carries no code, and the job it names fails
        (refused by a node of another secret, or of none) rather than waiting forever."""
        header = wire.ResultHeader.decode(fields)
        if header.kind != b"refused" or header.job_id not in self._ledger.futures:
            log.error("ignoring a result entry: %s", error)
            return
        self._refused(header, None)

    def _refused(self, header: wire.ResultHeader, error: RdispyError | None) -> None:
        """Fail a job that a node refused to run, or whose result could not be verified."""
        job_id = header.job_id
        future = self._ledger.futures.pop(job_id, None)
        self._ledger.remove_handoff(self._ledger.sent.pop(job_id, None), job_id)
        if future is None or future.done():
            return
        node = header.node or "?"
        if error is None:
            reason = header.why
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

    def _result_bytes(self, job_id: str, fields: dict[bytes, bytes]) -> bytes:
        """The pickled result: inline, or in a file a consumer on this host handed over."""
        name = fields.get(wire.F.PAYLOAD_FILE)
        if name is None:
            return fields[wire.F.PAYLOAD]
        folder = self._ledger.handoff
        if folder is None or not wire.is_file_name(name) or not name.startswith(b"r-"):
            raise BrokerError(f"job {job_id}: result handed over in a file it cannot read")
        try:
            digest = fields[wire.F.PAYLOAD_HASH].decode()
            return handoff.read(folder.path, name.decode(), digest, job_id)
        except OSError as exc:
            raise BrokerError(f"job {job_id}: its result file is unreadable: {exc}") from exc
        finally:
            handoff.remove(folder.path, name.decode())

    def _event(self, header: wire.ResultHeader, fields: dict[bytes, bytes]) -> None:
        """A job's progress: started ("run"), a provisional result ("prov"), a file ("file")."""
        job_id, kind = header.job_id, header.kind
        future = self._ledger.futures.get(job_id)
        if future is None:
            return
        try:
            if kind == b"run":
                future.mark_running()
                future.start_time = header.started if header.started is not None else 0.0
                future.node = header.node
                future.ip_addr = header.ip
                future.notify("run", None)
            elif kind == b"prov":
                future.notify(
                    "prov",
                    serialization.loads(fields[wire.F.PAYLOAD], "provisional result", job_id),
                )
            elif kind == b"file":
                path = self._save_file(header, fields)
                future.notify("file", path)
            elif kind == b"need":
                self._ledger.upload_handoff(job_id)
            elif kind == b"moved":  # handed to a node of our runtime: where to cancel it now
                if header.stream is None or header.eid is None:
                    raise BrokerError(f"job {job_id}: a move notice without stream and entry id")
                with self._send_lock:
                    future.stream = header.stream
                    future.entry_id = header.eid
                log.info(
                    "job %s handed to node %s, which runs this client's Python and cloudpickle",
                    job_id,
                    header.node or "",
                )
            elif kind == b"excl":
                future.notify("excl", (header.node or "", header.ip or "", header.why))
        except (RdispyError, OSError, redis.RedisError) as exc:
            log.error("job %s: could not take its %s: %s", job_id, kind.decode(), exc)

    def _save_file(self, header: wire.ResultHeader, fields: dict[bytes, bytes]) -> Path:
        """Write a file a job sent into dest_path, refusing names that would leave it."""
        name, job_id = header.name, header.job_id
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or ".." in parts or "\x00" in name:
            raise JobError(f"refused file name {name[:80]!r} sent by the job", job_id)
        target = self._dest_path.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            raise JobError(f"refused file {name!r}: a link is in its place", job_id)
        target.write_bytes(fields.get(wire.F.PAYLOAD, b""))
        target.chmod(header.mode & 0o755)
        return target


def lost_error(header: wire.ResultHeader) -> JobError:
    """The error of a job stopped on its node, or whose last permitted attempt died with its
    consumer or node."""
    why, cause, job_id = header.why, header.cause, header.job_id
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


def _echo(out: str, err: str) -> None:
    """A job's output, written here as if it had run in this process (``sys.stdout`` at the
    time, so that redirections and captures see it)."""
    for text, stream in ((out, sys.stdout), (err, sys.stderr)):
        if text and stream is not None:
            with contextlib.suppress(OSError, ValueError):  # closed, or a broken pipe
                stream.write(text)
                stream.flush()
