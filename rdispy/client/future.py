"""RemoteFuture: a concurrent.futures.Future for a job on the cluster.

It behaves exactly like the standard Future (``wait``/``as_completed`` work on it) and adds what a
dispy user expects to see of a job: its id, node, pid, start/end times and captured output, and
the messages it sends while running (``rdispy.updates(future)`` iterates its provisional results).
``cancel()`` asks the cluster; it succeeds only while no consumer has taken the job, and then the
job never runs.  ``running()`` is True once a consumer has taken the job (from then on ``cancel()``
returns False): a pending future asks Redis when ``running()`` is called, so the submit and result
path carries nothing extra.

A future knows its job's client only as an ``Owner`` (below), so this module imports neither the
dispatcher nor the reader:

    future.result() / exception() --owner.reader.wait_for--> ResultReader (reads in this
        thread if no one else does) --Results.resolve--> future.set_result / set_exception
    wait() / as_completed() adding a waiter --owner.reader.wake--> the results thread reads
    future.cancel() --owner.cancel_remote--> Dispatcher (the outbox, or the cancel script)
    future.running() --owner.taken--> Dispatcher (the taken script)

It relies on three private parts of ``concurrent.futures.Future``, pinned by
tests/unit/test_future_internals.py: ``_state`` and ``_condition`` (to move a pending future to
RUNNING), and ``_waiters``, the list ``wait``/``as_completed`` append a waiter to.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures._base import PENDING, RUNNING
from typing import Any, Protocol

from rdispy import defaults, job_context

log = logging.getLogger(__name__)

#: Called with (future, event kind, value) for "run", "prov" and "file" events.
EventListener = Callable[["RemoteFuture", str, Any], None]

_END = object()
#: Guards the lazy creation of futures' update queues (rare: one lock for all futures).
_UPDATES_LOCK = threading.Lock()


class ResultSource(Protocol):
    """Who reads the results of a future's client (``ResultReader``)."""

    def wait_for(self, future: Future[Any], timeout: float | None) -> None:
        """Read results in this thread until ``future`` is done or ``timeout`` passes, if no
        one else reads (raises ExecutorBroken in a forked child)."""

    def wake(self) -> None:
        """Have the results thread read now: someone waits without reading themselves."""


class Owner(Protocol):
    """What a RemoteFuture needs of its job's client (``Dispatcher``)."""

    @property
    def reader(self) -> ResultSource: ...

    def cancel_remote(self, future: RemoteFuture, forget: bool = True) -> bool:
        """Withdraw the job if no consumer has been handed it; True means it will never run."""

    def taken(self, future: RemoteFuture) -> bool:
        """Whether a consumer has been handed the job."""


class RemoteFuture(Future[Any]):
    """The future of one job.  Attributes are filled as its events and result arrive.

    Attributes:
        job_id: the job's id in the cluster.
        node: name of the node that ran the job (None until it starts).
        ip_addr: that node's IP address.
        pid: the consumer process that ran it.
        start_time: when it started, by the running node's wall clock.
        end_time: when it ended, by the same clock.
        stdout: what the job printed on stdout.
        stderr: what the job printed on stderr.
    """

    def __init__(self, job_id: str, owner: Owner | None) -> None:
        super().__init__()
        self.job_id = job_id
        self._owner = owner
        self.stream = ""  # the stream the job was sent to (shared, or a node's own)
        self.entry_id: bytes | None = None  # the job's entry there, once sent
        self.node: str | None = None
        self.ip_addr: str | None = None
        self.pid: int | None = None
        self.start_time: float | None = None  # node-local wall clock (the running node's)
        self.end_time: float | None = None  # node-local wall clock
        self.stdout: str = ""
        self.stderr: str = ""
        #: For a recovered map chunk: how many calls it holds (-1: unknown); see ``chunks``.
        self.chunk_calls: int | None = None
        self._listeners: list[EventListener] | None = None
        self._updates: queue.SimpleQueue[Any] | None = None
        if owner is not None:
            self._waiters = _Waiters(owner.reader)

    def result(self, timeout: float | None = None) -> Any:
        """The job's return value, waiting up to ``timeout`` seconds (as ``Future.result``);
        a caller that waits reads the results itself while no one else does."""
        return super().result(self._read_while_waiting(timeout))

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The job's exception, or None (as ``Future.exception``); reads like ``result``."""
        return super().exception(self._read_while_waiting(timeout))

    def _read_while_waiting(self, timeout: float | None) -> float | None:
        """Read results in this thread until the job ends or ``timeout`` passes (if no one else
        reads); returns what is left of ``timeout``."""
        if self._owner is None or self.done():
            return timeout
        end = None if timeout is None else time.monotonic() + timeout
        outer = _running_job()
        if outer is None:
            self._owner.reader.wait_for(self, timeout)
        else:
            self._wait_nested(outer, end)
        return None if end is None else max(end - time.monotonic(), 0.0)

    def _wait_nested(self, outer: str, end: float | None) -> None:
        """Wait inside job ``outer``: warn once, naming both jobs, if this job has not started
        after NESTED_WAIT_WARNING seconds (the cores may all be held by waiting jobs)."""
        assert self._owner is not None
        reader = self._owner.reader
        warn_at: float | None = time.monotonic() + defaults.NESTED_WAIT_WARNING
        while not self.done():
            now = time.monotonic()
            if end is not None and now >= end:
                return
            until = end if warn_at is None else warn_at if end is None else min(end, warn_at)
            reader.wait_for(self, None if until is None else max(until - now, 0.001))
            if warn_at is not None and time.monotonic() >= warn_at:
                warn_at = None
                if not self.done() and not self.running():
                    message = (
                        f"job {outer} waits for job {self.job_id}, which it submitted "
                        f"{defaults.NESTED_WAIT_WARNING:g}s ago and which has not started: if "
                        "every core of the cluster is held by jobs that wait like this, none "
                        "can go on (give the cluster more cores than the nesting depth, or "
                        "return the inner futures' work to the client instead of waiting)"
                    )
                    log.warning("%s", message)
                    print(f"rdispy: {message}", file=sys.stderr, flush=True)

    def cancel(self) -> bool:
        """Cancel the job if no consumer has taken it yet; True means it will never run.

        A cancelled future is at once counted as done by ``wait`` and ``as_completed`` (the
        standard executors notify them when a worker skips the job; here no worker ever sees it).
        """
        if self.done():
            return self.cancelled()
        if self._owner is None:
            return super().cancel()
        if self._state == RUNNING or not self._owner.cancel_remote(self):
            return False
        if not super().cancel():
            return False
        self.set_running_or_notify_cancel()
        return True

    def running(self) -> bool:
        """True while a consumer has the job (a pending future asks the cluster, once per call,
        until it hears so; the answer then stays True until the future is done)."""
        if self._owner is not None and self._state == PENDING:
            if self._owner.taken(self):
                self.mark_running()
        return super().running()

    def mark_running(self) -> None:
        """Move a pending future to RUNNING (a consumer has it); no-op in any other state."""
        with self._condition:
            if self._state == PENDING:
                self._state = RUNNING

    def add_event_listener(self, listener: EventListener) -> None:
        if self._listeners is None:
            self._listeners = []
        self._listeners.append(listener)

    def notify(self, kind: str, value: Any) -> None:
        """Deliver one event from the job (called by whoever holds the reader's baton)."""
        if kind == "prov":
            with _UPDATES_LOCK:
                if self._updates is not None:
                    self._updates.put(value)
        for listener in self._listeners or ():
            listener(self, kind, value)

    def updates(self, timeout: float | None = None) -> Iterator[Any]:
        """Yield the job's provisional results as they arrive, until it ends.

        Start iterating before the job runs to see them all; ``timeout`` bounds the wait for
        each next one (TimeoutError).
        """
        with _UPDATES_LOCK:
            if self._updates is None:
                self._updates = queue.SimpleQueue()
                self.add_done_callback(lambda _: self._updates.put(_END) if self._updates else None)
        if self._owner is not None and not self.done():
            self._owner.reader.wake()
        while True:
            try:
                value = self._updates.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(f"no update from job {self.job_id} in {timeout}s") from None
            if value is _END:
                return
            yield value

    def __repr__(self) -> str:
        return f"<RemoteFuture job={self.job_id} {super().__repr__().split(' ', 2)[-1]}"


class _Waiters(list[Any]):
    """A future's waiters (``concurrent.futures.wait``/``as_completed`` add one while they
    wait): adding one has the results thread read at once rather than leave it to a caller."""

    __slots__ = ("_reader",)

    def __init__(self, reader: ResultSource) -> None:
        super().__init__()
        self._reader = reader

    def append(self, waiter: Any) -> None:
        super().append(waiter)
        self._reader.wake()


def _running_job() -> str | None:
    """The id of the job this process runs now, when it is a consumer (else None)."""
    job = job_context.current_or_none()
    return job.job_id if job is not None else None


def updates(future: RemoteFuture, timeout: float | None = None) -> Iterator[Any]:
    """Provisional results of a job, as they arrive (``rdispy.provisional_result`` in the job)."""
    return future.updates(timeout)
