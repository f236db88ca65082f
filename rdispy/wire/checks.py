"""What a node checks before it runs an entry, and the labels a client writes: ``validate_job``,
well-formed ids, digests and file names, ``fq``/``fa`` labels."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

from rdispy.errors import JobError, ProtocolError
from rdispy.wire.fields import VERSION, F

#: Longest ``fq`` / ``fa`` value a client sends (bytes).
LABEL_MAX = 200


def _cut_label(text: str) -> bytes:
    data = text.encode(errors="replace")
    if len(data) <= LABEL_MAX:
        return data
    return data[: LABEL_MAX - 3].decode(errors="ignore").encode() + b"..."


def function_label(fn: object) -> bytes:
    """The ``fq`` field of a job running ``fn``: ``module.qualname`` (``abs``, ``time.sleep``,
    ``mymod.Cls.method``; the function of a ``functools.partial``).  Computed once per function
    by the client, which keeps it with the function's digest."""
    seen = 0
    while hasattr(fn, "func") and callable(fn.func) and seen < 5:  # functools.partial
        fn, seen = fn.func, seen + 1
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if not isinstance(name, str):
        name = type(fn).__qualname__
    module = getattr(fn, "__module__", None)
    if isinstance(module, str) and module not in ("builtins", "__main__", ""):
        name = f"{module}.{name}"
    return _cut_label(name)


def program_label(name: str) -> bytes:
    """The ``fq`` field of a program job: the program's file name."""
    return _cut_label(name)


def program_arguments(args: tuple[object, ...]) -> bytes:
    """The ``fa`` field of a program job: its arguments as a shell would show them."""
    return _cut_label(" ".join(shlex.quote(str(a)) for a in args))


def client_of(fields: Mapping[bytes, bytes]) -> str | None:
    """The client id of a job entry when it is well-formed (where a notice can go)."""
    client = fields.get(F.CLIENT, b"")
    return client.decode() if client and _is_name(client) else None


#: Fields every job entry carries, and the kinds of job a consumer knows how to run.
JOB_FIELDS = (F.ID, F.CLIENT, F.FUNCTION, F.KIND)
JOB_KINDS = (b"call", b"chunk")


def validate_job(fields: Mapping[bytes, bytes]) -> None:
    """Raise ProtocolError for an entry a consumer must not run (after ``Signer.verify``)."""
    if fields.get(F.VERSION) != VERSION:
        raise ProtocolError(f"unknown protocol version {fields.get(b'v')!r}")
    missing = [f.decode() for f in JOB_FIELDS if not fields.get(f)]
    if not fields.get(F.PAYLOAD) and not _handed_over(fields):
        missing.append("p")
    if missing:
        raise ProtocolError(f"job entry lacks {', '.join(missing)}")
    if fields[F.KIND] not in JOB_KINDS:
        raise ProtocolError(f"unknown job kind {fields[b'k'][:40]!r}")
    if (
        not _is_digest(fields[F.FUNCTION])
        or not _is_name(fields[F.ID])
        or not _is_name(fields[F.CLIENT])
    ):
        raise ProtocolError("malformed job id, client id or function digest")
    if not fields.get(F.RETRIES, b"0").isdigit():
        raise ProtocolError("malformed retry count")
    if not fields.get(F.CALLS, b"0").isdigit():
        raise ProtocolError("malformed call count")
    if F.CORES in fields and not (fields[F.CORES].isdigit() and 0 < int(fields[F.CORES]) < 10_000):
        raise ProtocolError(f"malformed core count {fields[b'cp'][:40]!r}")
    if F.TIMEOUT in fields and not _is_seconds(fields[F.TIMEOUT]):
        raise ProtocolError(f"malformed timeout {fields[b'to'][:40]!r}")


def _handed_over(fields: Mapping[bytes, bytes]) -> bool:
    """A payload in a same-host file: well-formed name, hash and folder address."""
    host, _, folder = fields.get(F.HANDOFF, b"").partition(b":")
    name = fields.get(F.PAYLOAD_FILE, b"")
    return (
        _is_digest(fields.get(F.PAYLOAD_HASH, b""))
        and _is_name(host)
        and is_file_name(folder)
        and is_file_name(name)
    )


_FILE_NAME = re.compile(rb"[A-Za-z0-9._-]{1,200}")
_DIGEST = re.compile(rb"[0-9a-f]{64}")
_NAME = re.compile(rb"[\x21-\x7e]{1,200}")


def is_file_name(value: bytes) -> bool:
    """A plain file name the wire may carry: no separator, not '.' or '..'."""
    return _FILE_NAME.fullmatch(value) is not None and value not in (b".", b"..")


def check_file_name(name: str, job_id: str | None = None) -> str:
    """A dependency's name must be a plain base name: no folders, no '..', no NUL, not too long.

    A client checks the names it ships (``depends``, a program, a session) and a node checks
    them again before writing: nothing a client sends can write outside a session folder."""
    if (
        not name
        or name in (".", "..")
        or any(c in name for c in "/\\\x00")
        or len(name.encode()) > 255
    ):
        raise JobError(f"refused dependency name {name[:80]!r}: only plain file names", job_id)
    return name


def _is_digest(value: bytes) -> bool:
    return _DIGEST.fullmatch(value) is not None


def _is_name(value: bytes) -> bool:
    """A job or client id: 1-200 printable ASCII characters (it becomes part of key names)."""
    return _NAME.fullmatch(value) is not None


def _is_seconds(value: bytes) -> bool:
    if not value:
        return True  # no timeout
    try:
        seconds = float(value)
    except ValueError:
        return False
    return seconds >= 0 and seconds != float("inf")
