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
