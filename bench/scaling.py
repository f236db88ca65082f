"""``python -m bench --scaling``: no-op throughput as consumers and client threads are added.

Two series, each point the median of ``repeat`` fresh executors, rdispy's Executor and
ProcessPoolExecutor side by side (alternating which goes first):

* consumers 1..W (W = ``--workers``): 2000 ``submit(noop)`` from one thread, then waiting;
* client threads 1..T (``--scaling-threads``) on W consumers: each thread submits its share of
  the 2000 jobs and waits for them.

On a machine with fewer cores than consumers plus client threads, the curve flattens at the
cores: that is the machine's limit, read it next to ProcessPool's.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor

from bench import jobs
from bench.workloads import results
from rdispy.client.executor import Executor as RdispyExecutor

JOBS = 2000
Factory = Callable[[int], Executor]
FACTORIES: dict[str, Factory] = {
    "rdispy": lambda n: RdispyExecutor(max_workers=n),
    "ProcessPool": lambda n: ProcessPoolExecutor(max_workers=n),
}


def _throughput(executor: Executor, threads: int) -> float:
    share = JOBS // threads
    errors: list[BaseException] = []

    def client() -> None:
        try:
            results(executor.submit(jobs.noop) for _ in range(share))
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    start = time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    if errors:
        raise errors[0]
    return share * threads / (time.perf_counter() - start)


def _point(name: str, consumers: int, threads: int) -> float:
    with FACTORIES[name](consumers) as executor:
        results(executor.submit(jobs.noop) for _ in range(100))  # started and warm
        return _throughput(executor, threads)


def main(workers: int, max_threads: int, repeat: int) -> int:
    points = [(c, 1) for c in range(1, workers + 1)]
    points += [(workers, t) for t in range(2, max_threads + 1)]
    rows = []
    for consumers, threads in points:
        samples: dict[str, list[float]] = {name: [] for name in FACTORIES}
        for r in range(repeat):
            order = list(FACTORIES) if r % 2 == 0 else list(reversed(FACTORIES))
            for name in order:
                samples[name].append(_point(name, consumers, threads))
        medians = {name: statistics.median(values) for name, values in samples.items()}
        rows.append((consumers, threads, medians))
        print(f"consumers={consumers} threads={threads} {medians}", file=sys.stderr)
    print(f"\nno-op submit throughput [jobs/s], median of {repeat}; ratio = rdispy / ProcessPool")
    print(f"{'consumers':>9}  {'threads':>7}  {'rdispy':>8}  {'ProcessPool':>11}  {'ratio':>6}")
    for consumers, threads, medians in rows:
        ratio = medians["rdispy"] / medians["ProcessPool"]
        print(
            f"{consumers:>9}  {threads:>7}  {medians['rdispy']:>8.0f}  "
            f"{medians['ProcessPool']:>11.0f}  {ratio:>5.2f}x"
        )
    return 0
