"""Pins the private parts of concurrent.futures.Future that RemoteFuture relies on (issue 15):
``_waiters`` is a plain list that ``Future.__init__`` sets on the instance (RemoteFuture replaces
it with one whose ``append`` wakes its results thread), to which ``wait`` (every ``return_when``)
and ``as_completed`` add their waiter with ``append`` while holding the future's ``_condition``,
remove it with ``remove``, and which completion iterates; ``_state``/``_condition`` guard the
state, and cancel() alone does not notify waiters (set_running_or_notify_cancel does).  A CPython
that installs waiters otherwise fails here rather than silently dropping that wake-up (``wait``
would then depend on the results thread's own schedule)."""

from __future__ import annotations

import pickle
import threading
from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    Future,
    as_completed,
    wait,
)
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, PENDING, RUNNING
from typing import Any

import pytest

from rdispy.client.future import RemoteFuture
from rdispy.errors import DeserializationError, SerializationError, also_as


def test_wait_appends_a_waiter_to_the_private_list():
    future: Future[int] = Future()
    assert isinstance(future._waiters, list) and future._waiters == []
    done, not_done = wait([future], timeout=0)
    assert not done and future._waiters == []  # added while waiting, removed after
    seen = []

    class Spy(list):
        def append(self, item):
            seen.append(item)
            super().append(item)

    future._waiters = Spy()
    wait([future], timeout=0)
    assert len(seen) == 1 and hasattr(seen[0], "add_result")


def test_stdlib_cancel_does_not_notify_waiters_until_notified():
    future: Future[int] = Future()
    assert future._state == PENDING and future.cancel()
    assert future._state == CANCELLED
    assert wait([future], timeout=0).done == set()  # why RemoteFuture notifies itself
    assert future.set_running_or_notify_cancel() is False
    assert future._state == CANCELLED_AND_NOTIFIED
    assert wait([future], timeout=0).done == {future}


def test_mark_running_moves_only_a_pending_future():
    future = RemoteFuture("c-1", None)
    with future._condition:
        assert future._state == PENDING
    future.mark_running()
    assert future.running() and future._state == RUNNING and not future.cancel()
    future.set_result(3)
    future.mark_running()
    assert future.result() == 3 and not future.running()


def test_also_as_combines_and_survives_pickling():
    combined = also_as(SerializationError, TypeError)
    assert combined is also_as(SerializationError, TypeError)
    error = combined("cannot pickle", "j-7")
    assert isinstance(error, TypeError) and isinstance(error, SerializationError)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is combined and again.job_id == "j-7" and str(again) == str(error)
    assert also_as(DeserializationError, KeyboardInterrupt) is DeserializationError


class Recording(list):
    """A waiters list that records what is done to it, and whether the future's condition is
    held meanwhile (RemoteFuture's list wakes the results thread from ``append``)."""

    def __init__(self, future: Future[Any]) -> None:
        super().__init__()
        self.future, self.calls = future, []

    def append(self, item):
        self.calls.append(("append", self._held_elsewhere()))
        super().append(item)

    def remove(self, item):
        self.calls.append(("remove", self._held_elsewhere()))
        super().remove(item)

    def _held_elsewhere(self) -> bool:
        """Whether the calling thread holds the future's condition: another thread cannot take
        it (a Condition's default lock is reentrant, so this thread could)."""
        taken: list[bool] = []
        probe = threading.Thread(
            target=lambda: taken.append(self.future._condition.acquire(blocking=False))
        )
        probe.start()
        probe.join()
        if taken[0]:
            self.future._condition.release()
        return not taken[0]


def _recording(future: Future[Any]) -> Recording:
    assert type(vars(future)["_waiters"]) is list  # set by Future.__init__, on the instance
    waiters = Recording(future)
    future._waiters = waiters  # what RemoteFuture.__init__ does, after Future.__init__
    return waiters


@pytest.mark.parametrize("return_when", [ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION])
def test_wait_installs_its_waiter_by_append_under_the_condition_and_removes_it(return_when):
    future: Future[int] = Future()
    waiters = _recording(future)
    assert not wait([future], timeout=0.01, return_when=return_when).done
    assert waiters.calls == [("append", True), ("remove", True)] and list(waiters) == []


def test_as_completed_installs_its_waiter_by_append_under_the_condition_and_removes_it():
    future: Future[int] = Future()
    waiters = _recording(future)
    with pytest.raises(FutureTimeout):
        list(as_completed([future], timeout=0.01))
    assert waiters.calls == [("append", True), ("remove", True)] and list(waiters) == []


def test_a_result_reaches_the_waiters_through_iterating_the_replaced_list():
    future: Future[int] = Future()
    waiters = _recording(future)
    threading.Timer(0.05, future.set_result, (7,)).start()
    assert wait([future], timeout=10).done == {future}
    other: Future[int] = Future()
    _recording(other)
    threading.Timer(0.05, other.set_exception, (ValueError("x"),)).start()
    assert list(as_completed([other], timeout=10)) == [other]
    assert [call for call, _ in waiters.calls] == ["append", "remove"]


class _Reader:
    def __init__(self) -> None:
        self.woken = 0
        self.waited: list[float | None] = []

    def wait_for(self, future: Future[Any], timeout: float | None) -> None:
        self.waited.append(timeout)

    def wake(self) -> None:
        self.woken += 1


class _Owner:
    def __init__(self) -> None:
        self.reader = _Reader()

    def cancel_remote(self, future: RemoteFuture, forget: bool = True) -> bool:
        return False

    def taken(self, future: RemoteFuture) -> bool:
        return False


def test_a_remote_futures_waiters_wake_its_reader_once_per_wait():
    owner = _Owner()
    future = RemoteFuture("c-1", owner)
    assert isinstance(future._waiters, list) and future._waiters == []
    wait([future], timeout=0.01)
    assert owner.reader.woken == 1 and future._waiters == []
    with pytest.raises(FutureTimeout):
        list(as_completed([future], timeout=0.01))
    assert owner.reader.woken == 2
    with pytest.raises(FutureTimeout):
        future.result(timeout=0.01)
    assert owner.reader.waited == [0.01]  # result() goes to the owner's reader directly
    future.set_result(5)
    assert wait([future], timeout=0).done == {future} and owner.reader.woken == 2
