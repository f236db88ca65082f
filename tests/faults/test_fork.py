"""After ``os.fork()`` no process gets another's results (issue 14, item 3): the child cannot
use its parent's executor (a clear ExecutorBroken, never a wait), a child that exits normally
leaves its parent's embedded server and node running, and a new Executor in the child works."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(sys.platform == "win32", reason="os.fork is POSIX only"),
]

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import os, sys, rdispy
    ex = rdispy.Executor(1)
    assert ex.submit(pow, 2, 2).result(30) == 4
    waiting = ex.submit(pow, 7, 2)
    pid = os.fork()
    if pid == 0:
        try:
            ex.submit(pow, 0, 2)
            print("child: submitted with the parent's executor")
        except rdispy.ExecutorBroken as exc:
            print("child: refused:", "forked" in str(exc))
        try:
            waiting.result(5)
            print("child: read the parent's result")
        except rdispy.ExecutorBroken:
            print("child: cannot wait for the parent's future")
        with rdispy.Executor(1) as own:
            print("child: own executor:", own.submit(pow, 3, 3).result(30))
        sys.exit(0)  # a normal exit: atexit hooks and finalizers run in the child
    _, status = os.waitpid(pid, 0)
    print("parent: child exited", os.waitstatus_to_exitcode(status))
    print("parent: waiting future:", waiting.result(30))
    print("parent: after the fork:", [ex.submit(pow, n, 2).result(30) for n in range(1, 6)])
    ex.shutdown()
    """
)


def test_a_forked_child_cannot_use_its_parents_executor_nor_end_it():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "child: refused: True" in lines
    assert "child: cannot wait for the parent's future" in lines
    assert "child: own executor: 27" in lines
    assert "parent: child exited 0" in lines
    assert "parent: waiting future: 49" in lines
    assert "parent: after the fork: [1, 4, 9, 16, 25]" in lines
