"""One consumer process per core: read the shared job stream through the consumer group, run each
job, publish its result to the client's stream and acknowledge it in one atomic step.

Prefetch is adaptive: a consumer takes one entry at a time while jobs are long, and up to
MAX_PREFETCH while they are short, so no-op jobs cost few round trips and long jobs are never
hoarded.  Entries taken but not started when the batch turns out slow, or when the consumer
drains, are put back at the end of the queue, uncharged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from functools import partial
from typing import NoReturn

import redis

from rdispy import attempts, connection, defaults, job_context, processes, serialization, wire
from rdispy.keys import CONSUMER_GROUP
from rdispy.link import Entry, Link, all_stream_entries, deleted_entries
from rdispy.scripts import Scripts
from rdispy.streams import ConsumerName, ensure_group
from rdispy.worker import runner
from rdispy.worker.admission import Admission
from rdispy.worker.config import ConsumerConfig
from rdispy.worker.functions import FunctionCache
from rdispy.worker.payloads import Payloads
from rdispy.worker.publishing import Events, Publish, ResultPublisher
from rdispy.worker.sessions import Sessions, SetupFailed
from rdispy.worker.slots import ClosedSessions, Slots

__all__ = ["Consumer", "ConsumerConfig", "consumer_main"]  # ConsumerConfig: its old home

log = logging.getLogger(__name__)

#: A batch of prefetched entries whose jobs have taken this long gives the rest back.
HOARD_LIMIT = 0.02
#: Times a job of a session whose setup failed here is put back before it fails here.
SETUP_BOUNCES = 3
#: Seconds a consumer waits for its turn to read jobs before it looks around (stop, sessions).
FOLLOW_FOR = 0.1


class _Interrupted(Exception):
    """Raised by the stop signal to break out of a blocking read (never during a job)."""


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
        self.scripts = Scripts(self.client)
        self.functions = FunctionCache(self.client, self.keys)
        self.events = Events(self.link, self.signer, self.keys, self.scripts)
        self.admission = Admission(
            self.client, self.keys, self.signer, config.node, name, self.events
        )
        self.payloads = Payloads(self.client, self.keys, self.events)
        self.sessions = Sessions(
            self.client, self.keys, config, name, self.functions, self.events, closed
        )
        self._bounces: dict[str, int] = {}  # job id -> times handed on (failed setup)
        self.prefetch = 1
        # after a Redis outage, entries still pending under our name (a batch cut short, or a
        # publish the server lost in a restart) are read again from our backlog before new ones
        self._backlog = False
        self._in_job = False  # a job's function runs (a node's stop then interrupts it)
        self._worked = False  # back from running jobs: may wait for the next ones at once
        self.streams = [self.keys.node_jobs(config.node), self.keys.jobs]
        self._origin: wire.Fields = {  # where results come from, in every result entry
            wire.F.NODE: config.node.encode(),
            wire.F.IP: config.ip.encode(),
            wire.F.PID: b"%d" % os.getpid(),
        }
        parsed = ConsumerName.parse(name)
        attempt = attempts.Template(
            {
                "node": config.node,
                "incarnation": parsed.incarnation if parsed else None,
                "slot": index,
                "pid": os.getpid(),
            }
        )
        # results go out on a connection of their own, so that waiting for the next job never
        # wakes up for a publish's reply (read later, when it is long there)
        self.results = ResultPublisher(
            Link(self.client), self.scripts, self.keys, name, slots, index, attempt
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
                self.sessions.end_closed()
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
            self.results.flush(wait=True)
        except redis.RedisError as exc:
            log.warning("consumer %s: last results not published (%s)", self.name, exc)

    def _serve_once(self) -> None:
        if self.stopping:
            return
        if self._backlog:
            self.results.flush(wait=True)  # the backlog is what we hold unpublished: publish first
            self._serve_backlog()
            return
        if self.slots.weight_total() >= self.config.cpus:  # the node's cores are all held
            self.results.flush(wait=True)
            time.sleep(0.02)
            return
        self.results.flush()  # the last batch's results
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
        entries = self.admission.checked(all_stream_entries(reply))
        if entries:
            turns.took_job()
            self._worked = True
            self._run_batch(entries)
        # the outcomes of earlier publishes are there by now; after a batch, the last
        # one's may not be (read with the next, or once a read finds nothing to do)
        self.results.settle_owed(leave=1 if entries else 0)

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
        entries = self.admission.checked(all_stream_entries(reply))
        if not entries and not gone:
            self._backlog = False
            return
        if entries:
            log.warning("consumer %s: running %d jobs of its backlog", self.name, len(entries))
            self._run_batch(entries)

    def _run_batch(self, entries: list[Entry]) -> None:
        started = time.monotonic()
        last_flush = started
        for i, entry in enumerate(entries):
            if i and (self.stopping or time.monotonic() - started > HOARD_LIMIT):
                self.results.flush()
                self._release(entries[i:])
                self.prefetch = 1
                return
            if self._handed_on(entry) or not self._hold_cores(entry):
                continue
            try:
                self.results.add(self._execute(entry))
            except SetupFailed:
                self._handed_on(entry)
                continue
            now = time.monotonic()
            if now - last_flush > 0.001 or i == len(entries) - 1:  # the last one at once
                self.results.flush()
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
        need = min(wire.JobHeader(entry.fields).cores, self.config.cpus)
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
        header = wire.JobHeader(entry.fields)
        if not self.sessions.failed_here(header.session):
            return False
        job_id = header.job_id
        bounces = self._bounces.get(job_id, 0)
        if bounces >= SETUP_BOUNCES:
            self._bounces.pop(job_id, None)
            return False
        self._bounces[job_id] = bounces + 1
        self._release([entry])
        time.sleep(0.05)  # let a node whose setup worked take it first
        return True

    def _execute(self, entry: Entry) -> Publish:
        eid, fields = entry.eid, entry.fields
        header = wire.JobHeader(fields)
        job_id = header.job_id
        client = header.client
        results_key = self.keys.results(client)
        # monotonic: the supervisor times the job on the same host, immune to clock steps
        self.slots.start(self.index, eid, header.raw_id, time.monotonic(), header.timeout)
        if header.events:
            started = {
                wire.N.KIND: "run",
                wire.N.STARTED: repr(time.time()),
                wire.N.NODE: self.config.node,
                wire.N.IP: self.config.ip,
            }
            with contextlib.suppress(redis.RedisError):  # a progress note, not worth a failure
                self.events.emit(results_key, job_id, started, wait=False)
        job_context.set_current(
            job_context.JobContext(
                job_id,
                self.config.node,
                partial(self.events.job_event, client, job_id),
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
            header.raw_id,
            outcome.kind,
            self.payloads.hand_back(fields, outcome),
            self._origin,
            outcome.started,
            outcome.ended,
            outcome.stdout,
            outcome.stderr,
        )
        if header.is_chunk:  # so that a client that reattaches knows its calls
            result[wire.F.CHUNK_CALLS] = header.calls
        attempt = (
            job_id,
            outcome.started,
            outcome.ended,
            outcome.kind == "ok" and not outcome.etype,  # a map chunk may fail with "ok"
            outcome.error,
            header.label,  # whatever a client sent (cut to LABEL_MAX)
            header.arguments,
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
            self.results.flush(wait=True)
        os._exit(0)

    def _out_of_memory(self, job_id: str) -> NoReturn:
        """The job hit the memory limit: publish what the batch finished, then exit so that the
        supervisor fails the job with MemoryLimitExceeded and starts a fresh consumer."""
        log.error("consumer %s: job=%s ran out of its memory limit", self.name, job_id)
        with contextlib.suppress(Exception):
            self.results.flush(wait=True)
        os._exit(processes.EXIT_MEMORY)

    def _run(self, fields: dict[bytes, bytes], job_id: str) -> runner.Outcome:
        limited = self.config.memory_limit is not None
        try:
            header = wire.JobHeader(fields)
            fn = self.functions.get(header.function, job_id)
            pickled = self.payloads.arguments(fields, job_id)
            payload = serialization.loads(pickled, "arguments", job_id)
            session = header.session
            if session:
                self.sessions.enter(session, fields, fn, job_id)
            if header.is_chunk:
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
        except SetupFailed:
            raise
        except Exception as exc:  # the job could not even be set up: its own error result
            if limited and isinstance(exc, MemoryError):
                raise
            now = time.time()
            payload = serialization.dump_exception(exc, job_id)
            return runner.failed("exc", payload, "", "", now, now, exc)

    def _release(self, entries: list[Entry]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for entry in entries:
            self.scripts.release(
                keys=[entry.stream], args=[CONSUMER_GROUP, entry.eid, self.name], client=pipe
            )
        pipe.execute()


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
