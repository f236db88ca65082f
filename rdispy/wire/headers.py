"""Typed views of entry headers: ``JobHeader`` (what a node reads of a job entry) and
``ResultHeader`` (what a client reads of a result entry, decoded once, and encoded by a node)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from rdispy.wire.checks import LABEL_MAX
from rdispy.wire.fields import VERSION, F, Fields


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
