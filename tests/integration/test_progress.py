"""Progress bars over real jobs: Executor.map(progress=True), rdispy.progress over futures and
DispyJobs, JobCluster.wait(progress=True); stderr is not a terminal here, so plain lines."""

from __future__ import annotations

import io

import pytest

import rdispy
from tests.helpers import executor

pytestmark = pytest.mark.integration


def square(x: int) -> int:
    return x * x


def test_map_with_progress_returns_the_results_in_order_and_counts_calls(
    redis_url, cluster, start_worker, capfd
):
    start_worker(redis_url, 2)
    with executor(redis_url, cluster=cluster) as ex:
        assert list(ex.map(square, range(50), chunksize=3, progress=True)) == [
            x * x for x in range(50)
        ]
        lines = capfd.readouterr().err.splitlines()
        ours = [line for line in lines if line.startswith("map: ")]
        assert len(ours) == 10, lines  # one per tenth
        assert ours[-1].startswith("map: 50/50 calls (100%) done in")
        assert list(ex.map(square, range(7), buffersize=2, progress=True)) == [
            x * x for x in range(7)
        ]
        ours = [line for line in capfd.readouterr().err.splitlines() if line.startswith("map: ")]
        assert ours[-1].startswith("map: 7 calls done in")  # lazy input: no total


def test_progress_over_remote_futures_yields_each_once_done(redis_url, cluster, start_worker):
    start_worker(redis_url, 2)
    out = io.StringIO()
    with executor(redis_url, cluster=cluster) as ex:
        futures = [ex.submit(square, i) for i in range(12)]
        seen = [f for f in rdispy.progress.progress(futures, desc="squares", file=out)]
        assert all(f.done() for f in seen) and sorted(f.result() for f in seen) == [
            i * i for i in range(12)
        ]
    assert out.getvalue().splitlines()[-1].startswith("squares: 12/12 jobs (100%)")


def test_job_cluster_jobs_with_progress(redis_url, cluster, start_worker, capfd):
    start_worker(redis_url, 2)
    with rdispy.JobCluster(square, redis_url=redis_url, cluster=cluster) as jc:
        jobs = [jc.submit(i) for i in range(6)]
        ended = list(rdispy.progress.progress(jobs, file=io.StringIO()))
        assert sorted(job.result for job in ended) == [i * i for i in range(6)]
        assert all(job.status == rdispy.DispyJob.Finished for job in ended)
        more = [jc.submit(i) for i in range(10)]
        assert jc.wait(progress=True) is True
        assert [job.result for job in more] == [i * i for i in range(10)]
    err = capfd.readouterr().err.splitlines()
    assert [line for line in err if line.startswith("jobs: ")][-1].startswith(
        "jobs: 10/10 jobs (100%)"
    )
