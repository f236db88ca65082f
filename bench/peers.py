"""``python -m bench --peers``: the same workloads on peer libraries, from a separate virtualenv.

Peers are never dependencies of rdispy: they are installed on demand into their own virtualenv
(``$RDISPY_BENCH_PEERS`` or ``~/.cache/rdispy-bench-peers``), together with rdispy itself in
editable mode, and the benchmark runs again inside it with the peers' columns added to
rdispy's and ProcessPool's.  A peer that does not install (no wheel for this Python, no network)
is left out and said so.  Columns (factories in this module, registered in
``bench.executors.PEERS``):

    loky    loky.ProcessPoolExecutor(max_workers=N)   (joblib's process pool)
    dask    distributed.Client(LocalCluster(N workers x 1 thread, processes)).get_executor()
    ray     ray.init(num_cpus=N); ray.remote(fn).remote(...).future()
    celery  a private valkey broker and result backend; ``celery worker --pool prefork -c N
            -O fair`` (default prefetch); one task running a cloudpickled callable
            (``bench.peer_celery``)
    rq      a private valkey server; N ``rq worker`` processes (the default Worker, a fork
            per job); ``Queue.enqueue`` (``bench.peer_rq``)
    dispy   ``dispynode.py --cpus N`` on 127.0.0.1; ``dispy.JobCluster`` per function, futures
            from its ``job_status`` callback (``bench.peer_dispy``)

Celery, RQ and dispy need daemons (broker, workers, node): their factories start them, so cold
start (workload e) includes them, and shutdown ends them, process groups and all
(``bench.peer_daemons``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Column -> the pip requirement that brings it.
REQUIREMENTS = {
    "loky": "loky",
    "dask": "distributed",
    "ray": "ray",
    "celery": "celery[redis]",
    "rq": "rq",
    "dispy": "dispy",
}
#: Column -> the module whose import says the requirement is installed (default: the column).
MODULES = {"dask": "distributed"}


def venv_dir() -> Path:
    default = Path.home() / ".cache" / "rdispy-bench-peers"
    return Path(os.environ.get("RDISPY_BENCH_PEERS", default))


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv() -> tuple[Path, list[str]]:
    """The peers' virtualenv (created on first use) and the columns whose package installed."""
    venv = venv_dir()
    python = _python(venv)
    if not python.exists():
        print(f"creating {venv}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    probe = [str(python), "-c", "import rdispy"]
    if subprocess.run(probe, capture_output=True).returncode != 0:
        subprocess.run([*pip, "-e", str(ROOT)], check=True)
    installed = []
    for column, requirement in REQUIREMENTS.items():
        module = MODULES.get(column, column)
        probe = [str(python), "-c", f"import {module}"]
        if subprocess.run(probe, capture_output=True).returncode != 0:
            print(f"installing {requirement} into {venv}", file=sys.stderr)
            if subprocess.run([*pip, requirement]).returncode != 0:
                print(f"{requirement} did not install: column {column} left out", file=sys.stderr)
                continue
        installed.append(column)
    return venv, installed


def main(argv: list[str]) -> int:
    """Re-run the benchmark inside the peers' virtualenv with the peer columns added."""
    venv, columns = ensure_venv()
    args = [a for a in argv if a != "--peers"]
    if "--executors" in args:
        i = args.index("--executors")
        chosen = args[i + 1]
        del args[i : i + 2]
    else:
        chosen = "rdispy,ProcessPool"
    chosen = ",".join([chosen, *columns])
    command = [str(_python(venv)), "-m", "bench", "--executors", chosen, *args]
    print(" ".join(command), file=sys.stderr)
    return subprocess.run(command, cwd=ROOT).returncode


# -- the peers' executors (imported inside each factory) -------------------------------------


def loky_pool(workers: int) -> Executor:
    import loky

    executor: Executor = loky.ProcessPoolExecutor(max_workers=workers)
    return executor


class DaskExecutor(Executor):
    """A dask.distributed local cluster (one single-threaded worker process per core) seen
    through its own ``concurrent.futures`` executor; shutdown closes client and cluster."""

    def __init__(self, workers: int) -> None:
        from distributed import Client, LocalCluster

        self._cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        self._client = Client(self._cluster)
        self._executor = self._client.get_executor(pure=False)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self._executor.submit(fn, *args, **kwargs)

    def map(  # type: ignore[override]
        self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None
    ) -> Iterator[Any]:
        return self._executor.map(fn, *iterables, timeout=timeout)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait)
        self._client.close()
        self._cluster.close()


def dask_executor(workers: int) -> Executor:
    return DaskExecutor(workers)


class RayExecutor(Executor):
    """Ray on this machine (``ray.init(num_cpus=N)``): each call a remote task, its Future from
    ``ObjectRef.future()``; ``map`` is submit per call (Ray has no batching executor map)."""

    def __init__(self, workers: int) -> None:
        import ray

        self._ray = ray
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        self._remote: dict[Callable[..., Any], Any] = {}

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self._ray.remote(fn)
        future: Future[Any] = remote.remote(*args, **kwargs).future()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._ray.shutdown()


def ray_executor(workers: int) -> Executor:
    return RayExecutor(workers)


def celery_executor(workers: int) -> Executor:
    from bench.peer_celery import CeleryExecutor

    return CeleryExecutor(workers)


def rq_executor(workers: int) -> Executor:
    from bench.peer_rq import RQExecutor

    return RQExecutor(workers)


def dispy_executor(workers: int) -> Executor:
    from bench.peer_dispy import DispyExecutor

    return DispyExecutor(workers)
