"""rdispy.Executor: a concurrent.futures.Executor whose jobs run on a Redis-streams cluster.

Data flow::

    Executor.submit / map
        |  pickle (cloudpickle), size check, sign          -- caller's thread
        v
    Dispatcher outbox --pipelined XADD--> <cluster>:jobs (stream)
                                              |  consumer group "consumers": each entry to
                                              v  exactly one free consumer
                                  consumer process (one per core, on any node)
                                              |  run, capture stdout/stderr
                                              v  publish + XACK atomically (Lua)
                                  <cluster>:results:<client> (stream)
                                              |  XREAD, listener thread
                                              v
                                  RemoteFuture.set_result / set_exception

With no URL the executor owns an embedded default (a private server and a local node, see
``local_cluster``); with a URL it joins a running cluster of `rdispy worker` nodes.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Future
from concurrent.futures import Executor as _StdExecutor
from typing import Any, Literal

from rdispy import defaults, serialization
from rdispy.client.dispatcher import Dispatcher
from rdispy.client.future import RemoteFuture
from rdispy.client.local_cluster import LocalCluster
from rdispy.keys import Keys
from rdispy.progress import Progress
from rdispy.worker.node import live_nodes

log = logging.getLogger(__name__)


class Executor(_StdExecutor):
    """Run callables on the cores of this machine or of a cluster.

    Args:
        redis_url: a running cluster's Redis (``redis://``, ``rediss://``, ``unix://``); None
            starts the embedded default: a private server and ``max_workers`` local consumers.
        max_workers: consumers of the embedded default (default: the number of cores).
        cluster: cluster name; clients and nodes of one cluster share its queue.
        secret: shared secret; every job and result is then HMAC-signed and checked.
        max_retries: re-runs of a job whose consumer or node died while running it.
        max_payload: largest pickled arguments of one job, in bytes.
        client_id: reattach as this (crashed) client to collect its jobs (``recover_jobs``).
        keep_results: keep results in Redis after they are read (until their TTL), so that a
            client reattaching with this one's ``client_id`` gets every result again, not only
            those this one had not read (large payloads then go through Redis).
        dest_path: folder for files that jobs send with ``rdispy.send_file``.
        monitor: serve the web monitor of the cluster from this process while the executor is
            open: True on port 8181 of loopback, a port number (0: any free port) on that port
            (see ``monitor_url``).
    """

    def __init__(
        self,
        redis_url: str | None = None,
        max_workers: int | None = None,
        *,
        cluster: str = defaults.CLUSTER,
        prefix: str = defaults.KEY_PREFIX,
        secret: str | None = None,
        max_retries: int = defaults.MAX_RETRIES,
        max_payload: int = defaults.MAX_PAYLOAD,
        connect_timeout: float = 10.0,
        client_id: str | None = None,
        keep_results: bool = False,
        dest_path: str | os.PathLike[str] | None = None,
        monitor: bool | int | None = None,
    ) -> None:
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        keys = Keys(cluster, prefix)
        self._local: LocalCluster | None = None
        if redis_url is None:
            self._local = LocalCluster(max_workers or os.cpu_count() or 1, keys, secret)
            redis_url = self._local.url
        try:
            self._dispatcher = Dispatcher(
                redis_url,
                keys,
                secret,
                max_payload,
                max_retries,
                connect_timeout,
                alive=self._local.alive if self._local is not None else None,
                client_id=client_id,
                dest_path=dest_path,
                keep_results=keep_results,
            )
            self._monitor = _start_monitor(monitor, redis_url, keys, secret)
        except BaseException:
            if getattr(self, "_dispatcher", None) is not None:
                self._dispatcher.close()
            if self._local is not None:
                self._local.close(drain=False)
            raise
        self._shutdown = False
        self._cores_cache: tuple[float, int] = (0.0, 0)

    @property
    def url(self) -> str:
        """The Redis URL of the cluster (the private socket for the embedded default)."""
        return self._dispatcher.url

    @property
    def monitor_url(self) -> str | None:
        """The web monitor's address when started with ``monitor=``."""
        return self._monitor.url if self._monitor is not None else None

    @property
    def client_id(self) -> str:
        return self._dispatcher.client_id

    @property
    def dropped_updates(self) -> int:
        """Provisional results nodes dropped because this client left too many results unread
        (``RDISPY_MAX_EVENTS`` on the nodes, default 10,000); final results are never dropped.
        Checked about once a second."""
        return self._dispatcher.dropped_events

    def recover_jobs(self) -> list[RemoteFuture]:
        """With ``client_id=`` of a client that crashed: futures of its jobs that it had not
        collected, in submission order (results still waiting, jobs queued or running)."""
        return list(self._dispatcher.recovered)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> RemoteFuture:
        """Schedule ``fn(*args, **kwargs)``; pickling errors are raised here, before sending."""
        self._check_open()
        return self._dispatcher.submit(fn, [(args, kwargs)])[0]

    def map(  # type: ignore[override]
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: bool = False,
    ) -> Iterator[Any]:
        """Like ``concurrent.futures.Executor.map``; results in order, yielded as they come.

        ``chunksize=None`` batches calls automatically (about four jobs per core) so that short
        calls do not pay a round trip each; ``chunksize=1`` sends one job per call.
        ``buffersize`` (as in Python 3.14) bounds the chunks in flight and reads the input lazily.
        ``progress=True`` shows a bar on stderr counting calls as they complete (plain lines
        when stderr is not a terminal).
        """
        self._check_open()
        if buffersize is not None and buffersize < 1:
            raise ValueError("buffersize must be None or > 0")
        if chunksize is not None and chunksize < 1:
            raise ValueError("chunksize must be >= 1.")  # as ProcessPoolExecutor
        end = None if timeout is None else time.monotonic() + timeout
        calls: Iterator[Any] = ((args, {}) for args in zip(*iterables))  # noqa: B905 - map stops at the shortest
        if buffersize is None:
            items = list(calls)
            size = chunksize or self._auto_chunksize(len(items))
            bar = Progress(len(items), "map", unit="call") if progress else None
            chunks = [items[i : i + size] for i in range(0, len(items), size)]
            futures = self._submit_chunks(fn, chunks, bar)
            more: Iterator[list[Any]] | None = None
        else:
            bar = Progress(None, "map", unit="call") if progress else None
            size = chunksize or 1
            source = iter(calls)
            more = iter(lambda: list(itertools.islice(source, size)), [])
            futures = self._submit_chunks(fn, list(itertools.islice(more, buffersize)), bar)
        return self._results(fn, futures, more, end, bar)

    def _results(
        self,
        fn: Callable[..., Any],
        futures: list[RemoteFuture],
        more: Iterator[list[Any]] | None,
        end: float | None,
        bar: Progress | None = None,
    ) -> Iterator[Any]:
        pending = list(reversed(futures))
        try:
            while pending:
                future = pending.pop()
                if more is not None:
                    nxt = next(more, None)
                    if nxt is not None:
                        pending.insert(0, self._submit_chunks(fn, [nxt], bar)[0])
                remaining = None if end is None else end - time.monotonic()
                values, error = future.result(remaining)
                values.reverse()
                while values:  # popped as yielded: no reference to a value is kept here
                    yield values.pop()
                del values
                if error is not None:
                    raise serialization.load_exception(error, future.job_id)
        finally:
            for future in pending:
                future.cancel()
            if bar is not None:
                bar.close()

    def _submit_chunks(
        self, fn: Callable[..., Any], chunks: list[list[Any]], bar: Progress | None
    ) -> list[RemoteFuture]:
        """Send map chunks; with a bar, each chunk's calls count once its job completes."""
        futures = self._dispatcher.submit(fn, chunks, kind="chunk")
        if bar is not None:
            for future, chunk in zip(futures, chunks, strict=True):
                future.add_done_callback(functools.partial(_count_calls, bar, len(chunk)))
        return futures

    def _auto_chunksize(self, count: int) -> int:
        return max(1, math.ceil(count / (4 * self._cores())))

    def _cores(self) -> int:
        if self._local is not None:
            return self._local.cpus
        checked, cores = self._cores_cache
        if time.monotonic() - checked > 5.0:
            nodes = live_nodes(
                self._dispatcher.client, self._dispatcher.keys, self._dispatcher.signer
            )
            cores = sum(int(n.get("cpus", 0)) for n in nodes) or 1
            self._cores_cache = (time.monotonic(), cores)
        return cores

    def _check_open(self) -> None:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking jobs; with ``wait``, return once every job has finished and all is closed.

        With ``wait=False`` the embedded default is torn down at once: jobs not yet finished are
        cancelled where possible and their futures are left as they are.
        """
        if self._shutdown:
            return
        self._shutdown = True
        if cancel_futures or not wait:
            self._dispatcher.cancel_all()
        if wait:
            for future in self._dispatcher.pending():
                with contextlib.suppress(CancelledError):
                    future.exception()
        if self._monitor is not None:
            self._monitor.stop()
        self._dispatcher.close()
        if self._local is not None:
            self._local.close(drain=wait)

    def detach(self) -> None:
        """Close this client without touching its jobs: on a cluster they go on, and a client
        started with this one's ``client_id`` collects them (the embedded default, which this
        client owns, stops with it)."""
        if self._shutdown:
            return
        self._shutdown = True
        if self._monitor is not None:
            self._monitor.stop()
        self._dispatcher.close()
        if self._local is not None:
            self._local.close(drain=False)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        self.shutdown(wait=not interrupted, cancel_futures=interrupted)
        return False

    def __del__(self) -> None:
        if getattr(self, "_shutdown", True) is False and getattr(self, "_local", None) is not None:
            self._shutdown = True
            if self._monitor is not None:
                self._monitor.stop()
            self._dispatcher.close()
            assert self._local is not None
            self._local.close(drain=False)


def _count_calls(bar: Progress, calls: int, _: Future[Any]) -> None:
    bar.update(calls)


def _start_monitor(setting: bool | int | None, url: str, keys: Keys, secret: str | None) -> Any:
    """The in-process web monitor (imported only when asked for: aiohttp takes a while)."""
    if setting is None or setting is False:
        return None
    from rdispy.monitor.web import start_monitor

    return start_monitor(setting, url, keys.cluster, keys.prefix, secret)


__all__ = ["Executor", "Future", "RemoteFuture"]
