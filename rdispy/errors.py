"""Every exception rdispy raises, under one root.

    RdispyError
     ├── ConfigError                  bad option or environment (e.g. no server binary)
     │    └── NodeNameInUse           another live worker holds this node name
     ├── BrokerError                  Redis unreachable or refused a command
     ├── ProtocolError                an envelope could not be built or read
     │    ├── SerializationError      a function/argument/result cannot be pickled
     │    ├── DeserializationError    (also BrokenProcessPool) a payload cannot be unpickled
     │    ├── SignatureError          an envelope without a valid HMAC signature
     │    ├── JobRefused              a node refused the job's entry (secret, wire version)
     │    └── PayloadTooLarge         a job's payload is over the size limit
     ├── JobError                     a job failed for a reason other than its own code
     │    ├── RemoteError             the job raised an exception the client cannot rebuild
     │    ├── ResultTooLarge          the job's result is over the size limit
     │    ├── WorkerCrashed           (also BrokenProcessPool) the job's consumer process died
     │    ├── JobTimeout              (also TimeoutError) the job ran past its timeout
     │    ├── MemoryLimitExceeded     the job used more memory than its node's --memory-limit
     │    ├── DependencyTransferError a dependency file could not be stored (disk full, ...)
     │    ├── InitializerFailed       (also BrokenProcessPool) the executor's initializer raised
     │    ├── JobTerminated           the job was cancelled while running and stopped
     │    ├── NodeLost                the node stopped heartbeating while running the job
     │    ├── JobAbandoned            the job may not be re-run and its attempt was lost
     │    └── JobLost                 the job's entry was deleted from Redis before it ran
     ├── NoNodesError                 no node is registered to run jobs
     ├── ActionError                  a monitor action cannot be done (unknown or ended job/node)
     └── ExecutorBroken               (also concurrent.futures.BrokenExecutor) client cannot go on

A job's own exception is re-raised as its own type, with the remote traceback attached as
``__cause__``; cancel and timeout raise the standard ``CancelledError``/``TimeoutError``.  An
rdispy error caused by another exception (pickling a lock raises TypeError) is also an instance
of that exception's type (see ``also_as``), so code written for the standard library's executors
catches it where it would catch the original.
"""

from __future__ import annotations

import threading
from concurrent.futures import BrokenExecutor
from typing import Any, TypeVar

E = TypeVar("E", bound=BaseException)


class RdispyError(Exception):
    """Root of every rdispy error."""


class ActionError(RdispyError):
    """An operator's action (cancel a job, drain a node) cannot be done; the message says why."""


class ConfigError(RdispyError):
    """An option, URL or environment value is wrong; the message says which and how to fix it."""


class NodeNameInUse(ConfigError):
    """A worker was started under a name another live worker holds (its lease is refreshed)."""


class BrokerError(RdispyError):
    """Redis could not be reached or refused a command."""


class ProtocolError(RdispyError):
    """An envelope could not be encoded or decoded."""

    def __init__(self, message: str, job_id: str | None = None) -> None:
        super().__init__(message if job_id is None else f"job {job_id}: {message}")
        self.job_id = job_id


class SerializationError(ProtocolError):
    """A function, argument or result could not be pickled."""


class DeserializationError(ProtocolError):
    """A payload could not be unpickled (missing module, corrupt bytes)."""


class SignatureError(ProtocolError):
    """An envelope has no valid HMAC-SHA256 signature for the configured secret."""


class JobRefused(ProtocolError):
    """A node refused the job's entry without running it (no valid signature for its secret,
    a wire version it does not speak); ``node`` and ``reason`` say which and why."""

    def __init__(
        self, message: str, job_id: str | None = None, node: str = "", reason: str = ""
    ) -> None:
        super().__init__(message, job_id)
        self.node, self.reason = node, reason


class PayloadTooLarge(ProtocolError):
    """A job's function or arguments exceed the configured size limit."""


class JobError(RdispyError):
    """A job failed for a reason other than an exception raised by its own code."""

    def __init__(self, message: str, job_id: str | None = None) -> None:
        super().__init__(message if job_id is None else f"job {job_id}: {message}")
        self.job_id = job_id


class RemoteError(JobError):
    """The job raised an exception that could not be rebuilt on the client.

    ``exc_type`` names the remote exception's type (module and qualified name), ``traceback``
    holds its remote traceback text (also its ``__cause__``, as for a rebuilt exception), and
    ``rebuild_error`` says why it could not be rebuilt.
    """

    def __init__(
        self, exc_type: str, message: str, traceback: str, job_id: str | None = None
    ) -> None:
        super().__init__(f"{exc_type}: {message}", job_id)
        self.exc_type = exc_type
        self.remote_message = message
        self.traceback = traceback
        self.rebuild_error = ""

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.exc_type, self.remote_message, self.traceback, self.job_id))


class ResultTooLarge(JobError):
    """The job's pickled result is over the size limit; return less, or write it to a file."""


class WorkerCrashed(JobError):
    """The consumer process running the job died (signal, os._exit, segfault, memory limit)."""

    def __init__(self, message: str, job_id: str | None = None, exit_status: str = "") -> None:
        super().__init__(message, job_id)
        self.exit_status = exit_status


class MemoryLimitExceeded(JobError):
    """The job used more memory than the node allows each consumer (``--memory-limit``); it was
    stopped and its consumer replaced.  Not retried: it would fail the same way."""


class DependencyTransferError(JobError):
    """A dependency file could not be stored on the node (disk full, quota, I/O error): the job
    fails, the node's cache keeps only complete, hash-checked files.  ``errno`` names the cause."""

    def __init__(self, message: str, job_id: str | None = None, errno: int | None = None) -> None:
        super().__init__(message, job_id)
        self.message = message
        self.errno = errno

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message, self.job_id, self.errno))


class InitializerFailed(JobError):
    """The executor's ``initializer`` raised in a consumer process (the message holds its remote
    traceback): the job did not run, and the executor is broken, as ProcessPoolExecutor's is."""


class JobTerminated(JobError):
    """The job was stopped while running because it was cancelled."""


class JobTimeout(JobError, TimeoutError):
    """The job ran past its timeout and was stopped on its node (not retried)."""


class NodeLost(JobError):
    """The node running the job stopped heartbeating."""


class JobAbandoned(JobError):
    """The job's attempt was lost and it may not be re-run (reentrant=False or retries used up)."""


class JobLost(JobError):
    """The job's entry vanished from Redis while queued or pending (deleted or trimmed by hand,
    evicted); submit it again."""


class NoNodesError(RdispyError):
    """No node is registered that could run the job; start `rdispy worker`."""


class ExecutorBroken(RdispyError, BrokenExecutor):
    """The executor cannot go on (its embedded server or workers died)."""


#: Combined classes made by ``also_as``, per (rdispy class, original types).
_COMBINED: dict[tuple[type[BaseException], tuple[type[BaseException], ...]], type[BaseException]]
_COMBINED = {}
_COMBINED_LOCK = threading.Lock()


def also_as(cls: type[E], *originals: type[BaseException]) -> type[E]:
    """``cls`` made also a subclass of each of ``originals`` (one class per set, cached): its
    instances keep ``cls``'s message, job id and advice and are caught by ``except original``.
    Originals that ``cls`` already is, that are not Exceptions, or that another original already
    implies are left out; ``cls`` itself is returned when nothing is left or the types cannot be
    combined (incompatible layouts, a final class)."""
    wanted: list[type[BaseException]] = []
    for original in originals:
        if issubclass(cls, original) or not issubclass(original, Exception):
            continue
        if any(issubclass(other, original) for other in wanted):
            continue
        wanted = [other for other in wanted if not issubclass(original, other)] + [original]
    if not wanted:
        return cls
    key = (cls, tuple(wanted))
    with _COMBINED_LOCK:
        combined = _COMBINED.get(key)
        if combined is None:
            try:
                combined = type(
                    cls.__name__,
                    (cls, *wanted),
                    {
                        "__module__": cls.__module__,
                        "__qualname__": cls.__qualname__,
                        "__reduce__": _reduce_combined,
                        "__init__": cls.__init__,
                        "__str__": cls.__str__,
                        "_rdispy_also_as": key,
                    },
                )
            except TypeError:
                combined = cls
            _COMBINED[key] = combined
    return combined  # type: ignore[return-value]


def caused_by(
    cls: type[E], cause: BaseException, *args: Any, also: tuple[type[BaseException], ...] = ()
) -> E:
    """``cls(*args)``, also an instance of ``type(cause)`` and of the ``also`` types where they
    combine (see ``also_as``); the caller chains ``cause`` with ``raise ... from``."""
    for originals in ((type(cause), *also), also, (type(cause),)):
        combined = also_as(cls, *originals)
        if combined is not cls:
            try:
                return combined(*args)
            except Exception:  # noqa: S112 - an original's constructor wants other arguments
                continue
    return cls(*args)


def broken_pool() -> type[BaseException]:
    """concurrent.futures' BrokenProcessPool, what stdlib code catches when a worker could not
    run a job or return its result (imported when first needed: it pulls in multiprocessing)."""
    from concurrent.futures.process import BrokenProcessPool

    return BrokenProcessPool


def _reduce_combined(self: BaseException) -> tuple[object, ...]:
    cls, originals = type(self)._rdispy_also_as  # type: ignore[attr-defined]
    return (_rebuild_combined, (cls, originals, self.args, dict(vars(self))))


def _rebuild_combined(
    cls: type[BaseException],
    originals: type[BaseException] | tuple[type[BaseException], ...],
    args: Any,
    state: dict[str, Any],
) -> BaseException:
    """Unpickle what ``also_as`` made (its class is rebuilt, not looked up by name)."""
    combined = also_as(cls, *(originals if isinstance(originals, tuple) else (originals,)))
    exc = combined.__new__(combined, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc
