"""What a running job can reach: provisional results and files sent to its client.

A consumer sets the context around each job; ``provisional_result`` and ``send_file`` (dispy's
``dispy_provisional_result`` and ``dispy_send_file``) publish signed events on the client's
result stream, in order, before the job's final result.

Shared by both sides: a node's consumer sets the context (rdispy/worker); the job's code, and the
functions a client sends to run as jobs (``rdispy.programs``), read it; a client checks it to
see whether it is itself running inside a job.  ``rdispy.worker.context`` re-exports it, so a
function pickled by reference to the old path still loads.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rdispy import defaults, serialization, wire
from rdispy.errors import PayloadTooLarge


@dataclass(frozen=True)
class JobContext:
    job_id: str
    node: str
    emit: Callable[[dict[str, Any]], None]  # publishes one event to the job's client
    max_result: int = defaults.MAX_RESULT  # the node's limit on one job's pickled result


_current: JobContext | None = None


def set_current(context: JobContext | None) -> None:
    global _current
    _current = context


def current_or_none() -> JobContext | None:
    """The running job's context, or None outside a job."""
    return _current


def current() -> JobContext:
    """The running job's context; RuntimeError outside a job."""
    if _current is None:
        raise RuntimeError("provisional_result/send_file work only inside a job run by rdispy")
    return _current


def provisional_result(value: Any) -> int:
    """Send ``value`` to the client now; the job's status there becomes ProvisionalResult."""
    context = current()
    payload = serialization.dumps(value, "provisional result", context.job_id)
    wire.check_size(payload, defaults.MAX_RESULT, context.job_id)
    context.emit({wire.N.KIND: "prov", wire.N.PAYLOAD: payload})
    return 0


def send_file(path: str | os.PathLike[str], relative_to: str | None = None, **_: Any) -> int:
    """Deliver a file to the client's ``dest_path`` (under its base name, or its path relative to
    ``relative_to``).  Returns 0 as dispy does."""
    context = current()
    source = Path(path)
    data = source.read_bytes()
    if len(data) > defaults.MAX_RESULT:
        raise PayloadTooLarge(f"file {source} is over the result size limit", context.job_id)
    name = os.path.relpath(source, relative_to) if relative_to else source.name
    context.emit(
        {
            wire.N.KIND: "file",
            wire.N.NAME: name,
            wire.N.PAYLOAD: data,
            wire.N.MODE: source.stat().st_mode & 0o755,
        }
    )
    return 0
