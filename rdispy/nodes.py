"""Node records: what a running node tells the cluster about itself, shared by both sides.

A supervisor (rdispy/worker) registers its record and refreshes it with each heartbeat
(``heartbeat``, ``deregister``); clients, the fair scheduler, the relay and the monitor read the
live ones (``live_nodes``).  Writer and reader of the record's fields live here together.

With a shared secret the record is signed (HMAC over every field but ``sig`` and ``relay``, with
the record's key as the stream name), and readers that hold the secret ignore records without a
valid signature: a registration forged straight into Redis never receives work.  ``relay`` is
added by ``rdispy relay`` to the records it forwards, for display only.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import redis

from rdispy import __version__, avail, defaults, wire
from rdispy.errors import SignatureError
from rdispy.keys import Keys

log = logging.getLogger(__name__)

#: Field of a node record that its signature does not cover (added by `rdispy relay`).
RELAY_FIELD = b"relay"


def address_seen_by(client: redis.Redis) -> str:
    """This host's IP address as the Redis server sees it (127.0.0.1 over a unix socket)."""
    try:
        addr = str(client.client_info().get("addr", ""))
    except redis.RedisError:
        return "127.0.0.1"
    host = addr.rsplit(":", 1)[0].strip("[]")
    return host if host and "/" not in host else "127.0.0.1"


@dataclass
class NodeRecord:
    """Identity of one running `rdispy worker`; a restart is a new incarnation."""

    name: str
    cpus: int
    ip: str = "127.0.0.1"
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    incarnation: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started: float = field(default_factory=time.time)

    def static_fields(self) -> dict[str, str]:
        return {
            "name": self.name,
            "host": self.host,
            "ip": self.ip,
            "cpus": str(self.cpus),
            "pid": str(self.pid),
            "incarnation": self.incarnation,
            "started": repr(self.started),
            "python": platform.python_version(),
            "cloudpickle": cloudpickle.__version__,
            "rdispy": __version__,
            "wire": wire.VERSION.decode(),
            "platform": sys.platform,
        }


def heartbeat(
    client: redis.Redis,
    keys: Keys,
    record: NodeRecord,
    busy: int,
    done: int,
    ttl: float,
    signer: wire.Signer | None = None,
) -> bool:
    """Write the whole node record and its expiry in one round trip (it may have expired, or
    the server may have restarted empty, so every beat is a full registration).

    Returns whether the record still held this incarnation before the beat: False on the first
    beat, and after the node was declared dead.  ``hb`` and the ``nodes`` score are this host's
    clock, for display only: nothing compares them with another host's (liveness is the record's
    TTL, and the index is pruned of names whose record has expired, by ``live_nodes``).
    """
    now = time.time()
    key = keys.node(record.name)
    fields: dict[Any, Any] = {
        **record.static_fields(),
        "hb": repr(now),
        "busy": str(busy),
        "done": str(done),
        **avail.to_fields(avail.measure()),
    }
    if signer is not None and signer.enabled:
        encoded = {str(k).encode(): str(v).encode() for k, v in fields.items()}
        fields = dict(signer.sign(key, encoded))
    pipe = client.pipeline(transaction=True)
    pipe.hget(key, "incarnation")
    pipe.hset(key, mapping=fields)
    pipe.pexpire(key, int(ttl * 1000))
    pipe.zadd(keys.nodes, {record.name: now})
    previous = pipe.execute()[0]
    return previous is not None and previous.decode() == record.incarnation


def deregister(client: redis.Redis, keys: Keys, record: NodeRecord) -> None:
    """Remove the node's record; its own job stream expires unless the node comes back (a job
    placed there in the meantime is still moved or failed by its client)."""
    pipe = client.pipeline(transaction=True)
    pipe.delete(keys.node(record.name))
    pipe.zrem(keys.nodes, record.name)
    pipe.expire(keys.node_jobs(record.name), defaults.JOB_TTL)
    pipe.execute()


def live_nodes(
    client: redis.Redis, keys: Keys, signer: wire.Signer | None = None
) -> list[dict[str, str]]:
    """Records of nodes whose heartbeat has not expired (with an enabled ``signer``: only those
    validly signed); names whose record has expired leave the index (a node that comes back
    adds itself again with its next beat)."""
    names: list[bytes] = client.zrange(keys.nodes, 0, -1)  # type: ignore[assignment]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(keys.node(name.decode()))
    records, expired = [], []
    for name, raw in zip(names, pipe.execute(), strict=True):
        if not raw:
            expired.append(name)
        elif signer is None or signed(signer, keys.node(name.decode()), raw):
            records.append({k.decode(): v.decode() for k, v in raw.items()})
    if expired:
        client.zrem(keys.nodes, *expired)
    return records


_refused: set[tuple[str, bytes]] = set()  # (key, sig) already logged


def signed(signer: wire.Signer, key: str, raw: dict[bytes, bytes]) -> bool:
    """Whether a node record carries a valid signature of the shared secret."""
    fields = {k: v for k, v in raw.items() if k != RELAY_FIELD}
    try:
        signer.verify(key, fields)
    except SignatureError as exc:
        mark = (key, raw.get(b"sig", b""))
        if mark not in _refused:
            _refused.add(mark)
            log.warning("ignoring node record %s: %s", key, exc)
        return False
    return bool(raw.get(b"name")) and key.endswith(":" + raw[b"name"].decode(errors="replace"))
