"""The embedded default: a private server and local consumers that never outlive the client."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

pytestmark = pytest.mark.integration

CLIENT = textwrap.dedent("""
    import sys, time, rdispy
    ex = rdispy.Executor(max_workers=2)
    print(ex.submit(pow, 2, 5).result(30), flush=True)
    futures = [ex.submit(time.sleep, {seconds}) for _ in range(2)]
    print("ready", flush=True)
    sys.stdin.readline()  # the test has listed our processes
    {ending}
""")


def family(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def run_client(
    ending: str, seconds: float = 60
) -> tuple[subprocess.Popen[str], list[psutil.Process]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT.format(ending=ending, seconds=seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "32"
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    kids = family(proc.pid)
    names = " ".join(" ".join(k.cmdline()) for k in kids)
    assert "valkey-server" in names or "redis-server" in names
    assert len(kids) >= 4  # server, supervisor, two consumers
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return proc, kids


def assert_all_gone(kids: list[psutil.Process], timeout: float = 10.0) -> None:
    gone, alive = psutil.wait_procs(kids, timeout=timeout)
    assert not alive, f"outlived the client: {[' '.join(p.cmdline()) for p in alive]}"


@pytest.mark.parametrize("how", ["sigkill", "sigterm", "sigint", "exit"])
def test_no_process_outlives_the_client(how):
    endings = {
        "sigkill": "time.sleep(60)",
        "sigterm": "time.sleep(60)",
        "sigint": "time.sleep(60)",
        # interpreter exit with jobs still running: they complete first, as ProcessPoolExecutor's
        "exit": "sys.exit(0)",
    }
    proc, kids = run_client(endings[how], 3 if how == "exit" else 60)
    if how == "sigkill":
        proc.kill()
    elif how == "sigterm":
        proc.terminate()
    elif how == "sigint":
        proc.send_signal(signal.SIGINT)
    proc.wait(30)
    assert_all_gone(kids)


def test_shutdown_removes_server_and_workers():
    import os

    import rdispy

    before = {p.pid for p in family(os.getpid())}
    ex = rdispy.Executor(max_workers=2)
    assert ex.submit(abs, -1).result(30) == 1
    kids = [p for p in family(os.getpid()) if p.pid not in before]
    assert len(kids) == 4
    ex.shutdown()
    assert_all_gone(kids)
