"""wire: envelopes, HMAC signing, size limits."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from rdispy import wire
from rdispy.errors import PayloadTooLarge, SignatureError


def test_encode_adds_the_version_and_drops_none():
    fields = wire.encode({"id": "j1", "n": 3, "skip": None, "p": b"\x00\x01"})
    assert fields == {b"v": wire.VERSION, b"id": b"j1", b"n": b"3", b"p": b"\x00\x01"}


def test_signed_entry_verifies_and_any_change_is_refused():
    signer = wire.Signer("secret")
    fields = signer.sign("stream", wire.encode({"id": "j1", "p": b"payload"}))
    signer.verify("stream", fields)
    for key in (b"id", b"p", b"x"):
        altered = dict(fields)
        altered[key] = altered[key] + b"0"
        with pytest.raises(SignatureError):
            signer.verify("stream", altered)
    with pytest.raises(SignatureError, match="signature"):
        signer.verify("another-stream", fields)  # entries cannot be replayed into other streams
    with pytest.raises(SignatureError, match="signature"):
        wire.Signer("other").verify("stream", fields)


def test_unsigned_entry_is_refused_when_a_secret_is_set():
    with pytest.raises(SignatureError, match="not signed"):
        wire.Signer("secret").verify("s", wire.encode({"id": "j"}))


def test_expired_entry_is_refused():
    signer = wire.Signer("secret", ttl=-1)
    fields = signer.sign("s", wire.encode({"id": "j"}))
    with pytest.raises(SignatureError, match="expired"):
        signer.verify("s", fields)


def test_without_secret_nothing_is_signed_or_checked():
    signer = wire.Signer(None)
    fields = signer.sign("s", wire.encode({"id": "j"}))
    assert b"sig" not in fields
    signer.verify("s", fields)


def test_size_limit_names_the_job_and_the_sizes():
    wire.check_size(b"x" * 10, 10)
    with pytest.raises(
        PayloadTooLarge, match="job j9: payload of 11 bytes is over the limit of 10"
    ):
        wire.check_size(b"x" * 11, 10, "j9")


def test_blob_digest_is_the_content_address():
    assert wire.blob_digest(b"abc") == wire.blob_digest(b"abc") != wire.blob_digest(b"abd")
    assert len(wire.blob_digest(b"")) == 64


def _plain() -> None:
    pass


class _Holder:
    def method(self) -> None:
        pass


def test_function_label_is_the_qualified_name():
    import functools
    import time

    assert wire.function_label(abs) == b"abs"
    assert wire.function_label(time.sleep) == b"time.sleep"
    assert wire.function_label(_plain) == f"{__name__}._plain".encode()
    assert wire.function_label(_Holder().method) == f"{__name__}._Holder.method".encode()
    assert wire.function_label(functools.partial(_plain)) == f"{__name__}._plain".encode()
    assert wire.function_label(lambda: 0).endswith(b"<lambda>")
    long_name = type("X" * 300, (), {"__call__": lambda self: 0})()
    label = wire.function_label(long_name)
    assert len(label) == wire.LABEL_MAX and label.endswith(b"...")


def test_program_arguments_read_as_a_shell_line():
    assert wire.program_label("prog.sh") == b"prog.sh"
    assert wire.program_arguments((1, "two words", "")) == b"1 'two words' ''"
    assert len(wire.program_arguments(("x" * 500,))) == wire.LABEL_MAX


def test_a_job_entry_with_labels_is_valid():
    fields = wire.encode(
        {"id": "c-1", "c": "c", "fn": "0" * 64, "k": "call", "p": b"x", "fq": b"m.f", "fa": b"a"}
    )
    wire.validate_job(fields)


# -- the field table, the constants and the typed headers -----------------------------------


def _table_fields() -> set[bytes]:
    """The field names of the docstring's tables: the first word of each line of a ``::``
    block indented by four (continuation lines are indented further)."""
    doc = wire.__doc__ or ""
    names, in_table = set(), False
    for line in doc.splitlines():
        if line.endswith("::"):
            in_table = True
        elif in_table and line.startswith("    ") and not line.startswith("     "):
            names.add(line.split()[0].encode())
        elif in_table and line and not line.startswith(" "):
            in_table = False
    return names


def test_every_field_constant_is_in_the_docstring_table_and_back():
    constants = set(wire.field_names().values())
    table = _table_fields()
    assert constants - table == set(), "fields missing from wire's docstring table"
    assert table - constants == set(), "table rows without an F constant"
    assert len(constants) == len(wire.field_names()), "two constants name one field"


def test_text_names_mirror_the_bytes_names():
    text = {k: v for k, v in vars(wire.N).items() if isinstance(v, str) and not k.startswith("_")}
    assert {k: v.encode() for k, v in text.items()} == wire.field_names()


def test_job_header_decodes_what_the_client_encodes():
    fields = wire.encode(
        {
            wire.N.ID: "c1-7",
            wire.N.CLIENT: "c1",
            wire.N.FUNCTION: "a" * 64,
            wire.N.LABEL: b"mod.fn",
            wire.N.KIND: "chunk",
            wire.N.CALLS: 5,
            wire.N.PAYLOAD: b"\x80",
            wire.N.RETRIES: 2,
            wire.N.SENT: repr(1.25),
            wire.N.RUNTIME: b"py3.11-cp3.0",
            wire.N.SESSION: "s1",
            wire.N.TIMEOUT: 2.5,
            wire.N.CORES: 3,
            wire.N.PLACED: "n1",
            wire.N.EVENTS: 1,
            wire.N.DEPENDS: "d" * 64,
            wire.N.SETUP: "e" * 64,
            wire.N.SETUP_ARGS: "f" * 64,
            wire.N.CLEANUP: "0" * 64,
            wire.N.ARGUMENTS: "x" * 300,
            wire.N.HANDOFF: "h:folder",
        }
    )
    wire.validate_job(fields)
    header = wire.JobHeader.decode(fields)
    assert (header.job_id, header.raw_id, header.client) == ("c1-7", b"c1-7", "c1")
    assert (header.function, header.kind, header.is_chunk) == (b"a" * 64, b"chunk", True)
    assert (header.calls, header.retries, header.sent) == (b"5", 2, 1.25)
    assert (header.timeout, header.cores, header.session) == (2.5, 3, "s1")
    assert (header.placed, header.events, header.runtime) == ("n1", True, b"py3.11-cp3.0")
    assert (header.depends, header.setup) == (b"d" * 64, b"e" * 64)
    assert (header.setup_args, header.cleanup) == (b"f" * 64, b"0" * 64)
    assert (header.label, header.handoff) == (b"mod.fn", b"h:folder")
    assert header.arguments == b"x" * wire.LABEL_MAX
    bare = wire.JobHeader.decode({b"id": b"j", b"c": b"c", b"fn": b"f", b"k": b"call"})
    assert (bare.timeout, bare.cores, bare.session, bare.events) == (0.0, 1, "", False)
    assert (bare.is_chunk, bare.calls, bare.retries, bare.sent) == (False, b"", 0, None)
    assert (bare.setup, bare.setup_args, bare.depends, bare.placed) == (None, b"", None, None)


def test_result_header_round_trips_and_reads_what_a_node_writes():
    written = wire.result_fields(
        b"c1-7",
        "ok",
        {b"p": b"\x80"},
        {b"node": b"n1", b"ip": b"10.0.0.1", b"pid": b"42"},
        1.5,
        2.75,
        "out\n",
        "err\n",
    )
    written[b"ck"] = b"5"
    header = wire.ResultHeader.decode(written)
    assert header == wire.ResultHeader(
        "c1-7", b"ok", "n1", "10.0.0.1", 42, 1.5, 2.75, "out\n", "err\n", chunk_calls=5
    )
    assert header.encode() == {k: v for k, v in written.items() if k != b"p"}
    assert wire.ResultHeader.decode(header.encode()) == header
    every = wire.ResultHeader(
        "j", b"lost", "n", "ip", 1, 0.1, 0.2, "o", "e", -1, "why", b"timeout", "s", b"1-0",
        "f.txt", 0o755,
    )  # fmt: skip
    assert wire.ResultHeader.decode(every.encode()) == every
    assert set(every.encode()) <= set(wire.field_names().values())


def test_result_header_of_a_refusal_a_move_and_a_malformed_entry():
    refused = wire.ResultHeader.decode(wire.refusal_fields(b"j1", "n1", "no"))
    assert (refused.kind, refused.node, refused.why, refused.pid) == (b"refused", "n1", "no", None)
    moved = wire.ResultHeader.decode(
        wire.encode({"id": "j1", "k": "moved", "node": "n2", "stream": "s:n2", "eid": b"1-0"})
    )
    assert (moved.stream, moved.eid, moved.node) == ("s:n2", b"1-0", "n2")
    bad = wire.ResultHeader.decode({b"id": b"j", b"k": b"ok", b"pid": b"7", b"t0": b"soon"})
    assert (bad.malformed, bad.pid, bad.started, bad.ended) == (True, 7, None, None)
    odd = wire.ResultHeader.decode({b"k": b"ok", b"ck": b"x", b"mode": b"?"})
    assert (odd.chunk_calls, odd.mode, odd.job_id) == (-1, 0o644, "")


PACKAGE = Path(wire.__file__).parent.parent

#: Bytes literals outside rdispy/wire that equal a field name but are no stream-entry field.
NOT_FIELDS = {
    ("client/results.py", b"node"),  # a "lost" entry's cause value (the node was lost)
    ("nodes.py", b"name"),  # node records are hashes, not stream entries (keys.node)
    ("nodes.py", b"sig"),  # the signature of a node record
    ("relay/policy.py", b"name"),  # a node record's name, checked by the relay
}


def _field_literals() -> tuple[set[tuple[str, bytes]], list[str]]:
    """Bytes literals naming a field outside rdispy/wire and keys.py, and ``wire.encode`` calls
    given a dict literal with a text key naming a field (should be ``wire.N.*``)."""
    names = set(wire.field_names().values())
    found: set[tuple[str, bytes]] = set()
    encoded: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        if where.startswith("wire/") or where == "keys.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), where)):
            if isinstance(node, ast.Constant) and isinstance(node.value, bytes):
                if node.value in names:
                    found.add((where, node.value))
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "encode"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "wire"
            ):
                for arg in node.args:
                    for key in arg.keys if isinstance(arg, ast.Dict) else []:
                        if isinstance(key, ast.Constant) and str(key.value).encode() in names:
                            encoded.append(f"{where}:{key.lineno}: {key.value!r}")
    return found, encoded


def test_no_module_but_wire_spells_a_field_name():
    found, encoded = _field_literals()
    assert found - NOT_FIELDS == set(), "use wire.F.* (or add a genuine non-field here)"
    assert NOT_FIELDS - found == set(), "an allow-listed literal is gone: drop it"
    assert encoded == [], "use wire.N.* for the keys given to wire.encode"
