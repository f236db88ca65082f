"""Which job entries a consumer runs: the admission check between reading and running.

An entry runs here only if it is validly signed, of this node's wire version and pickled by a
runtime (Python and cloudpickle minor versions) this node has.  An entry of another runtime is
handed to a live node that has it; one that fails the check, or that no live node can run, is
refused: to the dead letters, with a notice to its client, which would wait forever otherwise.
"""

from __future__ import annotations

import contextlib
import logging

import redis

from rdispy import defaults, serialization, stats, wire
from rdispy.errors import ProtocolError, SignatureError
from rdispy.keys import CONSUMER_GROUP, Keys
from rdispy.link import Entry
from rdispy.nodes import live_nodes
from rdispy.worker.publishing import Events

log = logging.getLogger(__name__)


class Admission:
    """The admission check of one consumer's entries."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        signer: wire.Signer,
        node: str,
        name: str,
        events: Events,
    ) -> None:
        self.client = client
        self.keys = keys
        self.signer = signer
        self.node = node
        self.name = name  # the consumer's
        self.events = events

    def checked(self, entries: list[Entry]) -> list[Entry]:
        """The entries that are validly signed and of a known version; the rest are refused."""
        valid: list[Entry] = []
        nodes: list[dict[str, str]] | None = None  # live node records, read once a batch if needed
        for entry in entries:
            try:
                if not self.signer.enabled and wire.F.SIG in entry.fields:
                    raise SignatureError(
                        "the entry is signed but this node has no secret (start it with "
                        f"--secret or ${defaults.ENV_SECRET})"
                    )
                self.signer.verify(entry.stream, entry.fields)
                wire.validate_job(entry.fields)
                wanted = entry.fields.get(wire.F.RUNTIME)
                if not wanted or wanted == serialization.RUNTIME:
                    valid.append(entry)
                    continue
                if nodes is None:
                    nodes = live_nodes(self.client, self.keys, self.signer)
                self._rehome(entry, wanted, nodes)
            except ProtocolError as exc:
                reason = str(exc)
                if entry.fields.get(wire.F.VERSION) != wire.VERSION:
                    reason += self._wire_versions()
                self._dead_letter(entry, reason)
        return valid

    def _wire_versions(self) -> str:
        """Which wire version each live node speaks, for a refusal of another version's entry
        (such an entry cannot be re-signed for another node: how it is signed is the version's)."""
        try:
            records = live_nodes(self.client, self.keys, self.signer)
        except redis.RedisError:
            return ""
        seen = ", ".join(sorted(f"{r.get('name', '?')} {r.get('wire', '?')}" for r in records))
        return (
            f" (this node speaks wire version {wire.VERSION.decode()}; live nodes: {seen}); "
            "a new wire version needs its nodes upgraded before its clients"
        )

    def _rehome(self, entry: Entry, wanted: bytes, records: list[dict[str, str]]) -> None:
        """An entry this node's Python or cloudpickle cannot unpickle (its client's runtime tag
        ``wanted`` differs): it goes to the least loaded live node that can, or, when none can,
        is refused with both runtimes named: a rolling upgrade loses no job."""
        tags = {
            r.get("name", "?"): serialization.runtime_tag(
                r.get("python", ""), r.get("cloudpickle", "")
            )
            for r in records
        }
        able = [r for r in records if r.get("name") != self.node and tags[r["name"]] == wanted]
        if able:
            target = min(able, key=lambda r: (int(r.get("busy", 0)) / int(r["cpus"]), r["name"]))
            self._hand_to(entry, target["name"], wanted)
        else:
            seen = ", ".join(f"{name} {tag.decode()}" for name, tag in sorted(tags.items()))
            self._dead_letter(
                entry,
                f"the job was pickled by {wanted.decode()} (its client's Python and cloudpickle "
                f"minor versions) and no live node runs that: node {self.node} runs "
                f"{serialization.RUNTIME.decode()} (live nodes: {seen}); start a node with the "
                "client's Python and cloudpickle, or submit from a client that matches a node",
            )

    def _hand_to(self, entry: Entry, node: str, runtime: bytes) -> None:
        """Move an entry, untouched but for its signature, into ``node``'s own stream, and tell
        its client where it is now (so that a cancel still finds it)."""
        stream = self.keys.node_jobs(node)
        fields = {k: v for k, v in entry.fields.items() if k != wire.F.SIG}
        fields[wire.F.PLACED] = node.encode()
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(stream, self.signer.sign(stream, fields))  # type: ignore[arg-type]
        pipe.xack(entry.stream, CONSUMER_GROUP, entry.eid)
        pipe.xdel(entry.stream, entry.eid)
        new_eid = pipe.execute()[0]
        job_id = fields.get(wire.F.ID, b"").decode(errors="replace")
        log.warning(
            "consumer %s: job=%s needs %s, this node runs %s: handed to node %s",
            self.name,
            job_id,
            runtime.decode(),
            serialization.RUNTIME.decode(),
            node,
        )
        client = wire.client_of(fields)
        if client is not None:
            moved = {
                wire.N.KIND: "moved",
                wire.N.NODE: node,
                wire.N.STREAM: stream,
                wire.N.EID: new_eid,
            }
            with contextlib.suppress(redis.RedisError):  # the client also finds it by scanning
                self.events.emit(self.keys.results(client), job_id, moved)

    def _dead_letter(self, entry: Entry, reason: str) -> None:
        """Refuse an entry: to the dead letters, and a notice to its client (which would wait
        for the job forever otherwise)."""
        log.error("consumer %s: refusing entry %s: %s", self.name, entry.eid.decode(), reason)
        pipe = self.client.pipeline(transaction=True)
        client, job_id = wire.client_of(entry.fields), entry.fields.get(wire.F.ID, b"")
        if client is not None and job_id:
            results_key = self.keys.results(client)
            notice = wire.refusal_fields(job_id, self.node, reason)
            pipe.xadd(results_key, self.signer.sign(results_key, notice))  # type: ignore[arg-type]
            pipe.expire(results_key, defaults.RESULT_TTL)
        pipe.xadd(
            self.keys.dead_letters,
            {
                wire.F.ENTRY: entry.eid,
                wire.F.STREAM: entry.stream.encode(),
                wire.F.REASON: reason.encode(),
                wire.F.NODE: self.node.encode(),
                wire.F.ID: entry.fields.get(wire.F.ID, b"")[:200],
            },
            maxlen=1000,
            approximate=True,
        )
        pipe.hincrby(self.keys.counters, stats.DEADLETTERS, 1)
        pipe.xack(entry.stream, CONSUMER_GROUP, entry.eid)
        pipe.xdel(entry.stream, entry.eid)
        pipe.execute()
