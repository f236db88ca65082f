"""One consumer process per core: read the shared job stream through the consumer group, run each
job, publish its result to the client's stream and acknowledge it in one atomic step.

Prefetch is adaptive: a consumer takes one entry at a time while jobs are long, and up to
MAX_PREFETCH while they are short, so no-op jobs cost few round trips and long jobs are never
hoarded.  Entries taken but not started when the batch turns out slow, or when the consumer
drains, are put back at the end of the queue, uncharged.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import types
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import redis

from rdispy import (
    attempts,
    connection,
    defaults,
    handoff,
    job_context,
    processes,
    serialization,
    stats,
    wire,
)
from rdispy.errors import DeserializationError, JobError, ProtocolError, SignatureError
from rdispy.keys import CONSUMER_GROUP, Keys
from rdispy.link import Entry, Link, all_stream_entries, deleted_entries, has_large
from rdispy.nodes import live_nodes
from rdispy.scripts import Scripts
from rdispy.streams import ConsumerName, ensure_group
from rdispy.worker import dispy_session, runner
from rdispy.worker.slots import ClosedSessions, Slots
from rdispy.worker.workspace import Workspace

log = logging.getLogger(__name__)

#: A batch of prefetched entries whose jobs have taken this long gives the rest back.
HOARD_LIMIT = 0.02
#: Times a job of a session whose setup failed here is put back before it fails here.
SETUP_BOUNCES = 3
#: Seconds a consumer that cannot read a job's argument file waits for its client to upload it.
HANDOFF_WAIT = 30.0
#: Seconds a consumer waits for its turn to read jobs before it looks around (stop, sessions).
FOLLOW_FOR = 0.1


#: Seconds between readings of the consumer's peak memory for attempt records, unless a job
#: of the batch ran longer than RSS_JOB seconds (then it is read again).
RSS_EVERY = 0.5
RSS_JOB = 0.001

#: What the attempt record of a finished job needs: job id, start, end, ok, error text, the
#: entry's ``fq`` and ``fa`` (what it ran), the exception's type name and its traceback ("" when
#: it did not raise).
_Attempt = tuple[str, float, float, bool, str, bytes, bytes, str, str]
#: A finished job waiting to be published: its entry, client, signed result, attempt.
_Publish = tuple[Entry, str, wire.Fields, _Attempt]


class _SetupFailed(Exception):
    """The session's setup failed on this consumer; the job goes to another node."""


class _Interrupted(Exception):
    """Raised by the stop signal to break out of a blocking read (never during a job)."""


@dataclass(frozen=True)
class ConsumerConfig:
    """What a consumer needs to know; shared by all consumers of a node."""

    url: str
    keys: Keys
    node: str
    secret: str | None = None
    max_result: int = defaults.MAX_RESULT
    max_output: int = defaults.MAX_OUTPUT  # characters kept of a job's stdout, and of its stderr
    owner_pid: int | None = None
    ip: str = "127.0.0.1"
    cpus: int = 1  # the node's cores: jobs that need several hold that many
    memory_limit: int | None = None  # bytes per consumer (RLIMIT_DATA), None for no limit
    workdir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "rdispy-node")


class FunctionCache:
    """Unpickled functions by blob digest, least recently used dropped first."""

    def __init__(self, client: redis.Redis, keys: Keys, size: int = 256) -> None:
        self._client, self._keys, self._size = client, keys, size
        self._fns: OrderedDict[bytes, Callable[..., Any]] = OrderedDict()

    def get(self, digest: bytes, job_id: str) -> Callable[..., Any]:
        cached = self._fns.get(digest)
        if cached is not None:
            self._fns.move_to_end(digest)
            return cached
        blob: bytes | None = self._client.get(self._keys.blob(digest.decode()))  # type: ignore[assignment]
        if blob is None:
            raise JobError(
                f"function blob {digest.decode()[:12]} is missing (expired?); submit the job again",
                job_id,
            )
        fn: Callable[..., Any] = serialization.loads(blob, "function", job_id)
        self._fns[digest] = fn
        if len(self._fns) > self._size:
            self._fns.popitem(last=False)
        return fn


class Consumer:
    """The per-core loop.  ``run()`` returns when told to stop (SIGTERM) or when its owner dies."""

    def __init__(
        self,
        config: ConsumerConfig,
        index: int,
        name: str,
        slots: Slots,
        closed: ClosedSessions | None = None,
    ) -> None:
        self.config = config
        self.index = index
        self.name = name
        self.slots = slots
        self.keys = config.keys
        self.signer = wire.Signer(config.secret)
        self.stopping = False
        self._reading = False
        self.parent = os.getppid()
        self.client = connection.connect(config.url)
        self.link = Link(self.client)  # reads jobs, sends events
        # results go out on a connection of their own, so that waiting for the next job never
        # wakes up for a publish's reply (read later, when it is long there)
        self.publisher = Link(self.client)
        self.scripts = Scripts(self.client)
        self.functions = FunctionCache(self.client, self.keys)
        self.workspace = Workspace(self.client, self.keys, config.workdir)
        self._setups: dict[str, tuple[bytes, bytes]] = {}  # session -> (setup, its arguments)
        # session -> (cleanup digest, setup arguments, computation)
        self._cleanups: dict[str, tuple[bytes, bytes, Callable[..., Any]]] = {}
        self._failed_setups: dict[str, str] = {}  # session -> why its setup failed here
        self._bounces: dict[str, int] = {}  # job id -> times handed on (failed setup)
        self._closed = closed
        self._closed_seen = closed.written() if closed else 0
        self._cwd: Path | None = None
        self.prefetch = 1
        # after a Redis outage, entries still pending under our name (a batch cut short, or a
        # publish the server lost in a restart) are read again from our backlog before new ones
        self._backlog = False
        self._in_job = False  # a job's function runs (a node's stop then interrupts it)
        self._worked = False  # back from running jobs: may wait for the next ones at once
        self._publishes: list[_Publish] = []  # finished jobs whose results are not sent yet
        self._outcomes: deque[tuple[list[_Publish], list[Any]]] = deque()
        self._load_publish = True  # the server lacks the publish script (first use, restart)
        self._rss: int | None = None
        self._rss_read = -RSS_EVERY
        self.streams = [self.keys.node_jobs(config.node), self.keys.jobs]
        self._origin: wire.Fields = {  # where results come from, in every result entry
            b"node": config.node.encode(),
            b"ip": config.ip.encode(),
            b"pid": b"%d" % os.getpid(),
        }
        parsed = ConsumerName.parse(name)
        self._attempt = attempts.Template(
            {
                "node": config.node,
                "incarnation": parsed.incarnation if parsed else None,
                "slot": index,
                "pid": os.getpid(),
            }
        )

    def stop(self, *_: object) -> None:
        self.stopping = True
        if self._in_job and self.slots.stop_requested(self.index):
            self._in_job = False  # once: its handler then has the grace to clean up
            raise KeyboardInterrupt  # the job is being stopped
        if self._reading:
            # an entry delivered in this instant stays pending under our name; the supervisor
            # requeues it, uncharged, when we exit
            raise _Interrupted

    def _orphaned(self) -> bool:
        return os.getppid() != self.parent

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        backoff = 0.05
        while not self.stopping and not self._orphaned():
            try:
                self._end_closed_sessions()
                self._serve_once()
                backoff = 0.05
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    log.warning(
                        "consumer %s: group missing (server restarted?); recreating", self.name
                    )
                    ensure_group(self.client, self.keys, self.config.node)
                else:
                    raise
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning(
                    "consumer %s: Redis unreachable (%s); retrying in %.2fs",
                    self.name,
                    exc,
                    backoff,
                )
                self._backlog = True
                time.sleep(backoff)
                backoff = min(backoff * 2, defaults.MAX_BACKOFF)
        try:  # what the last batch finished, before the supervisor requeues what we hold
            self._flush(wait=True)
        except redis.RedisError as exc:
            log.warning("consumer %s: last results not published (%s)", self.name, exc)

    def _serve_once(self) -> None:
        if self.stopping:
            return
        if self._backlog:
            self._flush(wait=True)  # the backlog is what we hold unpublished: publish first
            self._serve_backlog()
            return
        if self.slots.weight_total() >= self.config.cpus:  # the node's cores are all held
            self._flush(wait=True)
            time.sleep(0.02)
            return
        self._flush()  # the last batch's results
        turns = self.slots.turns
        worked, self._worked = self._worked, False
        if not turns.take(self.index, back_from_work=worked):
            # another consumer of this node waits for jobs: wait for the turn, looking up now
            # and then (the caller checks for stopping, closed sessions, a dead parent)
            if not turns.follow(self.index, FOLLOW_FOR):
                return
        self._reading = True  # from here a stop interrupts the read
        try:
            if self.stopping:  # told to stop while waiting for the turn
                return
            # the node's own stream (placed jobs) first, then the shared stream
            reply = self.link.call(
                "XREADGROUP", "GROUP", CONSUMER_GROUP, self.name, "COUNT", self.prefetch,
                "BLOCK", int(defaults.READ_BLOCK * 1000),
                "STREAMS", *self.streams, *(">" for _ in self.streams),
                timeout=defaults.READ_BLOCK + defaults.SOCKET_TIMEOUT,
            )  # fmt: skip
        except _Interrupted:
            return
        finally:
            self._reading = False
            turns.end(self.index)
        entries = self._checked(all_stream_entries(reply))
        if entries:
            turns.took_job()
            self._worked = True
            self._run_batch(entries)
        if self.publisher.owed:
            # the outcomes of earlier publishes are there by now; after a batch, the last
            # one's may not be (read with the next, or once a read finds nothing to do)
            self.publisher.settle(leave=1 if entries else 0)
            self._published()

    def _serve_backlog(self) -> None:
        """Run entries still pending under our name (we published everything we finished, so
        none of them has a result yet); a publish lost by the server runs again, and the job
        record keeps a second result out.  Entries deleted while pending are acknowledged and
        counted (their clients find the jobs missing and fail them with JobLost)."""
        reply = self.link.call(
            "XREADGROUP", "GROUP", CONSUMER_GROUP, self.name, "COUNT", defaults.MAX_PREFETCH,
            "STREAMS", *self.streams, *("0" for _ in self.streams),
        )  # fmt: skip
        gone = deleted_entries(reply)
        if gone:
            log.warning("consumer %s: %d pending entries were deleted", self.name, len(gone))
            pipe = self.client.pipeline(transaction=False)
            for stream, eid in gone:
                pipe.xack(stream, CONSUMER_GROUP, eid)
            pipe.hincrby(self.keys.counters, "lost", len(gone))
            pipe.execute()
        entries = self._checked(all_stream_entries(reply))
        if not entries and not gone:
            self._backlog = False
            return
        if entries:
            log.warning("consumer %s: running %d jobs of its backlog", self.name, len(entries))
            self._run_batch(entries)

    def _checked(self, entries: list[Entry]) -> list[Entry]:
        """The entries that are validly signed and of a known version; the rest are refused."""
        valid = []
        for entry in entries:
            try:
                if not self.signer.enabled and b"sig" in entry.fields:
                    raise SignatureError(
                        "the entry is signed but this node has no secret (start it with "
                        f"--secret or ${defaults.ENV_SECRET})"
                    )
                self.signer.verify(entry.stream, entry.fields)
                wire.validate_job(entry.fields)
                if self._our_runtime(entry):
                    valid.append(entry)
            except ProtocolError as exc:
                reason = str(exc)
                if entry.fields.get(b"v") != wire.VERSION:
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

    def _our_runtime(self, entry: Entry) -> bool:
        """Whether this node's Python and cloudpickle can unpickle the entry's job (its client's
        runtime tag).  If not, the entry goes to the least loaded live node that can, or, when
        none can, is refused with both runtimes named: a rolling upgrade loses no job."""
        wanted = entry.fields.get(b"rt")
        if not wanted or wanted == serialization.RUNTIME:
            return True
        records = live_nodes(self.client, self.keys, self.signer)
        tags = {
            r.get("name", "?"): serialization.runtime_tag(
                r.get("python", ""), r.get("cloudpickle", "")
            )
            for r in records
        }
        able = [
            r for r in records if r.get("name") != self.config.node and tags[r["name"]] == wanted
        ]
        if able:
            target = min(able, key=lambda r: (int(r.get("busy", 0)) / int(r["cpus"]), r["name"]))
            self._hand_to(entry, target["name"], wanted)
        else:
            seen = ", ".join(f"{name} {tag.decode()}" for name, tag in sorted(tags.items()))
            self._dead_letter(
                entry,
                f"the job was pickled by {wanted.decode()} (its client's Python and cloudpickle "
                f"minor versions) and no live node runs that: node {self.config.node} runs "
                f"{serialization.RUNTIME.decode()} (live nodes: {seen}); start a node with the "
                "client's Python and cloudpickle, or submit from a client that matches a node",
            )
        return False

    def _hand_to(self, entry: Entry, node: str, runtime: bytes) -> None:
        """Move an entry, untouched but for its signature, into ``node``'s own stream, and tell
        its client where it is now (so that a cancel still finds it)."""
        stream = self.keys.node_jobs(node)
        fields = {k: v for k, v in entry.fields.items() if k != b"sig"}
        fields[b"nd"] = node.encode()
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(stream, self.signer.sign(stream, fields))  # type: ignore[arg-type]
        pipe.xack(entry.stream, CONSUMER_GROUP, entry.eid)
        pipe.xdel(entry.stream, entry.eid)
        new_eid = pipe.execute()[0]
        job_id = fields.get(b"id", b"").decode(errors="replace")
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
            moved = {"k": "moved", "node": node, "stream": stream, "eid": new_eid}
            with contextlib.suppress(redis.RedisError):  # the client also finds it by scanning
                self._emit(self.keys.results(client), job_id, moved)

    def _dead_letter(self, entry: Entry, reason: str) -> None:
        """Refuse an entry: to the dead letters, and a notice to its client (which would wait
        for the job forever otherwise)."""
        log.error("consumer %s: refusing entry %s: %s", self.name, entry.eid.decode(), reason)
        pipe = self.client.pipeline(transaction=True)
        client, job_id = wire.client_of(entry.fields), entry.fields.get(b"id", b"")
        if client is not None and job_id:
            results_key = self.keys.results(client)
            notice = wire.refusal_fields(job_id, self.config.node, reason)
            pipe.xadd(results_key, self.signer.sign(results_key, notice))  # type: ignore[arg-type]
            pipe.expire(results_key, defaults.RESULT_TTL)
        pipe.xadd(
            self.keys.dead_letters,
            {
                b"entry": entry.eid,
                b"stream": entry.stream.encode(),
                b"reason": reason.encode(),
                b"node": self.config.node.encode(),
                b"id": entry.fields.get(b"id", b"")[:200],
            },
            maxlen=1000,
            approximate=True,
        )
        pipe.hincrby(self.keys.counters, stats.DEADLETTERS, 1)
        pipe.xack(entry.stream, CONSUMER_GROUP, entry.eid)
        pipe.xdel(entry.stream, entry.eid)
        pipe.execute()

    def _run_batch(self, entries: list[Entry]) -> None:
        started = time.monotonic()
        last_flush = started
        for i, entry in enumerate(entries):
            if i and (self.stopping or time.monotonic() - started > HOARD_LIMIT):
                self._flush()
                self._release(entries[i:])
                self.prefetch = 1
                return
            if self._handed_on(entry) or not self._hold_cores(entry):
                continue
            try:
                self._publishes.append(self._execute(entry))
            except _SetupFailed:
                self._handed_on(entry)
                continue
            now = time.monotonic()
            if now - last_flush > 0.001 or i == len(entries) - 1:  # the last one at once
                self._flush()
                last_flush = now
        per_job = (time.monotonic() - started) / len(entries)
        if per_job < defaults.SHORT_JOB:
            self.prefetch = min(self.prefetch * 2, defaults.MAX_PREFETCH)
        else:
            self.prefetch = 1

    def _hold_cores(self, entry: Entry) -> bool:
        """Take the cores the job needs (``cp``, default 1) before it starts.  A one-core job
        finding them all held goes back to the queue; a job that needs several reserves them
        at once, so no new job starts here, and waits until running ones have ended."""
        need = min(int(entry.fields.get(b"cp", b"1") or 1), self.config.cpus)
        self.slots.set_weight(self.index, need)
        while self.slots.weight_total() > self.config.cpus:
            # one core short, stopping, or another consumer already waiting for cores: step back
            if need == 1 or self.stopping or self.slots.waiting_before(self.index):
                self.slots.set_weight(self.index, 0)
                self._release([entry])
                time.sleep(0.02)
                return False
            time.sleep(0.02)
        return True

    def _handed_on(self, entry: Entry) -> bool:
        """Put back a job of a session whose setup failed here, for another node to run; after
        SETUP_BOUNCES such returns of the same job (no other node took it) it runs here and fails
        with the setup error."""
        session = entry.fields.get(b"cl", b"").decode()
        if session not in self._failed_setups:
            return False
        job_id = entry.fields[b"id"].decode()
        bounces = self._bounces.get(job_id, 0)
        if bounces >= SETUP_BOUNCES:
            self._bounces.pop(job_id, None)
            return False
        self._bounces[job_id] = bounces + 1
        self._release([entry])
        time.sleep(0.05)  # let a node whose setup worked take it first
        return True

    def _execute(self, entry: Entry) -> _Publish:
        eid, fields = entry.eid, entry.fields
        job_id = fields[b"id"].decode()
        client = fields[b"c"].decode()
        results_key = self.keys.results(client)
        timeout = float(fields.get(b"to", b"0") or 0)
        # monotonic: the supervisor times the job on the same host, immune to clock steps
        self.slots.start(self.index, eid, fields[b"id"], time.monotonic(), timeout)
        if fields.get(b"ev"):
            started = {
                "k": "run",
                "t0": repr(time.time()),
                "node": self.config.node,
                "ip": self.config.ip,
            }
            with contextlib.suppress(redis.RedisError):  # a progress note, not worth a failure
                self._emit(results_key, job_id, started, wait=False)
        job_context.set_current(
            job_context.JobContext(
                job_id,
                self.config.node,
                partial(self._job_event, client, job_id),
                self.config.max_result,
            )
        )
        self._in_job = True
        try:
            outcome = self._run(fields, job_id)
            if self.slots.stop_requested(self.index):  # it caught the KeyboardInterrupt
                self._stopped(job_id)  # exits, the slot left set for the node to settle
        except MemoryError:
            self._out_of_memory(job_id)  # leaves the slot set: the supervisor charges this entry
        except KeyboardInterrupt:
            self._in_job = False
            if not self.slots.stop_requested(self.index):
                raise
            self._stopped(job_id)
        finally:
            self._in_job = False
            job_context.set_current(None)
            self.slots.finish(self.index)
            self.slots.set_weight(self.index, 0)
        result = wire.result_fields(
            fields[b"id"],
            outcome.kind,
            self._hand_back(fields, outcome),
            self._origin,
            outcome.started,
            outcome.ended,
            outcome.stdout,
            outcome.stderr,
        )
        if fields[b"k"] == b"chunk":  # so that a client that reattaches knows its calls
            result[b"ck"] = fields.get(b"n", b"")
        attempt = (
            job_id,
            outcome.started,
            outcome.ended,
            outcome.kind == "ok" and not outcome.etype,  # a map chunk may fail with "ok"
            outcome.error,
            fields.get(b"fq", b"")[: wire.LABEL_MAX],  # whatever a client sent
            fields.get(b"fa", b"")[: wire.LABEL_MAX],
            outcome.etype,
            outcome.traceback,
        )
        return entry, client, self.signer.sign(results_key, result), attempt

    def _stopped(self, job_id: str) -> NoReturn:
        """The node stopped the job (cancel, timeout) and it has ended within the grace: its
        result is dropped, as dispynode drops a terminated job's; publish what the batch
        finished and exit, and the node reports the job as cancelled or timed out."""
        log.info("consumer %s: job=%s stopped by the node", self.name, job_id)
        with contextlib.suppress(Exception):
            self._flush(wait=True)
        os._exit(0)

    def _out_of_memory(self, job_id: str) -> NoReturn:
        """The job hit the memory limit: publish what the batch finished, then exit so that the
        supervisor fails the job with MemoryLimitExceeded and starts a fresh consumer."""
        log.error("consumer %s: job=%s ran out of its memory limit", self.name, job_id)
        with contextlib.suppress(Exception):
            self._flush(wait=True)
        os._exit(processes.EXIT_MEMORY)

    def _run(self, fields: dict[bytes, bytes], job_id: str) -> runner.Outcome:
        limited = self.config.memory_limit is not None
        try:
            fn = self.functions.get(fields[b"fn"], job_id)
            payload = serialization.loads(self._arguments(fields, job_id), "arguments", job_id)
            session = fields.get(b"cl")
            if session:
                self._enter_session(session.decode(), fields, fn, job_id)
            if fields[b"k"] == b"chunk":
                failures: list[BaseException] = []
                outcome = runner.run(
                    runner.call_chunk, (fn, payload, failures), {}, job_id,
                    self.config.max_result, self.config.max_output, memory_limited=limited,
                )  # fmt: skip
                if failures and outcome.kind == "ok":  # an item raised: a failed attempt
                    runner.note_failure(outcome, failures[0])
                return outcome
            args, kwargs = payload
            return runner.run(
                fn,
                args,
                kwargs,
                job_id,
                self.config.max_result,
                self.config.max_output,
                memory_limited=limited,
            )
        except _SetupFailed:
            raise
        except Exception as exc:  # the job could not even be set up: its own error result
            if limited and isinstance(exc, MemoryError):
                raise
            now = time.time()
            payload = serialization.dump_exception(exc, job_id)
            return runner.failed("exc", payload, "", "", now, now, exc)

    def _arguments(self, fields: dict[bytes, bytes], job_id: str) -> bytes:
        """The pickled arguments: inline, in the client's handoff file on this host, or (from
        another host) uploaded by the client as a blob on request."""
        inline = fields.get(b"p")
        if inline:
            return inline
        name, expected = fields[b"pf"].decode(), fields[b"pz"].decode()
        folder = handoff.local_folder(fields[b"sm"])
        if folder is not None:
            try:
                return handoff.read(folder, name, expected, job_id)
            except OSError as exc:
                log.warning("job %s: argument file unreadable (%s); asking for it", job_id, exc)
        key = self.keys.blob(expected)
        deadline = time.monotonic() + HANDOFF_WAIT
        pause, asked = 0.002, False
        while True:
            data: bytes | None = self.client.get(key)  # type: ignore[assignment]
            if data is not None:
                if handoff.digest(data) != expected:
                    raise DeserializationError("uploaded arguments do not match their hash", job_id)
                return data
            if not asked:
                self._emit(self.keys.results(fields[b"c"].decode()), job_id, {"k": "need"})
                asked = True
            if time.monotonic() > deadline:
                raise JobError(
                    f"the job's arguments are in a file on its client's host and the client did "
                    f"not upload them within {HANDOFF_WAIT:g}s (client gone?)",
                    job_id,
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def _hand_back(self, fields: dict[bytes, bytes], outcome: runner.Outcome) -> wire.Fields:
        """Result payload fields: a large result goes through a file when the client shares
        this host; otherwise (or if the file cannot be written) inline."""
        sm = fields.get(b"sm")
        if outcome.kind == "ok" and sm and len(outcome.payload) >= handoff.MIN_BYTES:
            folder = handoff.local_folder(sm)
            if folder is not None:
                name = handoff.result_name()
                try:
                    digest = handoff.write(folder, name, outcome.payload)
                    return {b"pf": name.encode(), b"pz": digest.encode()}
                except OSError as exc:
                    handoff.remove(folder, name)
                    log.debug("result file not written (%s); sending it inline", exc)
        return {b"p": outcome.payload}

    def _enter_session(
        self, session: str, fields: dict[bytes, bytes], fn: Callable[..., Any], job_id: str
    ) -> None:
        """Run in the cluster session's folder with its dependencies; run its setup once."""
        folder, names = self.workspace.prepare(session, fields.get(b"dp"), job_id)
        if self._cwd is not folder:  # the same object for every job of a session
            os.chdir(folder)
            self._cwd = folder
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
        namespace = getattr(fn, "__globals__", None)
        if namespace is not None:
            _share_namespace(namespace, names)
            dispy_session.add_job_globals(
                namespace, dispy_session.job_globals(self.config.node, self.config.ip, folder)
            )
        if session in self._failed_setups:  # handed on enough times: no other node took it
            raise JobError(self._failed_setups[session], job_id)
        setup = fields.get(b"su")
        setup_args = fields.get(b"sa", b"")
        done = self._setups.get(session)
        if setup and done != (setup, setup_args):
            if done is not None:  # the client set this node up again: undo the old setup
                self._run_cleanup(session)
            self._run_setup(session, fields, setup, setup_args, namespace, folder, job_id)
        cleanup = fields.get(b"cu")
        if cleanup and session not in self._cleanups:
            self._cleanups[session] = (cleanup, setup_args, fn)

    def _run_setup(
        self,
        session: str,
        fields: dict[bytes, bytes],
        setup: bytes,
        setup_args: bytes,
        namespace: dict[str, Any] | None,
        folder: Path,
        job_id: str,
    ) -> None:
        """Run the session's setup in this consumer, one consumer of the node at a time."""
        setup_fn = self.functions.get(setup, job_id)
        if namespace is not None:
            setup_fn = _in_namespace(setup_fn, namespace)
        try:
            args = self._setup_arguments(setup_args, job_id)
            with dispy_session.setup_lock(folder):
                # each consumer runs the setup: each finds the files, even if one removed them
                self.workspace.prepare(session, fields.get(b"dp"), job_id, again=True)
                status = setup_fn(*args)
            if not dispy_session.setup_ok(status):
                raise JobError(f"setup returned {status!r} on node {self.config.node}", job_id)
        except Exception as exc:
            self._setup_failed(session, fields, job_id, exc)
            raise _SetupFailed from exc
        self._setups[session] = (setup, setup_args)

    def _setup_arguments(self, digest: bytes, job_id: str) -> tuple[Any, ...]:
        """The arguments of this node's setup (dispy's ``NodeAllocate.setup_args``)."""
        if not digest:
            return ()
        data: bytes | None = self.client.get(self.keys.blob(digest.decode()))  # type: ignore[assignment]
        if data is None:
            raise JobError("the setup arguments of this node are gone from the server", job_id)
        args = serialization.loads(data, "setup arguments", job_id)
        return tuple(args)

    def _run_cleanup(self, session: str) -> None:
        """Run the session's cleanup here (with the arguments its setup had), if it has one."""
        entry = self._cleanups.pop(session, None)
        if entry is None:
            return
        digest, setup_args, compute = entry
        try:
            cleanup = self.functions.get(digest, session)
            args = self._setup_arguments(setup_args, session)
            _in_namespace(cleanup, getattr(compute, "__globals__", {}))(*args)
        except Exception:
            log.exception("consumer %s: cleanup of session %s failed", self.name, session)

    def _setup_failed(
        self, session: str, fields: dict[bytes, bytes], job_id: str, exc: Exception
    ) -> None:
        """Exclude this node from the session and tell its client (dispy closes such a node)."""
        if session in self._failed_setups:
            return
        text = f"setup failed on node {self.config.node}: {type(exc).__name__}: {exc}"
        self._failed_setups[session] = text
        log.warning("consumer %s: %s", self.name, text)
        results_key = self.keys.results(fields[b"c"].decode())
        event = {"k": "excl", "node": self.config.node, "ip": self.config.ip, "why": text}
        with contextlib.suppress(redis.RedisError):
            self._emit(results_key, job_id, event)

    def _end_closed_sessions(self) -> None:
        """Run the cleanup of sessions their clients closed, and forget them."""
        if self._closed is None or self._closed.written() == self._closed_seen:
            return
        self._closed_seen, closed = self._closed.since(self._closed_seen)
        for session, remove_files in closed:
            self._run_cleanup(session)
            self._setups.pop(session, None)
            self._failed_setups.pop(session, None)
            folder = self.workspace.forget(session)
            if remove_files and folder is not None:
                if self._cwd == folder:
                    os.chdir(self.workspace.root)
                    self._cwd = None
                shutil.rmtree(folder, ignore_errors=True)

    def _job_event(self, client: str, job_id: str, event: dict[str, Any]) -> None:
        """An event sent by the running job.  A provisional result is dropped (and counted for
        its client) when the client has MAX_EVENTS entries unread, or when Redis cannot be
        reached: a client that stops reading never blocks or fills up the node."""
        results_key = self.keys.results(client)
        if event.get("k") != "prov":
            self._emit(results_key, job_id, event)
            return
        fields = self.signer.sign(results_key, wire.encode({"id": job_id, **event}))
        call = (
            [results_key, self.keys.client(client)],
            [defaults.MAX_EVENTS, *itertools.chain(*fields.items())],
        )
        try:
            added = self.link.run_scripts(self.scripts.provisional, [call])[0]
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("job %s: provisional result dropped (%s)", job_id, exc)
            return
        if not added:
            log.debug("job %s: provisional result dropped: its client reads none", job_id)

    def _emit(
        self, results_key: str, job_id: str, event: dict[str, Any], wait: bool = True
    ) -> None:
        """Publish an event (running, provisional result, file) to the job's client."""
        fields = self.signer.sign(results_key, wire.encode({"id": job_id, **event}))
        command = ("XADD", results_key, "*", *itertools.chain(*fields.items()))
        if wait:
            self.link.call(*command)
        else:
            self.link.post(*command)

    def _flush(self, wait: bool = False) -> None:
        """Send the publish scripts of finished jobs, without waiting for their outcomes (read
        later from the publisher link, see ``_published``) unless ``wait``."""
        for _ in range(2 if wait else 1):  # waiting: once more if the server lost the script
            if self._publishes:
                commands = self._publish_commands(self._publishes)
                batch, self._publishes = self._publishes, []
                large = any(has_large(result.values()) for _, _, result, _ in batch)
                handler = partial(self._record_outcomes, batch)
                self.publisher.send(commands, handler, large=large)
            if not wait:
                return
            self.publisher.settle()
            self._published()
        if self._publishes:
            raise redis.ConnectionError(f"{len(self._publishes)} results not published yet")

    def _publish_commands(self, batch: list[_Publish]) -> list[tuple[Any, ...]]:
        if self._load_publish:
            self.publisher.call("SCRIPT", "LOAD", self.scripts.publish.script)
            self._load_publish = False
        keys = self.keys
        now = time.monotonic()
        if now - self._rss_read > RSS_EVERY or any(a[2] - a[1] > RSS_JOB for *_, a in batch):
            self._rss = processes.peak_rss_kib()  # a high-water mark: need not be read each job
            self._rss_read = now
        commands = []
        sha = self.scripts.publish.sha
        for entry, client, result, attempt_of in batch:
            job_id, started, ended, ok, error, fq, fa, etype, tb = attempt_of
            attempt = self._attempt.render(
                job_id, started, ended, ok, error, self._rss, fq, etype, fa
            )
            commands.append(
                (
                    "EVALSHA", sha, 5,
                    entry.stream, keys.job(job_id), keys.results(client), keys.counters,
                    keys.recent,
                    CONSUMER_GROUP, entry.eid, self.name, defaults.RESULT_TTL, attempt,
                    stats.FINISHED if ok else stats.FAILED, tb,
                    *itertools.chain.from_iterable(result.items()),
                )
            )  # fmt: skip
        return commands

    def _record_outcomes(self, batch: list[_Publish], replies: list[Any] | None) -> None:
        if replies is None:  # lost with the connection: sent again
            self._publishes[:0] = batch
        else:
            self._outcomes.append((batch, replies))

    def _published(self) -> None:
        """Act on the outcomes of the publishes sent so far (``_outcomes``, filled by the link as
        their replies are read).  A publish whose reply was lost, or that the server could not
        run, is sent again (a second publish of a job finds it published and changes nothing)."""
        failure: Exception | None = None
        while self._outcomes:
            batch, replies = self._outcomes.popleft()
            for publish, outcome in zip(batch, replies, strict=True):
                if isinstance(outcome, Exception):
                    self._publishes.append(publish)
                    if isinstance(outcome, redis.exceptions.NoScriptError):
                        self._load_publish = True  # the server restarted empty
                    else:
                        failure = failure or outcome
                elif outcome != 1:
                    self._dropped(publish, outcome)
        if failure is not None:
            raise failure

    def _dropped(self, publish: _Publish, outcome: int) -> None:
        entry, _, result, _ = publish
        if b"pf" in result:  # a result file nobody will read
            folder = handoff.local_folder(entry.fields.get(b"sm", b""))
            if folder is not None:
                handoff.remove(folder, result[b"pf"].decode())
        if outcome == -1:
            self.slots.fenced(self.index)  # taken over: the supervisor reincarnates the node
        log.warning(
            "consumer %s: result of job %s dropped (%s)",
            self.name,
            result[b"id"].decode(),
            "taken over by another node" if outcome == -1 else "attempt superseded",
        )

    def _release(self, entries: list[Entry]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for entry in entries:
            self.scripts.release(
                keys=[entry.stream], args=[CONSUMER_GROUP, entry.eid, self.name], client=pipe
            )
        pipe.execute()


def _share_namespace(namespace: dict[str, Any], names: dict[str, Any]) -> None:
    """Put the session's (and the job's) dependencies into the computation's globals, each
    function among them rebound to those globals: one namespace, as on a dispynode, so that a
    dependency sees ``dispy_node_name`` and the other dependencies (what each function brought
    along is kept)."""
    for name, value in names.items():
        if isinstance(value, types.FunctionType) and value.__globals__ is not namespace:
            for key, item in value.__globals__.items():
                namespace.setdefault(key, item)
            value = names[name] = _in_namespace(value, namespace)  # once per session here
        namespace[name] = value


def _in_namespace(fn: Callable[..., Any], namespace: dict[str, Any]) -> Callable[..., Any]:
    """``fn`` rebound to the computation's globals, so that a dispy setup's ``global x``
    defines ``x`` for the computation (functools.partial setups included)."""
    if isinstance(fn, functools.partial):
        return functools.partial(_in_namespace(fn.func, namespace), *fn.args, **fn.keywords)
    if isinstance(fn, types.FunctionType):
        return types.FunctionType(
            fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__
        )
    return fn


def consumer_main(
    config: ConsumerConfig, index: int, name: str, slots: Slots, closed: ClosedSessions
) -> None:
    """Entry point of a forked consumer process; never returns."""
    code = 0
    try:
        processes.reset_child_signals()
        os.setpgid(0, 0)
        processes.set_parent_death_signal(signal.SIGKILL)
        processes.prefer_oom_kill()
        if config.memory_limit is not None:
            processes.limit_memory(config.memory_limit)
        Consumer(config, index, name, slots, closed).run()
    except BaseException:
        log.exception("consumer %s failed", name)
        code = 1
    finally:
        os._exit(code)
