"""The executors under comparison: a registry of factories, one per table column.

A factory takes the number of workers and returns a fresh ``concurrent.futures.Executor`` (used as
a context manager, so leaving the ``with`` block shuts it down and ends its processes).  To add a
column -- a peer such as Dask or loky -- register one more factory; import the peer's package
inside the factory, so the benchmark runs where it is not installed as long as its column is not
selected (``--executors``).

``SUBJECT`` is the executor the targets apply to; ``BASELINE`` is what ratios are taken against.
``JOBCLUSTER`` is rdispy's dispy-compatible API, seen through ``JobClusterExecutor``; its own
targets are relative to ``SUBJECT`` (see ``bench.metrics.COMPARISONS``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any

from rdispy import handoff

# imported here, not in the factories, so that cold start does not count importing the package
from rdispy.client.cluster import JobCluster
from rdispy.client.dispy_job import DispyJob, status_name
from rdispy.client.executor import Executor as RdispyExecutor

ExecutorFactory = Callable[[int], Executor]

#: DispyJob statuses after which a job does not change any more.
_FINAL = frozenset((DispyJob.Finished, DispyJob.Cancelled, DispyJob.Terminated, DispyJob.Abandoned))


class JobClusterError(RuntimeError):
    """A JobCluster job that did not finish: its status, and the traceback text dispy keeps."""

    def __init__(self, job: DispyJob) -> None:
        super().__init__(f"job {job.id} {status_name(job.status)}: {job.exception or ''}".strip())


class JobFuture(Future[Any]):
    """The future of one DispyJob, resolved by the job's done callback
    (``DispyJob.add_done_callback``), which runs once the cluster has applied the job's final
    status (the callback list is emptied then, so the job and this future do not keep each
    other alive)."""

    def __init__(self, cluster: JobCluster, job: DispyJob) -> None:
        super().__init__()
        self.cluster = cluster
        self.job = job
        job.add_done_callback(self._settle)

    def result(self, timeout: float | None = None) -> Any:
        """Waits the way a dispy program does, with ``job()`` (which reads the job's result in
        this thread), then answers as a Future."""
        self._wait_as_dispy(timeout)
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait_as_dispy(timeout)
        return super().exception(timeout)

    def _wait_as_dispy(self, timeout: float | None) -> None:
        if not self.done():
            with contextlib.suppress(TimeoutError):
                self.job(timeout=timeout)

    def _settle(self, job: DispyJob) -> None:
        if self.done():
            return
        if job.status == DispyJob.Finished:
            self.set_result(job.result)
        elif job.status == DispyJob.Cancelled:
            Future.cancel(self)
        else:
            self.set_exception(JobClusterError(job))

    def cancel(self) -> bool:
        """Ask the cluster to cancel the job; the future follows once the job has ended."""
        if self.done():
            return self.cancelled()
        self.cluster.cancel(self.job)
        return False


class JobClusterExecutor(Executor):
    """rdispy's dispy API (``JobCluster``/``DispyJob``) behind the interface the workloads use.

    A JobCluster runs one computation, so there is one cluster per distinct function, created on
    its first ``submit``/``map`` as ``JobCluster(fn, cpus=workers)`` (the embedded
    default: each cluster starts its own private server and ``workers`` consumers, as a dispy
    program with one cluster per computation would).  Every job goes through
    ``JobCluster.submit``: ``submit`` returns a real Future that follows the DispyJob
    (so ``concurrent.futures.wait`` works on it), ``map`` submits every call and collects the
    results in order with ``job(timeout=...)``.  ``shutdown`` closes every cluster.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._clusters: dict[Callable[..., Any], JobCluster] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _cluster(self, fn: Callable[..., Any]) -> JobCluster:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new jobs after shutdown")
            cluster = self._clusters.get(fn)
            if cluster is None:
                cluster = JobCluster(fn, cpus=self.workers)
                self._clusters[fn] = cluster
            return cluster

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> JobFuture:
        cluster = self._cluster(fn)
        return JobFuture(cluster, cluster.submit(*args, **kwargs))

    def map(  # type: ignore[override]
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """One job per call (JobCluster has no batching); results in order, as they come."""
        end = None if timeout is None else time.monotonic() + timeout
        cluster = self._cluster(fn)
        jobs = []
        for args in zip(*iterables):  # noqa: B905 - map stops at the shortest
            jobs.append(cluster.submit(*args))
        return _collect(cluster, jobs, end)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Close every cluster: waiting for its jobs, or (``not wait``) stopping them at once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            clusters = list(self._clusters.values())
        for cluster in clusters:
            if wait:
                cluster.close(terminate=cancel_futures)
            else:
                cluster.close(timeout=0, terminate=True)


def _collect(cluster: JobCluster, jobs: list[DispyJob], end: float | None) -> Iterator[Any]:
    pending = list(reversed(jobs))
    try:
        while pending:
            job = pending.pop()
            remaining = None if end is None else max(0.0, end - time.monotonic())
            value = job(timeout=remaining)  # TimeoutError past the deadline
            if job.status != DispyJob.Finished:
                raise JobClusterError(job)
            yield value
    finally:
        for job in pending:
            cluster.cancel(job)


def rdispy_embedded(workers: int) -> Executor:
    """rdispy with no URL: a private valkey server and ``workers`` local consumer processes."""
    return RdispyExecutor(max_workers=workers)


def rdispy_signed(workers: int) -> Executor:
    """The embedded default with a shared secret: every job and result HMAC-signed and checked."""
    return RdispyExecutor(max_workers=workers, secret=secrets.token_hex(16))


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def rdispy_redis(workers: int) -> Executor:
    """The embedded default with the same-host handoff off: every payload goes through Redis,
    as between a client and consumers on different hosts."""
    with _environment(handoff.ENV_HANDOFF, "0"):  # read by the client and its local node at start
        return RdispyExecutor(max_workers=workers)


def process_pool(workers: int) -> Executor:
    """The standard library's process pool, default start method and arguments."""
    return ProcessPoolExecutor(max_workers=workers)


def job_cluster(workers: int) -> Executor:
    """rdispy's JobCluster (embedded default), one cluster per function, created on first use."""
    return JobClusterExecutor(workers)


SUBJECT = "rdispy"
BASELINE = "ProcessPool"
JOBCLUSTER = "JobCluster"

SIGNED = "rdispy-signed"
REDIS_ONLY = "rdispy-redis"


def _peer(name: str) -> ExecutorFactory:
    def factory(workers: int) -> Executor:
        from bench import peers

        made: Executor = getattr(peers, name)(workers)
        return made

    return factory


#: Peer libraries' columns (``python -m bench --peers`` installs them in a separate venv).
PEERS: dict[str, ExecutorFactory] = {
    "loky": _peer("loky_pool"),
    "dask": _peer("dask_executor"),
    "ray": _peer("ray_executor"),
    "celery": _peer("celery_executor"),
    "rq": _peer("rq_executor"),
    "dispy": _peer("dispy_executor"),
}

#: Column name -> factory, in table order (the default columns).
EXECUTORS: dict[str, ExecutorFactory] = {
    SUBJECT: rdispy_embedded,
    BASELINE: process_pool,
    JOBCLUSTER: job_cluster,
    SIGNED: rdispy_signed,
    REDIS_ONLY: rdispy_redis,
}
