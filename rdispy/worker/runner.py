"""Running one job inside a consumer: call the function, capture stdout/stderr, time it, and turn
the outcome into a result payload."""

from __future__ import annotations

import io
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rdispy import defaults, serialization
from rdispy.errors import ResultTooLarge


class BoundedOutput(io.StringIO):
    """A text sink that keeps the first ``limit`` characters and counts the rest.

    ``text()`` ends output that was cut with a marker line, ``[rdispy: output cut at N
    characters; M more were dropped]``, so that a reader is not misled into taking the kept part
    for all of it.  The limit is the node's ``rdispy worker --max-output`` (default 1 MiB), for
    stdout and stderr each.
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.dropped = 0

    def write(self, s: str) -> int:
        room = self.limit - self.tell()
        if room < len(s):
            self.dropped += len(s) - max(room, 0)
            s = s[: max(room, 0)]
        super().write(s)
        return len(s)

    def text(self) -> str:
        value = self.getvalue()
        if self.dropped:
            value += cut_marker(self.limit, self.dropped)
        return value


def cut_marker(limit: int, dropped: int) -> str:
    """The line that ends output cut at ``limit`` characters, ``dropped`` more left out."""
    return f"\n[rdispy: output cut at {limit} characters; {dropped} more were dropped]\n"


@dataclass
class Outcome:
    """What one job produced: ``kind`` is "ok" (payload is the value) or "exc"."""

    kind: str
    payload: bytes
    stdout: str
    stderr: str
    started: float
    ended: float
    error: str = ""  # "Type: message" of the job's exception, for its attempt record
    etype: str = ""  # the exception's type name
    traceback: str = ""  # its traceback as text, cut to TRACEBACK_MAX characters


def call_chunk(
    fn: Callable[..., Any],
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
    failures: list[BaseException] | None = None,
) -> Any:
    """Run a map chunk: returns ``(values, exception payload or None)``; stops at the first error
    (appended to ``failures``, for the attempt record).

    The values before a failing item still reach the client, which yields them before raising.
    """
    values = []
    for args, kwargs in calls:
        try:
            values.append(fn(*args, **kwargs))
        except Exception as exc:
            if failures is not None:
                failures.append(exc)
            return values, serialization.dump_exception(exc)
    return values, None


def run(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    job_id: str,
    max_result: int = defaults.MAX_RESULT,
    max_output: int = defaults.MAX_OUTPUT,
    memory_limited: bool = False,
) -> Outcome:
    """Call ``fn(*args, **kwargs)`` with its output captured; never raises for the job's errors,
    except MemoryError under a memory limit (the consumer must then be replaced)."""
    out, err = BoundedOutput(max_output), BoundedOutput(max_output)
    saved = sys.stdout, sys.stderr
    started = time.time()
    try:
        sys.stdout, sys.stderr = out, err  # what contextlib.redirect_stdout does, in one step
        try:
            value = fn(*args, **kwargs)
        finally:
            sys.stdout, sys.stderr = saved
        kind, payload = "ok", serialization.dumps(value, "result", job_id)
        if len(payload) > max_result:
            raise ResultTooLarge(
                f"result of {len(payload):,} bytes is over the limit of {max_result:,} bytes; "
                "return less, or write it to a file",
                job_id,
            )
    except BaseException as exc:  # noqa: B036 - a job's SystemExit/KeyboardInterrupt is its result
        if isinstance(exc, KeyboardInterrupt | GeneratorExit):
            raise
        if memory_limited and isinstance(exc, MemoryError):
            raise
        kind, payload = "exc", serialization.dump_exception(exc, job_id)
        return failed(kind, payload, out.text(), err.text(), started, time.time(), exc, skip=1)
    return Outcome(kind, payload, out.text(), err.text(), started, time.time())


#: Characters kept of a failed job's exception message, and of its traceback (the monitor's).
MESSAGE_MAX = 500
TRACEBACK_MAX = 8192


def failed(
    kind: str,
    payload: bytes,
    stdout: str,
    stderr: str,
    started: float,
    ended: float,
    exc: BaseException,
    skip: int = 0,
) -> Outcome:
    """The outcome of a job that raised ``exc``: its type, message and traceback as text (the
    ``skip`` innermost-first frames of rdispy's own left out), for its attempt record."""
    return Outcome(
        kind,
        payload,
        stdout,
        stderr,
        started,
        ended,
        error_text(exc),
        type(exc).__qualname__,
        traceback_text(exc, skip),
    )


def note_failure(outcome: Outcome, exc: BaseException) -> None:
    """Record in a map chunk's outcome (kind "ok": its values reach the client) the exception
    that stopped it, for its attempt record."""
    outcome.error, outcome.etype = error_text(exc), type(exc).__qualname__
    outcome.traceback = traceback_text(exc, 1)


def error_text(exc: BaseException) -> str:
    """``Type: message`` of an exception, its message cut to MESSAGE_MAX characters."""
    try:
        message = str(exc)
    except Exception:  # a job's exception whose __str__ fails is still reported
        message = "<unprintable>"
    if len(message) > MESSAGE_MAX:
        message = message[: MESSAGE_MAX - 3] + "..."
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def traceback_text(exc: BaseException, skip: int = 0) -> str:
    """``exc``'s traceback as Python prints it, without the first ``skip`` frames (the runner's
    call of the job), cut in the middle to TRACEBACK_MAX characters."""
    tb = exc.__traceback__
    for _ in range(skip):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    try:
        text = "".join(traceback.format_exception(type(exc), exc, tb))
    except Exception:  # formatting must never fail a job's result
        return ""
    if len(text) <= TRACEBACK_MAX:
        return text
    head, tail = TRACEBACK_MAX // 4, TRACEBACK_MAX * 3 // 4 - 60
    cut = len(text) - head - tail
    return f"{text[:head]}\n[rdispy: {cut} characters of the traceback cut]\n{text[-tail:]}"
