"""dispy's own examples (its 4.15.2 sdist, fetched at test time) run on rdispy unchanged but for
``import rdispy as dispy``, shorter sleeps and fewer jobs (see ``dispy_examples``); each one's
output is checked for what the example prints when it works under dispy."""

from __future__ import annotations

import json
import re
import shutil
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
