"""wire: envelopes, HMAC signing, size limits."""

from __future__ import annotations

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
