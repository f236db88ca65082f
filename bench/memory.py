"""``python -m bench --memory [--memory-jobs N]``: memory per queued job and per pending future.

Starts a private server with no workers, submits N no-op jobs through ``rdispy.Executor`` (they
stay queued), and reads the server's ``INFO memory`` and the client's resident memory before and
after.  Reports bytes of Redis memory per queued job (``used_memory``, the allocator's view of
the data set: the stream entries and everything else the jobs add) and bytes of client memory
per pending future (resident set growth: the futures, the entries kept for a resend, the
dispatcher's maps), and what 1,000,000 queued jobs would take, extrapolated linearly from N
when N is smaller (said so in the output).  Guarantees stay on: the same entries as in a
normal run (retries, client id, the handoff folder field), signed when ``--memory-secret``.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import redis

from bench import jobs
from rdispy.client.executor import Executor
from rdispy.keys import Keys
from rdispy.server import EmbeddedServer

MILLION = 1_000_000


def _used_memory(client: redis.Redis) -> int:
    info: Any = client.info("memory")
    return int(info["used_memory"])


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs not queued after {timeout:g}s")
        time.sleep(0.02)


def measure(count: int, secret: str | None = None) -> dict[str, float]:
    """Queue ``count`` no-op jobs with no consumer; memory figures (bytes)."""
    with EmbeddedServer() as server:
        client = redis.Redis.from_url(server.url)
        executor = Executor(server.url, cluster="memory", secret=secret)
        # the stream, group and function blob exist before the baseline
        executor.submit(jobs.noop)
        stream = Keys("memory").jobs
        queued = lambda: int(client.xlen(stream))  # noqa: E731
        _wait_for(lambda: queued() >= 1)
        gc.collect()
        redis_before, rss_before = _used_memory(client), _rss()
        start = time.perf_counter()
        batch = 10_000
        futures = []
        for done in range(0, count, batch):
            futures += [executor.submit(jobs.noop) for _ in range(min(batch, count - done))]
        _wait_for(lambda: queued() >= count + 1, 60 + count / 1000)
        elapsed = time.perf_counter() - start
        gc.collect()
        redis_after, rss_after = _used_memory(client), _rss()
        info: Any = client.info("memory")
        dispatcher = executor._dispatcher
        dispatcher._futures.clear()  # no cancelling a million jobs one by one: the server goes
        dispatcher._sent.clear()
        executor.shutdown(wait=False)
        client.close()
        server.kill()
    return {
        "jobs": count,
        "queue_s": elapsed,
        "redis_bytes_per_job": (redis_after - redis_before) / count,
        "client_bytes_per_future": (rss_after - rss_before) / count,
        "redis_used_memory": redis_after,
        "redis_used_memory_rss": int(info["used_memory_rss"]),
        "futures_kept": len(futures),
    }


def report(result: dict[str, float]) -> str:
    count = int(result["jobs"])
    per_job = result["redis_bytes_per_job"]
    projected = per_job * MILLION / 2**20
    how = "measured" if count >= MILLION else f"extrapolated from {count:,} jobs"
    lines = [
        f"{count:,} queued no-op jobs, no workers (queued in {result['queue_s']:.1f}s)",
        f"  Redis memory per queued job     {per_job:8.0f} B   (INFO used_memory growth)",
        f"  client memory per pending future {result['client_bytes_per_future']:7.0f} B   "
        "(resident set growth)",
        f"  Redis used_memory now           {result['redis_used_memory'] / 2**20:8.1f} MiB "
        f"(rss {result['redis_used_memory_rss'] / 2**20:.1f} MiB)",
        f"  1,000,000 queued jobs           {projected:8.1f} MiB  ({how}; target <= 1024 MiB: "
        f"{'pass' if projected <= 1024 else 'FAIL'})",
    ]
    return "\n".join(lines)


def main(count: int, secret: str | None) -> int:
    print(f"queueing {count:,} jobs...", file=sys.stderr)
    result = measure(count, secret)
    print(report(result))
    return 0
