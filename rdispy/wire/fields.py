"""Field names and the encoders of flat entries: ``F`` (bytes), ``N`` (text), ``encode`` for a
mapping of header values, ``result_fields`` and ``refusal_fields`` for what a node writes.  The
table of every field is the package's docstring (``rdispy.wire``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

VERSION = b"1"

Fields = dict[bytes, bytes]


class F:
    """Every stream-entry field name, as bytes (the keys of an entry read from Redis)."""

    VERSION: Final = b"v"
    ID: Final = b"id"
    CLIENT: Final = b"c"
    FUNCTION: Final = b"fn"
    KIND: Final = b"k"
    PAYLOAD: Final = b"p"
    CALLS: Final = b"n"
    RETRIES: Final = b"r"
    SENT: Final = b"t"
    EXPIRY: Final = b"x"
    HANDOFF: Final = b"sm"
    PAYLOAD_FILE: Final = b"pf"
    PAYLOAD_HASH: Final = b"pz"
    LABEL: Final = b"fq"
    ARGUMENTS: Final = b"fa"
    RUNTIME: Final = b"rt"
    SESSION: Final = b"cl"
    TIMEOUT: Final = b"to"
    CORES: Final = b"cp"
    PLACED: Final = b"nd"
    EVENTS: Final = b"ev"
    DEPENDS: Final = b"dp"
    SETUP: Final = b"su"
    SETUP_ARGS: Final = b"sa"
    CLEANUP: Final = b"cu"
    SIG: Final = b"sig"
    # result entries
    NODE: Final = b"node"
    IP: Final = b"ip"
    PID: Final = b"pid"
    CHUNK_CALLS: Final = b"ck"
    STARTED: Final = b"t0"
    ENDED: Final = b"t1"
    STDOUT: Final = b"out"
    STDERR: Final = b"err"
    WHY: Final = b"why"
    CAUSE: Final = b"cause"
    STREAM: Final = b"stream"
    EID: Final = b"eid"
    NAME: Final = b"name"
    MODE: Final = b"mode"
    # control entries
    OP: Final = b"op"
    CLOSED_SESSION: Final = b"session"
    REMOVE: Final = b"rm"
    # dead letters
    ENTRY: Final = b"entry"
    REASON: Final = b"reason"
    # attempt records
    ATTEMPT: Final = b"a"
    DROPPED: Final = b"d"


class N:
    """The same field names as text: the keys of a mapping given to ``encode`` (a test checks
    that ``N`` and ``F`` agree)."""

    VERSION: Final = "v"
    ID: Final = "id"
    CLIENT: Final = "c"
    FUNCTION: Final = "fn"
    KIND: Final = "k"
    PAYLOAD: Final = "p"
    CALLS: Final = "n"
    RETRIES: Final = "r"
    SENT: Final = "t"
    EXPIRY: Final = "x"
    HANDOFF: Final = "sm"
    PAYLOAD_FILE: Final = "pf"
    PAYLOAD_HASH: Final = "pz"
    LABEL: Final = "fq"
    ARGUMENTS: Final = "fa"
    RUNTIME: Final = "rt"
    SESSION: Final = "cl"
    TIMEOUT: Final = "to"
    CORES: Final = "cp"
    PLACED: Final = "nd"
    EVENTS: Final = "ev"
    DEPENDS: Final = "dp"
    SETUP: Final = "su"
    SETUP_ARGS: Final = "sa"
    CLEANUP: Final = "cu"
    SIG: Final = "sig"
    NODE: Final = "node"
    IP: Final = "ip"
    PID: Final = "pid"
    CHUNK_CALLS: Final = "ck"
    STARTED: Final = "t0"
    ENDED: Final = "t1"
    STDOUT: Final = "out"
    STDERR: Final = "err"
    WHY: Final = "why"
    CAUSE: Final = "cause"
    STREAM: Final = "stream"
    EID: Final = "eid"
    NAME: Final = "name"
    MODE: Final = "mode"
    OP: Final = "op"
    CLOSED_SESSION: Final = "session"
    REMOVE: Final = "rm"
    ENTRY: Final = "entry"
    REASON: Final = "reason"
    ATTEMPT: Final = "a"
    DROPPED: Final = "d"


def field_names() -> dict[str, bytes]:
    """Every constant of ``F``: attribute name -> field name."""
    return {k: v for k, v in vars(F).items() if isinstance(v, bytes)}


def _b(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def encode(fields: Mapping[str, object]) -> Fields:
    """Turn a mapping of header values into stream fields (None values are left out)."""
    out: Fields = {F.VERSION: VERSION}
    for key, value in fields.items():
        if value is not None:
            out[key.encode()] = value if type(value) is bytes else str(value).encode()
    return out


def result_fields(
    job_id: bytes,
    kind: str,
    payload: Fields,
    origin: Fields,
    started: float,
    ended: float,
    stdout: str,
    stderr: str,
) -> Fields:
    """A result entry's fields: ``payload`` holds ``p`` (or ``pf``/``pz``), ``origin`` the
    ``node``, ``ip`` and ``pid`` of the consumer; output only when there was some."""
    out: Fields = {
        F.VERSION: VERSION,
        F.ID: job_id,
        F.KIND: kind.encode(),
        **payload,
        **origin,
        F.STARTED: repr(started).encode(),
        F.ENDED: repr(ended).encode(),
    }
    if stdout:
        out[F.STDOUT] = stdout.encode()
    if stderr:
        out[F.STDERR] = stderr.encode()
    return out


def refusal_fields(job_id: bytes, node: str, reason: str) -> Fields:
    """A refusal notice: the job ``job_id`` was not run by ``node``, for ``reason``.  It carries
    no code, so a client reads it even when it cannot verify it (a node of another secret)."""
    return {F.VERSION: VERSION, F.ID: job_id[:200], F.KIND: b"refused", F.NODE: node.encode(),
            F.WHY: reason.encode()[:2000]}  # fmt: skip
