"""Pins the private parts of concurrent.futures.Future that RemoteFuture relies on (issue 15):
``_waiters`` is the list ``wait``/``as_completed`` append to, ``_state``/``_condition`` guard
the state, and cancel() alone does not notify waiters (set_running_or_notify_cancel does)."""

from __future__ import annotations

import pickle
from concurrent.futures import Future, wait
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, PENDING, RUNNING

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
