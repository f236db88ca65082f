"""`rdispy worker --max-output`: a job's output is cut at the node's limit, with a marker."""

from __future__ import annotations

import pytest

import rdispy

pytestmark = pytest.mark.integration


def shout(n: int) -> int:
    print("z" * n)
    return n


def test_output_over_the_limit_is_cut_with_a_marker(redis_url, cluster, start_worker):
    start_worker(redis_url, 1, None, "--max-output", "1000")
    with rdispy.Executor(redis_url, cluster=cluster, echo_output=False) as ex:
        future = ex.submit(shout, 5000)
        assert future.result(timeout=60) == 5000
    assert (
        future.stdout
        == "z" * 1000 + "\n[rdispy: output cut at 1000 characters; 4001 more were dropped]\n"
    )


def test_a_larger_limit_keeps_all_of_it(redis_url, cluster, start_worker):
    start_worker(redis_url, 1, None, "--max-output", "2M")
    with rdispy.Executor(redis_url, cluster=cluster, echo_output=False) as ex:
        future = ex.submit(shout, 1_500_000)
        assert future.result(timeout=60) == 1_500_000
    assert future.stdout == "z" * 1_500_000 + "\n"
