"""Small pieces of the outage handling: reading deleted pending entries out of a backlog reply,
and telling a refused TLS certificate from a server that is merely not there."""

from __future__ import annotations

import ssl

import redis

from rdispy.connection import _tls_refusal
from rdispy.link import all_stream_entries, deleted_entries


def test_a_backlog_reply_separates_deleted_entries_from_live_ones():
    reply = [
        [b"s1", [(b"1-0", [b"id", b"a"]), (b"2-0", None)]],
        [b"s2", [(b"3-0", None)]],
    ]
    assert deleted_entries(reply) == [("s1", b"2-0"), ("s2", b"3-0")]
    assert [(e.stream, e.eid) for e in all_stream_entries(reply)] == [("s1", b"1-0")]
    assert deleted_entries({b"s1": [(b"4-0", None)]}) == [("s1", b"4-0")]  # RESP3 form
    assert deleted_entries(None) == []


def test_a_certificate_refusal_is_told_apart_from_an_absent_server():
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cause.verify_message = "unable to get local issuer certificate"
    wrapped = redis.ConnectionError("Error 1 connecting to localhost:6379.")
    wrapped.__context__ = cause
    assert (
        _tls_refusal(wrapped) == "certificate verify failed: unable to get local issuer certificate"
    )
    assert _tls_refusal(redis.ConnectionError("Connection refused")) is None
