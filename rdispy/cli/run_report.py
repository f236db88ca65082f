"""What `rdispy submit` says about each run: its outcome from the ended DispyJob, the text
printed for it, and its folder under ``--out`` (stdout, stderr, status, exit code, run.json and
the files the run created, under ``files/``)."""

from __future__ import annotations

import json
import logging
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rdispy.client.dispy_job import DispyJob
from rdispy.errors import ConfigError, JobTimeout
from rdispy.programs import CreatedFile, ProgramRun

log = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    """One run as it ended.  ``state``: ok, failed (non-zero exit), timed out, error,
    cancelled."""

    index: int
    args: list[str]
    state: str
    detail: str = ""
    exit_code: int | None = None
    node: str | None = None
    seconds: float | None = None
    stdout: str = ""
    stderr: str = ""
    files: tuple[CreatedFile, ...] = ()
    left_out: tuple[tuple[str, int], ...] = ()

    @property
    def ok(self) -> bool:
        return self.state == "ok"


def _text(output: str | bytes | None) -> str:
    """A job's output as text (a program's comes as bytes, as in dispy)."""
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def outcome(index: int, args: list[str], job: DispyJob) -> RunOutcome:
    """The outcome of an ended job of a ``JobCluster(program, collect_files=True)``."""
    run = RunOutcome(index, args, "error", node=job.node)
    run.stdout, run.stderr = _text(job.stdout), _text(job.stderr)
    if job.start_time and job.end_time:
        run.seconds = job.end_time - job.start_time
    if job.status == DispyJob.Finished and isinstance(job.result, ProgramRun):
        result: ProgramRun = job.result
        run.exit_code, run.files, run.left_out = result.exit_code, result.files, result.left_out
        run.state = "ok" if result.exit_code == 0 else "failed"
        run.detail = f"exit code {result.exit_code}"
        return run
    if job.status == DispyJob.Cancelled or job.future is None:
        run.state, run.detail = "cancelled", "cancelled before it ran"
        return run
    error = job.future.exception() if job.future.done() else None
    if isinstance(error, JobTimeout):
        run.state, run.detail = "timed out", _strip_job_id(str(error))
    elif error is not None:
        run.detail = f"{type(error).__name__}: {_strip_job_id(str(error))}"
    else:
        run.detail = (job.exception or "ended without a result").strip().splitlines()[-1]
    return run


def _strip_job_id(message: str) -> str:
    """rdispy's job errors begin with 'job <id>: '; the run number says which here."""
    return message.split(": ", 1)[1] if message.startswith("job ") else message


def describe(run: RunOutcome, total: int, program: str) -> str:
    """The block printed for a run: a header line, its stdout, then its stderr and notes."""
    command = shlex.join([program, *run.args])
    head = [f"== run {run.index}/{total}: {command}", f"node {run.node or '-'}"]
    head.append(run.detail if run.state in ("ok", "failed") else f"{run.state}: {run.detail}")
    if run.seconds is not None:
        head.append(f"{run.seconds:.2f}s")
    lines = [" | ".join(head)]
    if run.stdout:
        lines.append(run.stdout.rstrip("\n"))
    if run.stderr:
        lines.append(f"-- stderr of run {run.index}:")
        lines.append(run.stderr.rstrip("\n"))
    if run.files:
        lines.append(f"-- files created: {', '.join(f.path for f in run.files)}")
    if run.left_out:
        sizes = ", ".join(f"{path} ({size:,} bytes)" for path, size in run.left_out)
        lines.append(f"-- not returned (over the result size limit): {sizes}")
    return "\n".join(lines)


def summary(runs: list[RunOutcome], total: int) -> str:
    """'3 runs: 2 ok, 1 failed', and how many did not finish when interrupted."""
    ok = sum(run.ok for run in runs)
    text = f"{total} run{'s' if total != 1 else ''}: {ok} ok, {len(runs) - ok} failed"
    if len(runs) < total:
        text += f", {total - len(runs)} not finished"
    return text


def folder_name(index: int, total: int) -> str:
    return f"run-{index:0{len(str(total))}d}"


def write_run(out: Path, run: RunOutcome, total: int, program: str) -> Path:
    """Write the run's folder under ``out`` (replacing one of the same name) and return it."""
    folder = out / folder_name(run.index, total)
    if folder.is_symlink() or folder.is_file():
        raise ConfigError(f"cannot write run folder {folder}: something else is in its place")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "stdout").write_text(run.stdout)
    (folder / "stderr").write_text(run.stderr)
    status = run.detail if run.state in ("ok", "failed") else f"{run.state}: {run.detail}"
    (folder / "status").write_text(f"{run.state}\n{status}\n")
    if run.exit_code is not None:
        (folder / "exit_code").write_text(f"{run.exit_code}\n")
    for created in run.files:
        relative = _safe_relative(created.path)
        if relative is None:
            log.warning("run %d: refused file path %r sent by a node", run.index, created.path)
            continue
        target = folder / "files" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(created.data)
        target.chmod(created.mode | 0o600)
    record = {
        "run": run.index,
        "program": program,
        "args": run.args,
        "state": run.state,
        "detail": run.detail,
        "exit_code": run.exit_code,
        "node": run.node,
        "seconds": run.seconds,
        "files": [f.path for f in run.files],
        "left_out": [{"path": path, "size": size} for path, size in run.left_out],
    }
    (folder / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    return folder


def _safe_relative(path: str) -> Path | None:
    """A relative path from a node; None if it could leave the run's folder."""
    parts = PurePosixPath(path).parts
    if (
        not parts
        or PurePosixPath(path).is_absolute()
        or any(p in ("", ".", "..") or "\\" in p or "\x00" in p for p in parts)
    ):
        return None
    return Path(*parts)
