"""The job streams' consumer group, shared by both sides: creating it, and naming its consumers.

Jobs wait in the shared ``jobs`` stream and in each node's own stream, read by the consumer group
``CONSUMER_GROUP`` (``rdispy.keys``).  Whoever writes there first creates the group
(``ensure_group``): a client, the fair scheduler, or a node.  Each consumer of the group goes by
a ``ConsumerName`` that says whose it is, ``<node>/<incarnation>/<slot>/<nonce>``: a node names
its consumers so; recovery on the nodes and the monitor read the names back to tell which node
(incarnation) holds an entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from rdispy.keys import CONSUMER_GROUP, Keys

#: Separates the parts of a consumer's name.
SEPARATOR = "/"


def ensure_group(client: redis.Redis, keys: Keys, node: str | None = None) -> None:
    """Create the shared job stream (and a node's own stream) with their consumer group if
    they do not exist (idempotent)."""
    streams = [keys.jobs] if node is None else [keys.jobs, keys.node_jobs(node)]
    for stream in streams:
        try:
            client.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
    if node is not None:
        client.persist(keys.node_jobs(node))  # it expires only while its node is away


@dataclass(frozen=True)
class ConsumerName:
    """The name of one consumer in the group: its node, the node's incarnation, its slot there
    and a nonce (a restarted consumer of the same slot is another consumer)."""

    node: str
    incarnation: str
    slot: int
    nonce: str

    def __str__(self) -> str:
        return SEPARATOR.join((self.node, self.incarnation, str(self.slot), self.nonce))

    @classmethod
    def parse(cls, raw: str | bytes) -> ConsumerName | None:
        """The parts of a consumer's name, or None for a name not made by ``str``."""
        text = raw.decode() if isinstance(raw, bytes) else raw
        parts = text.rsplit(SEPARATOR, 3)
        if len(parts) != 4 or not parts[2].isdigit():
            return None
        return cls(parts[0], parts[1], int(parts[2]), parts[3])
