"""`rdispy submit` as a user runs it: a subprocess against `rdispy worker` nodes and on the
embedded default, with files, several runs, failures, --out folders and --timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT
from tests.helpers import DEADLINE, wait_until

pytestmark = pytest.mark.integration

PROGRAM = textwrap.dedent("""\
    import os, sys
    code, name = int(sys.argv[1]), sys.argv[2]
    print("data", open("data.txt").read().strip(), "args", sys.argv[1:])
    print("note for", name, file=sys.stderr)
    os.makedirs("out", exist_ok=True)
    with open(os.path.join("out", name + ".txt"), "w") as f:
        f.write("made by " + name)
    sys.exit(code)
""")


@pytest.fixture
def program(tmp_path: Path) -> Path:
    (tmp_path / "data.txt").write_text("42\n")
    path = tmp_path / "prog.py"
    path.write_text(PROGRAM)
    return path


def submit(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RDISPY_REDIS"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "rdispy", "submit", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def blocks(stdout: str) -> list[str]:
    """The header lines of the runs, in printed order."""
    return [line for line in stdout.splitlines() if line.startswith("== run ")]


def test_submit_runs_each_args_on_the_nodes_with_files_and_reports_a_failure(
    redis_url, cluster, start_worker, program, tmp_path
):
    start_worker(redis_url, 1, "node-a")
    start_worker(redis_url, 1, "node-b")
    out = tmp_path / "results"
    done = submit(
        "--redis", redis_url, "--cluster", cluster, "-f", "data.txt",
        "-a", "0 alpha", "-a", "0 'two words'", "-a", "5 gamma", "--out", str(out), "prog.py",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    heads = blocks(done.stdout)
    assert [h.split(":")[0] for h in heads] == ["== run 1/3", "== run 2/3", "== run 3/3"]
    assert "prog.py 0 'two words'" in heads[1] and "exit code 5" in heads[2]
    assert all(" | node node-a | " in h or " | node node-b | " in h for h in heads)
    assert "data 42 args ['0', 'two words']" in done.stdout
    assert "-- stderr of run 3:\nnote for gamma" in done.stdout
    assert done.stdout.splitlines()[-1] == "3 runs: 2 ok, 1 failed"
    assert "prog.py: 3/3 runs (100%) done" in done.stderr  # plain lines: stderr is no terminal
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["run-1", "run-2", "run-3"]
    run2, run3 = out / "run-2", out / "run-3"
    assert (run2 / "files" / "out" / "two words.txt").read_text() == "made by two words"
    assert (run2 / "exit_code").read_text() == "0\n"
    assert (run2 / "stdout").read_text().startswith("data 42")
    assert (run3 / "exit_code").read_text() == "5\n"
    assert (run3 / "status").read_text().splitlines() == ["failed", "exit code 5"]
    assert (run3 / "stderr").read_text() == "note for gamma\n"
    assert not (run3 / "files" / "data.txt").exists()  # dependencies are not sent back
    assert '"node": "node-' in (run3 / "run.json").read_text()


def test_submit_without_args_runs_once_on_the_chosen_node(
    redis_url, cluster, start_worker, tmp_path
):
    start_worker(redis_url, 1, "node-a")
    start_worker(redis_url, 1, "node-b")
    script = tmp_path / "hello.sh"
    script.write_text('#!/bin/sh\necho "hello $# args"\n')
    script.chmod(0o755)
    done = submit(
        "--redis", redis_url, "--cluster", cluster, "--nodes", "node-b", str(script),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert blocks(done.stdout) == [
        line for line in done.stdout.splitlines() if line.startswith("== run 1/1: hello.sh")
    ]
    assert " | node node-b | exit code 0" in done.stdout and "hello 0 args" in done.stdout
    assert done.stdout.splitlines()[-1] == "1 run: 1 ok, 0 failed"


def test_submit_timeout_kills_the_program_and_all_it_started(
    redis_url, cluster, start_worker, tmp_path
):
    start_worker(redis_url, 2, "node-a")
    pid_file = tmp_path / "child.pid"
    script = tmp_path / "slow.sh"
    script.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        if [ "$1" = quick ]; then echo quick; exit 0; fi
        sleep 300 &
        echo $! > {pid_file}
        wait
    """)
    )
    script.chmod(0o755)
    started = time.monotonic()
    done = submit(
        "--redis", redis_url, "--cluster", cluster, "--timeout", "1",
        "-a", "slow", "-a", "quick", str(script),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    heads = blocks(done.stdout)
    assert "timed out: ran past its timeout of 1s on node node-a" in heads[0]
    assert "exit code 0" in heads[1]
    assert done.stdout.splitlines()[-1] == "2 runs: 1 ok, 1 failed"
    assert time.monotonic() - started < DEADLINE
    child = int(pid_file.read_text())
    wait_until(
        lambda: not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie",
        "the program's child to be killed",
    )


def test_submit_on_the_embedded_default(program, tmp_path):
    out = tmp_path / "out"
    done = submit(
        "--cpus", "2", "-f", "data.txt", "-a", "0 one", "-a", "0 two", "-a", "0 three",
        "--out", str(out), "prog.py",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    heads = blocks(done.stdout)
    assert [h.split(":")[0] for h in heads] == ["== run 1/3", "== run 2/3", "== run 3/3"]
    assert all(" | node local-" in h and "exit code 0" in h for h in heads)
    assert done.stdout.splitlines()[-1] == "3 runs: 3 ok, 0 failed"
    for n, name in enumerate(["one", "two", "three"], 1):
        assert (out / f"run-{n}" / "files" / "out" / f"{name}.txt").read_text() == f"made by {name}"


def test_submit_stops_cleanly_on_sigterm(tmp_path):
    marker = tmp_path / "started"
    script = tmp_path / "forever.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\nsleep 300\n")
    script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "RDISPY_REDIS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rdispy", "submit", "--cpus", "1", "-a", "1", "-a", "2",
         str(script)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(marker.exists, "the first run to start")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, stdout + stderr
    assert "interrupted (SIGTERM)" in stderr and "Traceback" not in stderr
    assert stdout.splitlines()[-1] == "2 runs: 0 ok, 0 failed, 2 not finished"


def test_created_files_over_the_result_limit_are_named_not_sent(
    redis_url, cluster, start_worker, tmp_path
):
    start_worker(redis_url, 1, "node-a", "--max-result", "20000")
    script = tmp_path / "make.sh"
    script.write_text(
        "#!/bin/sh\necho small > small.txt\nhead -c 50000 /dev/zero > big.bin\necho made\n"
    )
    script.chmod(0o755)
    out = tmp_path / "out"
    done = submit(
        "--redis", redis_url, "--cluster", cluster, "--out", str(out), str(script), cwd=tmp_path
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "-- files created: small.txt" in done.stdout
    assert "-- not returned (over the result size limit): big.bin (50,000 bytes)" in done.stdout
    assert (out / "run-1" / "files" / "small.txt").read_text() == "small\n"
    assert not (out / "run-1" / "files" / "big.bin").exists()
    assert '"size": 50000' in (out / "run-1" / "run.json").read_text()
