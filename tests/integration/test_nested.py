"""A job that submits to its own cluster and waits (issue 14, item 7).

The behaviour, as documented in README: a job may open an Executor on its own cluster and wait
for what it submitted; it holds its core while it waits. When every core is held by jobs that
wait like this, none can go on; rdispy does not guess, but names both jobs in a warning (on the
node's log and in the outer job's stderr) after ``RDISPY_NESTED_WAIT_WARNING`` seconds."""

from __future__ import annotations

import concurrent.futures

import pytest

import rdispy

pytestmark = pytest.mark.integration


def outer(url: str, cluster: str, wait: float) -> str:
    with rdispy.Executor(url, cluster=cluster) as inner:
        future = inner.submit(pow, 2, 10)
        try:
            return f"inner gave {future.result(wait)}"
        except concurrent.futures.TimeoutError:
            future.cancel()
            return f"inner {future.job_id} did not start"


def test_a_nested_submit_on_a_free_core_completes(redis_url, cluster, start_worker):
    start_worker(redis_url, 2)
    with rdispy.Executor(redis_url, cluster=cluster) as ex:
        future = ex.submit(outer, redis_url, cluster, 30)
        assert future.result(60) == "inner gave 1024"
        assert "waits for job" not in future.stderr


def test_a_nested_wait_that_cannot_progress_is_named_in_a_warning(
    redis_url, cluster, start_worker, monkeypatch
):
    monkeypatch.setenv("RDISPY_NESTED_WAIT_WARNING", "1")
    start_worker(redis_url, 1)  # its only core runs the outer job
    with rdispy.Executor(redis_url, cluster=cluster, echo_output=False) as ex:
        future = ex.submit(outer, redis_url, cluster, 3)
        answer = future.result(60)
    assert answer.endswith("did not start")
    inner_id = answer.split()[1]
    assert f"job {future.job_id} waits for job {inner_id}" in future.stderr
