"""Every long-running command stops cleanly on SIGINT and SIGTERM: no traceback, the documented
exit code, and nothing left running (the leak check)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from rdispy.server import free_port
from tests.conftest import ROOT
from tests.helpers import DEADLINE, wait_until

pytestmark = pytest.mark.integration


def _has_children(count: int) -> Callable[[subprocess.Popen[str]], bool]:
    def ready(proc: subprocess.Popen[str]) -> bool:
        try:
            return len(psutil.Process(proc.pid).children()) >= count
        except psutil.NoSuchProcess:
            return False

    return ready


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("command", ["worker", "scheduler", "server", "submit", "relay"])
def test_long_running_commands_stop_cleanly(command, sig, redis_url, cluster, tmp_path: Path):
    marker = tmp_path / "started"
    script = tmp_path / "forever.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\nsleep 300\n")
    script.chmod(0o755)
    args, ready, expected = {
        "worker": (
            ["--redis", redis_url, "--cluster", cluster, "--cpus", "1"],
            _has_children(1),
            0,
        ),
        "scheduler": (
            ["--redis", redis_url, "--cluster", cluster],
            lambda _: True,
            0,
        ),
        "server": (["--port", str(free_port())], _has_children(1), 0),
        "submit": (["--cpus", "1", str(script)], lambda _: marker.exists(), 128 + sig),
        "relay": (
            [
                "--redis",
                redis_url,
                "--cluster",
                cluster,
                "--listen",
                f"127.0.0.1:{free_port()}",
                "--discovery-port",
                "0",
            ],
            lambda _: True,
            0,
        ),  # fmt: skip
    }[command]
    env = {k: v for k, v in os.environ.items() if k != "RDISPY_REDIS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rdispy", command, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: ready(proc) or proc.poll() is not None, f"{command} to start")
        assert proc.poll() is None, proc.communicate()
        if command == "scheduler":
            assert proc.stderr is not None
            assert "scheduler for cluster" in proc.stderr.readline()
        if command == "relay":
            assert proc.stderr is not None
            assert "listening on" in proc.stderr.readline()
        if command == "server":
            assert proc.stdout is not None
            assert "listening on" in proc.stdout.readline()
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == expected, stdout + stderr
    assert "Traceback" not in stderr
