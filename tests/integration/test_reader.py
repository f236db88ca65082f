"""Who reads the result stream (``rdispy.client.reader``): a caller waiting in ``result()`` reads
its own result; everything else (callbacks, ``as_completed``, other threads' futures) is still
resolved promptly, by the caller that reads or by the results thread; an interrupted reader loses
nothing."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, as_completed, wait
from concurrent.futures import TimeoutError as FuturesTimeout
from pathlib import Path

import pytest

import rdispy
from tests.faults.ledger import gated, wait_rows

pytestmark = pytest.mark.integration


def add(a: int, b: int) -> int:
    return a + b


def nap(seconds: float, value: object) -> object:
    time.sleep(seconds)
    return value


def _resolving_thread(future: rdispy.RemoteFuture) -> list[str]:
    seen: list[str] = []
    future.add_done_callback(lambda _: seen.append(threading.current_thread().name))
    return seen


def test_a_caller_waiting_in_turn_reads_its_own_results(embedded: rdispy.Executor) -> None:
    threads = []
    for i in range(40):
        future = embedded.submit(add, i, 1)
        seen = _resolving_thread(future)
        assert future.result(timeout=30) == i + 1
        threads += seen
    # the first call may be read by the results thread, woken by the submit; the rest are read
    # by the caller, but for the odd call that meets the results thread's periodic check
    assert threads.count(threading.current_thread().name) >= 30, threads


def test_a_reading_caller_resolves_other_futures_as_they_come(
    embedded: rdispy.Executor, tmp_path: Path
) -> None:
    """The slow job ends only once the quick one's future is resolved (its callback opens the
    gate), so the slow result comes only if the quick one was resolved while this thread
    waited for the slow one, not after it."""
    gate = tmp_path / "gate"
    slow = embedded.submit(gated, str(tmp_path / "ledger"), "slow", str(gate))
    quick = embedded.submit(add, 1, 1)
    quick.add_done_callback(lambda _: gate.touch())
    assert slow.result(timeout=30) == "slow"
    assert quick.result(timeout=0) == 2


def test_callbacks_and_as_completed_right_after_a_caller_read(embedded: rdispy.Executor) -> None:
    assert embedded.submit(add, 1, 1).result(timeout=30) == 2  # a caller just read
    got = threading.Event()
    future = embedded.submit(add, 2, 2)
    future.add_done_callback(lambda _: got.set())
    assert got.wait(10), "nobody read the result of a future nobody waits on"
    assert embedded.submit(add, 3, 3).result(timeout=30) == 6
    futures = [embedded.submit(nap, 0.01 * i, i) for i in range(8)]
    assert sorted(f.result() for f in as_completed(futures, timeout=30)) == list(range(8))
    done, _ = wait([embedded.submit(add, 4, 4)], timeout=30, return_when=FIRST_COMPLETED)
    assert [f.result() for f in done] == [8]


def test_threads_waiting_at_once_all_get_their_results(embedded: rdispy.Executor) -> None:
    failures: list[BaseException] = []

    def caller(base: int) -> None:
        try:
            for i in range(30):
                assert embedded.submit(add, base, i).result(timeout=30) == base + i
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=caller, args=(1000 * t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    assert failures == []


def test_a_timeout_while_reading_is_the_timeout_asked_for(
    embedded: rdispy.Executor, tmp_path: Path
) -> None:
    """The job cannot end before the gate opens, so only the timeout can end the wait; it ends
    once the time asked for has passed, and before twice that (the bound this test is about)."""
    gate = tmp_path / "gate"
    future = embedded.submit(gated, str(tmp_path / "ledger"), "late", str(gate))
    wait_rows(tmp_path / "ledger", 1)  # running: a reader blocks on the stream for its result
    started = time.monotonic()
    with pytest.raises(FuturesTimeout):
        future.result(timeout=1.0)
    waited = time.monotonic() - started
    assert 1.0 <= waited < 2.0, waited  # not twice the timeout
    with pytest.raises(FuturesTimeout):
        future.exception(timeout=0)
    gate.touch()
    assert future.result(timeout=30) == "late"


class _Interrupted(Exception):
    pass


def test_a_reader_interrupted_by_a_signal_loses_no_result(embedded: rdispy.Executor) -> None:
    """A signal handler raising in the main thread while it reads (as Ctrl-C does): the
    connection is dropped mid-read, and the results still reach their futures."""

    def interrupt(*_: object) -> None:
        raise _Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        for _ in range(3):
            futures = [embedded.submit(nap, 0.3, i) for i in range(4)]
            signal.setitimer(signal.ITIMER_REAL, 0.15)
            with pytest.raises(_Interrupted):
                futures[0].result(timeout=30)
            assert [f.result(timeout=30) for f in futures] == list(range(4))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
