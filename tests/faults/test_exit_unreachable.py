"""A process whose cluster went away still exits (issue 14): at interpreter exit the jobs left
pending are waited for only while Redis answers; once it has been unreachable for
``DRAIN_UNREACHABLE_GRACE`` the client gives up on them with a warning and closes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

CLIENT = textwrap.dedent(
    """
    import sys, rdispy
    ex = rdispy.Executor(sys.argv[1], cluster=sys.argv[2])
    never_runs = ex.submit(pow, 2, 2)  # no node: it stays pending
    if sys.argv[3] == "no-wait":
        ex.shutdown(wait=False)
    print("submitted", flush=True)
    sys.stdin.readline()  # the test stops the server, then lets this process exit
    """
)


@pytest.mark.parametrize("how", ["never-shut-down", "no-wait"])
def test_exit_gives_up_on_pending_jobs_once_redis_is_gone(private_server, cluster, how):
    srv = private_server()
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT, srv.url, cluster, how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, RDISPY_DRAIN_UNREACHABLE_GRACE="2"),
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "submitted"
    srv.stop()
    started = time.monotonic()
    proc.stdin.write("\n")
    proc.stdin.flush()
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the client hung at exit with its Redis gone")
    assert proc.returncode == 0, err
    assert time.monotonic() - started < 30
    assert "closing without them" in err
