"""Jobs as the monitor shows them, read out of Redis: the jobs list (``read_jobs``: running,
queued and recently ended, narrowed by a ``JobFilter``'s state, node, client, function or id
search) and one job's detail (``read_job``: where it is or how it ended, its attempts, its
exception's traceback).  Nothing here writes, and nothing reads a job's payload: entries are
peeked through a Lua script that returns only their header fields.

``read_jobs`` costs one script call per stream; ``read_job`` looks for one job's entry, a bounded
number of entries at a time.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from rdispy import attempts, wire
from rdispy.keys import CONSUMER_GROUP, Keys
from rdispy.monitor.cluster_state import queued_clients, registered_node_names
from rdispy.monitor.replies import as_float, as_str, client_of, entry_time
from rdispy.scripts import Scripts
from rdispy.streams import ConsumerName

#: Header fields of a job entry the job table shows (never the payload).
_PEEK_FIELDS = (
    wire.N.ID,
    wire.N.CLIENT,
    wire.N.SENT,
    wire.N.PLACED,
    wire.N.TIMEOUT,
    wire.N.CORES,
    wire.N.RETRIES,
    wire.N.LABEL,
    wire.N.ARGUMENTS,
)

#: Entries read at a time from the ``recent`` stream when a filter must look past the newest.
_RECENT_PAGE = 250

#: Job states a filter may ask for (a state's first word: "lost (crashed)" is "lost").
STATES = ("running", "queued", "retrying", "finished", "failed", "lost", "cancelled", "dropped")


@dataclass
class JobState:
    """One job as the monitor shows it."""

    id: str
    client: str
    state: str  # queued | running | finished | failed | cancelled | retrying | unknown
    stream: str = ""
    entry: str = ""  # stream entry id while queued or running
    node: str = ""  # the node running it, or the node it was placed on
    consumer: str = ""
    submitted: float | None = None  # client's clock
    taken_age: float | None = None  # seconds since a consumer took it (running)
    lost_attempts: int = 0
    attempts: list[dict[str, Any]] = field(default_factory=list)
    function: str = ""  # what it runs: module.qualname, or a program's name ("" if unknown)
    args: str = ""  # a program job's arguments (function jobs' arguments are not recorded)
    started: float | None = None  # its last attempt's start and end (that node's clock)
    ended: float | None = None
    duration: float | None = None  # seconds, end - start of its last attempt
    #: how it failed: {"type", "message"} and, in a job's detail, "traceback" (None if it
    #: did not fail, or failed without an exception: then its last attempt's "error" says why)
    exception: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a listing keeps: each set field must match (all of them)."""

    state: str = ""  # one of STATES: the job state's first word
    node: str = ""
    client: str = ""
    function: str = ""  # the job's function label, exactly
    search: str = ""  # part of the job id (a prefix, a sequence number "-17", ...)

    def __bool__(self) -> bool:
        return bool(self.state or self.node or self.client or self.function or self.search)

    def matches(self, job: JobState) -> bool:
        return (
            (not self.state or job.state.split(" ", 1)[0] == self.state)
            and (not self.node or job.node == self.node)
            and (not self.client or job.client == self.client)
            and (not self.function or job.function == self.function)
            and (not self.search or self.search in job.id)
        )

    def wants(self, *states: str) -> bool:
        """Whether jobs in any of these states can match."""
        return not self.state or self.state in states


def _peek(
    scripts: Scripts, stream: str, start: str, end: str, count: int, job_id: str = ""
) -> tuple[list[dict[str, str]], str]:
    """Header fields of up to ``count`` entries, and the id of the last entry read."""
    reply: Any = scripts.peek(keys=[stream], args=[start, end, count, job_id, *_PEEK_FIELDS])
    rows = [
        {
            "eid": as_str(row[0]),
            **{f: as_str(v) for f, v in zip(_PEEK_FIELDS, row[1:], strict=False)},
        }
        for row in reply[0]
    ]
    return rows, as_str(reply[1])


def _streams(client: redis.Redis, keys: Keys) -> list[str]:
    nodes = sorted(registered_node_names(client, keys))
    return [
        keys.jobs,
        *(keys.node_jobs(n) for n in nodes),
        *(keys.fair_queue(c) for c in queued_clients(client, keys)),
    ]


def _pending(client: redis.Redis, stream: str, limit: int) -> list[tuple[str, str, float]]:
    """(entry id, consumer, seconds since delivered) of entries taken by consumers."""
    try:
        items: Any = client.xpending_range(stream, CONSUMER_GROUP, "-", "+", limit)
    except redis.ResponseError:
        return []
    return [
        (as_str(i["message_id"]), as_str(i["consumer"]), i["time_since_delivered"] / 1000.0)
        for i in items
    ]


def _job_from_row(row: dict[str, str], stream: str, keys: Keys) -> JobState:
    node = row.get(wire.N.PLACED, "")
    return JobState(
        id=row.get(wire.N.ID, "?"),
        client=row.get(wire.N.CLIENT, ""),
        state="queued",
        stream=stream,
        entry=row["eid"],
        node=node,
        submitted=as_float(row.get(wire.N.SENT)) or None,
        function=row.get(wire.N.LABEL, ""),
        args=row.get(wire.N.ARGUMENTS, ""),
    )


def exception_of(attempt: dict[str, Any]) -> dict[str, str] | None:
    """``{"type", "message"}`` of an attempt that ended with its job's exception, else None."""
    if attempt.get("outcome") != "exception":
        return None
    etype, error = str(attempt.get("etype", "")), str(attempt.get("error", ""))
    if etype and error.startswith(etype + ": "):
        message = error[len(etype) + 2 :]
    elif etype and error == etype:
        message = ""
    else:  # recorded by an older node: "Type: message" only
        etype, _, message = error.partition(": ") if ": " in error else (error, "", "")
    return {"type": etype, "message": message}


def _describe(job: JobState, attempt: dict[str, Any]) -> JobState:
    """Fill in what a job ran, its timings and how it failed from an attempt of it."""
    job.function = job.function or str(attempt.get("fn", ""))
    job.args = job.args or str(attempt.get("args", ""))
    start, end = attempt.get("start"), attempt.get("end")
    job.started = start if isinstance(start, int | float) else None
    job.ended = end if isinstance(end, int | float) else None
    if job.started is not None and job.ended is not None:
        job.duration = max(0.0, job.ended - job.started)
    job.exception = exception_of(attempt)
    return job


def _ended_state(attempt: dict[str, Any]) -> str:
    outcome = attempt.get("outcome")
    if attempt.get("dropped"):
        return f"dropped ({outcome})"
    if outcome == "ok":
        return "finished"
    if outcome == "cancelled":
        return "cancelled"
    return "failed" if outcome == "exception" else f"lost ({outcome})"


def _recent_job(eid: Any, fields: dict[bytes, bytes]) -> JobState:
    attempt = attempts.decode(fields.get(wire.F.ATTEMPT, b"{}"))
    if fields.get(wire.F.DROPPED):
        attempt["dropped"] = True
    job_id = str(attempt.get("id", "?"))
    job = JobState(
        id=job_id,
        client=client_of(job_id),
        state=_ended_state(attempt),
        node=str(attempt.get("node", "")),
        attempts=[{**attempt, "recorded": entry_time(eid)}],
    )
    return _describe(job, attempt)


def _recent(client: redis.Redis, keys: Keys, limit: int, wanted: JobFilter) -> list[JobState]:
    """The newest ``limit`` ended attempts that match (newest first), looking through the whole
    ``recent`` stream (about RECENT_KEPT entries) when a filter is set."""
    if not wanted:
        raw: Any = client.xrevrange(keys.recent, "+", "-", count=limit)
        return [_recent_job(eid, fields) for eid, fields in raw]
    out: list[JobState] = []
    end = "+"
    while len(out) < limit:
        raw = client.xrevrange(keys.recent, end, "-", count=_RECENT_PAGE)
        for eid, fields in raw:
            job = _recent_job(eid, fields)
            if wanted.matches(job):
                out.append(job)
                if len(out) >= limit:
                    break
        if len(raw) < _RECENT_PAGE:
            break
        end = "(" + as_str(raw[-1][0])
    return out


def _undelivered(client: redis.Redis, stream: str) -> str:
    """Where the entries not yet delivered to the group start (a fair queue has no group: all
    of its entries are queued)."""
    groups: Any = []
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:
        pass
    for group in groups:
        if as_str(group.get("name")) == CONSUMER_GROUP:
            return "(" + as_str(group.get("last-delivered-id", "0-0"))
    return "-"


def read_jobs(
    client: redis.Redis,
    keys: Keys,
    limit: int = 50,
    scripts: Scripts | None = None,
    wanted: JobFilter | None = None,
) -> dict[str, list[JobState]]:
    """Jobs running now, the first ``limit`` queued per stream, and the last ``limit`` attempts
    that ended (newest first): ``{"running": [...], "queued": [...], "recent": [...]}``; with a
    filter, only the jobs it matches among those (the ended ones among the whole ``recent``
    stream)."""
    scripts = scripts or Scripts(client)
    wanted = wanted or JobFilter()
    running: list[JobState] = []
    queued: list[JobState] = []
    streams = _streams(client, keys) if wanted.wants("running", "queued") else []
    pipe = client.pipeline(transaction=False)
    for stream in streams:
        pipe.xlen(stream)
    lengths = pipe.execute() if streams else []
    for stream, length in zip(streams, lengths, strict=True):
        if not length:
            continue  # nothing queued or running there
        taken = _pending(client, stream, limit)
        for eid, consumer, age in taken:
            rows, _ = _peek(scripts, stream, eid, eid, 1)
            if not rows:
                continue
            job = _job_from_row(rows[0], stream, keys)
            name = ConsumerName.parse(consumer)
            job.state, job.consumer, job.taken_age = "running", consumer, age
            job.node = name.node if name else job.node
            if wanted.matches(job):
                running.append(job)
        taken_ids = {eid for eid, _, _ in taken}
        if not wanted.wants("queued"):
            continue
        for row in _peek(scripts, stream, _undelivered(client, stream), "+", limit)[0]:
            if row["eid"] not in taken_ids:
                job = _job_from_row(row, stream, keys)
                if wanted.matches(job):
                    queued.append(job)
    ended = ("finished", "failed", "lost", "cancelled", "dropped")
    recent = _recent(client, keys, limit, wanted) if wanted.wants(*ended) else []
    return {"running": running, "queued": queued, "recent": recent}


def read_job(
    client: redis.Redis,
    keys: Keys,
    job_id: str,
    scripts: Scripts | None = None,
    scan_limit: int = 100_000,
) -> JobState:
    """One job: where it is now (queued or running, found among at most ``scan_limit`` entries
    per stream), or how it ended, and its attempt history (oldest first)."""
    scripts = scripts or Scripts(client)
    raw_record: Any = client.hgetall(keys.job(job_id))
    record = {as_str(k): as_str(v) for k, v in raw_record.items()}
    job = JobState(
        id=job_id,
        client=client_of(job_id),
        state="unknown",
        lost_attempts=int(as_float(record.get("n"))),
        attempts=attempts.from_record(record),
    )
    kept = [a for a in job.attempts if not a.get("dropped")] or job.attempts
    if kept:
        _describe(job, kept[-1])
        job.node = str(kept[-1].get("node", ""))
        job.function = job.function or next(
            (str(a["fn"]) for a in reversed(job.attempts) if a.get("fn")), ""
        )
    if record.get("st") == "done":
        published = attempts.decode(record["hr"]) if "hr" in record else None
        job.state = _end_state(record.get("o"), published, job.attempts)
        if published is not None:
            _describe(job, published)
            job.node = str(published.get("node", job.node))
        if job.exception is not None:
            job.exception["traceback"] = record.get("tb", "")
        return job
    found = _find_entry(client, keys, scripts, job_id, scan_limit)
    if found is not None:
        stream, row = found
        located = _job_from_row(row, stream, keys)
        job.stream, job.entry, job.node, job.submitted = (
            stream,
            located.entry,
            located.node,
            located.submitted,
        )
        job.function, job.args = located.function or job.function, located.args or job.args
        # an earlier attempt's exception and times: it runs again (or waits to)
        job.exception = job.started = job.ended = job.duration = None
        owner: Any = []
        try:
            owner = client.xpending_range(stream, CONSUMER_GROUP, job.entry, job.entry, 1)
        except redis.ResponseError:
            pass
        if owner:
            job.state = "running"
            job.consumer = as_str(owner[0]["consumer"])
            job.taken_age = owner[0]["time_since_delivered"] / 1000.0
            job.started = time.time() - job.taken_age  # this host's clock
            name = ConsumerName.parse(job.consumer)
            job.node = name.node if name else job.node
        else:
            job.state = "retrying" if job.lost_attempts else "queued"
    elif job.attempts or record:
        job.state = "retrying"  # between attempts: its consumer died and it waits its pause
    return job


def _end_state(
    recorded: str | None, published: dict[str, Any] | None, history: list[dict[str, Any]]
) -> str:
    """How a job ended: by the attempt whose result was published, else by its record's "o"
    (set where no result was published: recovered for good, or withdrawn)."""
    if published is not None:
        return "finished" if published.get("outcome") == "ok" else "failed"
    kept = [a for a in history if not a.get("dropped")]
    if recorded == "cancelled" or (kept and kept[-1].get("outcome") == "cancelled"):
        return "cancelled"
    return "failed"


def _find_entry(
    client: redis.Redis, keys: Keys, scripts: Scripts, job_id: str, scan_limit: int
) -> tuple[str, dict[str, str]] | None:
    batch = 2000
    for stream in _streams(client, keys):
        start, seen = "-", 0
        while seen < scan_limit:
            rows, last = _peek(scripts, stream, start, "+", batch, job_id)
            if rows:
                return stream, rows[0]
            if not last:
                break
            start, seen = "(" + last, seen + batch
    return None
