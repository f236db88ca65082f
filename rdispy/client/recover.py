"""``rdispy.recover``: reattach to the jobs of a client that crashed (dispy's ``recover_jobs``).

A client is known by its client id (``Executor.client_id``).  Reattaching with it adopts every
job the crashed process had not collected: results waiting in its stream, jobs still queued or
running; with ``keep_results=True`` on the crashed client, the results it had read too, while
they are within their TTL.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

from rdispy import defaults
from rdispy.client.executor import Executor
from rdispy.client.future import RemoteFuture


def recover(
    redis_url: str,
    client_id: str,
    *,
    cluster: str = defaults.CLUSTER,
    secret: str | None = None,
    timeout: float | None = None,
    terminate_pending: bool = False,
    **options: Any,
) -> list[RemoteFuture]:
    """Wait up to ``timeout`` seconds for the jobs of client ``client_id`` and return their
    futures in submission order.  Jobs not finished by then keep running (and can be recovered
    again), unless ``terminate_pending`` cancels the queued ones and stops the running ones."""
    ex = Executor(redis_url, cluster=cluster, secret=secret, client_id=client_id, **options)
    try:
        futures = ex.recover_jobs()
        concurrent.futures.wait(futures, timeout)
        unfinished = [f for f in futures if not f.done()]
        if terminate_pending:
            for future in unfinished:
                if not future.cancel():  # already running: stop its process on the node
                    ex._dispatcher.stop_running(future.job_id)
    finally:
        ex.detach()
    return futures
