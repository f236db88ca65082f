"""Every exception rdispy raises, under one root.

    RdispyError
     ├── ConfigError                  bad option or environment (e.g. no server binary)
 │    └── NodeNameInUse           another live worker holds this node name
     ├── BrokerError                  Redis unreachable or refused a command
     ├── ProtocolError                an envelope could not be built or read
     │    ├── SerializationError      a function/argument/result cannot be pickled
     │    ├── DeserializationError    an envelope's payload cannot be unpickled
     │    ├── SignatureError          an envelope without a valid HMAC signature
     │    └── PayloadTooLarge         a job's payload is over the size limit
     ├── JobError                     a job failed for a reason other than its own code
     │    ├── RemoteError             the job raised an exception the client cannot rebuild
     │    ├── ResultTooLarge          the job's result is over the size limit
     │    ├── WorkerCrashed           (also BrokenProcessPool) the job's consumer process died
     │    ├── JobTimeout              (also TimeoutError) the job ran past its timeout
     │    ├── MemoryLimitExceeded     the job used more memory than its node's --memory-limit
     │    ├── DependencyTransferError a dependency file could not be stored (disk full, ...)
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


class PayloadTooLarge(ProtocolError):
    """A job's function or arguments exceed the configured size limit."""


class JobError(RdispyError):
    """A job failed for a reason other than an exception raised by its own code."""

    def __init__(self, message: str, job_id: str | None = None) -> None:
        super().__init__(message if job_id is None else f"job {job_id}: {message}")
        self.job_id = job_id


class RemoteError(JobError):
    """The job raised an exception that could not be rebuilt on the client.

    ``exc_type`` names the remote exception's type, ``traceback`` holds its remote traceback text.
    """

    def __init__(
        self, exc_type: str, message: str, traceback: str, job_id: str | None = None
    ) -> None:
        super().__init__(f"{exc_type}: {message}", job_id)
        self.exc_type = exc_type
        self.remote_message = message
        self.traceback = traceback

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


#: Combined classes made by ``also_as``, per (rdispy class, original type).
_COMBINED: dict[tuple[type[BaseException], type[BaseException]], type[BaseException]] = {}
_COMBINED_LOCK = threading.Lock()


def also_as(cls: type[E], original: type[BaseException]) -> type[E]:
    """``cls`` made also a subclass of ``original`` (one class per pair, cached): its instances
    keep ``cls``'s message, job id and advice and are caught by ``except original``.  Returns
    ``cls`` itself when that cannot be (``original`` is already a base, or the two types cannot
    be combined, such as a BaseException that is not an Exception)."""
    if issubclass(cls, original) or not issubclass(original, Exception):
        return cls
    key = (cls, original)
    with _COMBINED_LOCK:
        combined = _COMBINED.get(key)
        if combined is None:
            try:
                combined = type(
                    cls.__name__,
                    (cls, original),
                    {
                        "__module__": cls.__module__,
                        "__qualname__": cls.__qualname__,
                        "__reduce__": _reduce_combined,
                        "__init__": cls.__init__,
                        "__str__": cls.__str__,
                    },
                )
            except TypeError:  # incompatible layouts, a final class
                combined = cls
            _COMBINED[key] = combined
    return combined  # type: ignore[return-value]


def caused_by(cls: type[E], cause: BaseException, *args: Any) -> E:
    """``cls(*args)``, also an instance of ``type(cause)`` where the two combine (see
    ``also_as``); the caller chains ``cause`` with ``raise ... from``."""
    combined = also_as(cls, type(cause))
    if combined is not cls:
        try:
            return combined(*args)
        except Exception:  # noqa: S110 - the original type's constructor wants other arguments
            pass
    return cls(*args)


def _reduce_combined(self: BaseException) -> tuple[object, ...]:
    cls, original = type(self).__mro__[1], type(self).__bases__[1]
    return (_rebuild_combined, (cls, original, self.args, dict(vars(self))))


def _rebuild_combined(
    cls: type[BaseException], original: type[BaseException], args: Any, state: dict[str, Any]
) -> BaseException:
    """Unpickle what ``also_as`` made (its class is rebuilt, not looked up by name)."""
    combined = also_as(cls, original)
    exc = combined.__new__(combined, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc
