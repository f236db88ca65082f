"""Calls into job entries: the function's blob (pickled once per client), the arguments (inline,
or pickled straight into a same-host handoff file), the signed entry.

    Dispatcher.submit --fn--> Encoder.function_blob --digest (and bytes the first time)-->
        Dispatcher.submit --push the blob--> Sender
    Dispatcher.submit --each call--> Encoder.job --signed entry--> Ledger.sent, Sender.push

Everything is pickled and size-checked in the caller's thread, before anything is queued.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any

from rdispy import handoff, serialization, wire
from rdispy.client.ledger import Ledger


class Encoder:
    """Encodes one client's calls as job entries."""

    def __init__(
        self,
        ledger: Ledger,
        signer: wire.Signer,
        client_id: str,
        max_payload: int,
        max_retries: int,
    ) -> None:
        self._ledger = ledger
        self._signer = signer
        self._client_id = client_id
        self._max_payload = max_payload
        self._max_retries = max_retries

    def function_blob(self, fn: Callable[..., Any]) -> tuple[str, bytes | None, bytes]:
        """Digest of ``fn``'s blob, its bytes when they still have to be uploaded, and its label
        (``fq``: computed with the blob, once per function, then read from the same cache)."""
        known = self._ledger.functions.get(id(fn))
        if known is not None:
            held = known[0]
            if held is fn or (isinstance(held, weakref.ref) and held() is fn):
                return known[1], None, known[2]
        data = serialization.dumps(fn, "function")
        wire.check_size(data, self._max_payload)
        return wire.blob_digest(data), data, wire.function_label(fn)

    def remember(self, fn: Callable[..., Any], digest: str, label: bytes, blob: bytes) -> None:
        """Cache ``fn``'s digest and label once its first jobs are encoded, and keep its blob
        (sent again if the server restarts empty)."""
        try:
            self._ledger.functions[id(fn)] = (weakref.ref(fn), digest, label)
        except TypeError:  # builtins take no weak reference (and keep nothing alive)
            self._ledger.functions[id(fn)] = (fn, digest, label)
        self._ledger.blob_data[digest] = blob

    def job(
        self,
        call: Any,
        seq: int,
        job_id: str,
        function: tuple[str, bytes],
        kind: str,
        header: dict[str, object] | None,
        signed_for: str,
    ) -> wire.Fields:
        """The signed entry of one job: ``call`` of the function of ``function`` (its digest
        and label), signed for the stream ``signed_for``."""
        digest, label = function
        extra = self._arguments(call, seq, job_id)
        fields = wire.encode(
            {
                wire.N.ID: job_id,
                wire.N.CLIENT: self._client_id,
                wire.N.FUNCTION: digest,
                wire.N.LABEL: label,
                wire.N.KIND: kind,
                wire.N.CALLS: len(call) if kind == "chunk" else None,
                **extra,
                wire.N.RETRIES: self._max_retries,
                wire.N.SENT: repr(time.time()),
                wire.N.RUNTIME: serialization.RUNTIME,
                **(header or {}),
            }
        )
        return self._signer.sign(signed_for, fields)

    def _arguments(self, call: Any, seq: int, job_id: str) -> dict[str, object]:
        """Payload fields of one job: pickled inline, or (large, with a same-host folder)
        pickled straight into a handoff file that the entry names."""
        folder = self._ledger.handoff
        small = 0 <= serialization.plain_size(call) < handoff.MIN_BYTES // 2
        if small or folder is None:
            if small:
                payload = serialization.dumps_plain(call)
            else:
                payload = serialization.dumps(call, "arguments", job_id)
            wire.check_size(payload, self._max_payload, job_id)
            if folder is None:
                return {wire.N.PAYLOAD: payload}
            return {wire.N.PAYLOAD: payload, wire.N.HANDOFF: folder.address}
        spool = handoff.Spool(folder, f"a-{seq}")
        try:
            serialization.dump(call, spool, "arguments", job_id)
            wire.check_size(spool.size, self._max_payload, job_id)
            inline = spool.finish()
        except BaseException:
            spool.discard()
            raise
        if inline is not None:
            return {wire.N.PAYLOAD: inline, wire.N.HANDOFF: folder.address}
        return {
            wire.N.HANDOFF: folder.address,
            wire.N.PAYLOAD_FILE: spool.name,
            wire.N.PAYLOAD_HASH: spool.digest,
        }
