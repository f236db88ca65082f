"""ReadTurns: one consumer of a node waits on the job streams, the others follow."""

from __future__ import annotations

import linecache
import sys
import threading

from rdispy.worker.slots import ReadTurns, Slots
from tests.helpers import DEADLINE, wait_until

#: A follower's deadline no test waits for: only the turn (or the bell) ends its wait.
FAR = 3600.0


def _follows_within(turns: ReadTurns, index: int, timeout: float) -> bool:
    """``turns.follow(index, FAR)`` in a thread: whether it took the turn within ``timeout``."""
    took = threading.Event()
    thread = threading.Thread(target=lambda: turns.follow(index, FAR) and took.set(), daemon=True)
    thread.start()
    return took.wait(timeout)


def _asleep_on_the_bell(thread: threading.Thread) -> bool:
    """Whether ``thread`` is blocked in ReadTurns.follow's select (asleep, not polling)."""
    frame = sys._current_frames().get(thread.ident or 0)
    return (
        frame is not None
        and frame.f_code.co_name == "follow"
        and "select.select(" in linecache.getline(frame.f_code.co_filename, frame.f_lineno)
    )


def test_one_reader_at_a_time_and_the_last_reader_keeps_its_turn() -> None:
    turns = ReadTurns()
    assert turns.take(0)
    assert not turns.take(1)
    assert not turns.take(1, back_from_work=True)  # held: nobody else reads
    turns.end(0)
    assert not turns.take(1)  # a follower waits HANDOVER after the turn ended
    assert turns.take(0)  # the last reader takes it back at once
    turns.end(0)
    assert turns.take(1, back_from_work=True)  # so does a consumer back from a job
    turns.end(1)
    # nobody took it for HANDOVER: a follower may (poll: no sleep of a guessed length)
    wait_until(lambda: turns.take(2), "a follower taking the turn after HANDOVER")


def test_end_by_a_consumer_that_is_not_the_reader_changes_nothing() -> None:
    turns = ReadTurns()
    assert turns.take(0)
    turns.end(1)
    assert not turns.take(2, back_from_work=True)


def test_a_follower_takes_the_turn_once_it_was_free_for_the_handover_time() -> None:
    turns = ReadTurns()
    assert turns.take(0)
    assert not turns.follow(1, 0.05)  # the reader keeps it: back at the deadline
    turns.took_job()
    turns.end(0)
    # its deadline is far: taking the turn at all shows it took it once free for HANDOVER
    assert _follows_within(turns, 1, DEADLINE), "the follower waited for its deadline"
    assert not turns.take(0)  # 1 reads now


def test_the_first_job_after_idle_rings_sleeping_followers_awake() -> None:
    turns = ReadTurns()
    assert turns.take(0)  # the node is idle: no job taken for ACTIVE seconds
    took = threading.Event()

    def follower() -> None:
        if turns.follow(1, FAR):  # only the bell can wake it before this deadline
            took.set()

    thread = threading.Thread(target=follower, daemon=True)
    thread.start()
    wait_until(lambda: _asleep_on_the_bell(thread), "the follower asleep on the bell")
    turns.took_job()
    turns.end(0)
    assert took.wait(DEADLINE), "the follower never took the turn: the bell did not wake it"
    thread.join(DEADLINE)


def test_a_dead_consumers_slot_cleared_by_the_supervisor_frees_its_turn() -> None:
    slots = Slots(2)
    assert slots.turns.take(0)
    slots.clear(0)
    assert slots.turns.take(0)
