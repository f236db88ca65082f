"""dispy's job and node objects, fed by rdispy's futures.

``DispyJob`` keeps dispy's attributes and status constants, so code written for dispy reads it
unchanged: ``job()`` waits and returns the result, ``job.status``, ``job.stdout``,
``job.exception`` (traceback text), ``job.ip_addr``, ``job.start_time`` and so on.

``start_time`` and ``end_time`` are node-local: read from the wall clock of the node that ran
the job (when it reports none, ``end_time`` is the client's), while ``submit_time`` is the
client's.  Compare them across hosts only as far as their clocks agree; rdispy itself never
does (liveness rests on Redis TTLs).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

log = logging.getLogger(__name__)


class DispyJob:
    """One job of a JobCluster.  ``id`` may be set by the user; the rest is read-only.

    Attributes:
        id: the job's id (dispy's: set it to anything that helps to tell jobs apart).
        args: the positional arguments it was submitted with.
        kwargs: its keyword arguments.
        status: one of the class's constants, with dispy's values: ``Created``, ``Running``,
            ``ProvisionalResult``, ``Cancelled``, ``Terminated``, ``Abandoned``, ``Finished``.
        result: the return value, once ``Finished``.
        exception: the remote traceback, as text, when the job raised.
        stdout: its output: ``str`` for a function's, ``bytes`` for a program's, as in dispy.
        stderr: its error output, the same way.
        node: name of the node that ran it.
        ip_addr: that node's IP address.
        submit_time: when it was submitted (``time.time()`` here).
        start_time: when it started, by the running node's wall clock.
        end_time: when it ended, by the same clock.
    """

    Created = 5
    Running = 6
    ProvisionalResult = 7
    Cancelled = 8
    Terminated = 9
    Abandoned = 10
    Finished = 11

    def __init__(self, job_id: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.id = job_id
        self.args = args
        self.kwargs = kwargs
        self.result: Any = None
        # str for a function's output; bytes for a program's, as dispy gives them
        self.stdout: str | bytes | None = None
        self.stderr: str | bytes | None = None
        self.exception: str | None = None
        self.status = DispyJob.Created
        self.ip_addr: str | None = None
        self.node: str | None = None
        self.submit_time = time.time()
        self.start_time: float | None = None
        self.end_time: float | None = None
        self._finish: threading.Event | None = None  # made when someone waits (``finish``)
        self._done = False
        self._done_callbacks: list[Callable[[DispyJob], object]] = []
        self._done_lock = threading.Lock()
        self._future: Any = None
        self._selectors: list[Any] | None = None  # the nodes it may run on, when limited
        self._depends: list[Any] | None = None  # dispy_job_depends: this job's own files
        self._pinned = False  # submit_node: only that node
        self._placed_on: str | None = None  # the node it was sent to, when placed
        self._timeout: float | None = None
        self._cpus = 1  # cores the job needs on one node

    @property
    def finish(self) -> threading.Event:
        """dispy's event, set once the job has ended and its status is set.  Made on first use:
        a job nobody waits for this way (callbacks, ``future``) costs no Event."""
        with self._done_lock:
            if self._finish is None:
                self._finish = threading.Event()
                if self._done:
                    self._finish.set()
            return self._finish

    def __call__(self, clear: bool = False, timeout: float | None = None) -> Any:
        """Wait for the job to end and return its result (None if it failed)."""
        if not self._done and self._future is not None:
            end = None if timeout is None else time.monotonic() + timeout
            with contextlib.suppress(CancelledError, FutureTimeout):
                self._future.exception(timeout)  # reads results in this thread meanwhile
            timeout = None if end is None else max(end - time.monotonic(), 0.0)
        if not self._done and not self.finish.wait(timeout):
            raise TimeoutError(f"job {self.id} did not finish in {timeout}s")
        result = self.result
        if clear:
            self.result = None
        return result

    def add_done_callback(self, fn: Callable[[DispyJob], object]) -> None:
        """rdispy's addition: call ``fn(job)`` once the job has ended and its status is set
        (at once if it has), as ``concurrent.futures.Future.add_done_callback`` does."""
        with self._done_lock:
            if not self._done:
                self._done_callbacks.append(fn)
                return
        fn(self)

    def _ended(self) -> None:
        """Mark the job ended: wake ``job()`` waiters, then run the done callbacks."""
        with self._done_lock:
            self._done = True
            if self._finish is not None:
                self._finish.set()
            callbacks, self._done_callbacks = self._done_callbacks, []
        for fn in callbacks:
            try:
                fn(self)
            except Exception:
                log.exception("done callback of job %s failed", self.id)

    @property
    def future(self) -> Any:
        """rdispy's addition: the job's concurrent.futures Future, done once the job has ended
        and its attributes are set, for ``wait``/``as_completed`` across jobs and executors."""
        return self._future

    def __lt__(self, other: DispyJob) -> bool:
        return id(self) < id(other)

    def __repr__(self) -> str:
        return f"<DispyJob id={self.id!r} status={status_name(self.status)}>"


def status_name(status: int) -> str:
    for name in (
        "Created",
        "Running",
        "ProvisionalResult",
        "Cancelled",
        "Terminated",
        "Abandoned",
        "Finished",
    ):
        if getattr(DispyJob, name) == status:
            return name
    return str(status)


def exception_text(exc: BaseException) -> str:
    """The traceback text dispy keeps in ``job.exception`` (the remote one when there is one)."""
    cause = exc.__cause__
    remote = getattr(cause, "tb", None)
    if isinstance(remote, str):
        return remote
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


@dataclass
class DispyNode:
    """A node as dispy describes it (built from rdispy's node record).  ``Initialized`` and
    ``Closed`` are the statuses ``cluster_status`` gets when a node joins or leaves."""

    Initialized: ClassVar[int] = DispyJob.Created - 1
    Closed: ClassVar[int] = DispyJob.Finished + 5
    AvailInfo: ClassVar[int] = Closed + 1

    name: str
    ip_addr: str
    cpus: int
    avail_cpus: int
    busy: int = 0
    jobs_done: int = 0
    cpu_time: float = 0.0
    update_time: float = field(default_factory=time.time)
    platform: str = ""
    avail_info: Any = None  # DispyNodeAvailInfo: the node's free cpu, memory, disk and swap
    tx: int = 0
    rx: int = 0


class ClusterStatus(NamedTuple):
    """What ``JobCluster.status()`` returns, as in dispy."""

    nodes: list[DispyNode]
    jobs_pending: int


def wait_jobs(jobs: list[DispyJob], timeout: float | None, progress: bool = False) -> bool:
    """Wait until every one of ``jobs`` has ended; False if ``timeout`` passed first.  With
    ``progress`` a bar counts them as they end."""
    from rdispy.progress import Progress

    deadline = None if timeout is None else time.monotonic() + timeout

    def remaining() -> float | None:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    if not progress:
        return all(job.finish.wait(remaining()) for job in jobs)
    counted = threading.Semaphore(0)  # released by each job's callback, after the bar moved
    with Progress(len(jobs), "jobs") as bar:

        def count(_: DispyJob) -> None:
            bar.update()
            counted.release()

        for job in jobs:
            job.add_done_callback(count)
        return all(counted.acquire(timeout=remaining()) for _ in jobs)
