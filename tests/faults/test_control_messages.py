"""faults.md test 24, control messages: with a shared secret, a cancel or close written into the
control stream without a valid signature (unsigned, another secret, signed for another stream,
expired, altered after signing) is ignored by every node, dead-lettered with its reason and
counted; the job it aimed at runs on.  The genuine cancel still stops a running job.  (Forged
results are test_security.py's; forged registrations the relay's.)"""

from __future__ import annotations

import time
from typing import Any

import pytest

import rdispy
from rdispy import wire
from rdispy.keys import Keys
from tests.faults.ledger import executions, gated, wait_rows
from tests.helpers import DEADLINE, executor, wait_until

pytestmark = pytest.mark.integration

SECRET = "control-secret-5e1f"


def test_forged_control_messages_are_ignored_counted_and_dead_lettered(
    redis_url, rclient, cluster, start_worker, tmp_path
):
    keys = Keys(cluster)
    ledger, gate = tmp_path / "ledger", tmp_path / "gate"
    worker = start_worker(redis_url, 1, "node1", "--secret", SECRET)
    (consumer,) = worker.wait_consumers(1)
    with executor(redis_url, cluster=cluster, secret=SECRET) as ex:
        target = ex.submit(gated, str(ledger), "target", str(gate))
        wait_rows(ledger, 1)
        signer = wire.Signer(SECRET)
        cancel = wire.encode({"op": "cancel", "id": target.job_id})
        altered = signer.sign(keys.control, wire.encode({"op": "cancel", "id": "someone-else"}))
        altered[b"id"] = target.job_id.encode()
        forged: list[dict[bytes, bytes]] = [
            dict(cancel),  # unsigned
            wire.Signer("a-guess").sign(keys.control, dict(cancel)),  # another secret
            signer.sign(keys.jobs, dict(cancel)),  # signed for another stream
            wire.Signer(SECRET, ttl=-60).sign(keys.control, dict(cancel)),  # expired
            altered,  # changed after signing
            wire.encode({"op": "close", "session": "abc", "rm": 1}),  # an unsigned close
        ]
        for fields in forged:
            rclient.xadd(keys.control, fields)  # type: ignore[arg-type]

        def refused() -> int:
            return int(rclient.hget(keys.counters, "control-refused") or 0)

        wait_until(lambda: refused() >= len(forged), "the forged control messages to be refused")
        time.sleep(0.5)
        assert refused() == len(forged)
        letters: Any = rclient.xrange(keys.dead_letters)
        control = [f for _, f in letters if f[b"stream"] == keys.control.encode()]
        assert len(control) == len(forged)
        reasons = b" ".join(f[b"reason"] for f in control).decode()
        assert "expired" in reasons and "signature" in reasons
        assert {f[b"node"] for f in control} == {b"node1"}
        assert "ignoring control message" in worker.output()

        # the target was never stopped: same consumer, one run, its real result
        assert not target.done() and consumer.is_running()
        gate.touch()
        assert target.result(DEADLINE) == "target"
        assert [p.pid for p in worker.wait_consumers(1)] == [consumer.pid]

        # the genuine cancel still works
        gate.unlink()
        real = ex.submit(gated, str(ledger), "cancelled", str(gate))
        wait_rows(ledger, 2)
        ex._dispatcher.stop_running(real.job_id)
        with pytest.raises(rdispy.JobTerminated, match="cancelled while running"):
            real.result(DEADLINE)
    assert executions(ledger) == {"target": 1, "cancelled": 1}
    assert refused() == len(forged)
