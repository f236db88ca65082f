"""What a consumer sends to a job's client: events while it runs, and its result.

``Events`` writes a job's events (running, a provisional result, a file, a request for its
arguments, a refusal notice) to its client's results stream on the consumer's read link.

``ResultPublisher`` publishes finished jobs: each result goes out with its acknowledgement and
attempt record in one run of the publish script, sent on a link of its own without waiting for
the reply (read later, when it is long there).  A publish whose reply was lost, or that the
server could not run, is sent again; a result the script drops (the job was taken over, or the
attempt superseded) is logged, and a take-over is reported to the supervisor through the slots.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from functools import partial
from typing import Any

import redis

from rdispy import attempts, defaults, handoff, processes, stats, wire
from rdispy.keys import CONSUMER_GROUP, Keys
from rdispy.link import Entry, Link, has_large
from rdispy.scripts import Scripts
from rdispy.worker.slots import Slots

log = logging.getLogger(__name__)

#: Seconds between readings of the consumer's peak memory for attempt records, unless a job
#: of the batch ran longer than RSS_JOB seconds (then it is read again).
RSS_EVERY = 0.5
RSS_JOB = 0.001

#: What the attempt record of a finished job needs: job id, start, end, ok, error text, the
#: entry's ``fq`` and ``fa`` (what it ran), the exception's type name and its traceback ("" when
#: it did not raise).
Attempt = tuple[str, float, float, bool, str, bytes, bytes, str, str]
#: A finished job waiting to be published: its entry, client, signed result, attempt.
Publish = tuple[Entry, str, wire.Fields, Attempt]


class Events:
    """Events of running jobs, written to their clients' results streams."""

    def __init__(self, link: Link, signer: wire.Signer, keys: Keys, scripts: Scripts) -> None:
        self.link, self.signer, self.keys, self.scripts = link, signer, keys, scripts

    def emit(self, results_key: str, job_id: str, event: dict[str, Any], wait: bool = True) -> None:
        """Publish an event (running, provisional result, file) to the job's client."""
        fields = self.signer.sign(results_key, wire.encode({wire.N.ID: job_id, **event}))
        command = ("XADD", results_key, "*", *itertools.chain(*fields.items()))
        if wait:
            self.link.call(*command)
        else:
            self.link.post(*command)

    def job_event(self, client: str, job_id: str, event: dict[str, Any]) -> None:
        """An event sent by the running job.  A provisional result is dropped (and counted for
        its client) when the client has MAX_EVENTS entries unread, or when Redis cannot be
        reached: a client that stops reading never blocks or fills up the node."""
        results_key = self.keys.results(client)
        if event.get(wire.N.KIND) != "prov":
            self.emit(results_key, job_id, event)
            return
        fields = self.signer.sign(results_key, wire.encode({wire.N.ID: job_id, **event}))
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


class ResultPublisher:
    """Finished jobs of one consumer, published in batches on a link of their own."""

    def __init__(
        self,
        link: Link,
        scripts: Scripts,
        keys: Keys,
        name: str,
        slots: Slots,
        index: int,
        attempt: attempts.Template,
    ) -> None:
        self.link = link
        self.scripts = scripts
        self.keys = keys
        self.name = name  # the consumer's
        self.slots = slots
        self.index = index
        self._attempt = attempt
        self._publishes: list[Publish] = []  # finished jobs whose results are not sent yet
        self._outcomes: deque[tuple[list[Publish], list[Any]]] = deque()
        self._load_publish = True  # the server lacks the publish script (first use, restart)
        self._rss: int | None = None
        self._rss_read = -RSS_EVERY

    def add(self, publish: Publish) -> None:
        """A finished job, published by the next ``flush``."""
        self._publishes.append(publish)

    def flush(self, wait: bool = False) -> None:
        """Send the publish scripts of finished jobs, without waiting for their outcomes (read
        later from the link, see ``published``) unless ``wait``."""
        for _ in range(2 if wait else 1):  # waiting: once more if the server lost the script
            if self._publishes:
                commands = self._publish_commands(self._publishes)
                batch, self._publishes = self._publishes, []
                large = any(has_large(result.values()) for _, _, result, _ in batch)
                handler = partial(self._record_outcomes, batch)
                self.link.send(commands, handler, large=large)
            if not wait:
                return
            self.link.settle()
            self.published()
        if self._publishes:
            raise redis.ConnectionError(f"{len(self._publishes)} results not published yet")

    def settle_owed(self, leave: int) -> None:
        """Read the outcomes of publishes sent ahead, all but the last ``leave``, and act on
        them."""
        if self.link.owed:
            self.link.settle(leave=leave)
            self.published()

    def _publish_commands(self, batch: list[Publish]) -> list[tuple[Any, ...]]:
        if self._load_publish:
            self.link.call("SCRIPT", "LOAD", self.scripts.publish.script)
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

    def _record_outcomes(self, batch: list[Publish], replies: list[Any] | None) -> None:
        if replies is None:  # lost with the connection: sent again
            self._publishes[:0] = batch
        else:
            self._outcomes.append((batch, replies))

    def published(self) -> None:
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

    def _dropped(self, publish: Publish, outcome: int) -> None:
        entry, _, result, _ = publish
        if wire.F.PAYLOAD_FILE in result:  # a result file nobody will read
            folder = handoff.local_folder(entry.fields.get(wire.F.HANDOFF, b""))
            if folder is not None:
                handoff.remove(folder, result[wire.F.PAYLOAD_FILE].decode())
        if outcome == -1:
            self.slots.fenced(self.index)  # taken over: the supervisor reincarnates the node
        log.warning(
            "consumer %s: result of job %s dropped (%s)",
            self.name,
            result[wire.F.ID].decode(),
            "taken over by another node" if outcome == -1 else "attempt superseded",
        )
