"""The ``dispy`` column: dispy's ``JobCluster`` with one ``dispynode.py`` on 127.0.0.1.

The factory starts ``dispynode.py --cpus N -i 127.0.0.1 -p PORT --daemon`` (dispy 4.15, on
pycos) as a subprocess on a free port pair (dispy's client listens on PORT, the node on
PORT + 1), waits for its "serving N cpus" line, and creates one ``dispy.JobCluster`` per
function on its first ``submit`` (nodes: ``NodeAllocate("127.0.0.1", PORT + 1)``; a
``job_status`` callback), as a dispy program has one cluster per computation (dispy's client
scheduler is one per process, shared by the clusters).  The node runs each job in a process
of its own, forked for the job.

dispy ships a computation as its source text, which the node compiles; the bench's job
functions carry annotations from ``typing`` that do not compile without their module, so the
computation is ``dispy_call``, which imports the function by name on the node (``bench.jobs``
is on the node's ``PYTHONPATH``, as for ProcessPool's and rdispy's workers) and calls it.
Each cluster's ``setup`` (``dispy_setup``) imports the function's module once on the node, the
way dispy's documentation suggests, so the forked job processes find it imported.  This also
keeps dispy off a race of its own: a node without a setup process starts each job from its
main process and then writes the job's pid, and a job that ends first (a no-op does, on a busy
machine) has its process record cleared under it and is reported terminated with
``AttributeError: 'NoneType' object has no attribute 'pid'``.

Each future is resolved by dispy's ``job_status`` callback when the job ends: its result, or a
``PeerError`` with dispy's traceback text.  (dispy 4.15 checks that callback with
``inspect.getargspec``, gone since Python 3.11; the adapter puts it back, built on
``getfullargspec``, before creating a cluster.)

dispy's node is known to stall under thousands of short jobs: the workloads' timeouts then
fail the workload; the session's shutdown without waiting then kills the node's process group
(its job processes included) before closing the clusters, in a helper thread with a time
limit, so a stuck dispy cannot hold the run.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.peer_daemons import Daemon, PeerError, PeerExecutor, peer_environment

#: Seconds for dispy to close the clusters at shutdown before it is left behind.
CLOSE_TIMEOUT = 10.0


def dispy_call(target: str, *args: object, **kwargs: object) -> object:
    """dispy's computation: import the function named ``target`` (``module.name``), call it.

    Its source runs on the node without this module, so it imports what it needs itself and
    its annotations are builtins."""
    import importlib

    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)(*args, **kwargs)


def dispy_setup(module: str) -> int:
    """dispy's ``setup``, run once per cluster on the node: import the jobs' module.

    Jobs are forked from the process that ran it, so they find the module imported.  The
    global it sets also makes the node fork jobs from that process ("setup process") rather
    than from its main one, whose job start races with a short job's end (see module doc)."""
    global dispy_preloaded
    import importlib

    dispy_preloaded = importlib.import_module(module)  # type: ignore[name-defined]
    return 0


def _restore_getargspec() -> None:
    """dispy 4.15 checks its callbacks with ``inspect.getargspec``, which Python 3.11 removed:
    put back the old function (built on ``getfullargspec``) where it is missing."""
    import collections
    import inspect

    if hasattr(inspect, "getargspec"):
        return
    ArgSpec = collections.namedtuple("ArgSpec", "args varargs keywords defaults")

    def getargspec(func: Callable[..., Any]) -> Any:
        full = inspect.getfullargspec(func)
        return ArgSpec(full.args, full.varargs, full.varkw, full.defaults)

    inspect.getargspec = getargspec  # type: ignore[attr-defined, assignment, unused-ignore]


def _free_pair() -> int:
    """A port P with P and P + 1 both free on 127.0.0.1 a moment ago."""
    for _ in range(100):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise PeerError("no two consecutive free ports for dispy")


class DispyExecutor(PeerExecutor):
    """dispy behind ``concurrent.futures``: see the module docstring."""

    #: Nothing to poll (dispy calls back); the watcher only checks the node is alive.
    POLL_TIMEOUT = 0.1

    def __init__(self, workers: int) -> None:
        import dispy  # type: ignore[import-not-found, import-untyped, unused-ignore]

        super().__init__("dispy")
        _restore_getargspec()
        self._dispy = dispy
        self._workers = workers
        self._port = _free_pair()
        self._clusters: dict[Callable[..., Any], Any] = {}
        self._names: dict[Callable[..., Any], str] = {}
        self._clusters_lock = threading.Lock()
        try:
            script = Path(sys.executable).with_name("dispynode.py")
            command = [sys.executable, str(script), "--cpus", str(workers), "-i", "127.0.0.1"]
            command += ["-p", str(self._port), "--daemon", "--dest_path_prefix", "{directory}"]
            node = Daemon("dispynode", command, peer_environment())
            self.daemons.append(node)
            node.wait_for_log(f"serving {workers} cpus", timeout=60)
            self._start_watcher()
        except BaseException:
            self._abandon()
            raise

    def _cluster(self, fn: Callable[..., Any]) -> Any:
        with self._clusters_lock:
            cluster = self._clusters.get(fn)
            if cluster is None:
                node = self._dispy.NodeAllocate(
                    "127.0.0.1", port=self._port + 1, setup_args=(fn.__module__,)
                )
                cluster = self._dispy.JobCluster(
                    dispy_call,
                    nodes=[node],
                    setup=dispy_setup,
                    host="127.0.0.1",
                    dispy_port=self._port,
                    job_status=self._status,
                    loglevel=logging.WARNING,
                )
                self._clusters[fn] = cluster
                self._names[fn] = f"{fn.__module__}.{fn.__qualname__}"
            return cluster

    def _send(
        self, key: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        cluster = self._cluster(fn)
        job = cluster.submit_job_id(key, self._names[fn], *args, **kwargs)
        if job is None:
            raise PeerError(f"dispy did not take job {key} (see its log above)")

    def _status(self, job: Any) -> None:
        """dispy's ``job_status`` callback, called in its scheduler thread."""
        dispy_job = self._dispy.DispyJob
        if job.status == dispy_job.Finished:
            self._settle(job.id, job.result)
        elif job.status in (dispy_job.Terminated, dispy_job.Cancelled, dispy_job.Abandoned):
            name = {
                dispy_job.Terminated: "terminated",
                dispy_job.Cancelled: "cancelled",
                dispy_job.Abandoned: "abandoned",
            }[job.status]
            self._settle(job.id, error=PeerError(f"dispy job {job.id} {name}: {job.exception}"))

    def _poll(self, timeout: float) -> None:
        time.sleep(timeout)

    def _close(self, wait: bool) -> None:
        clusters = list(self._clusters.values())
        if not clusters:
            return

        def close() -> None:
            for cluster in clusters:
                cluster.close(timeout=CLOSE_TIMEOUT if wait else 0, terminate=not wait)
            # the last cluster's shutdown ends dispy's client scheduler (its threads, its port)
            clusters[-1].shutdown()

        if not wait:  # the node may be stuck: end it first, so dispy's client fails fast
            for daemon in self.daemons:
                daemon.stop(timeout=0)
        closer = threading.Thread(target=close, name="dispy-close", daemon=True)
        closer.start()
        closer.join(CLOSE_TIMEOUT + 5)
