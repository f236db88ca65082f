"""rdispy.progress: futures and jobs as they complete; plain lines when not on a terminal."""

from __future__ import annotations

import io
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

import rdispy
from rdispy.client.dispy_job import DispyJob
from rdispy.progress import Progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_yields_futures_as_they_complete_with_plain_lines():
    futures: list[Future[int]] = [Future() for _ in range(10)]
    out = io.StringIO()
    order = [3, 7, 0, 9, 1, 2, 4, 5, 6, 8]
    for i in order[:2]:
        futures[i].set_result(i)  # done before iteration: yielded first
    completed = rdispy.progress.progress(futures, desc="jobs", file=out)
    seen = [next(completed).result(), next(completed).result()]
    for i in order[2:]:
        threading.Timer(0.01 * i, futures[i].set_result, (i,)).start()
    seen += [f.result() for f in completed]
    assert sorted(seen[:2]) == [3, 7] and sorted(seen) == list(range(10))
    lines = out.getvalue().splitlines()
    assert lines == [
        f"jobs: {n}/10 jobs ({n * 10}%) done in {line.split()[-1]}"
        for n, line in zip(range(1, 11), lines, strict=True)
    ]


def test_plain_lines_come_per_tenth_not_per_job():
    out = io.StringIO()
    with Progress(1000, "map", out, unit="call") as bar:
        for _ in range(1000):
            bar.update()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("map: 1000/1000 calls (100%) done in")


def test_plain_lines_without_a_total_come_every_interval_and_at_the_end():
    out = io.StringIO()
    bar = Progress(None, "map", out, interval=0.0)
    bar.update(5)
    bar.update(2)
    bar.close()
    assert out.getvalue().splitlines()[0].startswith("map: 5 jobs done in")
    assert out.getvalue().splitlines()[-1].startswith("map: 7 jobs done in")
    assert len(out.getvalue().splitlines()) == 2  # no repeat at close: nothing new


def test_a_terminal_gets_a_tqdm_bar():
    out = FakeTerminal()
    with Progress(4, "runs", out, unit="run") as bar:
        for _ in range(4):
            bar.update()
    assert "4/4" in out.getvalue() and "runs: 100%|" in out.getvalue()


def test_progress_iterates_dispy_jobs_once_their_status_is_set():
    jobs = [DispyJob(i, (), {}) for i in range(3)]
    out = io.StringIO()
    completed = rdispy.progress.progress(jobs, file=out, desc="d")

    def end(job: DispyJob) -> None:
        job.status = DispyJob.Finished
        job._ended()

    for job in reversed(jobs):
        threading.Timer(0.01, end, (job,)).start()
    ended = list(completed)
    assert sorted(j.id for j in ended) == [0, 1, 2]
    assert all(j.status == DispyJob.Finished for j in ended)
    assert out.getvalue().splitlines()[-1].startswith("d: 3/3 jobs (100%)")


def test_a_dispy_job_runs_a_callback_added_after_it_ended():
    job = DispyJob(1, (), {})
    job._ended()
    seen: list[DispyJob] = []
    job.add_done_callback(seen.append)
    assert seen == [job]


def test_progress_works_with_standard_executors_and_refuses_other_things():
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(pow, 2, i) for i in range(5)]
        assert sorted(
            f.result() for f in rdispy.progress.progress(futures, file=io.StringIO())
        ) == [
            1,
            2,
            4,
            8,
            16,
        ]
    with pytest.raises(TypeError, match="futures or DispyJob"):
        rdispy.progress.progress([1, 2])
