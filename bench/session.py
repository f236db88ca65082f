"""Sessions: one fresh executor per (repeat, executor), timed from construction to shutdown.

A session constructs the executor and waits for a first trivial result (cold start, workload e),
warms it up, runs the selected workloads (a)-(d) in order, and shuts it down (timed too).  Only
one executor is alive at a time, so they never compete for the cores; the order of executors
alternates between repeats, so neither always runs first on a machine that drifts.

The first error ends a session: it is recorded with the step it happened in, and the executor
is shut down without waiting (it may be stuck), so one broken executor cannot hang the run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field

from bench import jobs
from bench.executors import EXECUTORS, PEERS, ExecutorFactory
from bench.workloads import COLD_START, WORKLOADS, Measurement, Plan, result, warm_up

Step = Callable[[Executor, Plan], Measurement]


@dataclass
class Sample:
    """What one session measured: metric values, raw per-job numbers, and errors by step."""

    executor: str
    repeat: int
    values: dict[str, float] = field(default_factory=dict)
    raw: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, measurement: Measurement) -> None:
        self.values.update(measurement.values)
        self.raw.update(measurement.raw)


def _steps(selected: set[str]) -> Iterator[tuple[str, Step]]:
    chosen = [(key, measure) for key, measure in WORKLOADS.items() if key in selected]
    if chosen:
        yield "warm-up", warm_up
    yield from chosen


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


def run_session(
    name: str, factory: ExecutorFactory, plan: Plan, selected: set[str], repeat: int
) -> Sample:
    """Measure one fresh executor; errors are recorded in the sample, never raised."""
    sample = Sample(name, repeat)
    step = "start"
    start = time.perf_counter()
    try:
        executor = factory(plan.workers)
    except Exception as exc:
        sample.errors[step] = _describe(exc)
        return sample
    with executor:
        try:
            result(executor.submit(jobs.noop))
            if COLD_START in selected:
                sample.values["cold_start_s"] = time.perf_counter() - start
            for key, measure in _steps(selected):
                step = key
                sample.add(measure(executor, plan))
        except Exception as exc:
            sample.errors[step] = _describe(exc)
            executor.shutdown(wait=False, cancel_futures=True)
        closing = time.perf_counter()
    if COLD_START in selected and not sample.errors:
        sample.values["shutdown_s"] = time.perf_counter() - closing
    return sample


def _progress(sample: Sample, repeats: int) -> None:
    parts = [f"{key}={value:.4g}" for key, value in sample.values.items()]
    parts += [f"ERROR in {step}: {error}" for step, error in sample.errors.items()]
    line = f"[{sample.repeat + 1}/{repeats}] {sample.executor:<12} {', '.join(parts)}"
    print(line, file=sys.stderr, flush=True)


def run_all(names: list[str], plan: Plan, selected: set[str], repeats: int) -> list[Sample]:
    """Every session of the run, interleaved: each repeat runs each executor once."""
    samples = []
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else reversed(names):
            factory = EXECUTORS.get(name) or PEERS[name]
            sample = run_session(name, factory, plan, selected, repeat)
            _progress(sample, repeats)
            samples.append(sample)
    return samples
