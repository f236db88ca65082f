"""The node's reading of the cluster's control stream: session closes, drain requests and job
cancels, each acted on through the callbacks the supervisor gives.

Every node reads every control message, from the newest one there when it came up.  A message
without a valid signature is refused here (logged, counted, dead-lettered) and left in the
capped stream, for each node to refuse on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis

from rdispy import wire
from rdispy.errors import RdispyError
from rdispy.keys import Keys

log = logging.getLogger(__name__)


class ControlReader:
    """Reads the control stream and hands each valid message to its callback."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        signer: wire.Signer,
        node: str,
        on_close: Callable[[str, bool], None],
        on_drain: Callable[[], None],
        on_cancel: Callable[[str], None],
    ) -> None:
        self.client = client
        self.keys = keys
        self.signer = signer
        self.node = node
        self.on_close = on_close  # (session, remove its files)
        self.on_drain = on_drain
        self.on_cancel = on_cancel  # (job id)
        self._last: bytes | None = None  # last control message seen

    def read(self) -> None:
        if self._last is None:  # start after whatever was sent before we came up
            newest: Any = self.client.xrevrange(self.keys.control, count=1)
            self._last = newest[0][0] if newest else b"0-0"
        reply: Any = self.client.xread({self.keys.control: self._last}, count=100)
        for eid, fields in reply[0][1] if reply else []:
            self._last = eid
            try:
                self.signer.verify(self.keys.control, fields)
            except RdispyError as exc:
                self._refuse(eid, fields, str(exc))
                continue
            if fields.get(wire.F.OP) == b"close":
                session = fields.get(wire.F.CLOSED_SESSION, b"").decode()
                if session.isalnum():
                    self.on_close(session, fields.get(wire.F.REMOVE) == b"1")
            elif fields.get(wire.F.OP) == b"drain":
                if fields.get(wire.F.NODE, b"").decode(errors="replace") == self.node:
                    self.on_drain()
            elif fields.get(wire.F.OP) == b"cancel":
                self.on_cancel(fields.get(wire.F.ID, b"").decode())

    def _refuse(self, eid: bytes, fields: dict[bytes, bytes], reason: str) -> None:
        """Log, count and dead-letter a control message without a valid signature.  It stays in
        the (capped) control stream: every node reads it and refuses it on its own."""
        log.error("node %s: ignoring control message %s: %s", self.node, eid.decode(), reason)
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(
            self.keys.dead_letters,
            {
                wire.F.ENTRY: eid,
                wire.F.STREAM: self.keys.control.encode(),
                wire.F.REASON: reason.encode(),
                wire.F.NODE: self.node.encode(),
                wire.F.ID: fields.get(wire.F.ID, b"")[:200],
            },
            maxlen=1000,
            approximate=True,
        )
        pipe.hincrby(self.keys.counters, "control-refused", 1)
        pipe.execute()
