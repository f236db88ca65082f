"""Every example runs as a user would run it, and prints what it should."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(path: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "RDISPY_REDIS"}
    result = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_quickstart():
    out = run(EXAMPLES / "quickstart.py")
    assert "[1, 1, 4, 27, 256, 3125, 46656, 823543, 16777216, 387420489]" in out
    assert "12 squared is 144" in out and "17984 primes below 200,000" in out
    assert "remote error re-raised here: ValueError(math domain error)" in out


def test_dispy_tutorial():
    out = run(EXAMPLES / "dispy" / "tutorial.py")
    lines = re.findall(r"executed job (\d+) at [\d.]+ with ([\d.]+)", out)
    assert sorted(int(i) for i, _ in lines) == list(range(10))
    assert "Total job time" in out and "speedup" in out


def test_dispy_callbacks():
    assert "sum of squares below 20: 2470" in run(EXAMPLES / "dispy" / "callbacks.py")


def test_dispy_setup_globals():
    out = run(EXAMPLES / "dispy" / "setup_globals.py")
    assert f"total: {sum(range(1000))}" in out


def test_dispy_provisional():
    out = run(EXAMPLES / "dispy" / "provisional.py")
    for job in (1, 2):
        assert out.count(f"job {job} provisional result") == 3
        assert f"job {job} final result {job * 3}" in out


def test_dispy_program_with_files():
    out = run(EXAMPLES / "dispy" / "program_with_files.py")
    assert "step 1: exit 0, sum 5050" in out
    assert "step 2: exit 0, sum 2500" in out
    assert "step 10: exit 0, sum 460" in out


def test_dispy_submit_node():
    out = run(EXAMPLES / "dispy" / "submit_node.py")
    assert re.search(r"node local-\d+ ran job 0 on host", out)
