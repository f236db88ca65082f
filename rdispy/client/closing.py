"""How an Executor ends: drained and closed now, in the background, or at interpreter exit.

The standard library's contract, which this module keeps for rdispy.Executor:
- ``shutdown(wait=True)`` returns once every pending future is done and all is closed;
- ``shutdown(wait=False)`` returns at once, and the executor's resources (connections, the
  embedded server and node) are freed once its pending futures are done: the jobs still run;
- at interpreter exit, an executor never shut down is shut down with ``wait=True`` and one shut
  down with ``wait=False`` is waited for, so jobs left pending still complete before the process
  exits (as ProcessPoolExecutor's exit hook does); from then on ``submit`` raises RuntimeError.

The exit hook runs before the interpreter joins its threads (``threading._register_atexit``,
what concurrent.futures uses; ``atexit`` where that is missing), while the threads that read
results still run.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
import time
import weakref
from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, Protocol

from rdispy import defaults

if TYPE_CHECKING:
    from rdispy.client.dispatcher import Dispatcher
    from rdispy.client.local_cluster import LocalCluster

log = logging.getLogger(__name__)


class Stoppable(Protocol):
    def stop(self) -> None: ...


class Parts:
    """What one executor holds that must be closed, without the executor itself (so that a
    background close does not keep a collected executor alive)."""

    def __init__(
        self, dispatcher: Dispatcher, local: LocalCluster | None, monitor: Stoppable | None
    ) -> None:
        self.dispatcher, self.local, self.monitor = dispatcher, local, monitor
        self._closer: threading.Thread | None = None
        self.closed = False
        self.owner_pid = os.getpid()  # a forked child's copy closes nothing of its parent's

    def drain_and_close(self) -> None:
        """Wait until every pending future is done, then close everything; give up on them
        once Redis has been unreachable for ``DRAIN_UNREACHABLE_GRACE`` (nothing can finish)."""
        if os.getpid() != self.owner_pid:
            return
        unreachable_since: float | None = None
        for future in self.dispatcher.pending():
            while not future.done():
                with contextlib.suppress(CancelledError, FutureTimeout):
                    future.exception(1.0)
                if future.done():
                    break
                if self.dispatcher.reachable():
                    unreachable_since = None
                    continue
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > defaults.DRAIN_UNREACHABLE_GRACE:
                    left = len(self.dispatcher.pending())
                    log.warning(
                        "client %s: Redis unreachable for %.0fs while %d jobs were pending; "
                        "closing without them (a client started with this client_id collects "
                        "them once the cluster is back)",
                        self.dispatcher.client_id,
                        defaults.DRAIN_UNREACHABLE_GRACE,
                        left,
                    )
                    self.close(drain=False)
                    return
        self.close(drain=True)

    def close(self, drain: bool) -> None:
        if self.closed or os.getpid() != self.owner_pid:
            return
        self.closed = True
        if self.monitor is not None:
            self.monitor.stop()
        self.dispatcher.close()
        if self.local is not None:
            self.local.close(drain=drain)

    def close_in_background(self) -> None:
        """``drain_and_close`` in a thread the interpreter waits for at exit (not a daemon);
        once the interpreter exits (no new threads then) everything is closed at once."""
        if self.closed or os.getpid() != self.owner_pid:
            return
        if exiting() or sys.is_finalizing():
            self.close(drain=False)
            return
        self._closer = threading.Thread(
            target=self.drain_and_close, name=f"rdispy-shutdown-{self.dispatcher.client_id}"
        )
        self._closer.start()

    def join(self) -> None:
        """Wait for a background close, if one runs."""
        closer = self._closer
        if closer is not None and closer is not threading.current_thread():
            closer.join()


#: Open executors and their parts (weakly: an executor collected unused is not kept).
_OPEN: weakref.WeakKeyDictionary[Any, Parts] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
_state = {"exiting": False, "hooked": False}


def _after_fork_in_child() -> None:
    """A forked child owns none of its parent's executors: it neither drains nor closes them at
    its exit (they raise ExecutorBroken if the child uses them, see ``Dispatcher.check_owner``)."""
    global _LOCK
    _LOCK = threading.Lock()  # another thread of the parent may have held it at the fork
    _OPEN.clear()
    _state["hooked"] = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def exiting() -> bool:
    """True once the interpreter has begun to exit (``submit`` then refuses new jobs)."""
    return _state["exiting"]


def track(executor: Any, parts: Parts) -> None:
    """Drain and close ``parts`` at interpreter exit unless ``untrack``ed before."""
    with _LOCK:
        if not _state["hooked"]:
            _state["hooked"] = True
            register = getattr(threading, "_register_atexit", None)
            try:
                if register is None:
                    raise RuntimeError("no threading exit hook")
                register(_at_exit)
            except RuntimeError:  # no such hook, or the interpreter already exits
                atexit.register(_at_exit)
        _OPEN[executor] = parts


def untrack(executor: Any) -> None:
    with _LOCK:
        _OPEN.pop(executor, None)


def _at_exit() -> None:
    _state["exiting"] = True
    with _LOCK:
        open_parts = list(_OPEN.values())
        _OPEN.clear()
    # the program ended on Ctrl-C: stop now rather than wait for its jobs
    interrupted = isinstance(getattr(sys, "last_value", None), KeyboardInterrupt)
    for parts in open_parts:
        try:
            if interrupted:
                parts.dispatcher.cancel_all()
                parts.close(drain=False)
            else:
                parts.drain_and_close()
        except Exception:
            log.exception("closing an executor at interpreter exit failed")
