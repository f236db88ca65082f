"""Taking back the jobs of consumers that died, on the evidence of process exit or of missed
heartbeats, never of idle time.

A consumer's name says whose it is: ``<node>/<incarnation>/<slot>/<nonce>``.  A consumer is dead
when its own supervisor reaped it, or when its node's record has expired or names another
incarnation (the node was lost, or came back from a partition as a new incarnation).  Each of its
pending entries is settled by the RECOVER script: the entry it was running is charged an attempt
and requeued while the job has retries left, else failed with a "lost" result; entries it had
only taken are requeued uncharged.  Settling is atomic, so several nodes may race to do it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import redis

from rdispy import attempts, defaults, wire
from rdispy.keys import CONSUMER_GROUP, Keys
from rdispy.scripts import Scripts
from rdispy.streams import ConsumerName

log = logging.getLogger(__name__)

#: Attempt outcome of each cause of a lost attempt (see rdispy.attempts).
_OUTCOMES = {
    "crash": "crashed",
    "node": "node lost",
    "timeout": "timeout",
    "cancel": "cancelled",
    "memory": "out of memory",
}


class Recoverer:
    """Settles pending entries of dead consumers for one cluster."""

    def __init__(self, client: redis.Redis, keys: Keys, signer: wire.Signer, reporter: str) -> None:
        self.client = client
        self.keys = keys
        self.scripts = Scripts(client)
        self.signer = signer
        self.reporter = reporter  # node name written into "lost" results
        self._missing_since: dict[str, float] = {}  # consumer -> when first seen without a node

    def settle_consumer(
        self,
        consumer: str,
        running: bytes | None,
        why: str,
        cause: str = "crash",
        final: bool = False,
        node_back: bool = False,
        attempt: dict[str, Any] | None = None,
    ) -> int:
        """Settle every pending entry of ``consumer``, in the shared stream and in its node's own
        stream; ``running`` is the entry it was running (None when unknown: then its oldest
        pending entry is charged, and ``attempt``, what is known of how it ended, is recorded).
        Jobs placed on a node that was lost fail with NodeLost: requeued into that node's stream
        they would wait for a node that is gone (unless ``node_back``: the node restarted and
        settles its own predecessor's entries).  Returns the entries settled."""
        name = ConsumerName.parse(consumer)
        streams = [self.keys.jobs] + ([self.keys.node_jobs(name.node)] if name else [])
        pending: list[tuple[str, bytes]] = []
        for stream in streams:
            try:
                items: Any = self.client.xpending_range(
                    stream, CONSUMER_GROUP, min="-", max="+", count=10_000, consumername=consumer
                )
            except redis.ResponseError:
                continue  # that stream has no group (yet)
            pending += [(stream, item["message_id"]) for item in items]
        if running is None and pending:
            running = min((eid for _, eid in pending), key=_stream_order)
        for stream, eid in pending:
            charged = eid == running
            pinned_to_lost_node = cause == "node" and not node_back and stream != self.keys.jobs
            self.settle_entry(
                stream,
                eid,
                charged,
                why,
                cause,
                final=(final and charged) or pinned_to_lost_node,
                attempt=attempt if charged else None,
            )
        for stream in streams:
            with contextlib.suppress(redis.ResponseError):
                self.client.xgroup_delconsumer(stream, CONSUMER_GROUP, consumer)
        return len(pending)

    def settle_entry(
        self,
        stream: str,
        eid: bytes,
        charge: bool,
        why: str,
        cause: str = "crash",
        final: bool = False,
        attempt: dict[str, Any] | None = None,
    ) -> int:
        """Requeue (1) or fail (2) one pending entry; 0 when there was nothing left to do.
        ``final`` fails it whatever its retries (a job cancelled or timed out while running).
        A charged entry's ``attempt`` is recorded in the job's attempt history."""
        entries: Any = self.client.xrange(stream, eid, eid)
        if not entries:  # deleted while pending: its client fails the job with JobLost
            log.warning("pending entry %s of %s was deleted; its job is lost", eid.decode(), stream)
            pipe = self.client.pipeline(transaction=False)
            pipe.xack(stream, CONSUMER_GROUP, eid)
            pipe.hincrby(self.keys.counters, "lost", 1)
            pipe.execute()
            return 0
        fields = entries[0][1]
        job_id = fields.get(wire.F.ID, b"?").decode()
        results = self.keys.results(fields.get(wire.F.CLIENT, b"?").decode())
        lost = self.signer.sign(
            results,
            wire.encode(
                {
                    wire.N.ID: job_id,
                    wire.N.KIND: "lost",
                    wire.N.CAUSE: cause,
                    wire.N.WHY: why,
                    wire.N.NODE: self.reporter,
                    wire.N.ENDED: repr(time.time()),
                }
            ),
        )
        record = ""
        if charge:
            what = {"id": job_id, "outcome": _OUTCOMES.get(cause, cause), "error": why}
            if fields.get(wire.F.LABEL):  # what it ran, for the monitor
                what["fn"] = fields[wire.F.LABEL][: wire.LABEL_MAX].decode(errors="replace")
            if fields.get(wire.F.ARGUMENTS):
                what["args"] = fields[wire.F.ARGUMENTS][: wire.LABEL_MAX].decode(errors="replace")
            record = attempts.encode({**what, **(attempt or {})})
        outcome = int(
            self.scripts.recover(
                keys=[
                    stream,
                    self.keys.job(job_id),
                    results,
                    self.keys.counters,
                    self.keys.recent,
                ],
                args=[
                    CONSUMER_GROUP,
                    eid,
                    "1" if charge else "0",
                    -1 if final else fields.get(wire.F.RETRIES, b"0"),
                    defaults.RESULT_TTL,
                    record,
                    *[x for pair in lost.items() for x in pair],
                ],
            )
        )
        verdict = {0: "already settled", 1: "requeued", 2: "failed"}.get(outcome, "?")
        log.info("job=%s %s (%s)", job_id, verdict, why)
        return outcome

    def settle_lost_nodes(self, live: dict[str, str], grace: float) -> int:
        """Settle consumers whose node is not in ``live`` (node name -> current incarnation) and
        has stayed out of it for ``grace`` seconds of this process's own clock.  The grace covers
        a Redis that was frozen or unreachable: every record expires at once when it resumes,
        and live nodes re-register within a heartbeat, before anyone takes their jobs."""
        settled = 0
        try:
            consumers: Any = self.client.xinfo_consumers(self.keys.jobs, CONSUMER_GROUP)
        except redis.ResponseError:
            return 0  # no group yet
        now = time.monotonic()
        missing = set()
        for info in consumers:
            raw = info["name"]
            consumer = raw.decode() if isinstance(raw, bytes) else raw
            name = ConsumerName.parse(consumer)
            if name is None or live.get(name.node) == name.incarnation:
                continue
            missing.add(consumer)
            if now - self._missing_since.setdefault(consumer, now) < grace:
                continue
            why = f"node {name.node} (incarnation {name.incarnation}) stopped heartbeating"
            attempt = {
                "node": name.node,
                "incarnation": name.incarnation,
                "slot": name.slot,
                "end": round(time.time(), 6),
                "outcome": "node lost",
                "error": why,
                "reporter": self.reporter,
            }
            settled += self.settle_consumer(consumer, None, why, cause="node", attempt=attempt)
        self._missing_since = {c: t for c, t in self._missing_since.items() if c in missing}
        return settled

    def settle_predecessors(self, node: str, incarnation: str) -> int:
        """A worker that has just taken ``node``'s name lease settles every consumer an earlier
        incarnation of that name left in the group (it crashed, or lost the lease for a whole
        TTL): the entry each was running is charged an attempt, the rest go back uncharged.
        Consumer names are never reused, so no consumer ever reads a dead one's backlog."""
        consumers: set[str] = set()
        for stream in (self.keys.jobs, self.keys.node_jobs(node)):
            try:
                infos: Any = self.client.xinfo_consumers(stream, CONSUMER_GROUP)
            except redis.ResponseError:
                continue
            for info in infos:
                raw = info["name"]
                consumers.add(raw.decode() if isinstance(raw, bytes) else raw)
        settled = 0
        for consumer in sorted(consumers):
            name = ConsumerName.parse(consumer)
            if name is None or name.node != node or name.incarnation == incarnation:
                continue
            why = f"node {node} restarted; its incarnation {name.incarnation} was lost"
            lost = {"node": node, "incarnation": name.incarnation, "slot": name.slot}
            settled += self.settle_consumer(
                consumer, None, why, cause="node", node_back=True, attempt=lost
            )
        return settled

    def still_owns(self, consumer: str, stream: str, eid: bytes) -> bool:
        """Whether ``consumer`` still owns a pending entry (nobody has taken its job over)."""
        try:
            owned: Any = self.client.xpending_range(
                stream, CONSUMER_GROUP, min=eid, max=eid, count=1, consumername=consumer
            )
        except redis.ResponseError:
            return False
        return bool(owned)


def _stream_order(eid: bytes) -> tuple[int, int]:
    ms, _, seq = eid.partition(b"-")
    return int(ms), int(seq or 0)
