"""A client that stops reading while a job streams 100,000 provisional results (fault test 19):
its result stream stays within its bound, the overflow is counted and reported to the client,
the node never blocks, and the final result is never among the dropped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from rdispy import defaults
from tests.faults.figures import report
from tests.helpers import DEADLINE, wait_until

pytestmark = pytest.mark.integration

MESSAGES = 100_000

CLIENT = textwrap.dedent("""
    import json, sys, time, rdispy

    def chatty(done, count):
        import pathlib
        for i in range(count):
            rdispy.provisional_result(i)
        pathlib.Path(done).write_text("sent")
        return "final"

    ex = rdispy.Executor(sys.argv[1], cluster=sys.argv[2])
    seen = []
    future = ex.submit(chatty, sys.argv[3], int(sys.argv[4]))
    future.add_event_listener(lambda f, kind, value: seen.append(value) if kind == "prov" else None)
    print(ex.client_id, flush=True)
    result = future.result(300)
    time.sleep(2.5)  # the dropped count is read about once a second
    print(json.dumps({"result": result, "updates": len(seen), "dropped": ex.dropped_updates}))
    ex.shutdown()
""")


def test_a_client_that_stops_reading_bounds_its_stream_and_never_loses_the_final_result(
    redis_url, cluster, keys, start_worker, tmp_path
):
    start_worker(redis_url, 1)
    done = tmp_path / "done"
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT, redis_url, cluster, str(done), str(MESSAGES)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    try:
        client_id = proc.stdout.readline().strip()
        os.kill(proc.pid, signal.SIGSTOP)  # the client stops reading
        t_stop = time.monotonic()
        wait_until(done.exists, "the job to send all its messages", timeout=240)
        sent_in = time.monotonic() - t_stop
        probe = redis.Redis.from_url(redis_url)
        results = keys.results(client_id)
        wait_until(lambda: probe.xrevrange(results, count=1), "the final result")
        wait_until(
            lambda: probe.xrevrange(results, count=1)[0][1].get(b"k") == b"ok",
            "the final result at the end of the stream",
        )
        length = probe.xlen(results)
        assert length <= defaults.MAX_EVENTS + 1  # the bound, plus the final result
        dropped = int(probe.hget(keys.client(client_id), "dropped") or 0)
        assert dropped == MESSAGES - (length - 1)  # every dropped message is counted
        probe.close()
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    out, _ = proc.communicate(timeout=DEADLINE)
    seen = json.loads(out.strip().splitlines()[-1])
    assert proc.returncode == 0
    assert seen["result"] == "final"
    assert seen["dropped"] == dropped  # reported to the client
    assert seen["updates"] + dropped >= MESSAGES  # it got all that were kept
    report(
        "19 client stops reading; job sends 100k provisional results",
        node_sent_all_in_s=sent_in,
        stream_length_max=length,
        bound=defaults.MAX_EVENTS,
        dropped_counted=dropped,
        updates_received=seen["updates"],
        final_result_lost=0,
    )
