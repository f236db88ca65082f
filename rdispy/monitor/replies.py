"""Reading the values of Redis replies, for the monitor's state readers: bytes as text or a
number, a stream entry's time from its id, a job's client from its id."""

from __future__ import annotations

from typing import Any


def as_str(value: Any) -> str:
    """A reply's value as text (bytes decoded, invalid UTF-8 replaced)."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def as_float(value: Any, default: float = 0.0) -> float:
    """A reply's value as a number, ``default`` if it is none."""
    try:
        return float(as_str(value))
    except (TypeError, ValueError):
        return default


def entry_time(eid: Any) -> float:
    """Seconds since the epoch at which a stream entry was added (its id's first part)."""
    return as_float(as_str(eid).split("-", 1)[0]) / 1000.0


def client_of(job_id: str) -> str:
    """The client that submitted a job: its id but the last ``-SEQUENCE`` part."""
    return job_id.rsplit("-", 1)[0]
