"""The wire format: what goes into a stream entry, signed and size-checked.

A job entry and a result entry are flat Redis stream fields (bytes -> bytes).  Small readable
header fields sit beside one opaque pickled payload field, so that nodes and tools can route and
inspect entries without unpickling anything.

Job entry fields::

    v    protocol version            id   job id            c   client id (result stream)
    fn   function blob digest        p    pickled payload   k   kind: "call" | "chunk"
    r    max retries                 t    submit time       x   expiry (signed entries)
    n    calls in a map chunk (kind "chunk")
    sm   the client's same-host handoff folder ("<host id>:<name>", see ``handoff``)
    fq   what the job runs, for people (the monitor; nothing runs by it): a function's
         ``module.qualname`` (``function_label``), or a program's file name; at most 200 bytes
    fa   a program job's arguments as one line (``program_arguments``), at most 200 bytes
    pf/pz  a payload handed over in a file of that folder instead of ``p``: name, sha256
    rt   the client's runtime tag (``serialization.runtime_tag``: Python and cloudpickle minor
         versions); a node of another runtime hands the entry to a live node of that runtime,
         or refuses it naming both when there is none
    sig  HMAC-SHA256 over all other fields (only with a secret)

Result entry fields::

    v, id, k ("ok" | "exc" | "lost" | "cancelled" | "refused"; events: "run", "prov", "file",
    "excl", "need", and "moved" with stream/eid: the entry now waits in that node's stream),
    p (pickled value or exception),
    node, pid, ck (a map chunk's call count), t0/t1 (start/end time), out/err (captured
    output), why (text reason for "lost" and "refused"),
    pf/pz (a result handed over in a file of the job's ``sm`` folder instead of ``p``), sig

With a secret every entry is signed over its fields and the stream it is written to, and
``verify`` runs before anything is unpickled.  Entries without a valid signature are refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import shlex
import time
from collections.abc import Mapping

from rdispy.errors import JobError, PayloadTooLarge, ProtocolError, SignatureError

VERSION = b"1"

Fields = dict[bytes, bytes]


def _b(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def encode(fields: Mapping[str, object]) -> Fields:
    """Turn a mapping of header values into stream fields (None values are left out)."""
    out: Fields = {b"v": VERSION}
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
        b"v": VERSION,
        b"id": job_id,
        b"k": kind.encode(),
        **payload,
        **origin,
        b"t0": repr(started).encode(),
        b"t1": repr(ended).encode(),
    }
    if stdout:
        out[b"out"] = stdout.encode()
    if stderr:
        out[b"err"] = stderr.encode()
    return out


def check_size(payload: bytes | int, limit: int, job_id: str | None = None) -> None:
    """Refuse a payload (or a payload of this many bytes) over the limit before it is sent."""
    size = payload if isinstance(payload, int) else len(payload)
    if size > limit:
        raise PayloadTooLarge(
            f"payload of {size:,} bytes is over the limit of {limit:,} bytes; "
            "pass large data as a file (depends) or raise max_payload",
            job_id,
        )


class Signer:
    """Signs and verifies entries with HMAC-SHA256 over a shared secret."""

    def __init__(self, secret: str | bytes | None, ttl: float = 7 * 24 * 3600) -> None:
        self._key = _b(secret) if secret else None
        self._ttl = ttl

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def _digest(self, stream: str, fields: Mapping[bytes, bytes]) -> bytes:
        assert self._key is not None
        mac = hmac.new(self._key, stream.encode(), hashlib.sha256)
        for key in sorted(fields):
            if key != b"sig":
                value = fields[key]
                mac.update(b"\x00%d:%s=%d:" % (len(key), key, len(value)))
                mac.update(value)
        return mac.hexdigest().encode()

    def sign(self, stream: str, fields: Fields) -> Fields:
        """Add expiry and signature fields (no-op without a secret)."""
        if self._key is not None:
            fields[b"x"] = b"%d" % int(time.time() + self._ttl)
            fields[b"sig"] = self._digest(stream, fields)
        return fields

    def verify(self, stream: str, fields: Mapping[bytes, bytes]) -> None:
        """Raise SignatureError unless the entry is validly signed and unexpired."""
        if self._key is None:
            return
        job_id = fields.get(b"id", b"?").decode(errors="replace")
        sig = fields.get(b"sig")
        if not sig:
            raise SignatureError("entry is not signed but a secret is configured", job_id)
        if not hmac.compare_digest(sig, self._digest(stream, fields)):
            raise SignatureError("signature does not match (wrong secret or altered entry)", job_id)
        try:
            expiry = float(fields.get(b"x", b"0"))
        except ValueError:
            expiry = 0.0  # signed with a malformed expiry: refuse it rather than fail on it
        if not expiry >= time.time():
            raise SignatureError("signed entry has expired (or has no valid expiry)", job_id)


def refusal_fields(job_id: bytes, node: str, reason: str) -> Fields:
    """A refusal notice: the job ``job_id`` was not run by ``node``, for ``reason``.  It carries
    no code, so a client reads it even when it cannot verify it (a node of another secret)."""
    return {b"v": VERSION, b"id": job_id[:200], b"k": b"refused", b"node": node.encode(),
            b"why": reason.encode()[:2000]}  # fmt: skip


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
    client = fields.get(b"c", b"")
    return client.decode() if client and _is_name(client) else None


def blob_digest(data: bytes) -> str:
    """Content address of a blob."""
    return hashlib.sha256(data).hexdigest()


#: Fields every job entry carries, and the kinds of job a consumer knows how to run.
JOB_FIELDS = (b"id", b"c", b"fn", b"k")
JOB_KINDS = (b"call", b"chunk")


def validate_job(fields: Mapping[bytes, bytes]) -> None:
    """Raise ProtocolError for an entry a consumer must not run (after ``Signer.verify``)."""
    if fields.get(b"v") != VERSION:
        raise ProtocolError(f"unknown protocol version {fields.get(b'v')!r}")
    missing = [f.decode() for f in JOB_FIELDS if not fields.get(f)]
    if not fields.get(b"p") and not _handed_over(fields):
        missing.append("p")
    if missing:
        raise ProtocolError(f"job entry lacks {', '.join(missing)}")
    if fields[b"k"] not in JOB_KINDS:
        raise ProtocolError(f"unknown job kind {fields[b'k'][:40]!r}")
    if not _is_digest(fields[b"fn"]) or not _is_name(fields[b"id"]) or not _is_name(fields[b"c"]):
        raise ProtocolError("malformed job id, client id or function digest")
    if not fields.get(b"r", b"0").isdigit():
        raise ProtocolError("malformed retry count")
    if not fields.get(b"n", b"0").isdigit():
        raise ProtocolError("malformed call count")
    if b"cp" in fields and not (fields[b"cp"].isdigit() and 0 < int(fields[b"cp"]) < 10_000):
        raise ProtocolError(f"malformed core count {fields[b'cp'][:40]!r}")
    if b"to" in fields and not _is_seconds(fields[b"to"]):
        raise ProtocolError(f"malformed timeout {fields[b'to'][:40]!r}")


def _handed_over(fields: Mapping[bytes, bytes]) -> bool:
    """A payload in a same-host file: well-formed name, hash and folder address."""
    host, _, folder = fields.get(b"sm", b"").partition(b":")
    name = fields.get(b"pf", b"")
    return (
        _is_digest(fields.get(b"pz", b""))
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
