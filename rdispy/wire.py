"""The wire format: what goes into a stream entry, signed and size-checked.

A job entry and a result entry are flat Redis stream fields (bytes -> bytes).  Small readable
header fields sit beside one opaque pickled payload field, so that nodes and tools can route and
inspect entries without unpickling anything.  ``F`` names every field (bytes), ``N`` the same
names as text (the keys of a mapping given to ``encode``); ``JobHeader`` and ``ResultHeader``
decode them.  The tables below list every field, one a line (a test checks them against ``F``).

Job entry fields (a client's ``<cluster>:jobs`` or ``<cluster>:node:<name>:jobs`` stream)::

    v        protocol version (``VERSION``), in every entry this module makes
    id       job id
    c        client id: the job's result stream is that client's
    fn       function blob digest
    k        kind: "call" | "chunk"
    p        pickled payload (arguments; a map chunk's calls)
    n        calls in a map chunk (kind "chunk")
    r        max retries
    t        submit time (the client's clock)
    x        expiry (signed entries)
    sm       the client's same-host handoff folder ("<host id>:<name>", see ``handoff``)
    pf       a payload handed over in a file of the ``sm`` folder instead of ``p``: its name
    pz       that file's sha256
    fq       what the job runs, for people (the monitor; nothing runs by it): a function's
             ``module.qualname`` (``function_label``), or a program's file name; at most 200 bytes
    fa       a program job's arguments as one line (``program_arguments``), at most 200 bytes
    rt       the client's runtime tag (``serialization.runtime_tag``: Python and cloudpickle minor
             versions); a node of another runtime hands the entry to a live node of that runtime,
             or refuses it naming both when there is none
    cl       JobCluster session id (the node's session folder, setup and cleanup)
    to       timeout in seconds (empty or 0: none)
    cp       cores the job needs (1 when absent)
    nd       the node it is placed on (its own stream); also set when a node hands it on
    ev       "1": report the job's start ("run" result event) - someone listens
    dp       digest of the session's dependency manifest (files in the session folder)
    su       digest of the session's setup function blob
    sa       digest of the pickled setup arguments (per node)
    cu       digest of the session's cleanup function blob
    sig      HMAC-SHA256 over all other fields (only with a secret)

Result entry fields (a client's ``<cluster>:results:<client>`` stream); ``v``, ``id``, ``x``,
``sig``, ``p``, ``pf``/``pz`` (a result handed over in a file of the job's ``sm`` folder) as in
a job entry, and::

    k        "ok" | "exc" | "lost" | "cancelled" | "refused"; events (the job goes on): "run",
             "prov", "file", "excl", "need", "moved"; "wake" (no id: ends the client's read)
    node     the node that ran it (or refused, lost, moved it)
    ip       that node's address
    pid      the consumer process that ran it
    ck       a map chunk's call count
    t0       start time (``repr`` of a float, the node's clock)
    t1       end time
    out      captured standard output
    err      captured standard error
    why      text reason for "lost", "cancelled", "refused" and "excl"
    cause    why a job was lost: "timeout" | "cancel" | "memory" | "node" | a crash
    stream   "moved": the stream the entry now waits in (that node's)
    eid      "moved": its entry id there
    name     "file": the file's name (relative, under the client's dest_path)
    mode     "file": its permission bits (decimal)

Control entry fields (``<cluster>:control``, read by every node; ``v``, ``x``, ``sig``, and
``id`` of the job to cancel, ``node`` to drain)::

    op       "close" | "drain" | "cancel"
    session  "close": the session that is over
    rm       "close": "1" to remove the session's folder too

Dead-letter fields (``<cluster>:dead``: entries refused; also ``id``, ``node``)::

    entry    the refused entry's id
    reason   why it was refused

Attempt record fields (``<cluster>:recent``, written by the scripts)::

    a        the attempt as JSON (``attempts``)
    d        "1": a dropped attempt (a duplicate run whose result was not delivered)

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
from typing import Final, NamedTuple

from rdispy.errors import JobError, PayloadTooLarge, ProtocolError, SignatureError

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


class JobHeader:
    """A typed view of a job entry's header fields (decoded when read, so that wrapping an
    entry costs nothing); ``fields`` is the entry itself."""

    __slots__ = ("fields",)

    def __init__(self, fields: Mapping[bytes, bytes]) -> None:
        self.fields = fields

    @classmethod
    def decode(cls, fields: Mapping[bytes, bytes]) -> JobHeader:
        return cls(fields)

    @property
    def raw_id(self) -> bytes:
        return self.fields[F.ID]

    @property
    def job_id(self) -> str:
        return self.fields[F.ID].decode()

    @property
    def client(self) -> str:
        return self.fields[F.CLIENT].decode()

    @property
    def function(self) -> bytes:
        return self.fields[F.FUNCTION]

    @property
    def kind(self) -> bytes:
        return self.fields[F.KIND]

    @property
    def is_chunk(self) -> bool:
        return self.fields.get(F.KIND) == b"chunk"

    @property
    def calls(self) -> bytes:
        """A map chunk's call count as sent (b"" when absent)."""
        return self.fields.get(F.CALLS, b"")

    @property
    def retries(self) -> int:
        return int(self.fields.get(F.RETRIES, b"0") or 0)

    @property
    def sent(self) -> float | None:
        raw = self.fields.get(F.SENT)
        return float(raw) if raw else None

    @property
    def timeout(self) -> float:
        """Seconds (0: none)."""
        return float(self.fields.get(F.TIMEOUT, b"0") or 0)

    @property
    def cores(self) -> int:
        return int(self.fields.get(F.CORES, b"1") or 1)

    @property
    def session(self) -> str:
        """The JobCluster session ("" for none)."""
        return self.fields.get(F.SESSION, b"").decode()

    @property
    def events(self) -> bool:
        """Whether the client listens for the job's start."""
        return bool(self.fields.get(F.EVENTS))

    @property
    def placed(self) -> str | None:
        raw = self.fields.get(F.PLACED)
        return raw.decode(errors="replace") if raw else None

    @property
    def depends(self) -> bytes | None:
        return self.fields.get(F.DEPENDS)

    @property
    def setup(self) -> bytes | None:
        return self.fields.get(F.SETUP)

    @property
    def setup_args(self) -> bytes:
        return self.fields.get(F.SETUP_ARGS, b"")

    @property
    def cleanup(self) -> bytes | None:
        return self.fields.get(F.CLEANUP)

    @property
    def runtime(self) -> bytes | None:
        return self.fields.get(F.RUNTIME)

    @property
    def handoff(self) -> bytes | None:
        return self.fields.get(F.HANDOFF)

    @property
    def label(self) -> bytes:
        """``fq``, cut to LABEL_MAX (whatever a client sent)."""
        return self.fields.get(F.LABEL, b"")[:LABEL_MAX]

    @property
    def arguments(self) -> bytes:
        """``fa``, cut to LABEL_MAX."""
        return self.fields.get(F.ARGUMENTS, b"")[:LABEL_MAX]


class ResultHeader(NamedTuple):
    """A result entry's header fields, decoded (everything but the payload).  A tuple, so that
    decoding one per result stays cheap; ``malformed``: its pid or times did not parse (those
    after the first bad one are None)."""

    job_id: str
    kind: bytes
    node: str | None = None
    ip: str | None = None
    pid: int | None = None
    started: float | None = None
    ended: float | None = None
    stdout: str = ""
    stderr: str = ""
    chunk_calls: int | None = None
    why: str = ""
    cause: bytes | None = None
    stream: str | None = None
    eid: bytes | None = None
    name: str = ""
    mode: int = 0o644
    malformed: bool = False

    @classmethod
    def decode(cls, fields: Mapping[bytes, bytes]) -> ResultHeader:
        get = fields.get
        pid = started = ended = None
        malformed = False
        try:
            raw = get(F.PID)
            pid = None if raw is None else int(raw)
            raw = get(F.STARTED)
            started = None if raw is None else float(raw)
            raw = get(F.ENDED)
            ended = None if raw is None else float(raw)
        except ValueError:
            malformed = True
        raw = get(F.CHUNK_CALLS)
        calls = None if raw is None else int(raw) if raw.isdigit() else -1
        raw = get(F.MODE)
        mode = int(raw) if raw is not None and raw.isdigit() else 0o644
        # the text fields, decoded only when they are there (most results carry few of them)
        node, ip, out, err, why, stream, name = (
            get(F.NODE), get(F.IP), get(F.STDOUT), get(F.STDERR), get(F.WHY), get(F.STREAM),
            get(F.NAME),
        )  # fmt: skip
        return tuple.__new__(
            cls,
            (
                get(F.ID, b"").decode(errors="replace"),
                get(F.KIND, b""),
                node.decode(errors="replace") if node else None,
                ip.decode(errors="replace") if ip else None,
                pid,
                started,
                ended,
                out.decode(errors="replace") if out else "",
                err.decode(errors="replace") if err else "",
                calls,
                why.decode(errors="replace") if why else "",
                get(F.CAUSE),
                None if stream is None else stream.decode(errors="replace"),
                get(F.EID),
                name.decode(errors="replace") if name else "",
                mode,
                malformed,
            ),
        )

    def encode(self) -> Fields:
        """The header's fields as a node writes them (``v`` first; empty and absent values are
        left out, as ``result_fields`` and ``encode`` leave them out)."""
        out: Fields = {F.VERSION: VERSION, F.ID: self.job_id.encode(), F.KIND: self.kind}
        texts = ((F.NODE, self.node), (F.IP, self.ip), (F.STDOUT, self.stdout),
                 (F.STDERR, self.stderr), (F.WHY, self.why), (F.STREAM, self.stream),
                 (F.NAME, self.name))  # fmt: skip
        for key, text in texts:
            if text:
                out[key] = text.encode()
        if self.pid is not None:
            out[F.PID] = b"%d" % self.pid
        if self.started is not None:
            out[F.STARTED] = repr(self.started).encode()
        if self.ended is not None:
            out[F.ENDED] = repr(self.ended).encode()
        if self.chunk_calls is not None:
            out[F.CHUNK_CALLS] = b"%d" % self.chunk_calls
        if self.cause is not None:
            out[F.CAUSE] = self.cause
        if self.eid is not None:
            out[F.EID] = self.eid
        if self.name:
            out[F.MODE] = b"%d" % self.mode
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
            if key != F.SIG:
                value = fields[key]
                mac.update(b"\x00%d:%s=%d:" % (len(key), key, len(value)))
                mac.update(value)
        return mac.hexdigest().encode()

    def sign(self, stream: str, fields: Fields) -> Fields:
        """Add expiry and signature fields (no-op without a secret)."""
        if self._key is not None:
            fields[F.EXPIRY] = b"%d" % int(time.time() + self._ttl)
            fields[F.SIG] = self._digest(stream, fields)
        return fields

    def verify(self, stream: str, fields: Mapping[bytes, bytes]) -> None:
        """Raise SignatureError unless the entry is validly signed and unexpired."""
        if self._key is None:
            return
        job_id = fields.get(F.ID, b"?").decode(errors="replace")
        sig = fields.get(F.SIG)
        if not sig:
            raise SignatureError("entry is not signed but a secret is configured", job_id)
        if not hmac.compare_digest(sig, self._digest(stream, fields)):
            raise SignatureError("signature does not match (wrong secret or altered entry)", job_id)
        try:
            expiry = float(fields.get(F.EXPIRY, b"0"))
        except ValueError:
            expiry = 0.0  # signed with a malformed expiry: refuse it rather than fail on it
        if not expiry >= time.time():
            raise SignatureError("signed entry has expired (or has no valid expiry)", job_id)


def refusal_fields(job_id: bytes, node: str, reason: str) -> Fields:
    """A refusal notice: the job ``job_id`` was not run by ``node``, for ``reason``.  It carries
    no code, so a client reads it even when it cannot verify it (a node of another secret)."""
    return {F.VERSION: VERSION, F.ID: job_id[:200], F.KIND: b"refused", F.NODE: node.encode(),
            F.WHY: reason.encode()[:2000]}  # fmt: skip


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


def blob_digest(data: bytes) -> str:
    """Content address of a blob."""
    return hashlib.sha256(data).hexdigest()


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
