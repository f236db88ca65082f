"""README's table of exit codes, over every command: 2 for usage and setup errors (bad options,
no Redis URL, Redis unreachable), 1 for failures (an unknown job), 0 for success."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from rdispy.cli import COMMANDS
from tests.conftest import ROOT
from tests.helpers import executor

pytestmark = pytest.mark.integration

UNREACHABLE = "redis://127.0.0.1:1"
#: how each command is told to give up on an unreachable Redis (the others wait, see README)
GIVE_UP = {
    "worker": ["--connect-timeout", "0.5"],
    "relay": ["--connect-timeout", "0.5"],
    "submit": ["--connect-timeout", "0.5", sys.executable],
    "status": [],
}


def rdispy(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    environment = dict(os.environ, RDISPY_REDIS="", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "rdispy", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=environment,
    )


def test_readme_has_one_table_of_exit_codes():
    text = (ROOT / "README.md").read_text()
    assert text.count("| exit code |") == 1
    table = text[text.index("| exit code |") :].split("\n\n", 1)[0]
    assert {int(code) for code in re.findall(r"^\| `(\d+)`", table, re.M)} >= {0, 1, 2}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_exits_2_on_a_usage_error(command):
    done = rdispy(command, "--no-such-option")
    assert done.returncode == 2, done.stderr
    assert rdispy(command, "--help").returncode == 0


@pytest.mark.parametrize("command", ["worker", "scheduler", "relay", "status", "monitor"])
def test_every_command_exits_2_without_a_redis_url(command):
    done = rdispy(command)  # (submit without one runs on the embedded default)
    assert done.returncode == 2 and "no Redis URL" in done.stderr, done.stderr


@pytest.mark.parametrize("command", sorted(GIVE_UP))
def test_every_command_exits_2_when_redis_is_unreachable(command):
    done = rdispy(command, "--redis", UNREACHABLE, *GIVE_UP[command])
    assert done.returncode == 2, done.stderr
    assert "cannot reach Redis" in done.stderr and "Traceback" not in done.stderr
    job = rdispy("status", "--redis", UNREACHABLE, "--job", "x")
    assert job.returncode == 2 and "cannot reach Redis" in job.stderr


def test_status_of_an_unknown_job_exits_1_and_of_a_known_one_0(redis_url, cluster, start_worker):
    start_worker(redis_url, 1, "alpha")
    with executor(redis_url, cluster=cluster) as ex:
        future = ex.submit(abs, -3)
        assert future.result(30) == 3
        args = ["status", "--redis", redis_url, "--cluster", cluster, "--job"]
        known = rdispy(*args, future.job_id)
        assert known.returncode == 0, known.stderr
        unknown = rdispy(*args, "no-such-job")
        assert unknown.returncode == 1 and "unknown" in unknown.stderr
        as_json = rdispy(*args, "no-such-job", "--json")
        assert as_json.returncode == 1 and '"state": "unknown"' in as_json.stdout
        assert rdispy("status", "--redis", redis_url, "--cluster", cluster).returncode == 0
