"""What the daemon-based peer columns (Celery, RQ, dispy) share: their processes and Futures.

Each of these peers needs processes of its own besides the benchmark: a Redis broker (the
embedded valkey server, as rdispy's embedded default uses) and the peer's workers or node.  A
``Daemon`` is one such subprocess, started in its own process group with its output in a log
file; stopping it ends the whole group (SIGTERM, then SIGKILL), so the processes its workers
forked cannot outlive it.  ``PeerExecutor`` is the Executor the workloads see: ``submit`` hands
the call to the peer and returns a plain ``Future``; one watcher thread per executor resolves
the futures (each peer's own way) and, should a daemon die, fails every pending future with a
``PeerError`` that quotes the daemon's log, so a broken or wedged peer fails its workload with
a clear message instead of only running into the workload's timeout.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

from rdispy import processes
from rdispy.server import EmbeddedServer, free_port

ROOT = Path(__file__).resolve().parent.parent


class PeerError(RuntimeError):
    """A peer's job failed, or one of its processes died (with the tail of its log)."""


def start_broker() -> EmbeddedServer:
    """A private valkey server on a free TCP port of 127.0.0.1 (the peers' broker)."""
    return EmbeddedServer(port=free_port()).start()


def peer_environment(**extra: str) -> dict[str, str]:
    """This environment with the repository on ``PYTHONPATH`` (the workers import
    ``bench.jobs`` by name, as ProcessPool's and rdispy's do) and ``extra`` added."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) if not path else os.pathsep.join([str(ROOT), path])
    env.update(extra)
    return env


class Daemon:
    """One peer subprocess in its own process group, its output in a private log file.

    The process runs in a fresh private folder (removed by ``stop``); ``{directory}`` in the
    command's arguments stands for it."""

    def __init__(self, name: str, command: Sequence[str], env: dict[str, str]) -> None:
        self.name = name
        self.directory = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        self.log_path = self.directory / "output.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [arg.replace("{directory}", str(self.directory)) for arg in command],
                cwd=self.directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=processes.child_preexec(own_group=True),
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 12) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def wait_for_log(self, marker: str, timeout: float) -> None:
        """Wait until the log shows ``marker`` (PeerError if the daemon exits or is late)."""
        deadline = time.monotonic() + timeout
        while marker not in self.log_path.read_text(errors="replace"):
            if not self.alive():
                raise PeerError(f"{self.name} exited at start: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise PeerError(f"{self.name} not ready after {timeout:g}s: {self.log_tail()}")
            time.sleep(0.01)

    def terminate(self) -> None:
        """Ask the daemon to stop (SIGTERM to its group); ``stop`` waits for it."""
        if self.alive():
            processes.kill_group(self.process.pid, signal.SIGTERM)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the group, SIGKILL it past ``timeout``, then remove the log folder."""
        self.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        # the group's other members (forked workers) may outlive its leader
        processes.kill_group(self.process.pid, signal.SIGKILL)
        self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


class PeerExecutor(Executor):
    """Futures fed by one watcher thread; subclasses send calls and say which ended.

    A subclass implements ``_send(key, fn, args, kwargs)`` (send the call as the peer's job
    with id ``key``, a fresh hex string whose future is already registered), ``_poll(timeout)``
    (run by the watcher thread in a loop: wait up to ``timeout`` for jobs to end and resolve
    their futures with ``_settle``) and ``_close(wait)`` (the peer's client side).  After it,
    shutdown stops the daemons in ``self.daemons`` (all at once: SIGTERM, up to 5 s to exit,
    or 0.5 s when not waiting, then SIGKILL) and last the broker ``self.broker``.  ``map`` is
    ``Executor.map``: one ``submit`` per call, which is what these peers offer.
    """

    #: Longest wait of one ``_poll`` call, so the watcher notices shutdown and dead daemons.
    POLL_TIMEOUT = 0.1

    def __init__(self, name: str) -> None:
        self.name = name
        self.daemons: list[Daemon] = []
        self.broker: EmbeddedServer | None = None
        self._pending: dict[str, Future[Any]] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None
        self._failure: PeerError | None = None

    # -- for subclasses --------------------------------------------------------------------

    def _start_watcher(self) -> None:
        self._watcher = threading.Thread(target=self._watch, name=f"{self.name}-watcher")
        self._watcher.daemon = True
        self._watcher.start()

    def _send(
        self, key: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        raise NotImplementedError

    def _poll(self, timeout: float) -> None:
        raise NotImplementedError

    def _close(self, wait: bool) -> None:
        raise NotImplementedError

    def _pending_keys(self) -> list[str]:
        with self._lock:
            return list(self._pending)

    def _settle(self, key: str, value: Any = None, error: BaseException | None = None) -> None:
        """Resolve the future of job ``key`` (once; later calls for it are ignored)."""
        with self._lock:
            future = self._pending.pop(key, None)
        if future is None or future.done():
            return
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)

    # -- Executor --------------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self._closed.is_set():
            raise RuntimeError("cannot schedule new jobs after shutdown")
        if self._failure is not None:
            raise self._failure
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        key = uuid.uuid4().hex
        with self._lock:  # registered before sending: a result may come back at once
            self._pending[key] = future
        try:
            self._send(key, fn, args, kwargs)
        except BaseException:
            with self._lock:
                self._pending.pop(key, None)
            raise
        return future

    def map(  # type: ignore[override]
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        return super().map(fn, *iterables, timeout=timeout)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the watcher, fail what is pending, end the peer's processes (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5 * self.POLL_TIMEOUT + 5)
        self._fail_pending(PeerError(f"{self.name} shut down before the job ended"))
        try:
            self._close(wait and not cancel_futures)
        finally:
            self._stop_processes(wait)

    def _abandon(self) -> None:
        """End what a failed ``__init__`` had started (no client side to close yet)."""
        self._closed.set()
        self._stop_processes(wait=False)

    def _stop_processes(self, wait: bool) -> None:
        for daemon in self.daemons:
            daemon.terminate()
        deadline = time.monotonic() + (5.0 if wait else 0.5)
        for daemon in self.daemons:
            daemon.stop(max(0.0, deadline - time.monotonic()))
        if self.broker is not None:
            self.broker.stop()

    # -- the watcher -----------------------------------------------------------------------

    def _fail_pending(self, error: PeerError) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    def _dead_daemon(self) -> Daemon | None:
        return next((daemon for daemon in self.daemons if not daemon.alive()), None)

    def _watch(self) -> None:
        while not self._closed.is_set():
            dead = self._dead_daemon()
            if dead is not None:
                code = dead.process.returncode
                self._failure = PeerError(
                    f"{self.name}: {dead.name} exited ({code}): {dead.log_tail()}"
                )
                self._fail_pending(self._failure)
                return
            try:
                self._poll(self.POLL_TIMEOUT)
            except Exception as exc:  # the peer's client broke: nothing will be resolved
                if self._closed.is_set():
                    return
                self._failure = PeerError(f"{self.name} result watcher failed: {exc!r}")
                self._fail_pending(self._failure)
                return
