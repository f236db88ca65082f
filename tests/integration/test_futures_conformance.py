"""What rdispy adds to the concurrent.futures points it got wrong (issue 13, issue 14 item 4), on
the embedded default.  The contract itself, shown on the standard executors too, is in
test_executor_contract.py; here is where rdispy says more: a cancelled future is done for
``wait``/``as_completed`` at once, pickling errors are also SerializationError and fail the
future at submit, and a crashed job is a WorkerCrashed that breaks nothing else."""

from __future__ import annotations

import pickle
import threading
import time
from concurrent.futures import FIRST_COMPLETED, as_completed, wait

import pytest

import rdispy

pytestmark = pytest.mark.integration


class ErrorAtPickle:
    def __reduce__(self):
        raise pickle.PicklingError("Error in pickle")


def hold(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


def a_lock() -> object:
    return threading.Lock()


def crash() -> None:
    import os

    os._exit(3)


@pytest.fixture
def ex():
    executor = rdispy.Executor(max_workers=1)
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


def test_a_cancelled_future_counts_as_done_for_wait_and_as_completed_at_once(ex):
    # the standard executors count it once a worker skips it; no consumer ever sees it here
    busy = ex.submit(hold, 1.0)
    queued = ex.submit(hold, 0)
    assert queued.cancel() is True
    assert queued.running() is False
    done, _ = wait([queued], timeout=5)
    assert done == {queued}
    assert list(as_completed([queued], timeout=5)) == [queued]
    done, _ = wait([busy, queued], timeout=5, return_when=FIRST_COMPLETED)
    assert queued in done
    assert busy.result(30) == "done"


def test_an_unpicklable_argument_fails_the_future_at_submit_with_a_serialization_error(ex):
    future = ex.submit(id, ErrorAtPickle())  # nothing is sent
    assert future.done()
    error = future.exception(0)
    assert isinstance(error, rdispy.SerializationError)
    assert isinstance(error, pickle.PicklingError) and "Error in pickle" in str(error)


def test_an_unpicklable_result_is_a_serialization_error_naming_the_job(ex):
    future = ex.submit(a_lock)
    error = future.exception(30)
    assert isinstance(error, rdispy.SerializationError) and isinstance(error, TypeError)
    assert future.job_id in str(error)


def test_a_crashed_job_is_a_worker_crashed_error_and_breaks_nothing_else(ex):
    from concurrent.futures.process import BrokenProcessPool

    future = ex.submit(crash)
    with pytest.raises(BrokenProcessPool) as info:
        future.result(60)
    assert isinstance(info.value, rdispy.WorkerCrashed) and future.job_id in str(info.value)
    assert ex.submit(pow, 2, 5).result(30) == 32  # only that job failed, unlike a process pool
