"""What a JobCluster tells its program about jobs and nodes, as dispy does: each job's status
changes (Running, ProvisionalResult, Finished, ...), nodes joining and leaving, and the per-node
tally behind ``stats()`` and ``print_status()``.

With callbacks (``job_status``, ``cluster_status``) every change goes through one thread per
cluster, in the order each job's events came; without, a change is applied at once.  Either
way a job that ends is handed to ``ended`` (the cluster forgets it, and waiters wake)::

    future events / done ──> JobReports.job ──> queue ──> callback thread ──> apply ──> callbacks
    node watch          ──> JobReports.node ──┘                                    └─> ended(job)
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from rdispy.client.dispy_job import DispyJob, DispyNode

log = logging.getLogger(__name__)

_STOP = object()
#: Seconds between the constructor's return and the first callback, so that the statement that
#: called the constructor has assigned its result (the main thread keeps the GIL that long).
OPEN_DELAY = 0.02
ENDED = (DispyJob.Finished, DispyJob.Cancelled, DispyJob.Terminated, DispyJob.Abandoned)


class Listeners(Protocol):
    """Where the callbacks are (read at each change: a program may set them late)."""

    job_status: Callable[[DispyJob], None] | None
    cluster_status: Callable[[int, DispyNode | None, DispyJob | None], None] | None


class JobReports:
    """Status changes of one cluster's jobs and nodes, told to its callbacks in order."""

    def __init__(
        self,
        listeners: Listeners,
        known_nodes: Callable[[], dict[str, DispyNode]],
        ended: Callable[[DispyJob], None],
    ) -> None:
        self._listeners = listeners
        self._known_nodes = known_nodes
        self._ended = ended
        self.started = time.time()
        self._node_stats: dict[str, dict[str, float]] = {}  # finished jobs and time per node
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._open = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rdispy-callbacks", daemon=True)
        self._thread.start()

    def open(self) -> None:
        """Start telling the callbacks: the cluster's constructor has returned.  A dispy program
        assigns the cluster to the name its callbacks use (``cluster = JobCluster(...)``) and
        hears of its nodes afterwards, as dispy's discovery does; until then changes queue."""
        self._open.set()

    def _listened(self) -> bool:
        return bool(self._listeners.job_status or self._listeners.cluster_status)

    def job(self, job: DispyJob, status: int, value: Any) -> None:
        """A job's status changed: through the callback thread when there are callbacks, else
        at once (both keep each job's order: its events arrive on one thread)."""
        if self._listened():
            self._events.put((job, status, value))
        else:
            self.apply(job, status, value)

    def node(self, status: int, node: DispyNode) -> None:
        """A node joined (Initialized) or left (Closed): told to ``cluster_status``."""
        self._events.put((None, status, node))

    def count(self, job: DispyJob) -> None:
        """Tally a finished job's node time for ``stats()``."""
        if job.node and job.start_time and job.end_time:
            entry = self._node_stats.setdefault(job.node, {"jobs": 0, "cpu_time": 0.0})
            entry["jobs"] += 1
            entry["cpu_time"] += job.end_time - job.start_time

    def _loop(self) -> None:
        self._open.wait()
        time.sleep(OPEN_DELAY)
        while True:
            item = self._events.get()
            if item is _STOP:
                return
            job, status, value = item
            if job is None:  # a node event
                try:
                    callback = self._listeners.cluster_status
                    if callback is not None:
                        callback(status, value, None)
                except Exception:
                    log.exception("cluster_status callback for node %s failed", value.name)
                continue
            self.apply(job, status, value, notify=True)

    def apply(self, job: DispyJob, status: int, value: Any, notify: bool = False) -> None:
        """Set the job's status (and result), call back with ``notify``, hand on an ended job."""
        job.status = status
        if status in (DispyJob.ProvisionalResult, DispyJob.Finished):
            job.result = value
        if notify:
            try:
                # as in dispy: at each provisional result and at the end, never at the start
                job_status, cluster_status = (
                    self._listeners.job_status,
                    self._listeners.cluster_status,
                )
                if status != DispyJob.Running and job_status:
                    job_status(job)
                if cluster_status:
                    cluster_status(status, self._known_nodes().get(job.node or ""), job)
            except Exception:
                log.exception("callback for job %s failed", job.id)
        if status in ENDED:
            self._ended(job)

    def stop(self) -> None:
        """End the callback thread once the changes queued so far are told."""
        self._open.set()
        self._events.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join(5)

    def stats(self) -> dict[str, Any]:
        """Jobs and node time per node, total job time, wall time and speedup."""
        per_node = {name: dict(entry) for name, entry in self._node_stats.items()}
        total = sum(n["cpu_time"] for n in per_node.values())
        wall = time.time() - self.started
        return {
            "nodes": per_node,
            "job_time": total,
            "wall_time": wall,
            "speedup": total / wall if wall > 0 else 0.0,
        }

    def print_status(self, cpus: dict[str, int], wall_time: float | None = None) -> None:
        """dispy's table: per node, its cores, jobs done, seconds per job and node time."""
        stats = self.stats()
        print()
        print("                           Node |  CPUs |    Jobs |    Sec/Job | Node Time Sec")
        print("------------------------------------------------------------------------------")
        for name, entry in sorted(stats["nodes"].items()):
            jobs, node_time = int(entry["jobs"]), entry["cpu_time"]
            print(
                f" {name[:30]:>30} | {cpus.get(name, 0):5} | {jobs:7} | {node_time / jobs:10.3f} "
                f"| {node_time:13.3f}"
            )
        wall = wall_time if wall_time is not None else stats["wall_time"]
        print()
        print(
            f"Total job time: {stats['job_time']:.3f} sec, wall time: {wall:.3f} sec, "
            f"speedup: {stats['job_time'] / wall if wall else 0:.3f}"
        )
        print()
