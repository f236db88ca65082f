"""The rows of the table: what each number is, its unit, and the target rdispy has to meet.

Ratios are always ``subject / baseline`` (rdispy / ProcessPool), whatever the direction of the
metric: above 1 is better for throughput and efficiency, below 1 is better for times.

``COMPARISONS`` add rows that set one column against another on one metric (e.g. JobCluster /
rdispy), with their own targets; their ratio is ``column / reference``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """A bound on the subject's value, or on its ratio to the baseline when ``relative``."""

    bound: float
    at_least: bool
    relative: bool

    def describe(self, unit: str, baseline: str) -> str:
        op = ">=" if self.at_least else "<="
        if self.relative:
            return f"{op} {self.bound:g}x {baseline}"
        return f"{op} {self.bound:g} {unit}".rstrip()

    def met(self, value: float | None, ratio: float | None) -> bool | None:
        """True or False; None when the number it needs was not measured."""
        measured = ratio if self.relative else value
        if measured is None:
            return None
        return measured >= self.bound if self.at_least else measured <= self.bound


@dataclass(frozen=True)
class Metric:
    """One row: ``key`` is the name workloads report the value under."""

    key: str
    workload: str
    label: str
    unit: str
    decimals: int
    target: Target | None = None


#: Table rows in order, with the targets set for rdispy in the issue.
METRICS: tuple[Metric, ...] = (
    Metric("submit_jobs_s", "a", "no-op submit", "jobs/s", 0, Target(1.0, True, True)),
    Metric("map_jobs_s", "a", "no-op map", "jobs/s", 0, Target(2.0, True, True)),
    Metric("latency_p50_ms", "b", "latency p50", "ms", 2, Target(2.0, False, True)),
    Metric("latency_p99_ms", "b", "latency p99", "ms", 2, Target(3.0, False, True)),
    Metric("payload_mb_s", "c", "payload", "MB/s", 0, Target(1.0, True, True)),
    Metric("cpu_efficiency", "d", "CPU efficiency", "", 3, Target(0.97, True, False)),
    Metric("cold_start_s", "e", "cold start", "s", 2, Target(0.5, False, False)),
    Metric("shutdown_s", "e", "shutdown", "s", 2),
)


@dataclass(frozen=True)
class Comparison:
    """An extra row: ``column``'s median over ``reference``'s, for the metric ``key``."""

    key: str
    column: str
    reference: str
    target: Target | None = None


#: The issue's target for the dispy API: JobCluster's throughput and latency within 20% of the
#: Executor's in the same run (one-sided: being faster is never a failure).  Map has no target:
#: JobCluster has no batching map, so the adapter sends one job per call.
COMPARISONS: tuple[Comparison, ...] = (
    Comparison("submit_jobs_s", "JobCluster", "rdispy", Target(0.8, True, True)),
    Comparison("map_jobs_s", "JobCluster", "rdispy"),
    Comparison("latency_p50_ms", "JobCluster", "rdispy", Target(1.2, False, True)),
    Comparison("latency_p99_ms", "JobCluster", "rdispy"),
    # the cost of signing: the same executor with a secret set, over the one without
    Comparison("submit_jobs_s", "rdispy-signed", "rdispy"),
    Comparison("map_jobs_s", "rdispy-signed", "rdispy"),
    Comparison("latency_p50_ms", "rdispy-signed", "rdispy"),
    Comparison("payload_mb_s", "rdispy-signed", "rdispy"),
    # payloads through Redis, as between hosts (same-host handoff off): an absolute target
    Comparison("payload_mb_s", "rdispy-redis", "ProcessPool", Target(250, True, False)),
)
