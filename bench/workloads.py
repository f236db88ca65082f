"""Workloads (a)-(d), run on an executor that is already started and warmed up.

Each returns a Measurement: the metric values of one repeat (keys as in ``bench.metrics``) and
the raw per-job numbers behind them.  Every wait has a timeout, so a stuck executor fails its
workload with TimeoutError instead of hanging the benchmark.  Workload (e), cold start, is timed
by the session itself (``bench.session``), around the executor's construction.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from bench import jobs

#: Longest wait for any one job or batch of jobs (seconds); the largest batch takes ~10 s.
TIMEOUT = 60.0


@dataclass(frozen=True)
class Sizes:
    """How much work each workload does."""

    noop_jobs: int
    latency_calls: int
    payload_jobs: int
    payload_bytes: int
    cpu_jobs: int
    cpu_job_seconds: float


FULL = Sizes(
    noop_jobs=2000,
    latency_calls=1000,
    payload_jobs=20,
    payload_bytes=10_000_000,
    cpu_jobs=40,
    cpu_job_seconds=0.25,
)
QUICK = Sizes(
    noop_jobs=200,
    latency_calls=50,
    payload_jobs=4,
    payload_bytes=10_000_000,
    cpu_jobs=8,
    cpu_job_seconds=0.1,
)


@dataclass(frozen=True)
class Plan:
    """Everything a workload needs besides the executor."""

    sizes: Sizes
    workers: int
    spin_loops: int
    spin_seconds: float


@dataclass
class Measurement:
    """Metric values of one run of a workload, and the raw per-job numbers behind them."""

    values: dict[str, float] = field(default_factory=dict)
    raw: dict[str, list[float]] = field(default_factory=dict)


def calibrate(seconds: float) -> tuple[int, float]:
    """Loop count for a ``jobs.spin`` of about ``seconds`` here, and its measured duration."""
    loops = 100_000
    while (took := jobs.spin(loops)) < 0.05:
        loops *= 2
    loops = max(1, round(loops * seconds / took))
    return loops, statistics.median(jobs.spin(loops) for _ in range(3))


def result(future: Future[Any]) -> Any:
    """The future's result, or a TimeoutError that says so past TIMEOUT."""
    try:
        return future.result(timeout=TIMEOUT)
    except FutureTimeout:
        raise TimeoutError(f"no result after {TIMEOUT:g}s") from None


def results(futures: Iterable[Future[Any]]) -> list[Any]:
    """Wait for every future (TimeoutError past TIMEOUT); their results, or the first error."""
    futures = list(futures)
    _, not_done = wait(futures, timeout=TIMEOUT)
    if not_done:
        finished = len(futures) - len(not_done)
        raise TimeoutError(
            f"{len(not_done)} of {len(futures)} jobs unfinished after {TIMEOUT:g}s"
            f" ({finished} finished: {finished / TIMEOUT:.3g}/s)"
        )
    return [future.result() for future in futures]


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(f"wrong results: {what}")


def warm_up(executor: Executor, plan: Plan) -> Measurement:
    """A few jobs of each kind, so workers are up and every function is known to them."""
    batch = 4 * plan.workers
    futures = [executor.submit(jobs.noop, i) for i in range(batch)]
    futures += [executor.submit(jobs.payload_len, b"x") for _ in range(plan.workers)]
    futures += [executor.submit(jobs.spin, 1000) for _ in range(plan.workers)]
    results(futures)
    _expect(
        list(executor.map(jobs.noop, range(batch), timeout=TIMEOUT)) == list(range(batch)),
        "warm-up map",
    )
    return Measurement()


def noop_throughput(executor: Executor, plan: Plan) -> Measurement:
    """(a) jobs/s of no-op jobs, one ``submit`` each, then through ``map`` with its defaults."""
    count = plan.sizes.noop_jobs
    start = time.perf_counter()
    results(executor.submit(jobs.noop) for _ in range(count))
    submit_s = time.perf_counter() - start
    start = time.perf_counter()
    mapped = list(executor.map(jobs.noop, range(count), timeout=TIMEOUT))
    map_s = time.perf_counter() - start
    _expect(mapped == list(range(count)), "map of no-op jobs")
    return Measurement({"submit_jobs_s": count / submit_s, "map_jobs_s": count / map_s})


def latency(executor: Executor, plan: Plan) -> Measurement:
    """(b) milliseconds of sequential ``submit(noop).result()`` round trips: p50 and p99."""
    samples = []
    for _ in range(plan.sizes.latency_calls):
        start = time.perf_counter()
        result(executor.submit(jobs.noop))
        samples.append((time.perf_counter() - start) * 1000)
    p99 = statistics.quantiles(samples, n=100, method="inclusive")[98]
    return Measurement(
        {"latency_p50_ms": statistics.median(samples), "latency_p99_ms": p99},
        {"latency_ms": samples},
    )


def payload(executor: Executor, plan: Plan) -> Measurement:
    """(c) MB/s of large arguments: concurrent jobs each taking ``payload_bytes`` of bytes."""
    count, size = plan.sizes.payload_jobs, plan.sizes.payload_bytes
    data = os.urandom(size)
    start = time.perf_counter()
    lengths = results(executor.submit(jobs.payload_len, data) for _ in range(count))
    elapsed = time.perf_counter() - start
    _expect(lengths == [size] * count, "payload lengths")
    return Measurement({"payload_mb_s": count * size / 1e6 / elapsed})


def cpu_efficiency(executor: Executor, plan: Plan) -> Measurement:
    """(d) share of the workers' capacity spent on the work: (sum of the jobs' CPU seconds,
    measured inside each job) / (wall time x workers); 1.0 is perfect.

    The sum is measured in the jobs, not taken as jobs x one job's time in the parent, because
    a shared machine's processor speed drifts by tens of percent from minute to minute; that
    parent-based figure is kept in the JSON as ``cpu_efficiency_parent``.
    """
    count = plan.sizes.cpu_jobs
    start = time.perf_counter()
    inside = results(executor.submit(jobs.spin, plan.spin_loops) for _ in range(count))
    capacity = (time.perf_counter() - start) * plan.workers
    values = {
        "cpu_efficiency": sum(inside) / capacity,
        "cpu_efficiency_parent": count * plan.spin_seconds / capacity,
    }
    return Measurement(values, {"cpu_job_s": inside})


#: Workload letter -> measurement, in run order; "e" is the session's own start (cold start).
WORKLOADS: dict[str, Callable[[Executor, Plan], Measurement]] = {
    "a": noop_throughput,
    "b": latency,
    "c": payload,
    "d": cpu_efficiency,
}
COLD_START = "e"
ALL = (*WORKLOADS, COLD_START)
