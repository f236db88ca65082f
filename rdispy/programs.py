"""Running a program as a job (dispy's JobCluster with a program path, and `rdispy submit`).

The program arrives as a dependency file in the session folder.  ``run_program`` runs it there
with the job's arguments and returns its exit code (dispy's meaning).  ``run_program_collect``
(`rdispy submit`, ``JobCluster(collect_files=True)``) runs it in a folder of its own, where the
session's files appear as links, and returns a ``ProgramRun``: the exit code and every file the
program created there, as far as the node's result size limit allows.  Either way the program
runs in the consumer's process group, so a timeout or cancel stops it and all it started, and
its stdout and stderr become the job's.

Shared by both sides: a client sends ``run_program``/``run_program_collect`` as a job's function
(pickled by reference to this module) and reads ``ProgramRun`` results; a node runs them.
``rdispy.worker.programs`` re-exports them, so pickles that name the old path still load.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from rdispy import defaults, job_context
from rdispy.wire import check_file_name

log = logging.getLogger(__name__)

#: The subfolder of a session folder that holds the job folders of ``run_program_collect``.
RUNS = ".runs"
#: Pickling overhead allowed for per returned file, and for the ProgramRun itself, in bytes.
FILE_OVERHEAD = 256
RUN_OVERHEAD = 4096


@dataclass(frozen=True)
class CreatedFile:
    """A file a program created in its job folder; ``path`` is relative, with '/' separators."""

    path: str
    data: bytes
    mode: int


@dataclass(frozen=True)
class ProgramRun:
    """The result of ``run_program_collect``: the exit code (128 + N when killed by signal N),
    the files the program created, and ``left_out``: (path, size) of created files that did
    not fit in the node's result size limit and were not sent."""

    exit_code: int
    files: tuple[CreatedFile, ...] = ()
    left_out: tuple[tuple[str, int], ...] = ()


def run_program(name: str, *args: object) -> int:
    """Run ``./name args...`` in the current (session) folder; returns the exit code."""
    return _execute(_command(Path.cwd() / check_file_name(name), args), Path.cwd())


def run_program_collect(name: str, *args: object) -> ProgramRun:
    """Run ``name args...`` in a job folder of its own; returns its exit code and the files it
    created there.  The session's files (the program and its dependencies) are linked into
    that folder; the folder is removed afterwards."""
    session = Path.cwd()
    program = session / check_file_name(name)
    job = job_context.current_or_none()
    folder = session / RUNS / (check_file_name(job.job_id) if job else uuid.uuid4().hex)
    max_result = job.max_result if job else defaults.MAX_RESULT
    shutil.rmtree(folder, ignore_errors=True)  # a previous attempt of the same job
    folder.mkdir(parents=True)
    try:
        for entry in session.iterdir():
            if not entry.name.startswith(".") and entry.name != "__pycache__":
                (folder / entry.name).symlink_to(entry)
        code = _execute(_command(program, args), folder)
        files, left_out = collect_files(folder, max_result - RUN_OVERHEAD)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if left_out:
        log.warning(
            "program %s: %d created files over the result size limit were not sent",
            name,
            len(left_out),
        )
    return ProgramRun(code, files, left_out)


def collect_files(
    folder: Path, budget: int
) -> tuple[tuple[CreatedFile, ...], tuple[tuple[str, int], ...]]:
    """The regular files under ``folder`` (links are not followed nor sent), in path order,
    while their size stays within ``budget`` bytes; the rest as (path, size)."""
    found: list[tuple[str, Path]] = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            if not path.is_symlink() and path.is_file():
                found.append((path.relative_to(folder).as_posix(), path))
    files: list[CreatedFile] = []
    left_out: list[tuple[str, int]] = []
    used = 0
    for relative, path in sorted(found):
        info = path.stat()
        cost = info.st_size + len(relative.encode()) + FILE_OVERHEAD
        if used + cost > budget:
            left_out.append((relative, info.st_size))
            continue
        used += cost
        files.append(CreatedFile(relative, path.read_bytes(), info.st_mode & 0o755))
    return tuple(files), tuple(left_out)


def _command(program: Path, args: tuple[object, ...]) -> list[str]:
    command = [str(program), *map(str, args)]
    if program.suffix == ".py":
        command.insert(0, sys.executable)
    return command


def _execute(command: list[str], cwd: Path) -> int:
    """Run the program, its output into the job's; returns the exit code (128 + N for signal N).

    When the node stops the job (timeout, cancel) it signals the consumer's whole process group:
    the program dies of the signal and this consumer is about to be killed.  Publishing the
    program's exit code then would report a timeout as an ordinary failure, so in that case
    this waits to be killed, and the node reports the job as timed out or cancelled.
    """
    stopped = threading.Event()
    chained, previous = _chain_sigterm(stopped)
    try:
        result = subprocess.run(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
        )
    finally:
        if chained:
            signal.signal(signal.SIGTERM, previous)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.returncode < 0 and stopped.is_set():
        time.sleep(2 * defaults.KILL_GRACE + 2.0)  # the node's SIGKILL ends us here
        log.warning("program %s was stopped by a signal, but this consumer was not", command[0])
    return result.returncode if result.returncode >= 0 else 128 - result.returncode


def _chain_sigterm(stopped: threading.Event) -> tuple[bool, Any]:
    """Note SIGTERM in ``stopped`` and pass it on to the handler in place (the consumer's).
    Returns whether it did (only the main thread can) and the handler to put back."""
    if threading.current_thread() is not threading.main_thread():
        return False, None
    previous = signal.getsignal(signal.SIGTERM)

    def note(signum: int, frame: FrameType | None) -> None:
        stopped.set()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, note)
    return True, previous
