"""A node's consumers take turns waiting for jobs (``ReadTurns``): sequential jobs stay on one
warm consumer, while a burst still reaches every core."""

from __future__ import annotations

import time

import pytest

import rdispy

pytestmark = pytest.mark.integration


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_sequential_jobs_stay_on_the_consumer_that_waits(embedded: rdispy.Executor) -> None:
    pids = []
    for _ in range(60):
        future = embedded.submit(nap, 0)
        future.result(timeout=30)
        pids.append(future.pid)
    switches = sum(1 for a, b in zip(pids, pids[1:], strict=False) if a != b)
    # without turns the server hands sequential jobs to the two consumers alternately
    assert switches <= 10, pids


def test_a_burst_of_long_jobs_starts_on_every_core_at_once(embedded: rdispy.Executor) -> None:
    embedded.submit(nap, 0).result(timeout=30)
    time.sleep(1.2)  # the node is idle: the followers sleep until the reader rings
    futures = [embedded.submit(nap, 0.5) for _ in range(2)]
    for future in futures:
        future.result(timeout=30)
    starts = sorted(f.start_time for f in futures if f.start_time is not None)
    assert len({f.pid for f in futures}) == 2
    assert starts[1] - starts[0] < 0.1, starts
