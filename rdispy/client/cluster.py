"""dispy's JobCluster on rdispy: ``import rdispy as dispy`` and dispy programs run unchanged.

A JobCluster is one session of the dispatcher that every rdispy client uses: its computation (a
function, or a path to a program), its ``depends`` (files, modules, functions, classes) and its
``setup`` travel once as content-addressed blobs; each ``submit`` is one job entry naming them.
Nodes run the jobs of a session in a folder holding its dependencies, run ``setup`` once per
consumer before its first job of the session, and report each job's start, provisional results
and files.  Status callbacks run in one thread per cluster, in the order of each job's events.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from rdispy import defaults, serialization, wire
from rdispy.client.dispatcher import Dispatcher
from rdispy.client.dispy_job import ClusterStatus, DispyJob, DispyNode, exception_text, wait_jobs
from rdispy.client.dispy_nodes import NodeManagement
from rdispy.client.dispy_reports import JobReports
from rdispy.client.future import RemoteFuture
from rdispy.client.local_cluster import LocalCluster
from rdispy.client.placing import NodeCaps, NodeLoads
from rdispy.client.session_files import SessionFiles
from rdispy.errors import JobTerminated, NodeLost, WorkerCrashed
from rdispy.keys import Keys
from rdispy.scheduler import placement

log = logging.getLogger(__name__)


class JobCluster(NodeManagement):
    """Distribute ``computation`` over the cluster's nodes (dispy's arguments and meanings).

    Arguments dispy uses for its own networking (``ip_addr``, ``port``, ``node_port``,
    ``ext_ip_addr``, ``ping_interval``, ``keyfile``, ``certfile``, ...) are accepted and have no
    effect: Redis carries all traffic.  rdispy adds ``redis_url`` (None: the embedded default
    with ``cpus`` local consumers), ``cluster``, ``max_retries``, a default job ``timeout``,
    ``collect_files``: with a program computation, each job runs in a folder of its own and its
    result is a ``ProgramRun`` (exit code and the files the program created there) instead of
    the exit code, and ``monitor`` (True or a port: serve the web monitor from this process
    until ``close()``).
    """

    _fair = False  # SharedJobCluster queues its jobs for the fair scheduler

    def __init__(
        self,
        computation: Callable[..., Any] | str,
        nodes: Iterable[Any] | None = None,
        depends: Iterable[Any] = (),
        callback: Callable[[DispyJob], None] | None = None,
        job_status: Callable[[DispyJob], None] | None = None,
        cluster_status: Callable[[int, DispyNode | None, DispyJob | None], None] | None = None,
        dest_path: str | os.PathLike[str] | None = None,
        loglevel: int | None = None,
        setup: Callable[..., Any] | None = None,
        cleanup: bool | Callable[..., Any] = True,
        pulse_interval: float | None = None,
        reentrant: bool = False,
        secret: str = "",
        *,
        redis_url: str | None = None,
        cluster: str = defaults.CLUSTER,
        max_retries: int | None = None,
        timeout: float | None = None,
        cpus: int | None = None,
        node_wait: float = 10.0,
        collect_files: bool = False,
        monitor: bool | int | None = None,
        **dispy_networking: Any,
    ) -> None:
        if loglevel is not None:
            logging.getLogger("rdispy").setLevel(loglevel)
        for name in dispy_networking:
            log.debug("JobCluster: dispy option %s has no effect on rdispy", name)
        if callback is not None and job_status is not None:
            log.warning('JobCluster: "callback" is ignored in favor of "job_status" (as in dispy)')
        # dispy's deprecated "callback" is "job_status" by another name
        self.job_status = job_status or callback
        self.callback, self.cluster_status = self.job_status, cluster_status
        self.timeout = timeout
        #: the computation's name, as dispy gives it (the function's, or the program as named)
        self.name: str = getattr(computation, "__name__", None) or str(computation)
        self._cleanup = cleanup
        self.node_wait = node_wait
        self._selectors: list[Any] | None = list(nodes) if nodes else None
        self._excluded: list[Any] = []  # deallocated nodes
        self._caps: NodeCaps[DispyJob] = NodeCaps()  # set_node_cpus, and the jobs it holds
        self._known_nodes: dict[str, DispyNode] = {}  # for cluster_status node events
        self._watch_lock = threading.Lock()  # the results thread's checks and discover_nodes
        # NodeAllocate.allocate asked once per (selector, node) until resetup_node: the cores it
        # allows there, and the header fields (its depends, setup_args) of jobs placed there
        self._allocations: dict[tuple[int, str], int] = {}
        self._node_fields: dict[str, dict[str, object]] = {}  # node -> "dp", "sa"
        self._node_depends: dict[str, list[Any]] = {}
        self._program = ""
        self._collect_files = collect_files
        self.session = uuid.uuid4().hex[:16]
        keys = Keys(cluster)
        self._secret = secret or None  # for a monitor started later (rdispy.httpd)
        self._local: LocalCluster | None = None
        if redis_url is None:
            self._local = LocalCluster(cpus or os.cpu_count() or 1, keys, secret or None)
            redis_url = self._local.url
        try:
            self._open(
                redis_url,
                keys,
                computation,
                depends,
                dest_path,
                setup,
                secret,
                max_retries,
                reentrant,
            )
            self._monitor = None
            if monitor is not None and monitor is not False:
                from rdispy.monitor.web import start_monitor

                self._monitor = start_monitor(monitor, redis_url, cluster, secret=secret or None)
            self._reports.open()
        except BaseException:
            if getattr(self, "_dispatcher", None) is not None:  # its threads would outlive us
                self._dispatcher.close()
            if getattr(self, "_reports", None) is not None:
                self._reports.stop()
            if self._local is not None:
                self._local.close(drain=False)
            raise

    def _open(
        self,
        redis_url: str,
        keys: Keys,
        computation: Callable[..., Any] | str,
        depends: Iterable[Any],
        dest_path: Any,
        setup: Callable[..., Any] | None,
        secret: str,
        max_retries: int | None,
        reentrant: bool,
    ) -> None:
        retries = (
            max_retries if max_retries is not None else (defaults.MAX_RETRIES if reentrant else 0)
        )
        self._dispatcher = Dispatcher(
            redis_url,
            keys,
            secret or None,
            max_retries=retries,
            alive=self._local.alive if self._local else None,
            dest_path=dest_path,
            fair=self._fair,
        )
        self._loads = NodeLoads(
            self._dispatcher.client, self._dispatcher.keys, self._dispatcher.signer
        )
        if self._local is not None:
            self._await_local_node()
        self._shipped = SessionFiles(self._dispatcher.upload_blob, self._collect_files)
        self._function = self._shipped.computation(computation)
        self._program = self._shipped.program
        self._header: dict[str, object] = {wire.N.SESSION: self.session}
        if self._program:  # the monitor shows the program, not the function that starts it
            self._header[wire.N.LABEL] = wire.program_label(self._program)
        if self.job_status or self.cluster_status:  # nodes report job starts only then
            self._header[wire.N.EVENTS] = 1
        for item in depends:
            self._shipped.add(item)
        if self._shipped.files or self._shipped.names:
            self._header[wire.N.DEPENDS] = self._shipped.manifest()
        if setup is not None:
            self._header[wire.N.SETUP] = self._dispatcher.upload_blob(
                serialization.dumps(setup, "setup")
            )
        if callable(self._cleanup):
            cleanup_blob = serialization.dumps(self._cleanup, "cleanup")
            self._header[wire.N.CLEANUP] = self._dispatcher.upload_blob(cleanup_blob)
        self._pending: set[DispyJob] = set()  # submitted and not ended
        # sent jobs by job id, until they end: their futures' callbacks find them here, so that
        # no job and its future hold each other (a cycle only the garbage collector frees)
        self._sent: dict[str, DispyJob] = {}
        self._ids = itertools.count(1)
        self._reports = JobReports(self, lambda: self._known_nodes, self._ended)
        self._closed = False
        self._dispatcher.periodic.append(self._rescue_stranded)
        if self.cluster_status:
            self._watch_nodes()
            self._dispatcher.periodic.append(self._watch_nodes)

    # -- jobs ------------------------------------------------------------------------------------

    def submit(self, *args: Any, **kwargs: Any) -> DispyJob:
        """Run the computation with these arguments on some node; returns its DispyJob."""
        return self._submit(args, kwargs, self.timeout)

    def submit_timeout(self, timeout: float, *args: Any, **kwargs: Any) -> DispyJob:
        """As ``submit``, with a timeout for this job: past it the job is stopped on its node."""
        return self._submit(args, kwargs, timeout)

    def submit_cpus(self, cpus: int, *args: Any, **kwargs: Any) -> DispyJob:
        """As ``submit``, for a job that needs ``cpus`` cores of one node: it is placed on a
        node with that many cores, which runs nothing else on them meanwhile."""
        if cpus < 1:
            raise ValueError("cpus must be at least 1")
        return self._submit(args, kwargs, self.timeout, cpus=cpus)

    def submit_node(self, node: DispyNode | str, *args: Any, **kwargs: Any) -> DispyJob:
        """Run the computation on this node (a DispyNode, name or IP address)."""
        target = node.name if isinstance(node, DispyNode) else str(node)
        return self._submit(args, kwargs, self.timeout, [target], pinned=True)

    def submit_job_id(self, job_id: Any, *args: Any, **kwargs: Any) -> DispyJob:
        """As ``submit``, with the job's ``id`` set to ``job_id`` (dispy's)."""
        return self._submit(args, kwargs, self.timeout, job_id=job_id)

    def submit_job_id_node(
        self, job_id: Any, node: DispyNode | str, *args: Any, **kwargs: Any
    ) -> DispyJob:
        """As ``submit_node``, with the job's ``id`` set to ``job_id`` (dispy's)."""
        target = node.name if isinstance(node, DispyNode) else str(node)
        return self._submit(args, kwargs, self.timeout, [target], pinned=True, job_id=job_id)

    def _submit(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
        selectors: list[Any] | None = None,
        pinned: bool = False,
        cpus: int = 1,
        job_id: Any = None,
    ) -> DispyJob:
        if self._closed:
            raise RuntimeError("cluster is closed")
        depends = kwargs.pop("dispy_job_depends", None)
        job = DispyJob(next(self._ids), args, kwargs)
        if job_id is not None:
            job.id = job_id
        job._depends = list(depends) if depends else None
        job._timeout = timeout
        job._cpus = cpus
        selectors = selectors or self._selectors
        if selectors is None and (self._excluded or self._caps.caps or cpus > 1):
            selectors = ["*"]
        job._selectors, job._pinned = selectors, pinned
        self._pending.add(job)
        if selectors and self._caps.caps and self._all_full(selectors):
            self._caps.hold(job)  # every eligible node is at this cluster's cap: wait
            return job
        try:
            self._send(job)
        except BaseException:
            self._pending.discard(job)  # never sent: nothing to wait for
            raise
        return job

    def _send(self, job: DispyJob) -> None:
        call_args = (self._program, *job.args) if self._program else job.args
        header = self._header  # the dispatcher only reads it: copied when a job adds fields
        if self._program or job._timeout or job._cpus > 1 or job._selectors or job._depends:
            header = dict(header)
            if self._program:  # a process per job: the copy and the line cost nothing beside it
                header[wire.N.ARGUMENTS] = wire.program_arguments(job.args)
            if job._timeout:
                header[wire.N.TIMEOUT] = job._timeout
            if job._cpus > 1:
                header[wire.N.CORES] = job._cpus
            if job._selectors:
                header[wire.N.PLACED] = job._placed_on = self._place(job._selectors, need=job._cpus)
                self._caps.placed(job._placed_on)
            if job._selectors or job._depends:
                placed = self._placed_fields(job, job._placed_on or "")
                header.update({k: v for k, v in placed.items() if v is not None})
        future = self._dispatcher.submit(self._function, [(call_args, job.kwargs)], header=header)[
            0
        ]
        job._future = future
        self._sent[future.job_id] = job  # before the callbacks: the job may have ended already
        future.add_event_listener(self._on_event)
        future.add_done_callback(self._on_done)

    def set_node_cpus(self, node: DispyNode | str, cpus: int) -> int:
        """Run at most ``cpus`` of this cluster's jobs at once on ``node`` (0 or less: no jobs
        there); the rest wait in this client.  Returns ``cpus``."""
        name = node.name if isinstance(node, DispyNode) else str(node)
        self._caps.set(name, cpus)
        self._release_held()
        return cpus

    def _all_full(self, selectors: list[Any]) -> bool:
        """Eligible nodes exist and every one is at this cluster's cap (else: send or fail)."""
        return self._caps.all_full(
            placement.eligible(self._node_loads(), selectors, self, self._allowance)
        )

    def _release_held(self) -> None:
        """Send held jobs, in order, while some eligible node has room under its cap."""
        self._caps.release(lambda job: self._all_full(job._selectors or ["*"]), self._send)

    # -- placement -------------------------------------------------------------------------------

    def _manifest(self, extra: Iterable[Any]) -> str:
        return self._shipped.manifest(extra)

    def _on_event(self, future: RemoteFuture, kind: str, value: Any) -> None:
        if kind == "excl":
            self._exclude_node(*value)
            return
        job = self._sent.get(future.job_id)
        if job is None:
            return
        if kind == "run":
            job.start_time = future.start_time
            job.node, job.ip_addr = future.node, future.ip_addr
            self._status(job, DispyJob.Running, None)
        elif kind == "prov":
            self._status(job, DispyJob.ProvisionalResult, value)

    def _status(self, job: DispyJob, status: int, value: Any) -> None:
        self._reports.job(job, status, value)

    def _on_done(self, future: Future[Any]) -> None:
        assert isinstance(future, RemoteFuture)
        job = self._sent.pop(future.job_id, None)
        if job is None:
            return
        if job._placed_on is not None:
            self._caps.ended(job._placed_on)
            if self._caps.held:
                self._release_held()
        job.start_time = future.start_time or job.start_time
        job.end_time = future.end_time or time.time()
        job.ip_addr, job.node = future.ip_addr, future.node
        job.stdout, job.stderr = future.stdout, future.stderr
        if self._program:  # a program's output is bytes in dispy
            job.stdout = (job.stdout or "").encode()
            job.stderr = (job.stderr or "").encode()
        result = None
        if future.cancelled():
            status = DispyJob.Cancelled
        elif (error := future.exception()) is not None:
            job.exception = exception_text(error)
            status = DispyJob.Terminated
            if isinstance(error, NodeLost | WorkerCrashed):
                status = DispyJob.Abandoned
            elif isinstance(error, JobTerminated):
                status = DispyJob.Terminated
        else:
            result = future.result()
            status = DispyJob.Finished
            self._reports.count(job)
        self._status(job, status, result)

    def _ended(self, job: DispyJob) -> None:
        self._pending.discard(job)
        job._ended()

    def cancel(self, job: DispyJob) -> int:
        """Cancel a job: a queued one never runs (Cancelled); a running one is stopped on its node
        (Terminated).  Returns 0, or -1 if it had already ended."""
        with self._caps.lock:
            if self._caps.withdraw(job):
                self._reports.apply(job, DispyJob.Cancelled, None)
                return 0
        future: RemoteFuture = job._future
        if future.done():
            return -1
        if not future.cancel():
            self._dispatcher.stop_running(future.job_id)
        return 0

    def wait(self, timeout: float | None = None, progress: bool = False) -> bool:
        """Wait until every submitted job has ended; False if ``timeout`` passed first.
        ``progress=True`` shows a bar of the jobs ending meanwhile (rdispy's addition)."""
        return wait_jobs(list(self._pending), timeout, progress)

    # -- reporting -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The Redis URL of the cluster (the private socket for the embedded default)."""
        return self._dispatcher.url

    @property
    def monitor_url(self) -> str | None:
        """The web monitor's address when started with ``monitor=``."""
        return self._monitor.url if self._monitor is not None else None

    def status(self) -> ClusterStatus:
        """The live nodes and how many of this cluster's jobs have not ended."""
        return ClusterStatus(self.nodes(), len(self._pending))

    def send_file(self, path: str | os.PathLike[str], node: Any = None) -> int:
        """Add a file to the cluster's dependencies: jobs submitted from now on find it in
        their folder on every node (dispy sends it to one node; all is a superset)."""
        self._shipped.add(path)
        self._header[wire.N.DEPENDS] = self._shipped.manifest()
        return 0

    def stats(self) -> dict[str, Any]:
        """Jobs and node time per node, total job time, wall time and speedup."""
        return self._reports.stats()

    def print_status(self, wall_time: float | None = None) -> None:
        """dispy's table: per node, its cores, jobs done, seconds per job and node time."""
        self._reports.print_status({n.name: n.cpus for n in self.nodes()}, wall_time)

    # -- closing ---------------------------------------------------------------------------------

    def close(self, timeout: float | None = None, terminate: bool = False) -> None:
        """Wait for the jobs (or cancel them with ``terminate``), then release everything."""
        if self._closed:
            return
        if terminate:
            for job in list(self._pending):
                self.cancel(job)
        self.wait(timeout)
        self._closed = True
        if self._monitor is not None:
            self._monitor.stop()
        self._dispatcher.end_session(self.session, remove_files=bool(self._cleanup))
        self._dispatcher.close()
        self._reports.stop()
        if self._local is not None:
            self._local.close(drain=not terminate)

    def __enter__(self) -> JobCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
