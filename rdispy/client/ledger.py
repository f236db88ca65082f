"""What one client has sent and not collected yet, shared by the dispatcher's parts.

    Dispatcher.submit / move --futures, signed entries--> Ledger
    Encoder --functions' digests, blobs--> Ledger --digests--> Sender (keeps the blobs alive)
    Results (a result, a refusal) / Sender (Redis refused a job) / Upkeep (JobLost, the owned
        node died) / Dispatcher.cancel_remote --forget--> Ledger (the entry, its handoff file)
    Ledger --unfinished futures and their entries--> Upkeep (sent again after a restart)

It holds no thread and no lock of its own: its parts change it (single dict and set operations)
from the threads that did so when they were one dispatcher class: the caller's (submit, cancel),
the sender's, and whoever holds the reader's baton (results, checks).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import redis

from rdispy import defaults, handoff, wire
from rdispy.keys import Keys

if TYPE_CHECKING:
    from rdispy.client.future import RemoteFuture


class Ledger:
    """The futures of one client's unfinished jobs, and what it takes to send them again."""

    def __init__(self, client: redis.Redis, keys: Keys, handoff_folder: handoff.Folder | None):
        self.client = client
        self.keys = keys
        self.handoff = handoff_folder
        self.futures: dict[str, RemoteFuture] = {}
        #: job id -> its signed entry, to send it again if the server restarts empty
        self.sent: dict[str, wire.Fields] = {}
        #: digest -> bytes of every blob uploaded (function, dependency), for the same reason
        self.blob_data: dict[str, bytes] = {}
        # id(fn) -> (fn, or a weak reference to it where it takes one, so that the cache keeps
        # no object alive; its blob's digest; its label for the job entries' ``fq`` field)
        self.functions: dict[int, tuple[Any, str, bytes]] = {}
        self.uploaded: set[str] = set()  # jobs whose handed-over payload a consumer fetched

    def pending(self) -> list[RemoteFuture]:
        return [f for f in list(self.futures.values()) if not f.done()]

    def forget(self, job_id: str) -> None:
        self.futures.pop(job_id, None)
        self.remove_handoff(self.sent.pop(job_id, None), job_id)

    def remove_handoff(self, fields: wire.Fields | None, job_id: str | None = None) -> None:
        """Remove a job's argument file (and the blob a consumer on another host fetched)."""
        if fields is None or self.handoff is None or wire.F.PAYLOAD_FILE not in fields:
            return
        handoff.remove(self.handoff.path, fields[wire.F.PAYLOAD_FILE].decode())
        if job_id in self.uploaded:
            self.uploaded.discard(job_id)
            with contextlib.suppress(redis.RedisError):
                self.client.delete(self.keys.blob(fields[wire.F.PAYLOAD_HASH].decode()))

    def upload_handoff(self, job_id: str) -> None:
        """A consumer that cannot read the job's argument file asks for it through Redis."""
        fields = self.sent.get(job_id)
        if fields is None or self.handoff is None or wire.F.PAYLOAD_FILE not in fields:
            return
        data = handoff.read(
            self.handoff.path,
            fields[wire.F.PAYLOAD_FILE].decode(),
            fields[wire.F.PAYLOAD_HASH].decode(),
        )
        key = self.keys.blob(fields[wire.F.PAYLOAD_HASH].decode())
        self.client.set(key, data, nx=True, ex=defaults.BLOB_TTL)
        self.uploaded.add(job_id)

    def job_streams(self, client_id: str) -> list[str]:
        """The shared job stream, this client's fair queue and every node's own stream."""
        nodes = self.client.scan_iter(match=self.keys.node_jobs("*"), _type="stream")
        own_queue = self.keys.fair_queue(client_id)
        return [self.keys.jobs, own_queue, *(key.decode() for key in nodes)]

    def entries(self, key: str) -> Iterable[tuple[bytes, dict[bytes, bytes]]]:
        """Every entry of stream ``key``, read in pages of 1000."""
        start = "-"
        while True:
            batch: Any = self.client.xrange(key, start, "+", count=1000)
            yield from batch
            if len(batch) < 1000:
                return
            start = "(" + batch[-1][0].decode()
