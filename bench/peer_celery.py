"""The ``celery`` column: a Celery app on a private valkey server, one prefork worker.

The factory starts the broker (``bench.peer_daemons.start_broker``: valkey on a free TCP port)
and ``celery -A bench.peer_celery worker --pool prefork -c N -O fair`` as a subprocess, with
Celery's default prefetch multiplier (4) and its default gossip, mingle and heartbeat.  The
Redis server is both broker and result backend.

Celery runs registered tasks, not arbitrary callables, so the one task here, ``bench.call``,
runs a cloudpickled callable with its arguments: module-level functions such as
``bench.jobs.noop`` pickle by reference (a few dozen bytes), the worker imports them, and the
unpickled function is cached per pickle.  Messages use Celery's ``pickle`` serializer, so
``bytes`` arguments travel as they are (JSON could not carry them).

Futures are resolved without a thread per job: ``apply_async`` subscribes the result backend's
pub/sub channel of the task before sending it, and the executor's one watcher thread
registers each ``AsyncResult.then`` callback and drains the backend's result consumer
(``result_consumer.drain_events``), which calls them as results are published.  With
``result_backend_thread_safe`` both threads share one backend, and so its subscriptions.
Registering and draining in the same thread avoids a race between Celery's message buffer and
its list of waiters, which Celery only ever touches from one thread.

This module is also the worker's ``-A`` module: ``app`` is built from ``$BENCH_CELERY_URL``.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

import cloudpickle
from celery import Celery  # type: ignore[import-not-found, import-untyped, unused-ignore]

from bench.peer_daemons import Daemon, PeerError, PeerExecutor, peer_environment, start_broker

URL_ENV = "BENCH_CELERY_URL"
TASK = "bench.call"

_loaded: dict[bytes, Callable[..., Any]] = {}
_loaded_lock = threading.Lock()


def call(blob: bytes, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The task: unpickle the callable (cached) and call it."""
    fn = _loaded.get(blob)
    if fn is None:
        fn = cloudpickle.loads(blob)
        with _loaded_lock:
            _loaded[blob] = fn
    return fn(*args, **kwargs)


def make_app(url: str) -> Any:
    """The Celery app both sides use: broker and result backend at ``url``, pickle messages."""
    app = Celery("bench-peer", broker=url, backend=url, set_as_current=False)
    app.conf.update(
        task_serializer="pickle",
        result_serializer="pickle",
        accept_content=["pickle"],
        result_accept_content=["pickle"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # one backend for every thread (else each thread gets its own, and its own pub/sub
        # subscriptions): the watcher drains the results the submitting thread subscribed to
        result_backend_thread_safe=True,
    )
    app.task(name=TASK)(call)
    return app


#: The worker's app (``celery -A bench.peer_celery``); building it connects to nothing.
app = make_app(os.environ.get(URL_ENV, "redis://127.0.0.1:6379/0"))


class CeleryExecutor(PeerExecutor):
    """Celery behind ``concurrent.futures``: see the module docstring."""

    #: The drain waits on the pub/sub socket, so a short timeout costs no latency; it bounds
    #: the sleep before the first subscription and the wait for newly sent tasks' callbacks.
    POLL_TIMEOUT = 0.01

    def __init__(self, workers: int) -> None:
        super().__init__("celery")
        self.broker = start_broker()
        try:
            command = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.peer_celery",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                str(workers),
                "-O",
                "fair",
                "--loglevel",
                "WARNING",
                "--hostname",
                f"bench-{os.getpid()}@%h",
            ]
            # Celery refuses to run as root with pickle accepted unless forced (not as root: moot)
            env = peer_environment(**{URL_ENV: self.broker.url, "C_FORCE_ROOT": "1"})
            self.daemons.append(Daemon("celery worker", command, env))
            self._app = make_app(self.broker.url)
            self._task = self._app.tasks[TASK]
            self._blobs: dict[Callable[..., Any], bytes] = {}
            self._sent: queue.SimpleQueue[Any] = queue.SimpleQueue()
            self._start_watcher()
        except BaseException:
            self._abandon()
            raise

    def _blob(self, fn: Callable[..., Any]) -> bytes:
        blob = self._blobs.get(fn)
        if blob is None:
            blob = self._blobs[fn] = cloudpickle.dumps(fn)
        return blob

    def _send(
        self, key: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        result = self._task.apply_async(args=(self._blob(fn), args, kwargs), task_id=key)
        self._sent.put(result)

    def _done(self, result: Any) -> None:
        if result.successful():
            self._settle(result.id, result.result)
            return
        error = result.result
        if not isinstance(error, BaseException):
            error = PeerError(f"celery task {result.id} {result.state}: {result.traceback}")
        self._settle(result.id, error=error)

    def _poll(self, timeout: float) -> None:
        while True:
            try:
                result = self._sent.get_nowait()
            except queue.Empty:
                break
            result.then(self._done)
        self._app.backend.result_consumer.drain_events(timeout=timeout)

    def _close(self, wait: bool) -> None:
        consumer = self._app.backend.result_consumer
        consumer.stop()
        # results still awaited would unsubscribe when collected, after the broker has gone
        consumer.subscribed_to.clear()
        self._app.close()
