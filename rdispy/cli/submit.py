"""`rdispy submit`: run a program once per argument list across the cluster (dispy.py's command
line mode).

The program and the ``-f`` files travel once as content-addressed blobs (a JobCluster with the
program as its computation, ``depends`` for the files); each ``-a`` is one run, in a folder of its
own on some node, whose created files come back with its result.  Runs are reported in
submission order as they end; the exit status is 1 when any run failed, 2 for bad options,
missing files or no usable Redis, 130/143 when interrupted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import click

from rdispy.cli import cluster_option, redis_option, secret_option
from rdispy.cli.dispy_cmd import job_lines
from rdispy.cli.run_report import RunOutcome, describe, outcome, summary, write_run
from rdispy.errors import ConfigError

log = logging.getLogger(__name__)

#: Seconds an interrupted submit waits for its stopped runs before it closes anyway.
STOP_WAIT = 10.0


class _Interrupted(BaseException):  # like KeyboardInterrupt: not caught by `except Exception`
    """SIGINT or SIGTERM arrived."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@click.command(short_help="Run a program once per -a ARGS across the cluster.")
@click.option(
    "-f",
    "--file",
    "files",
    multiple=True,
    metavar="FILE",
    help="A file the program needs, put beside it on the node (repeatable).",
)
@click.option(
    "-a",
    "--args",
    "arg_lines",
    multiple=True,
    metavar='"ARGS"',
    help="The arguments of one run, split as a shell would (repeatable; none: one run "
    "without arguments).",
)
@redis_option
@click.option(
    "--nodes",
    multiple=True,
    metavar="NAME_OR_HOST",
    help="Run only on these nodes: names, IP addresses or shell wildcards (repeatable, or "
    "comma-separated).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Write each run's stdout, stderr, status, exit code and created files to "
    "DIR/run-N/ (replacing such folders).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="S",
    help="Stop a run after S seconds (the program and all it started); it fails as timed out.",
)
@cluster_option
@secret_option
@click.option(
    "--cpus",
    type=click.IntRange(min=1),
    default=None,
    help="Without --redis: local consumers of the embedded default (default: the cores).",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    metavar="S",
    help="Give up when Redis does not answer within S seconds.",
)
@click.option(
    "--dispy-output",
    is_flag=True,
    help='Report each run in dispy_cmd.py\'s words (Job N with arguments "ARGS" produced '
    "output: ...), for scripts that parse them.",
)
@click.argument("program")
def submit(
    files: tuple[str, ...],
    arg_lines: tuple[str, ...],
    redis_url: str | None,
    nodes: tuple[str, ...],
    out: Path | None,
    timeout: float | None,
    cluster: str,
    secret: str | None,
    cpus: int | None,
    connect_timeout: float,
    dispy_output: bool,
    program: str,
) -> None:
    """Run PROGRAM once per -a ARGS across the cluster (once, without arguments, when no -a is
    given), shipping it and the -f files to the nodes.  Without --redis (or $RDISPY_REDIS) the
    runs use an embedded server and this machine's cores.

    Shows progress on stderr, prints each run's node, exit code, stdout and stderr in
    submission order, then a summary line.  Exits 1 when any run failed.
    """
    program_path = _existing_file(program, "program")
    if program_path.suffix != ".py" and not os.access(program_path, os.X_OK):
        raise ConfigError(
            f"program {program!r} is not executable: chmod +x it (a .py file runs with Python)"
        )
    depends = [_existing_file(f, "file") for f in files]
    names = [p.name for p in (program_path, *depends)]
    if len(set(names)) < len(names):
        raise ConfigError(f"two files share a name on the node: {', '.join(sorted(names))}")
    runs = [_split(line) for line in arg_lines] or [[]]
    if out is not None and out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: not a folder")
    selectors = [n for item in nodes for n in item.split(",") if n.strip()]
    if redis_url:
        _check_redis(redis_url, cluster, connect_timeout, bool(selectors))
    with _signals_interrupt():
        code = _run_all(
            program_path,
            depends,
            runs,
            redis_url,
            selectors,
            out,
            timeout,
            cluster,
            secret,
            cpus,
            arg_lines if dispy_output else None,
        )
    sys.exit(code)


def _run_all(
    program: Path,
    depends: list[Path],
    runs: list[list[str]],
    redis_url: str | None,
    selectors: list[str],
    out: Path | None,
    timeout: float | None,
    cluster_name: str,
    secret: str | None,
    cpus: int | None,
    dispy_lines: tuple[str, ...] | None = None,
) -> int:
    """Run every run and report it (in dispy's words when ``dispy_lines`` gives the -a lines);
    the exit code."""
    from rdispy.client.cluster import JobCluster
    from rdispy.progress import progress

    total = len(runs)
    try:
        cluster = JobCluster(
            str(program),
            nodes=selectors or None,
            depends=[str(p) for p in depends],
            secret=secret or "",
            redis_url=redis_url,
            cluster=cluster_name,
            timeout=timeout,
            cpus=cpus,
            collect_files=True,
        )
    except _Interrupted as exc:
        click.echo(f"interrupted ({exc}) while starting", err=True)
        return 128 + exc.signum
    ended: list[RunOutcome] = []
    unsaved = 0  # runs whose --out folder could not be written
    try:
        jobs = []
        for index, args in enumerate(runs, 1):
            job = cluster.submit(*args)
            job.id = index
            jobs.append(job)
        position = {id(job): i for i, job in enumerate(jobs)}
        finished: dict[int, RunOutcome] = {}
        completed = progress(jobs, desc=program.name, unit="run")
        for job in completed:
            i = position[id(job)]
            finished[i] = outcome(i + 1, runs[i], job)
            while len(ended) in finished:  # print in submission order
                run = finished.pop(len(ended))
                ended.append(run)
                if dispy_lines is None:
                    completed.write(describe(run, total, program.name))
                elif words := _dispy_words(run, dispy_lines):
                    completed.write(words)
                if out is not None:
                    try:
                        write_run(out, run, total, program.name)
                    except OSError as exc:
                        unsaved += 1
                        completed.write(f"-- cannot write run {run.index} under {out}: {exc}")
        cluster.close()
    except _Interrupted as exc:
        signum = exc.signum
        click.echo(
            f"interrupted ({signal.Signals(signum).name}): stopping unfinished runs", err=True
        )
        with _signals_ignored():
            cluster.close(timeout=STOP_WAIT, terminate=True)
        click.echo(summary(ended, total))
        return 128 + signum
    except BaseException:
        with _signals_ignored():
            cluster.close(timeout=STOP_WAIT, terminate=True)
        raise
    click.echo(summary(ended, total) + (f" ({unsaved} not saved)" if unsaved else ""))
    return 0 if all(run.ok for run in ended) and not unsaved else 1


def _dispy_words(run: RunOutcome, arg_lines: tuple[str, ...]) -> str:
    """A run as dispy_cmd.py reports a job (its output as bytes, as dispy has it)."""
    args = arg_lines[run.index - 1] if arg_lines else ""
    failed = None if run.exit_code is not None else run.detail
    lines = job_lines(
        run.index, args, failed, run.exit_code, run.stdout.encode(), run.stderr.encode()
    )
    return "\n".join(lines)


def _existing_file(name: str, what: str) -> Path:
    path = Path(name)
    if not path.exists():
        raise ConfigError(f"{what} {name!r} not found")
    if not path.is_file():
        raise ConfigError(f"{what} {name!r} is not a file")
    return path


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise ConfigError(f"-a {line!r}: {exc}") from exc


def _check_redis(url: str, cluster: str, timeout: float, placed: bool) -> None:
    """Fail now, in one line, when Redis is not there; warn when no node serves the cluster."""
    from rdispy import connection
    from rdispy.keys import Keys
    from rdispy.nodes import live_nodes

    client = connection.connect(url)
    quiet = logging.getLogger(connection.__name__)
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # one error line, not one warning per attempt
    try:
        connection.wait_for(client, url, timeout)
        alive = live_nodes(client, Keys(cluster))
    finally:
        quiet.setLevel(level)
        client.close()
    if not alive and not placed:
        click.echo(
            f"no node serves cluster {cluster!r} yet: the runs wait for "
            f"`rdispy worker --redis URL --cluster {cluster}`",
            err=True,
        )


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM interrupt the main thread (to stop the runs and close cleanly)."""

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        raise _Interrupted(signum)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """While an interrupted submit closes (bounded by STOP_WAIT), further signals wait."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
