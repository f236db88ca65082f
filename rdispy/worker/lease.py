"""A node name's lease: the name is held by one live worker at a time.

The lease is a key set NX with the heartbeat TTL, holding the holder's incarnation, host and
pid; each heartbeat refreshes it.  A worker started under a name whose lease another holds waits
for it to lapse (that worker crashed: it takes over) and refuses to start if it is refreshed
(that worker lives: NodeNameInUse).  A worker that finds its lease taken while it runs was cut
off long enough for another to take over the name, and stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import redis

from rdispy import defaults
from rdispy.errors import NodeNameInUse
from rdispy.keys import Keys
from rdispy.nodes import NodeRecord
from rdispy.scripts import Scripts

log = logging.getLogger(__name__)


class NameLease:
    """This worker's hold on its node name."""

    def __init__(self, scripts: Scripts, keys: Keys, record: NodeRecord, heartbeat: float) -> None:
        self.scripts = scripts
        self.keys = keys
        self.record = record  # the node's record: its incarnation changes when it reincarnates
        self.name = record.name
        self.heartbeat = heartbeat
        self.held = ""  # the value our name lease holds ("" before we took it)
        self.taken_by: str | None = None  # another worker holds our name now

    def _value(self) -> str:
        return f"{self.record.incarnation} {self.record.host} {os.getpid()}"

    def lease(self, previous: str = "", ttl: float | None = None) -> tuple[str, int] | None:
        """Take, refresh (``ttl`` None: the heartbeat TTL) or release (0) our name's lease;
        None when we hold it, else who does and for how many more milliseconds."""
        ttl = self.heartbeat * defaults.HEARTBEATS_MISSED if ttl is None else ttl
        value = self._value()
        reply: Any = self.scripts.lease(
            keys=[self.keys.lease(self.name)], args=[value, previous, int(ttl * 1000)]
        )
        if int(reply[0]) == 1:
            self.held = value if ttl else ""
            return None
        holder = reply[1]
        holder = holder.decode(errors="replace") if isinstance(holder, bytes) else str(holder)
        return holder, int(reply[2])

    def take(self, stopping: Callable[[], bool], wait: Callable[[float], None]) -> None:
        """Take our node name's lease.  If another worker holds it, wait until its lease lapses
        (it crashed: we take over) or is refreshed (it is alive: NodeNameInUse)."""
        held = self.lease()
        if held is None:
            return
        first, last_ttl = held
        log.warning(
            "node %s: name held by %s; waiting up to %.1fs for its lease to lapse",
            self.name,
            first,
            last_ttl / 1000,
        )
        # a lease outliving a whole TTL of waiting (or one without a TTL) is held by a live worker
        give_up = time.monotonic() + self.heartbeat * (defaults.HEARTBEATS_MISSED + 1)
        while not stopping():
            wait(self.heartbeat / 4)
            held = self.lease()
            if held is None:
                log.info("node %s: the previous holder's lease lapsed; taking over", self.name)
                return
            holder, ttl = held
            if holder != first or ttl > last_ttl or time.monotonic() > give_up:  # it lives
                raise NodeNameInUse(
                    f"node name {self.name!r} is in use by a live worker ({holder}: "
                    "incarnation, host, pid); stop it or pick another --name"
                )
            last_ttl = ttl

    def refresh(self) -> bool:
        """Refresh the lease at a heartbeat; False if another worker holds it now (``taken_by``
        says who).  When Redis cannot be reached, the lease is left to the next beat."""
        try:
            held = self.lease(self.held)
        except redis.RedisError as exc:
            log.warning("node %s: lease refresh failed: %s", self.name, exc)
            held = None
        if held is not None:
            self.taken_by = held[0]
            return False
        return True

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(redis.RedisError):
                self.lease(ttl=0)
