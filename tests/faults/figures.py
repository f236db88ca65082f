"""Figures of fault tests for the closing note: each test appends one JSON line to
``test-artifacts/fault-figures.jsonl`` (git-ignored) and prints it (visible with ``-s``)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest

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
    caplog.set_level(logging.DEBUG, logger="rdispy.client.dispatcher")


def execution_spread(counts: Counter[str]) -> dict[str, int]:
    """How many jobs ran once, twice, ...: {"1": 97, "2": 3}."""
    return {str(k): v for k, v in sorted(Counter(counts.values()).items())}
