"""A JobCluster's placement bookkeeping: node loads read from Redis, caps and held jobs (on
fakeredis)."""

from __future__ import annotations

import fakeredis

from rdispy.client.placing import NodeCaps, NodeLoads
from rdispy.keys import Keys
from rdispy.nodes import NodeRecord, heartbeat
from rdispy.scheduler.placement import NodeLoad


def test_loads_read_records_and_queued_jobs_and_count_placed_ones_until_the_next_read():
    client, keys = fakeredis.FakeRedis(), Keys("c")
    heartbeat(client, keys, NodeRecord(name="n1", cpus=4, ip="10.0.0.1"), 1, 0, ttl=30.0)
    client.xadd(keys.node_jobs("n1"), {"id": "j"})
    loads = NodeLoads(client, keys, max_age=60.0)
    [n1] = loads.current()
    assert (n1.name, n1.ip, n1.cpus, n1.busy, n1.queued) == ("n1", "10.0.0.1", 4, 1, 1)
    assert n1.avail is not None
    loads.note_placed("n1")
    loads.note_placed("n1")
    assert loads.with_placed(n1).queued == 3 and loads.with_placed(n1).name == "n1"
    heartbeat(client, keys, NodeRecord(name="n2", cpus=1), 0, 0, ttl=30.0)
    assert loads.current() == [n1]  # the snapshot, until it is max_age old
    loads.max_age = 0.0
    assert [n.name for n in loads.current()] == ["n1", "n2"]
    assert loads.with_placed(n1).queued == 1  # a new snapshot counts placed jobs afresh


def test_caps_hold_jobs_while_every_node_is_full_and_release_them_in_order():
    caps: NodeCaps[str] = NodeCaps()
    nodes = [NodeLoad("a", "", 2), NodeLoad("b", "", 2)]
    assert caps.under("a") and not caps.all_full(nodes) and not caps.all_full([])
    caps.set("a", 1)
    caps.set("b", 0)
    caps.placed("a")
    assert not caps.under("a") and not caps.under("b") and caps.all_full(nodes)
    caps.hold("j1")
    caps.hold("j2")
    caps.hold("j3")
    assert caps.withdraw("j3") and not caps.withdraw("j3")
    sent: list[str] = []

    def send(job: str) -> None:
        sent.append(job)
        caps.placed("a")

    caps.release(lambda job: caps.all_full(nodes), send)
    assert sent == [] and list(caps.held) == ["j1", "j2"]
    caps.ended("a")
    caps.release(lambda job: caps.all_full(nodes), send)
    assert sent == ["j1"] and list(caps.held) == ["j2"]
