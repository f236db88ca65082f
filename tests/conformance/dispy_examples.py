"""Adapter: dispy's own examples (``py3/examples`` of its sdist), run against rdispy.

The sdist is taken at test time from the package index (``pip download --no-deps
dispy==4.15.2``, cached under the user's cache folder) and nothing of it is copied here.  Each
example is written to a work folder with only these changes (``prepare``):
- ``import dispy`` becomes ``import rdispy as dispy`` (and ``import dispy.httpd`` becomes
  ``import rdispy.httpd``): the one change dispy's programs need;
- sleeps are shortened (``time.sleep(x)`` becomes ``time.sleep(SCALE * (x))``) and some loops
  run fewer jobs (``EDITS``), so that the suite takes seconds, not minutes.
Nothing else of the program changes; ``run`` starts it with ``python`` in that folder and gives
back what it printed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

VERSION = "4.15.2"
SDIST = f"dispy-{VERSION}.tar.gz"
ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rdispy-conformance"

#: Per example: (text to find, its replacement), applied once each, beyond imports and sleeps.
EDITS: dict[str, list[tuple[str, str]]] = {
    "bounded_submit.py": [
        ("range(1000)", "range(60)"),
        ("lower_bound, upper_bound = 50, 100", "lower_bound, upper_bound = 10, 20"),
    ],
    "provisional_results.py": [("random.randint(50,100)", "random.randint(20,40)")],
    "node_update.py": [("time.sleep(5)", "time.sleep(0.5)")],
    # dispy's command line (py3/dispy_cmd.py): its one import of dispy's names
    "dispy_cmd.py": [
        (
            "from dispy import logger, JobCluster, SharedJobCluster, _dispy_version",
            "from rdispy import logger, JobCluster, SharedJobCluster, "
            "__version__ as _dispy_version",
        )
    ],
}

#: How much shorter every sleep of an example is (default 0.05).
SCALE: dict[str, float] = {
    "provisional_results.py": 0.5,
    "longrun.py": 0.1,
    "bounded_submit.py": 0.02,
}
DEFAULT_SCALE = 0.05

_IMPORT = re.compile(r"^(\s*)import (.*\bdispy\b.*)$", re.M)


def fetch() -> tuple[Path | None, str]:
    """The extracted examples folder, or None and why it could not be had."""
    folder = CACHE / f"dispy-{VERSION}" / "py3" / "examples"
    if folder.is_dir():
        return folder, ""
    CACHE.mkdir(parents=True, exist_ok=True)
    archive = CACHE / SDIST
    if not archive.exists():
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"dispy=={VERSION}",
            "-d",
            str(CACHE),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        if done.returncode != 0 or not archive.exists():
            return None, f"pip download dispy=={VERSION} failed: {done.stderr.strip()[-300:]}"
    with tarfile.open(archive) as tar:
        tar.extractall(CACHE, filter="data")
    return (folder, "") if folder.is_dir() else (None, f"{SDIST} has no py3/examples")


def _rewrite_import(match: re.Match[str]) -> str:
    names = [n.strip() for n in match.group(2).split(",")]
    names = [
        "rdispy.httpd" if n == "dispy.httpd" else "rdispy as dispy" if n == "dispy" else n
        for n in names
    ]
    return f"{match.group(1)}import {', '.join(names)}"


def prepare(source: Path, dest: Path) -> Path:
    """Write the example `source` into folder `dest`, changed as the module docstring says."""
    text = source.read_text()
    text = _IMPORT.sub(_rewrite_import, text)
    for old, new in EDITS.get(source.name, []):
        if old not in text:
            raise AssertionError(f"{source.name} no longer has {old!r}; update EDITS")
        text = text.replace(old, new, 1)
    scale = SCALE.get(source.name, DEFAULT_SCALE)
    text = re.sub(r"\btime\.sleep\(", f"time.sleep({scale} * ", text)
    out = dest / source.name
    out.write_text(text)
    return out


@dataclass
class Run:
    """What one example did."""

    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"rc={self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr[-4000:]}"


def environment() -> dict[str, str]:
    """The example's environment: this checkout importable, no cluster variables inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RDISPY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start(script: Path, *args: str) -> subprocess.Popen[str]:
    """Start `script` in its folder, with pipes for stdin, stdout and stderr."""
    return subprocess.Popen(
        [sys.executable, script.name, *args],
        cwd=script.parent,
        env=environment(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def run(script: Path, *args: str, stdin: str = "", timeout: float = 90) -> Run:
    """Run `script` to its end, feeding it `stdin`."""
    proc = start(script, *args)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        out, err = proc.communicate()
        raise AssertionError(
            f"{script.name} did not end in {timeout}s\n{out}\n{err[-4000:]}"
        ) from None
    return Run(proc.returncode, out, err)


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill the example and everything it started."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


class Console:
    """An example driven as a user at its console would: wait for what it prints, then type a
    line or press Ctrl-C (SIGINT to the program alone, as a terminal's would reach it)."""

    def __init__(self, script: Path) -> None:
        self.proc = start(script)
        self._out: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._out.append(line)

    @property
    def output(self) -> str:
        return "".join(self._out)

    def wait_for(self, pattern: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.output, re.M):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"never printed {pattern!r}\n{self.finish(5)}")
            time.sleep(0.05)

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def interrupt(self) -> None:
        import signal

        os.kill(self.proc.pid, signal.SIGINT)

    def finish(self, timeout: float = 60) -> Run:
        """Wait for the program to end (killed, with everything it started, after ``timeout``)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop(self.proc)
        self._reader.join(5)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        return Run(self.proc.returncode, self.output, err)
