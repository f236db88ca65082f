"""Signing and size limits: HMAC-SHA256 over an entry's fields and its stream, expiry, the
payload limit, and content addresses of blobs."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

from rdispy.errors import PayloadTooLarge, SignatureError
from rdispy.wire.fields import F, Fields, _b


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


def blob_digest(data: bytes) -> str:
    """Content address of a blob."""
    return hashlib.sha256(data).hexdigest()
