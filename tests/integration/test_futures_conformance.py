"""concurrent.futures points rdispy got wrong (issue 13, issue 14 item 4), on the embedded
default: running(), cancelled futures in wait/as_completed, the types of pickling errors."""

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


@pytest.fixture
def ex():
    executor = rdispy.Executor(max_workers=1)
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


def test_running_is_true_while_a_consumer_runs_the_job(ex):
    busy = ex.submit(hold, 1.5)
    deadline = time.monotonic() + 30
    while not busy.running():
        assert not busy.done() and time.monotonic() < deadline
        time.sleep(0.02)
    assert busy.cancel() is False  # a running job cannot be cancelled
    assert busy.result(30) == "done" and not busy.running()


def test_cancelled_future_counts_as_done_for_wait_and_as_completed(ex):
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


def test_unpicklable_argument_error_is_also_a_pickling_error(ex):
    future = ex.submit(id, ErrorAtPickle())  # on the future, as ProcessPoolExecutor's
    assert future.done()
    with pytest.raises(pickle.PicklingError) as info:
        future.result(0)
    assert isinstance(info.value, rdispy.SerializationError)
    assert "Error in pickle" in str(info.value)


def test_unpicklable_result_error_is_also_the_original_type(ex):
    future = ex.submit(a_lock)
    with pytest.raises(TypeError) as info:  # what ProcessPoolExecutor raises for a lock
        future.result(30)
    assert isinstance(info.value, rdispy.SerializationError)
    assert future.job_id in str(info.value)


def test_map_refuses_a_chunksize_below_one(ex):
    with pytest.raises(ValueError, match="chunksize"):
        list(ex.map(pow, range(4), range(4), chunksize=-1))
    with pytest.raises(ValueError, match="chunksize"):
        list(ex.map(pow, range(4), range(4), chunksize=0))


def crash() -> None:
    import os

    os._exit(3)


def test_a_crashed_job_is_also_a_broken_process_pool_error(ex):
    from concurrent.futures.process import BrokenProcessPool

    future = ex.submit(crash)
    with pytest.raises(BrokenProcessPool) as info:
        future.result(60)
    assert isinstance(info.value, rdispy.WorkerCrashed) and future.job_id in str(info.value)
    assert ex.submit(pow, 2, 5).result(30) == 32  # only that job failed


class Thing:
    def method(self) -> None:
        return None


def make_thing(_: int) -> Thing:
    return Thing()


def test_no_reference_is_kept_to_submitted_functions_or_map_results(ex):
    import gc
    import weakref

    thing = Thing()
    gone = threading.Event()
    ref = weakref.ref(thing, lambda _: gone.set())
    ex.submit(thing.method).result(30)
    del thing
    gc.collect()
    assert gone.wait(5) and ref() is None
    for obj in ex.map(make_thing, range(6), chunksize=3):
        held = weakref.ref(obj)
        del obj
        gc.collect()
        assert held() is None
