"""Node records and heartbeats (key logic only, on fakeredis)."""

from __future__ import annotations

import fakeredis

from rdispy.keys import Keys
from rdispy.nodes import NodeRecord, deregister, heartbeat, live_nodes


def test_heartbeat_writes_a_full_expiring_record_and_deregister_removes_it():
    client = fakeredis.FakeRedis()
    keys = Keys("c")
    record = NodeRecord(name="n1", cpus=4)
    heartbeat(client, keys, record, busy=1, done=5, ttl=3.0)
    [node] = live_nodes(client, keys)
    assert node["name"] == "n1" and node["cpus"] == "4" and node["busy"] == "1"
    assert node["done"] == "5" and node["incarnation"] == record.incarnation
    assert 0 < client.pttl(keys.node("n1")) <= 3000
    deregister(client, keys, record)
    assert live_nodes(client, keys) == []


def test_expired_record_is_not_listed_as_live():
    client = fakeredis.FakeRedis()
    keys = Keys("c")
    heartbeat(client, keys, NodeRecord(name="gone", cpus=1), 0, 0, ttl=3.0)
    client.delete(keys.node("gone"))  # what expiry does
    assert live_nodes(client, keys) == []


def test_a_restarted_node_is_a_new_incarnation():
    assert NodeRecord(name="n", cpus=1).incarnation != NodeRecord(name="n", cpus=1).incarnation
