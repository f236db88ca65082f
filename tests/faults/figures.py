"""Figures of fault tests for the closing note: detection time, recovery time, executions per
job, jobs lost and duplicate results.  Each test appends one JSON line to
``test-artifacts/fault-figures.jsonl`` (git-ignored) and prints it (visible with ``-s``);
``python -m tests.faults.figures`` prints the collected lines as a markdown table.

Two ways to record: ``report(test, **figures)``, or the ``figures`` fixture (a ``Figures``: mark
``fault()``, ``detected()`` and ``recovered()`` as they happen, then ``outcome(...)``), with
``ResultCounter`` counting second results for a job at the client's listener.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from rdispy.client.results import EVENT_KINDS
from rdispy.keys import CONSUMER_GROUP, Keys

FILE = Path(__file__).resolve().parents[2] / "test-artifacts" / "fault-figures.jsonl"


def report(test: str, **figures: object) -> None:
    """Record ``figures`` (detection/recovery seconds, executions, lost, duplicates, ...)."""
    row = {
        "test": test,
        **{k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()},
    }
    FILE.parent.mkdir(exist_ok=True)
    with FILE.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print("FIGURES", json.dumps(row))


def duplicate_results(caplog: pytest.LogCaptureFixture) -> int:
    """Results the client received for a job it had already resolved (and ignored)."""
    return sum("result for unknown or finished job" in r.getMessage() for r in caplog.records)


def watch_duplicates(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="rdispy.client.results")


def execution_spread(counts: Counter[str]) -> dict[str, int]:
    """How many jobs ran once, twice, ...: {"1": 97, "2": 3}."""
    return {str(k): v for k, v in sorted(Counter(counts.values()).items())}


@dataclass
class Figures:
    test: str
    fault_at: float | None = None
    detected_at: float | None = None
    recovered_at: float | None = None
    row: dict[str, Any] = field(default_factory=dict)

    def fault(self) -> None:
        self.fault_at = time.monotonic()

    def detected(self) -> None:
        if self.detected_at is None:
            self.detected_at = time.monotonic()

    def recovered(self) -> None:
        if self.recovered_at is None:
            self.recovered_at = time.monotonic()

    def _since_fault(self, when: float | None) -> float | None:
        if when is None or self.fault_at is None:
            return None
        return round(when - self.fault_at, 3)

    def outcome(
        self,
        executions: Counter[str],
        jobs: Iterable[str],
        resolved: int,
        duplicates: int,
        **extra: Any,
    ) -> dict[str, Any]:
        """Record the run: ``executions`` per job tag (ledger rows), every job tag expected,
        how many futures resolved, and duplicate results seen (late entries in the result
        stream, second results for a job)."""
        expected = list(jobs)
        per_job = [executions.get(tag, 0) for tag in expected]
        self.row = {
            "test": self.test,
            "detection_s": self._since_fault(self.detected_at),
            "recovery_s": self._since_fault(self.recovered_at),
            "jobs": len(expected),
            "executions": sum(per_job),
            "max_executions_per_job": max(per_job, default=0),
            "jobs_lost": len(expected) - resolved,
            "duplicate_results": duplicates,
            **extra,
        }
        return self.row

    def write(self) -> None:
        if not self.row:
            return
        FILE.parent.mkdir(parents=True, exist_ok=True)
        with FILE.open("a") as f:
            f.write(json.dumps(self.row) + "\n")
        print(f"\nFIGURES {json.dumps(self.row)}")


class ResultCounter:
    """Counts the result entries (not progress events) a client's listener reads, per job id,
    before the client drops any second one: a duplicate result is a job id counted twice."""

    def __init__(self, owner: Any) -> None:
        reader = owner._dispatcher.reader  # of an Executor or a JobCluster
        self.counts: Counter[str] = Counter()
        original = reader._resolve

        def counting(fields: dict[bytes, bytes]) -> None:
            if fields.get(b"k") not in (*EVENT_KINDS, b"wake") and b"id" in fields:
                self.counts[fields[b"id"].decode(errors="replace")] += 1
            original(fields)

        reader._resolve = counting

    def duplicates(self, wait: float = 0.0) -> int:
        """Second (or later) results seen, after waiting ``wait`` seconds for late ones."""
        time.sleep(wait)
        return sum(n - 1 for n in self.counts.values() if n > 1)


def pending_total(r: redis.Redis, keys: Keys, *nodes: str) -> int:
    """XPENDING total over the shared job stream and the given nodes' own streams."""
    total = 0
    for stream in (keys.jobs, *(keys.node_jobs(n) for n in nodes)):
        try:
            info: Any = r.xpending(stream, CONSUMER_GROUP)
        except redis.ResponseError:
            continue
        total += int(info["pending"])
    return total


def table(path: Path = FILE) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    columns = [
        "test",
        "detection_s",
        "recovery_s",
        "jobs",
        "executions",
        "max_executions_per_job",
        "jobs_lost",
        "duplicate_results",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1]) if len(sys.argv) > 1 else FILE))
