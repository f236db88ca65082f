"""``python -m bench --paired``: executors' latency side by side, all open, calls alternating.

The main table runs one executor's sessions after another's, so on a shared machine a burst of
someone else's load lands on one column and not the other, and ratios between columns of
one run move by tens of percent.  Here every selected executor is open at the same time
(idle ones block: they take no CPU) and each round makes one ``submit(noop).result()`` call on
each, in turn; the calls of one round see the same load.  The ratio of p50s is then that of the
paths themselves (client, wire and node), which is what ``COMPARISONS`` rows such as
JobCluster / rdispy ask about.  Every executor pays the same penalty for running right after
another (cold caches), so the figures are higher than the main table's and only the ratios
compare.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from concurrent.futures import Executor

from bench import jobs
from bench.executors import EXECUTORS, PEERS
from bench.workloads import result

WARM_UP = 100


def measure(names: list[str], workers: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each executor, ``rounds`` calls each, alternating."""
    factories = {**EXECUTORS, **PEERS}
    samples: dict[str, list[float]] = {name: [] for name in names}
    with contextlib.ExitStack() as stack:
        executors: dict[str, Executor] = {}
        for name in names:
            executors[name] = stack.enter_context(factories[name](workers))
        for _ in range(WARM_UP):
            for executor in executors.values():
                result(executor.submit(jobs.noop))
        for _ in range(rounds):
            for name, executor in executors.items():
                start = time.perf_counter()
                result(executor.submit(jobs.noop))
                samples[name].append(time.perf_counter() - start)
    return samples


def table(samples: dict[str, list[float]]) -> str:
    """p50/p90/p99 in ms per executor, and each one's p50 over the first column's."""
    names = list(samples)
    reference = statistics.median(samples[names[0]])
    lines = [f"{'executor':<16} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7}  p50 / {names[0]}"]
    for name in names:
        values = sorted(samples[name])
        p50 = statistics.median(values)
        p90 = values[int(len(values) * 0.9)]
        p99 = values[int(len(values) * 0.99)]
        lines.append(
            f"{name:<16} {p50 * 1e3:7.3f} {p90 * 1e3:7.3f} {p99 * 1e3:7.3f}  {p50 / reference:.3f}x"
        )
    return "\n".join(lines)


def main(names: list[str], workers: int, rounds: int) -> int:
    if len(names) < 2:
        print("--paired needs two executors or more (--executors A,B)", file=sys.stderr)
        return 2
    print(f"paired latency: {rounds} rounds, {workers} workers, columns {names}", file=sys.stderr)
    samples = measure(names, workers, rounds)
    print(f"\n{workers} workers, {rounds} alternating submit(noop).result() calls per executor")
    print(table(samples))
    return 0
