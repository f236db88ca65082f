"""An append-only ledger of job executions outside rdispy's keys: one line per execution,
``<tag> <pid> <node>``.  The one ledger of the test suite: jobs call ``note`` (or ``record``,
``gated``); tests read it with ``rows``, ``tags``, ``nodes``, ``executions`` and ``wait_rows``."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

from rdispy import job_context as context


def note(ledger: str, tag: object) -> None:
    """In a job: note its execution (tag, pid, node: ``-`` outside a job run by rdispy, as on
    a standard executor); ``tag`` has no spaces."""
    job = context.current_or_none()
    with open(ledger, "a") as f:
        f.write(f"{tag} {os.getpid()} {job.node if job is not None else '-'}\n")


def record(ledger: str, tag: object, seconds: float = 0.0) -> object:
    """A job: note the execution (tag, pid), sleep, return the tag."""
    note(ledger, tag)
    time.sleep(seconds)
    return tag


def gated(ledger: str, tag: str, gate: str) -> str:
    """A job: note the execution, wait until the file ``gate`` exists (60 s at most), return
    the tag."""
    note(ledger, tag)
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    return tag


def rows(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return [
        (tag, int(pid)) for tag, pid, *_ in (line.split() for line in path.read_text().splitlines())
    ]


def nodes(path: Path) -> list[tuple[str, str]]:
    """(tag, node) of each execution noted, in order."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [(tag, node) for tag, _, node in (line.split() for line in lines)]


def tags(path: Path) -> list[str]:
    """The tags noted, in order."""
    return [tag for tag, _ in rows(path)]


def executions(path: Path) -> Counter[str]:
    return Counter(tag for tag, _ in rows(path))


def wait_rows(path: Path, count: int, timeout: float = 20.0) -> list[tuple[str, int]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = rows(path)
        if len(found) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"ledger has only {rows(path)}")
