"""The only place Redis key names exist.

Every key of one cluster is ``<prefix>:{<cluster>}:...``; the ``{cluster}`` hash tag puts all of a
cluster's keys in one Redis Cluster slot, so Lua scripts may touch any of them.

=============================  =======  ==========================================  ==============
key                            type     holds                                       bound
=============================  =======  ==========================================  ==============
``jobs``                       stream   job envelopes, read by group ``consumers``  entry deleted
                                                                                    when acked
``node:<name>:jobs``           stream   jobs placed on one node (same group)        as ``jobs``
``queue:<client>``             stream   a shared-cluster client's queued jobs       moved out
``queues``                     zset     clients whose ``queue:<client>`` may hold   removed when
                                        jobs -> when they last queued (the fair     found empty
                                        scheduler's index)
``scheduler``                  string   a fair scheduler is running                 a few seconds
``results:<client>``           stream   results/events for one client               read entries
                                                                                    deleted; TTL
``job:<job id>``               hash     state (st), attempt token (a), count (n),   JOB_TTL
                                        its last attempts (h*, JSON each), the
                                        traceback of its exception (tb, <= 8 KiB)
``recent``                     stream   attempts that ended lately (JSON)           MAXLEN ~1000
``client:<client>``            hash     a client's pid, host, last seen             RESULT_TTL
``clients``                    zset     client id -> last seen                      pruned
``blob:<sha256>``              string   pickled function or file                    BLOB_TTL
``node:<name>``                hash     node record, refreshed by heartbeat         5 heartbeats
``nodes``                      zset     node name -> last heartbeat (node's clock)  pruned
``lease:<name>``               string   the live worker holding a node name         5 heartbeats
``deadletters``                stream   refused entries and the reason              MAXLEN ~1000
``control``                    stream   signed control messages (cancel)            MAXLEN ~1000
``counters``                   hash     cluster-wide counters (deadletters, ...)    a few fields
``latency``                    hash     job latency histogram (bucket -> count)     a few fields
=============================  =======  ==========================================  ==============

A node record and a name's lease live ``defaults.HEARTBEATS_MISSED`` (5) heartbeats: each beat
sets their TTL to that many intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from rdispy import defaults

#: Consumer group on the shared job stream.
CONSUMER_GROUP = "consumers"


@dataclass(frozen=True)
class Keys:
    """Key names of one cluster."""

    cluster: str = defaults.CLUSTER
    prefix: str = defaults.KEY_PREFIX

    def __post_init__(self) -> None:
        for part in (self.cluster, self.prefix):
            if not part or any(c in part for c in "{}: \n"):
                raise ValueError(
                    f"invalid cluster or prefix name {part!r}: no braces, colons or spaces"
                )

    @cached_property
    def base(self) -> str:
        return f"{self.prefix}:{{{self.cluster}}}"

    @cached_property
    def jobs(self) -> str:
        """Shared job stream, read by all consumers through CONSUMER_GROUP."""
        return f"{self.base}:jobs"

    def node_jobs(self, node: str) -> str:
        """A node's own job stream: jobs placed on it, read before the shared stream."""
        return f"{self.base}:node:{node}:jobs"

    def node_of_jobs(self, stream: str) -> str | None:
        """The node whose own job stream ``stream`` is (``node_jobs`` read back), or None when
        it is another key."""
        head, tail = f"{self.base}:node:", ":jobs"
        if stream.startswith(head) and stream.endswith(tail) and len(stream) > len(head + tail):
            return stream[len(head) : -len(tail)]
        return None

    def fair_queue(self, client_id: str) -> str:
        """A SharedJobCluster client's own queue, moved round-robin into ``jobs``."""
        return f"{self.base}:queue:{client_id}"

    @cached_property
    def fair_queues(self) -> str:
        """Ids of the clients whose fair queue may hold jobs: what the scheduler reads instead
        of scanning the keyspace (a client adds itself with each batch it queues)."""
        return f"{self.base}:queues"

    @cached_property
    def scheduler(self) -> str:
        """Heartbeat of running fair schedulers (expires when none runs)."""
        return f"{self.base}:scheduler"

    def results(self, client_id: str) -> str:
        """Result and event stream of one client."""
        return f"{self.base}:results:{client_id}"

    def job(self, job_id: str) -> str:
        """State of one job: st ("done" once ended), n (attempts lost), o (how it ended without
        a published result), its attempt history (fields h*, see ``rdispy.attempts``) and the
        traceback of the exception it raised (tb)."""
        return f"{self.base}:job:{job_id}"

    @cached_property
    def recent(self) -> str:
        """Capped stream of attempts that ended lately (field ``a``: the attempt's JSON)."""
        return f"{self.base}:recent"

    @cached_property
    def clients(self) -> str:
        """Sorted set of client ids scored by when each last touched its record."""
        return f"{self.base}:clients"

    @cached_property
    def latency(self) -> str:
        """Histogram of job latency, submit to result received: upper bound -> count, plus
        ``sum`` (seconds) and ``count``."""
        return f"{self.base}:latency"

    def client(self, client_id: str) -> str:
        """Record of a connected client (pid, host, last seen); expires when it goes away."""
        return f"{self.base}:client:{client_id}"

    def blob(self, digest: str) -> str:
        """Content-addressed blob (sha256 hex digest of its bytes)."""
        return f"{self.base}:blob:{digest}"

    def node(self, name: str) -> str:
        """Node record; expires when heartbeats stop."""
        return f"{self.base}:node:{name}"

    def lease(self, name: str) -> str:
        """Which live worker holds a node name (SET NX with a TTL its heartbeat refreshes)."""
        return f"{self.base}:lease:{name}"

    @cached_property
    def dead_letters(self) -> str:
        """Capped stream of refused entries (bad signature, unknown version) with the reason."""
        return f"{self.base}:deadletters"

    @cached_property
    def control(self) -> str:
        """Signed control messages to nodes (cancel a running job), capped."""
        return f"{self.base}:control"

    @cached_property
    def counters(self) -> str:
        """Cluster-wide event counters (refused entries, ...)."""
        return f"{self.base}:counters"

    @cached_property
    def nodes(self) -> str:
        """Sorted set of node names scored by last heartbeat."""
        return f"{self.base}:nodes"
