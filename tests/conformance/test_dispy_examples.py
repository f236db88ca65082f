"""dispy's own examples (its 4.15.2 sdist, fetched at test time) run on rdispy unchanged but for
``import rdispy as dispy``, shorter sleeps and fewer jobs (see ``dispy_examples``); each one's
output is checked for what the example prints when it works under dispy."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conformance import dispy_examples

pytestmark = pytest.mark.integration

_folder, _why = dispy_examples.fetch()


@pytest.fixture(scope="module")
def examples() -> Path:
    if _folder is None:
        pytest.skip(f"dispy's examples not available: {_why}")
    return _folder


def _prepared(examples: Path, name: str, tmp_path: Path, *others: str) -> Path:
    for source in examples.glob("*.py"):  # examples read their siblings as data files
        shutil.copy(source, tmp_path)
    for other in others:
        dispy_examples.prepare(examples / other, tmp_path)
    return dispy_examples.prepare(examples / name, tmp_path)


def _table_jobs(out: str) -> int:
    """Jobs counted in print_status's table."""
    return sum(int(m) for m in re.findall(r"\|\s+\d+\s+\|\s+(\d+)\s+\|", out))


def _sample(out: str) -> None:
    lines = re.findall(r"^\S+ \(127\.0\.0\.1\) executed job (\d+) at [\d.]+ with \d+$", out, re.M)
    assert sorted(map(int, lines)) == list(range(1, 11))


def _delegate(out: str) -> None:
    funcs = re.findall(r"^\S+: (func[12]) executed job (\d+) at", out, re.M)
    assert funcs == [("func1", "1"), ("func2", "2"), ("func1", "3"), ("func2", "4")]


def _provisional(out: str) -> None:
    assert re.search(r"^best value from \S+: [\d.e-]+$", out, re.M)  # provisional results came


def _hashes(expected: int) -> Callable[[str], None]:
    def check(out: str) -> None:
        assert re.search(r'^Node 127\.0\.0\.1 \(\S+\) processes "', out, re.M)
        found = re.findall(r'^127\.0\.0\.1: "\S+" \w+: [0-9a-f]+$', out, re.M)
        assert len(found) == expected, out

    return check


def _replace_inmem(out: str) -> None:
    assert len(re.findall(r'^Node 127\.0\.0\.1 \(\S+\) processes "', out, re.M)) == 2
    finished = re.findall(r"^job (\d+) finished by 127\.0\.0\.1, \w+ of (\S+) is ", out, re.M)
    assert sorted(int(j) for j, _ in finished) == list(range(1, 13))
    files = [f for j, f in sorted(finished, key=lambda x: int(x[0]))]
    assert len(set(files[:6])) == 1 and len(set(files[6:])) == 1 and files[0] != files[6]
    assert "failed" not in out


def _shvars(out: str) -> None:
    assert len(re.findall(r"^\d+: \d+$", out, re.M)) == 10


def _obj_instances(out: str) -> None:
    pairs = re.findall(r"^(\d+): ([\d.]+) / (\d+): ([\d.]+)$", out, re.M)
    assert len(pairs) == 10 and all(a == c and b == d for a, b, c, d in pairs)


def _bounded(out: str) -> None:
    assert _table_jobs(out) == 60


def _node_update(out: str) -> None:
    assert re.search(r"^Node 127\.0\.0\.1 with \d+ CPUs available$", out, re.M)
    assert re.search(r"^Node 127\.0\.0\.1 finished with \S", out, re.M)  # stdout was bytes


CHECKS: dict[str, tuple[Callable[[str], None], tuple[str, ...]]] = {
    "sample.py": (_sample, ()),
    "delegate.py": (_delegate, ()),
    "provisional_results.py": (_provisional, ()),
    "node_setup.py": (_hashes(10), ()),
    "replace_inmem.py": (_replace_inmem, ()),
    "node_shvars.py": (_shvars, ()),
    "obj_instances.py": (_obj_instances, ()),
    "bounded_submit.py": (_bounded, ()),
    "node_update.py": (_node_update, ("node_update_script.py",)),
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_dispy_example_runs_unchanged(examples, tmp_path, name):
    check, others = CHECKS[name]
    script = _prepared(examples, name, tmp_path, *others)
    run = dispy_examples.run(script, timeout=120)
    assert run.returncode == 0, str(run)
    try:
        check(run.stdout)
    except AssertionError as exc:
        raise AssertionError(f"{name}: unexpected output ({exc})\n{run}") from None


def test_dispy_httpd_example_is_served_by_the_monitor(examples, tmp_path):
    """httpd_example.py's DispyHTTPServer(cluster) serves rdispy's monitor on dispy's port
    8181 while its jobs run, and shutdown() ends it."""
    script = _prepared(examples, "httpd_example.py", tmp_path)
    proc = dispy_examples.start(script)
    state = None
    try:
        deadline = time.monotonic() + 60
        while state is None and proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen("http://127.0.0.1:8181/api/nodes", timeout=2) as r:
                    state = json.load(r)
            except OSError:
                time.sleep(0.1)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            dispy_examples.stop(proc)
    assert proc.returncode == 0, err[-3000:]
    assert state is not None, f"the monitor never answered on port 8181\n{err[-3000:]}"
    assert state, "the monitor showed no node"


def test_dispy_job_scheduler_example_driven_through_stdin(examples, tmp_path):
    """job_scheduler.py: cluster_status submits one job per data file (data000, data001, ...),
    each with the file as its own dependency, one at a time per node; "quit" on stdin ends it."""
    script = _prepared(examples, "job_scheduler.py", tmp_path)
    digests = {}
    for i in range(4):
        data = os.urandom(200_000 + i)
        (tmp_path / f"data{i:03d}").write_bytes(data)
        digests[f"data{i:03d}"] = hashlib.sha1(data).hexdigest()
    console = dispy_examples.Console(script)
    try:
        console.wait_for(r"^node 127\.0\.0\.1 with \d+ CPUs available$")
        console.wait_for(r"^sha1sum for data003: ")
        console.type("quit")
        run = console.finish()
    finally:
        dispy_examples.stop(console.proc)
    assert run.returncode == 0, str(run)
    found = dict(re.findall(r"^sha1sum for (data\d{3}): ([0-9a-f]+)$", run.stdout, re.M))
    assert found == digests, str(run)
    assert _table_jobs(run.stdout) == 4, str(run)


@pytest.mark.parametrize("how", ["quit", "ctrl-c"])
def test_dispy_longrun_example_cancels_running_jobs(examples, tmp_path, how):
    """longrun.py: its NodeAllocate's allocate() is asked for the node, jobs run until the user
    quits ("quit" on stdin, or Ctrl-C), then cluster.cancel() stops each running job: a
    KeyboardInterrupt in the job (as dispynode raises), whose handler runs, and the job ends
    cancelled, not finished."""
    script = _prepared(examples, "longrun.py", tmp_path)
    text = script.read_text()
    marker = "        except KeyboardInterrupt:  # job being terminated\n"
    assert marker in text
    # the one addition: the job leaves a mark when it starts and when its handler runs, so that
    # the test quits once the jobs run and sees the handlers ran
    mark = f"open({str(tmp_path)!r} + '/%s-%d' % ({{}}, os.getpid()), 'w')"
    script.write_text(
        text.replace(marker, marker + "            " + mark.format("'interrupted'") + "\n").replace(
            "    import time, random\n",
            "    import time, random, os\n    " + mark.format("'started'") + "\n",
            1,
        )
    )
    console = dispy_examples.Console(script)
    try:
        console.wait_for(r"^Allocate node for compute: 127\.0\.0\.1 / \S+ / \d+$")
        console.wait_for(r"node 127\.0\.0\.1 initialized with \d+ cpus$")
        cpus = int(re.findall(r"initialized with (\d+) cpus", console.output)[0])
        deadline = time.monotonic() + 30
        while len(list(tmp_path.glob("started-*"))) < min(cpus, 2):  # the jobs run
            assert time.monotonic() < deadline, "the jobs did not start"
            time.sleep(0.05)
        if how == "quit":
            console.type("quit")
        else:
            console.interrupt()
        run = console.finish()
    finally:
        dispy_examples.stop(console.proc)
    assert run.returncode == 0, str(run)
    # (after the input prompt, which ends without a newline)
    assert re.search(r"best estimate: 0$", run.stdout, re.M), str(run)  # none Finished
    marks = list(tmp_path.glob("interrupted-*"))
    assert len(marks) == min(cpus, 2), f"{marks}\n{run}"


def test_dispy_sshportfw_example_is_skipped_with_its_reason(examples):
    assert (examples / "sshportfw.py").exists()
    pytest.skip(
        "sshportfw.py reaches a node at 54.172.166.83 through an ssh port forward: it needs "
        "that host on the internet; rdispy's way to nodes beyond a firewall is the relay "
        "(tests/cluster/test_compose_cluster.py)"
    )


#: dispy's coroutine library, which dispy_cmd.py imports only to set its logger's level.
_PYCOS = "import logging\n\nlogger = logging.getLogger('pycos')\n"

_PROGRAM = """#!/bin/sh
echo "hello $1 from $(cat data.txt)"
[ -n "$2" ] && echo "warning $2" >&2
exit ${3:-0}
"""


def test_dispy_command_line_and_ours_report_jobs_in_the_same_words(examples, tmp_path):
    """dispy's own dispy_cmd.py, run on rdispy, and `rdispy dispy` / `rdispy submit
    --dispy-output` print the same lines for the same jobs (output as bytes, dispy's
    "argumens" typo included)."""
    script = dispy_examples.prepare(examples.parent / "dispy_cmd.py", tmp_path)
    (tmp_path / "pycos.py").write_text(_PYCOS)
    program = tmp_path / "prog.sh"
    program.write_text(_PROGRAM)
    program.chmod(0o755)
    (tmp_path / "data.txt").write_text("a file")
    runs = ["one", "two oops", "three oops 3"]
    options = [x for r in runs for x in ("-a", r)] + ["-f", "data.txt", "prog.sh"]
    theirs = dispy_examples.run(script, *options, timeout=60)
    assert theirs.returncode == 0, str(theirs)
    env = dispy_examples.environment()
    ours = {}
    for name, command in {
        "rdispy dispy": ["dispy", *options],
        "rdispy submit --dispy-output": ["submit", "--dispy-output", *options],
    }.items():
        done = subprocess.run(
            [sys.executable, "-m", "rdispy", *command],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        ours[name] = done.stdout
    expected = [
        'Job 1 with arguments "one" produced output: "b\'hello one from a file\\n\'"',
        'Job 2 with arguments "two oops" produced output: "b\'hello two from a file\\n\'"',
        'Job 2 with argumens "two oops" produced error messages: "b\'warning oops\\n\'"',
        'Job 3 with arguments "three oops 3" exited with: "3"',
        'Job 3 with arguments "three oops 3" produced output: "b\'hello three from a file\\n\'"',
        'Job 3 with argumens "three oops 3" produced error messages: "b\'warning oops\\n\'"',
    ]

    def job_lines(out: str) -> list[str]:
        return [line for line in out.splitlines() if line.startswith("Job ")]

    assert job_lines(theirs.stdout) == expected, str(theirs)
    for name, out in ours.items():
        assert job_lines(out) == expected, f"{name}:\n{out}"
