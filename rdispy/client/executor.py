"""rdispy.Executor: a concurrent.futures.Executor whose jobs run on a Redis-streams cluster.

Data flow::

    Executor.submit / map
        |  pickle (cloudpickle), size check, sign          -- caller's thread
        v
    Dispatcher outbox --pipelined XADD (caller or sender thread)--> <cluster>:jobs (stream)
                                              |  consumer group "consumers": each entry to
                                              v  exactly one free consumer
                                  consumer process (one per core, on any node)
                                              |  run, capture stdout/stderr
                                              v  publish + XACK atomically (Lua)
                                  <cluster>:results:<client> (stream)
                                              |  XREAD by the caller waiting in result(), or
                                              v  else by the results thread (see ``reader``)
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
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor as _StdExecutor
from concurrent.futures import Future
from typing import Any, Literal

from rdispy import defaults, serialization
from rdispy.client import chunks, closing
from rdispy.client.dispatcher import Dispatcher
from rdispy.client.future import RemoteFuture
from rdispy.client.local_cluster import LocalCluster
from rdispy.errors import (
    ExecutorBroken,
    InitializerFailed,
    ProtocolError,
    also_as,
    broken_pool,
)
from rdispy.initializer import Initialized
from rdispy.keys import Keys
from rdispy.nodes import live_nodes
from rdispy.progress import Progress

log = logging.getLogger(__name__)
#: Where what the standard executors log goes (a child of their "concurrent.futures" logger).
_contract_log = logging.getLogger("concurrent.futures.rdispy")


class Executor(_StdExecutor):
    """Run callables on the cores of this machine or of a cluster.

    Args:
        redis_url: a running cluster's Redis (``redis://``, ``rediss://``, ``unix://``); None
            reads ``$RDISPY_REDIS``, and when that is unset or empty starts the embedded default:
            a private server and ``max_workers`` local consumers.
            A number here is ``max_workers`` (``Executor(4)``, as ``ProcessPoolExecutor(4)``).
        max_workers: consumers of the embedded default (default: the number of cores).
        cluster: cluster name; clients and nodes of one cluster share its queue.
        secret: shared secret; every job and result is then HMAC-signed and checked (None
            reads ``$RDISPY_SECRET``; the embedded default's node gets the same).
        max_retries: re-runs of a job whose consumer or node died while running it.
        max_payload: largest pickled arguments of one job, in bytes.
        connect_timeout: seconds to wait, retrying, for Redis to answer before raising
            BrokerError (default 10; one warning is logged if the first attempt fails); for the
            embedded default, also how long its node may take to start.
        client_id: reattach as this (crashed) client to collect its jobs (``recover_jobs``).
        keep_results: keep results in Redis after they are read (until their TTL), so that a
            client reattaching with this one's ``client_id`` gets every result again, not only
            those this one had not read (large payloads then go through Redis).
        dest_path: folder for files that jobs send with ``rdispy.send_file``.
        monitor: serve the web monitor of the cluster from this process while the executor is
            open: True on port 8181 of loopback, a port number (0: any free port) on that port
            (see ``monitor_url``).
        initializer: called as ``initializer(*initargs)`` in each consumer process before the
            first job of this executor it runs, as ProcessPoolExecutor's (see
            ``rdispy.initializer``); if it raises, the executor is broken: pending futures and
            later submits fail with BrokenProcessPool/BrokenExecutor.
        initargs: the initializer's arguments.
        echo_output: write what a job printed to this process's stdout and stderr when its
            result arrives, as ProcessPoolExecutor's workers write to the same terminal (it is
            in ``future.stdout``/``future.stderr`` either way).

    Shutting down follows the standard contract: ``shutdown(wait=False)`` returns at once and
    resources are freed once pending futures are done; at interpreter exit, jobs left pending
    still complete before the process exits (see ``rdispy.client.closing``).
    """

    def __init__(
        self,
        redis_url: str | int | None = None,
        max_workers: int | None = None,
        *,
        cluster: str = defaults.CLUSTER,
        prefix: str = defaults.KEY_PREFIX,
        secret: str | None = None,
        max_retries: int = defaults.MAX_RETRIES,
        max_payload: int = defaults.MAX_PAYLOAD,
        connect_timeout: float = defaults.WAIT_FOR_REDIS,
        client_id: str | None = None,
        keep_results: bool = False,
        dest_path: str | os.PathLike[str] | None = None,
        monitor: bool | int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        echo_output: bool = True,
    ) -> None:
        if isinstance(redis_url, int) and max_workers is None:  # Executor(4), as the stdlib's
            redis_url, max_workers = None, redis_url
        if redis_url is None:  # as every command, and as Dask and Ray read their address
            redis_url = os.environ.get(defaults.ENV_REDIS_URL) or None
        if secret is None:
            secret = os.environ.get(defaults.ENV_SECRET) or None
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        keys = Keys(cluster, prefix)
        self._local: LocalCluster | None = None
        if redis_url is None:
            self._local = LocalCluster(max_workers or os.cpu_count() or 1, keys, secret)
            redis_url = self._local.url
        url = str(redis_url)
        try:
            self._dispatcher = Dispatcher(
                url,
                keys,
                secret,
                max_payload,
                max_retries,
                connect_timeout,
                alive=self._local.alive if self._local is not None else None,
                client_id=client_id,
                dest_path=dest_path,
                keep_results=keep_results,
                echo_output=echo_output,
            )
            if self._local is not None:
                self._local.wait_serving(self._dispatcher.client, connect_timeout)
            self._monitor = _start_monitor(monitor, url, keys, secret)
        except BaseException:
            if getattr(self, "_dispatcher", None) is not None:
                self._dispatcher.close()
            if self._local is not None:
                self._local.close(drain=False)
            raise
        self._shutdown = False
        self._cores_cache: tuple[float, int] = (0.0, 0)
        #: Why the executor is broken (its initializer raised), as ProcessPoolExecutor's.
        self._broken: str | bool = False
        self._initializer = (initializer, tuple(initargs)) if initializer is not None else None
        self._wrapped: weakref.WeakKeyDictionary[Any, Initialized] = weakref.WeakKeyDictionary()
        self._parts = closing.Parts(self._dispatcher, self._local, self._monitor)
        closing.track(self, self._parts)

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
        """This client's id: pass it as ``client_id=`` (or to ``rdispy.recover``) to reattach
        after a crash and collect its jobs."""
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
        return chunks.per_call(list(self._dispatcher.recovered))

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> RemoteFuture:
        """Schedule ``fn(*args, **kwargs)``.  A function or argument that cannot be pickled, or
        a payload over ``max_payload``, fails the returned future at once (nothing is sent), as
        ProcessPoolExecutor reports a pickling error on the future."""
        self._check_open()
        if self._initializer is not None:
            fn = self._with_initializer(fn)
        try:
            future = self._dispatcher.submit(fn, [(args, kwargs)])[0]
        except ProtocolError as exc:
            future = RemoteFuture(exc.job_id or f"{self.client_id}-unsent", None)
            future.set_exception(exc)
            return future
        if self._initializer is not None:
            future.add_done_callback(self._check_initializer)
        return future

    def _with_initializer(self, fn: Callable[..., Any]) -> Any:
        """``fn`` wrapped to run the initializer first (one wrapper per function, so that it is
        pickled once; it holds the function weakly)."""
        assert self._initializer is not None
        try:
            wrapped = self._wrapped.get(fn)
        except TypeError:  # not weakly referable: wrapped anew each time
            wrapped = None
        if wrapped is None:
            init, initargs = self._initializer
            wrapped = Initialized(self.client_id, init, initargs, fn, weak=True)
            with contextlib.suppress(TypeError):
                self._wrapped[fn] = wrapped
        return wrapped

    def _check_initializer(self, future: Future[Any]) -> None:
        """Break the executor when a job failed because the initializer raised."""
        if future.cancelled() or self._broken:
            return
        error = future.exception()
        if isinstance(error, InitializerFailed):
            self._break(error)

    def _break(self, error: InitializerFailed) -> None:
        if self._broken:
            return
        self._broken = str(error)
        # the standard executors log this on their logger; code that watches it sees ours too
        _contract_log.critical("Exception in initializer:\n%s", error)
        broken = ExecutorBroken(
            "a consumer's initializer failed; the executor is broken and pending jobs were "
            f"withdrawn (create a new Executor): {error}"
        )
        self._dispatcher.broken = broken
        for pending in self._dispatcher.pending():
            self._dispatcher.cancel_remote(pending)
            if not pending.done():
                Future.set_exception(pending, also_as(ExecutorBroken, broken_pool())(str(broken)))

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
        if self._initializer is not None:
            fn = self._with_initializer(fn)
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
                    exc = serialization.load_exception(error, future.job_id)
                    if isinstance(exc, InitializerFailed):
                        self._break(exc)
                    raise exc
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
        if self._initializer is not None:
            for future in futures:
                future.add_done_callback(self._check_initializer)
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
        if self._broken:
            raise self._dispatcher.broken or ExecutorBroken(str(self._broken))
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if closing.exiting():
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking jobs; ``cancel_futures`` withdraws those no consumer has taken.

        With ``wait`` return once every pending job has finished and all is closed; without,
        return at once: pending jobs still run, and everything is closed once they are done
        (the interpreter waits for that at exit).
        """
        if self._shutdown:
            if wait:
                self._parts.join()
            return
        self._shutdown = True
        closing.untrack(self)
        if cancel_futures:
            self._dispatcher.cancel_all()
        if wait:
            self._parts.drain_and_close()
        else:
            self._parts.close_in_background()

    def detach(self) -> None:
        """Close this client without touching its jobs: on a cluster they go on, and a client
        started with this one's ``client_id`` collects them (the embedded default, which this
        client owns, stops with it)."""
        if self._shutdown:
            return
        self._shutdown = True
        closing.untrack(self)
        self._parts.close(drain=False)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        self.shutdown(wait=not interrupted, cancel_futures=interrupted)
        return False

    def __del__(self) -> None:
        # collected without shutdown: its pending jobs still complete, then all is closed
        if getattr(self, "_shutdown", True) is False:
            self._shutdown = True
            try:
                self._parts.close_in_background()
            except RuntimeError:  # no new threads now: close at once
                self._parts.close(drain=False)


def _count_calls(bar: Progress, calls: int, _: Future[Any]) -> None:
    bar.update(calls)


def _start_monitor(setting: bool | int | None, url: str, keys: Keys, secret: str | None) -> Any:
    """The in-process web monitor (imported only when asked for: aiohttp takes a while)."""
    if setting is None or setting is False:
        return None
    from rdispy.monitor.web import start_monitor

    return start_monitor(setting, url, keys.cluster, keys.prefix, secret)


__all__ = ["Executor", "Future", "RemoteFuture"]
