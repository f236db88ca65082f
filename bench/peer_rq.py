"""The ``rq`` column: an RQ queue on a private valkey server, N ``rq worker`` processes.

The factory starts the broker (``bench.peer_daemons.start_broker``: valkey on a free TCP port)
and N ``rq worker --url URL bench`` subprocesses with RQ's default worker class (``rq.Worker``,
which forks a work horse for every job) and default logging.  ``submit`` is
``Queue.enqueue(fn, args=..., kwargs=...)``: RQ stores a module-level function by its import
path and the worker imports it (``bench.jobs`` is on the workers' ``PYTHONPATH``), arguments
and results with RQ's default pickle serializer.

Futures are resolved by one watcher thread, event-driven rather than polling each job:
RQ writes every job's outcome to a results stream of its own (``rq:results:<id>``, what
``Job.latest_result(timeout=...)`` blocks on), and the watcher blocks in one ``XREAD`` on
the streams of the oldest ``window`` pending jobs (jobs leave the queue first in, first
out), then reads each ended job's ``Job.latest_result()``: its return value, or a
``PeerError`` with RQ's traceback text.  Every ``FULL_EVERY`` seconds it also reads the
status of every pending job (``Job.get_status``'s field, pipelined), so a job that ended
without a result (stopped, canceled) or out of order is seen too.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.peer_daemons import Daemon, PeerError, PeerExecutor, peer_environment, start_broker

QUEUE = "bench"
#: Seconds between two reads of every pending job's status.
FULL_EVERY = 0.5

_ENDED = {"finished", "failed", "stopped", "canceled"}


class RQExecutor(PeerExecutor):
    """RQ behind ``concurrent.futures``: see the module docstring."""

    def __init__(self, workers: int) -> None:
        import redis
        from rq import Queue  # type: ignore[import-not-found, import-untyped, unused-ignore]
        from rq.job import Job  # type: ignore[import-not-found, import-untyped, unused-ignore]
        from rq.results import Result  # type: ignore[import-not-found, import-untyped, unused-ignore]

        super().__init__("rq")
        self._job_class = Job
        self._result_key: Callable[[str], str] = Result.get_key
        self._wake = threading.Event()
        self.broker = start_broker()
        try:
            env = peer_environment()
            rq = [str(Path(sys.executable).with_name("rq")), "worker", "-u", self.broker.url, QUEUE]
            for i in range(workers):
                self.daemons.append(Daemon(f"rq worker {i + 1}", rq, env))
            self._sender = redis.Redis.from_url(self.broker.url)
            self._poller = redis.Redis.from_url(self.broker.url)
            self._queue = Queue(QUEUE, connection=self._sender)
            self.window = 2 * workers + 2
            self._full_at = 0.0
            self._start_watcher()
        except BaseException:
            self._abandon()
            raise

    def _send(
        self, key: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self._queue.enqueue(fn, args=args, kwargs=kwargs, job_id=key)
        self._wake.set()

    def _poll(self, timeout: float) -> None:
        keys = self._pending_keys()
        if not keys:
            self._wake.wait(timeout)
            self._wake.clear()
            return
        now = time.monotonic()
        if now >= self._full_at:
            self._full_at = now + FULL_EVERY
            self._check_statuses(keys)
            return
        streams: dict[Any, Any] = {self._result_key(key): "0-0" for key in keys[: self.window]}
        reply: Any = self._poller.xread(streams, block=max(1, round(timeout * 1000)))
        for stream, _ in reply.items() if isinstance(reply, dict) else reply:  # RESP3, RESP2
            self._finish(stream.decode().rpartition(":")[2])

    def _check_statuses(self, keys: list[str]) -> None:
        pipe = self._poller.pipeline(transaction=False)
        for key in keys:
            pipe.hget(self._job_class.key_for(key), "status")
        for key, status in zip(keys, pipe.execute(), strict=True):
            if status is not None and status.decode() in _ENDED:
                self._finish(key)

    def _finish(self, key: str) -> None:
        job = self._job_class(key, connection=self._poller)
        result = job.latest_result()
        if result is not None and result.type == result.Type.SUCCESSFUL:
            self._settle(key, result.return_value)
            return
        text = result.exc_string if result is not None else f"status {job.get_status()}"
        self._settle(key, error=PeerError(f"rq job {key} did not finish: {text}"))

    def _close(self, wait: bool) -> None:
        self._sender.close()
        self._poller.close()
