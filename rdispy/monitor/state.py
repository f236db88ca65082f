"""The monitor's state readers under one name, for `rdispy status`, the web monitor and code
written before they were split: each name here lives in the module that owns it.

* ``rdispy.monitor.cluster_state``: nodes, queues, clients and counters (``read_state``,
  ``ClusterState`` and its parts), the clusters in one Redis (``list_clusters``);
* ``rdispy.monitor.jobs``: the jobs list with its filters and search (``read_jobs``,
  ``JobFilter``, ``STATES``) and one job's detail with its attempts (``read_job``, ``JobState``);
* ``rdispy.monitor.functions``: the per-function summary (``summarize``).

Nothing here writes, and nothing reads a job's payload.
"""

from __future__ import annotations

from rdispy.monitor.cluster_state import (
    CLIENT_GONE,
    SCHEMA_VERSION,
    ClientState,
    ClusterState,
    NodeState,
    QueueState,
    list_clusters,
    read_state,
)
from rdispy.monitor.functions import _percentile, summarize
from rdispy.monitor.jobs import (
    STATES,
    JobFilter,
    JobState,
    _end_state,
    exception_of,
    read_job,
    read_jobs,
)

__all__ = [
    "CLIENT_GONE",
    "SCHEMA_VERSION",
    "STATES",
    "ClientState",
    "ClusterState",
    "JobFilter",
    "JobState",
    "NodeState",
    "QueueState",
    "_end_state",
    "_percentile",
    "exception_of",
    "list_clusters",
    "read_job",
    "read_jobs",
    "read_state",
    "summarize",
]
