"""ReadTurns: one consumer of a node waits on the job streams, the others follow."""

from __future__ import annotations

import threading
import time

from rdispy.worker.slots import ReadTurns, Slots


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
    time.sleep(ReadTurns.HANDOVER * 2)
    assert turns.take(2)  # nobody took it for HANDOVER: a follower may


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
    started = time.monotonic()
    assert turns.follow(1, 2.0)
    assert time.monotonic() - started < 0.5
    assert not turns.take(0)  # 1 reads now


def test_the_first_job_after_idle_rings_sleeping_followers_awake() -> None:
    turns = ReadTurns()
    assert turns.take(0)  # the node is idle: no job taken for ACTIVE seconds
    took: list[float] = []

    def follower() -> None:
        if turns.follow(1, 10.0):
            took.append(time.monotonic())

    thread = threading.Thread(target=follower)
    thread.start()
    time.sleep(0.1)  # asleep on the bell, not polling
    rang = time.monotonic()
    turns.took_job()
    turns.end(0)
    thread.join(5)
    assert took, "the follower never took the turn"
    assert took[0] - rang < 1.0  # woken by the bell, not by its 10 s deadline


def test_a_dead_consumers_slot_cleared_by_the_supervisor_frees_its_turn() -> None:
    slots = Slots(2)
    assert slots.turns.take(0)
    slots.clear(0)
    assert slots.turns.take(0)
