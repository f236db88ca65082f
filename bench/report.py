"""Turn samples into the table on stdout and the JSON record in ``bench/results/``.

Every number in the table is the median over repeats of one executor's per-session values; the
ratio is the subject's median over the baseline's, except in comparison rows (``bench.metrics``
``COMPARISONS``, labelled ``column / reference``), which hold only that ratio and its verdict.
The JSON keeps every sample, raw per-job numbers included, next to the medians and a description
of the machine.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import statistics
import subprocess
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import rdispy
from bench.executors import BASELINE, SUBJECT
from bench.metrics import COMPARISONS, METRICS, Comparison, Metric
from bench.session import Sample

RESULTS_DIR = Path(__file__).resolve().parent / "results"
HEADERS = ("metric", "ratio", "target", "result")


@dataclass(frozen=True)
class Row:
    """One line of the table: medians by executor, ratio, and the target's verdict.

    A comparison row (``compare`` set) keeps the two medians it compares in ``values`` and shows
    only its ratio, ``compare.column / compare.reference``.
    """

    metric: Metric
    values: dict[str, float | None]
    ratio: float | None
    target: str
    verdict: str
    compare: Comparison | None = None


def medians(samples: list[Sample]) -> dict[str, dict[str, float]]:
    """Executor -> metric -> median of its values over the sessions that measured it."""
    collected: dict[str, dict[str, list[float]]] = {}
    for sample in samples:
        per_metric = collected.setdefault(sample.executor, {})
        for key, value in sample.values.items():
            per_metric.setdefault(key, []).append(value)
    return {
        name: {key: statistics.median(values) for key, values in per_metric.items()}
        for name, per_metric in collected.items()
    }


def _row(metric: Metric, names: list[str], stats: dict[str, dict[str, float]]) -> Row:
    values = {name: stats.get(name, {}).get(metric.key) for name in names}
    subject, baseline = values.get(SUBJECT), values.get(BASELINE)
    ratio = subject / baseline if subject is not None and baseline else None
    if metric.target is None:
        return Row(metric, values, ratio, "", "")
    met = metric.target.met(subject, ratio)
    verdict = "n/a" if met is None else "pass" if met else "FAIL"
    return Row(metric, values, ratio, metric.target.describe(metric.unit, BASELINE), verdict)


def _comparison_row(
    metric: Metric, comparison: Comparison, stats: dict[str, dict[str, float]]
) -> Row:
    names = (comparison.column, comparison.reference)
    values = {name: stats.get(name, {}).get(metric.key) for name in names}
    column, reference = (values[name] for name in names)
    ratio = column / reference if column is not None and reference else None
    if comparison.target is None:
        return Row(metric, values, ratio, "", "", comparison)
    met = comparison.target.met(column, ratio)
    verdict = "n/a" if met is None else "pass" if met else "FAIL"
    target = comparison.target.describe(metric.unit, comparison.reference)
    return Row(metric, values, ratio, target, verdict, comparison)


def build_rows(
    names: list[str], selected: set[str], stats: dict[str, dict[str, float]]
) -> list[Row]:
    """One row per metric of the selected workloads, in table order, each followed by its
    comparison rows whose two columns were both run; ``stats`` as medians()."""
    rows = []
    for metric in METRICS:
        if metric.workload not in selected:
            continue
        rows.append(_row(metric, names, stats))
        rows += [
            _comparison_row(metric, comparison, stats)
            for comparison in COMPARISONS
            if comparison.key == metric.key
            and comparison.column in names
            and comparison.reference in names
        ]
    return rows


def _cells(row: Row, names: list[str]) -> list[str]:
    ratio = "" if row.ratio is None else f"{row.ratio:.2f}x"
    if row.compare is not None:
        label = f"({row.metric.workload}) {row.metric.label}: "
        label += f"{row.compare.column} / {row.compare.reference}"
        return [label, *([""] * len(names)), ratio, row.target, row.verdict]
    unit = f" [{row.metric.unit}]" if row.metric.unit else ""
    label = f"({row.metric.workload}) {row.metric.label}{unit}"
    values = [
        "error" if value is None else f"{value:.{row.metric.decimals}f}"
        for value in row.values.values()
    ]
    return [label, *values, ratio, row.target, row.verdict]


def table(rows: list[Row], names: list[str]) -> str:
    """The aligned text table: labels left-aligned, numbers right-aligned."""
    header = [HEADERS[0], *names, *HEADERS[1:]]
    lines = [header, *(_cells(row, names) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    numeric = range(1, len(names) + 2)

    def fmt(line: list[str]) -> str:
        cells = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([fmt(header), rule, *(fmt(line) for line in lines[1:])])


def errors(samples: list[Sample]) -> list[str]:
    """One line per failed session: which executor, repeat and step, and the error."""
    return [
        f"error: {sample.executor}, repeat {sample.repeat + 1}, {step}: {error}"
        for sample in samples
        for step, error in sample.errors.items()
    ]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=RESULTS_DIR.parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def machine() -> dict[str, Any]:
    """What the numbers depend on: cores, interpreter, platform, load."""
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": platform.node(),
        "start_method": multiprocessing.get_start_method(),
        "rdispy": rdispy.__version__,
        "git": _git_commit(),
    }


def document(
    started: datetime,
    config: dict[str, Any],
    samples: list[Sample],
    stats: dict[str, dict[str, float]],
    rows: list[Row],
) -> dict[str, Any]:
    """The JSON record of a run."""
    return {
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "config": config,
        "subject": SUBJECT,
        "baseline": BASELINE,
        "medians": stats,
        "rows": [
            {
                "metric": row.metric.key,
                "compare": (
                    None if row.compare is None else f"{row.compare.column}/{row.compare.reference}"
                ),
                "unit": row.metric.unit,
                "values": row.values,
                "ratio": row.ratio,
                "target": row.target,
                "verdict": row.verdict,
            }
            for row in rows
        ],
        "samples": [asdict(sample) for sample in samples],
    }


def write(doc: dict[str, Any], started: datetime, extra: Path | None) -> list[Path]:
    """Write the record as results/bench-<timestamp>.json, results/latest.json and ``extra``."""
    RESULTS_DIR.mkdir(exist_ok=True)
    paths = [RESULTS_DIR / f"bench-{started:%Y%m%dT%H%M%SZ}.json", RESULTS_DIR / "latest.json"]
    if extra is not None:
        paths.append(extra)
    text = json.dumps(doc, indent=1) + "\n"
    for path in paths:
        path.write_text(text)
    return paths
