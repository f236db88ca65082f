"""The executors under comparison: a registry of factories, one per table column.

A factory takes the number of workers and returns a fresh ``concurrent.futures.Executor`` (used as
a context manager, so leaving the ``with`` block shuts it down and ends its processes).  To add a
column -- a JobCluster adapter, or a peer such as Dask or loky -- register one more factory; import
the peer's package inside the factory, so the benchmark runs where it is not installed as long as
its column is not selected (``--executors``).

``SUBJECT`` is the executor the targets apply to; ``BASELINE`` is what ratios are taken against.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor

# imported here, not in the factory, so that cold start does not count importing the package
from rdispy.client.executor import Executor as RdispyExecutor

ExecutorFactory = Callable[[int], Executor]


def rdispy_embedded(workers: int) -> Executor:
    """rdispy with no URL: a private valkey server and ``workers`` local consumer processes."""
    return RdispyExecutor(max_workers=workers)


def process_pool(workers: int) -> Executor:
    """The standard library's process pool, default start method and arguments."""
    return ProcessPoolExecutor(max_workers=workers)


SUBJECT = "rdispy"
BASELINE = "ProcessPool"

#: Column name -> factory, in table order.
EXECUTORS: dict[str, ExecutorFactory] = {
    SUBJECT: rdispy_embedded,
    BASELINE: process_pool,
}
