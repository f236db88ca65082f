"""The concurrent.futures contract rdispy relies on, as one suite run over ProcessPoolExecutor,
ThreadPoolExecutor and rdispy.Executor (issue 13, item 3; loky's pattern: one suite, one
parameter), so that every point is shown to hold on the standard library too.

Only the public concurrent.futures API is used here.  Where an executor differs by design, the
test skips that parameter and says why.  Ordering goes by files that jobs write and wait for
(``Gate``), never by how long something takes.  rdispy's own points (``future.node``, captured
output, Redis state) are in test_executor.py, test_executor_lifecycle.py and
test_futures_conformance.py.
"""

from __future__ import annotations

import functools
import gc
import os
import pickle
import re
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    BrokenExecutor,
    CancelledError,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
    wait,
)
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest

import rdispy
from tests.faults.ledger import note, tags

pytestmark = [
    pytest.mark.integration,
    # ProcessPoolExecutor forks by default before Python 3.14, and from 3.12 warns when this
    # process has threads (other executors' here): that is the stdlib's default, not a failure
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

ROOT = Path(__file__).resolve().parents[2]
KINDS = ["process", "thread", "rdispy"]
WORKERS = 2
#: Longest a gated job waits for its gate (so that a failing test cannot block an executor).
GATE_TIMEOUT = 30.0


def make_executor(kind: str, max_workers: int = WORKERS, **options: Any) -> Executor:
    if kind == "process":
        return ProcessPoolExecutor(max_workers, **options)
    if kind == "thread":
        return ThreadPoolExecutor(max_workers, **options)
    return rdispy.Executor(max_workers=max_workers, **options)


# -- functions the jobs run (module level: ProcessPoolExecutor pickles them by reference) --------


class Boom(Exception):
    pass


class ErrorAtPickle:
    def __reduce__(self) -> Any:
        raise pickle.PicklingError("Error in pickle")


class Thing:
    def method(self) -> None:
        return None


def make_thing(_: int) -> Thing:
    return Thing()


def a_lock() -> object:
    return threading.Lock()


def combine(fn: str, *rest: str, sep: str = "-") -> str:
    return sep.join((fn, *rest))


def raise_boom(x: int) -> int:
    raise Boom(f"boom {x}")  # the line the traceback shows


def fail_at_3(x: int) -> int:
    if x == 3:
        raise Boom("three")
    return x


def crash() -> None:
    os._exit(3)


def init_model(value: str) -> None:
    global MODEL
    MODEL = value


def model_plus(suffix: str) -> str:
    return MODEL + suffix  # noqa: F821  # assigned by init_model in the worker


def init_fails() -> None:
    raise ValueError("no model here")


def gated(gate: str, value: object, ledger: str | None = None) -> object:
    """Note in ``ledger`` that the job started, then wait until the file ``gate`` exists."""
    if ledger:
        note(ledger, value)
    deadline = time.monotonic() + GATE_TIMEOUT
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


class Gate:
    """A file jobs wait for (``gated``) and a ledger of the jobs that started."""

    def __init__(self, folder: Path) -> None:
        self.path, self.ledger = folder / "gate", folder / "ledger"

    def job(self, ex: Executor, value: object) -> Future[Any]:
        return ex.submit(gated, str(self.path), value, str(self.ledger))

    def open(self) -> None:
        self.path.touch()

    def started(self) -> list[str]:
        return tags(self.ledger)

    def wait_started(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.started()) < count:
            assert time.monotonic() < deadline, f"only {self.started()} started"
            time.sleep(0.01)


def wait_running(future: Future[Any], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not future.running():
        assert not future.done() and time.monotonic() < deadline, future
        time.sleep(0.01)


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def ex(kind: str) -> Iterator[Executor]:
    """One executor per parameter for the tests that do not shut it down; its workers are all
    started here, before the per-test leak check counts processes."""
    executor = make_executor(kind)
    try:
        gate = Path(os.devnull)  # exists: the warm-up jobs return at once
        assert list(executor.map(gated, [str(gate)] * WORKERS, range(WORKERS))) == [0, 1]
        yield executor
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    g = Gate(tmp_path)
    yield g
    g.open()  # a failing test leaves no job waiting


@pytest.fixture
def make(kind: str, gate: Gate) -> Iterator[Callable[..., Executor]]:
    """Fresh executors of this parameter, for the lifecycle tests; all are shut down after."""
    made: list[Executor] = []

    def new(**options: Any) -> Executor:
        made.append(make_executor(kind, **options))
        return made[-1]

    yield new
    gate.open()  # before waiting for what a failing test left running
    for executor in made:
        executor.shutdown(wait=True, cancel_futures=True)


# -- submit, result, exception ---------------------------------------------------------------------


def test_submit_passes_positional_and_keyword_arguments(ex):
    assert ex.submit(pow, 2, 10).result(30) == 1024
    assert ex.submit(combine, "a", "b", sep="+").result(30) == "a+b"
    assert ex.submit(combine, fn="x").result(30) == "x"  # fn is positional-only in submit
    assert ex.submit(functools.partial(combine, "p", sep="/"), "q").result(30) == "p/q"


def test_large_arguments_and_results_travel_whole(ex):
    blob = os.urandom(1 << 20) * 8
    assert ex.submit(len, blob).result(60) == len(blob)
    assert ex.submit(bytes, 8 << 20).result(60) == bytes(8 << 20)


def test_exceptions_keep_their_type_and_exception_returns_them(ex, kind):
    future = ex.submit(raise_boom, 4)
    with pytest.raises(Boom, match="boom 4") as info:
        future.result(30)
    error = future.exception(0)
    assert type(error) is Boom and str(error) == "boom 4"
    with pytest.raises(ZeroDivisionError):
        ex.submit(divmod, 1, 0).result(30)
    with pytest.raises(KeyError):
        ex.submit({}.__getitem__, "missing").result(30)
    if kind == "thread":
        pytest.skip("ThreadPoolExecutor: a job raises in this process, with no remote traceback")
    from concurrent.futures.process import _RemoteTraceback

    cause = info.value.__cause__
    assert type(cause) is _RemoteTraceback
    assert 'raise Boom(f"boom {x}")  # the line the traceback shows' in cause.tb
    assert __file__ in cause.tb and "raise_boom" in cause.tb


def test_result_with_a_timeout_raises_timeout_error_while_the_job_runs(ex, gate):
    future = gate.job(ex, "late")
    with pytest.raises(FuturesTimeout):
        future.result(timeout=0.2)
    with pytest.raises(FuturesTimeout):
        future.exception(timeout=0.1)
    assert not future.done()
    gate.open()
    assert future.result(30) == "late" and future.exception(0) is None


def test_running_is_true_while_a_worker_runs_the_job_and_it_cannot_be_cancelled(ex, gate):
    busy = gate.job(ex, "busy")
    wait_running(busy)
    assert busy.cancel() is False and not busy.cancelled()
    gate.open()
    assert busy.result(30) == "busy"
    assert not busy.running() and busy.done()
    assert busy.cancel() is False


def test_a_job_that_exits_raises_system_exit_with_its_code(ex):
    with pytest.raises(SystemExit) as info:
        ex.submit(sys.exit, 3).result(30)
    assert info.value.code == 3
    assert ex.submit(pow, 2, 3).result(30) == 8  # the worker lives on


def test_futures_can_be_waited_for_from_many_threads_at_once(ex):
    futures = [ex.submit(pow, 2, i) for i in range(40)]
    results: dict[int, list[int]] = {}

    def collect(part: int) -> None:
        results[part] = [f.result(30) for f in futures[part::4]]

    threads = [threading.Thread(target=collect, args=(part,)) for part in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert {part: results.get(part) for part in range(4)} == {
        part: [2**i for i in range(part, 40, 4)] for part in range(4)
    }


def test_a_done_callback_can_submit_more_work(ex):
    chained: list[Future[Any]] = []
    submitted = threading.Event()

    def then_square(future: Future[Any]) -> None:
        chained.append(ex.submit(pow, future.result(), 2))
        submitted.set()

    ex.submit(pow, 2, 3).add_done_callback(then_square)
    assert submitted.wait(30)
    assert chained[0].result(30) == 64


# -- cancel ----------------------------------------------------------------------------------------


def test_cancel_succeeds_only_before_start_and_cancelled_jobs_never_run(ex, gate):
    blockers = [gate.job(ex, f"b{i}") for i in range(WORKERS)]
    gate.wait_started(WORKERS)
    # ProcessPoolExecutor moves max_workers + 1 jobs to its call queue, where they count as
    # running: the tail of the queue is pending on every executor
    queued = [gate.job(ex, f"q{i}") for i in range(8)]
    tail = queued[4:]
    assert all(f.cancel() for f in tail)
    assert all(f.cancelled() and f.done() and not f.running() for f in tail)
    assert all(f.cancel() for f in tail)  # cancelling again still says so
    for f in tail:
        with pytest.raises(CancelledError):
            f.result(0)
        with pytest.raises(CancelledError):
            f.exception(0)
    assert not any(f.cancel() for f in blockers)  # running: cannot be cancelled
    gate.open()
    assert [f.result(30) for f in blockers + queued[:4]] == ["b0", "b1", "q0", "q1", "q2", "q3"]
    assert sorted(gate.started()) == ["b0", "b1", "q0", "q1", "q2", "q3"]


def test_a_cancelled_future_counts_as_done_for_wait_and_as_completed(ex, gate):
    # the standard executors count it once a worker has skipped it (rdispy does at once, see
    # test_futures_conformance.py): here the queue is let go first
    blockers = [gate.job(ex, f"b{i}") for i in range(WORKERS)]
    gate.wait_started(WORKERS)
    queued = [gate.job(ex, f"q{i}") for i in range(6)]
    last = queued[-1]
    assert last.cancel() is True and last.running() is False
    gate.open()
    done, not_done = wait([last], timeout=30)
    assert done == {last} and not not_done
    assert list(as_completed([last], timeout=30)) == [last]
    second = gate.path.with_name("second")
    other = ex.submit(gated, str(second), "other")
    done, not_done = wait([last, other], timeout=30, return_when=FIRST_COMPLETED)
    assert done == {last} and not_done == {other}
    second.touch()
    assert other.result(30) == "other"
    assert [f.result(30) for f in blockers + queued[:-1]] == [
        "b0",
        "b1",
        *(f"q{i}" for i in range(5)),
    ]


# -- done callbacks --------------------------------------------------------------------------------


def test_done_callbacks_run_once_with_the_future_even_when_added_after_it_is_done(ex, gate):
    calls: list[tuple[Future[Any], int]] = []
    called = threading.Event()

    def note(future: Future[Any]) -> None:
        calls.append((future, threading.get_ident()))
        called.set()

    pending = gate.job(ex, "x")
    pending.add_done_callback(note)
    assert not called.wait(0.1) and calls == []
    gate.open()
    assert pending.result(30) == "x"
    assert called.wait(10)
    assert [f for f, _ in calls] == [pending]
    calls.clear()
    pending.add_done_callback(note)  # on a done future: at once, in this thread
    assert calls == [(pending, threading.get_ident())]

    failed = ex.submit(raise_boom, 1)
    with pytest.raises(Boom):
        failed.result(30)
    calls.clear()
    failed.add_done_callback(note)
    assert calls == [(failed, threading.get_ident())]


def test_a_done_callback_runs_when_the_future_is_cancelled(ex, gate):
    blockers = [gate.job(ex, f"b{i}") for i in range(WORKERS)]
    gate.wait_started(WORKERS)
    queued = [gate.job(ex, f"q{i}") for i in range(6)]
    seen: list[bool] = []
    queued[-1].add_done_callback(lambda f: seen.append(f.cancelled()))
    assert queued[-1].cancel()
    assert seen == [True]
    gate.open()
    assert [f.result(30) for f in blockers] == ["b0", "b1"]
    assert [f.result(30) for f in queued[:-1]] == [f"q{i}" for i in range(5)]
    assert seen == [True]  # once


# -- wait and as_completed -------------------------------------------------------------------------


def test_wait_first_completed_returns_with_the_first_done(ex, gate):
    slow = gate.job(ex, "slow")
    fast = ex.submit(pow, 3, 2)
    done, not_done = wait([slow, fast], timeout=30, return_when=FIRST_COMPLETED)
    assert done == {fast} and not_done == {slow}
    gate.open()
    done, not_done = wait([slow, fast], timeout=30, return_when=ALL_COMPLETED)
    assert done == {slow, fast} and not not_done


def test_wait_first_exception_returns_with_the_first_failure(ex, gate):
    slow = gate.job(ex, "slow")
    fine = ex.submit(pow, 3, 2)
    assert fine.result(30) == 9
    failing = ex.submit(raise_boom, 2)
    done, not_done = wait([slow, fine, failing], timeout=30, return_when=FIRST_EXCEPTION)
    assert done == {fine, failing} and not_done == {slow}
    assert isinstance(failing.exception(0), Boom)
    gate.open()
    done, not_done = wait([slow, fine], timeout=30, return_when=FIRST_EXCEPTION)
    assert done == {slow, fine} and not not_done  # no exception: waits for all


def test_wait_and_as_completed_time_out(ex, gate):
    slow = gate.job(ex, "slow")
    fast = ex.submit(pow, 2, 2)
    assert fast.result(30) == 4
    started = time.monotonic()
    done, not_done = wait([slow, fast], timeout=0.3)
    assert done == {fast} and not_done == {slow}
    assert time.monotonic() - started < 10
    seen = []
    with pytest.raises(FuturesTimeout):
        for future in as_completed([slow, fast], timeout=0.3):
            seen.append(future)
    assert seen == [fast]
    gate.open()
    assert [f.result() for f in as_completed([slow, fast], timeout=30)] == [4, "slow"]


def test_as_completed_yields_in_completion_order(ex, gate):
    slow = gate.job(ex, "slow")
    fast = ex.submit(pow, 2, 3)
    order = []
    for future in as_completed([slow, fast], timeout=30):
        order.append(future.result())
        if future is fast:
            gate.open()
    assert order == [8, "slow"]


# -- map -------------------------------------------------------------------------------------------


def test_map_is_ordered_with_several_iterables_and_chunksizes(ex):
    expected = [pow(a, b) for a, b in zip(range(50), range(50, 0, -1), strict=True)]
    assert list(ex.map(pow, range(50), range(50, 0, -1))) == expected
    assert list(ex.map(pow, range(50), range(50, 0, -1), chunksize=1)) == expected
    assert list(ex.map(pow, range(50), range(50, 0, -1), chunksize=7)) == expected
    assert list(ex.map(pow, range(50), range(50, 0, -1), chunksize=100)) == expected
    assert list(ex.map(pow, range(10), range(3))) == [1, 1, 4]  # stops at the shortest
    assert list(ex.map(pow, [], [])) == []


def test_map_refuses_a_chunksize_below_one(ex, kind):
    if kind == "thread":
        pytest.skip("ThreadPoolExecutor.map ignores chunksize (as documented)")
    for size in (0, -1):
        with pytest.raises(ValueError, match="chunksize"):
            list(ex.map(pow, range(4), range(4), chunksize=size))


def test_map_timeout_raises_timeout_error(ex, gate):
    results = ex.map(gated, [str(gate.path)], ["late"], [str(gate.ledger)], timeout=0.3)
    gate.wait_started(1)  # running: the timeout does not cancel it
    with pytest.raises(FuturesTimeout):
        list(results)
    gate.open()
    assert list(ex.map(pow, [2], [3], timeout=30)) == [8]


def test_map_yields_the_results_before_a_failing_call_then_raises(ex):
    for chunks in ({}, {"chunksize": 1}):
        results = ex.map(fail_at_3, range(6), **chunks)
        assert [next(results) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(Boom, match="three"):
            next(results)


def test_no_reference_is_kept_to_submitted_functions_or_map_results(ex):
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


# -- what cannot be pickled ------------------------------------------------------------------------


def test_an_unpicklable_argument_fails_the_future_with_the_pickling_error(ex, kind):
    if kind == "thread":
        pytest.skip("ThreadPoolExecutor hands the arguments themselves to a thread: no pickling")
    future = ex.submit(id, ErrorAtPickle())
    with pytest.raises(pickle.PicklingError, match="Error in pickle"):
        future.result(30)
    assert isinstance(future.exception(0), pickle.PicklingError)
    assert ex.submit(pow, 2, 3).result(30) == 8  # only that job failed


def test_an_unpicklable_result_fails_the_future_with_a_type_error(ex, kind):
    if kind == "thread":
        pytest.skip("ThreadPoolExecutor returns the result itself from a thread: no pickling")
    with pytest.raises(TypeError, match="pickle"):
        ex.submit(a_lock).result(30)
    assert ex.submit(pow, 2, 3).result(30) == 8


# -- lifecycle (fresh executors) -------------------------------------------------------------------


def test_max_workers_below_one_is_a_value_error(kind):
    for workers in (0, -1):
        with pytest.raises(ValueError, match="max_workers"):
            make_executor(kind, max_workers=workers)


def test_shutdown_waits_for_pending_jobs_and_then_refuses_new_work(make):
    ex = make()
    futures = [ex.submit(time.sleep, 0.05) for _ in range(6)]
    ex.shutdown(wait=True)
    assert all(f.done() for f in futures) and [f.result(0) for f in futures] == [None] * 6
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(pow, 1, 1)
    with pytest.raises(RuntimeError, match="after shutdown"):
        list(ex.map(pow, [1], [1]))
    ex.shutdown(wait=True)  # again: nothing to do


def test_shutdown_without_wait_returns_at_once_and_the_jobs_still_complete(make, gate):
    ex = make()
    futures = [gate.job(ex, i) for i in range(4)]
    started = time.monotonic()
    ex.shutdown(wait=False)
    assert time.monotonic() - started < GATE_TIMEOUT / 3  # it did not wait for the gate
    assert not any(f.done() for f in futures)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(pow, 1, 1)
    gate.open()
    assert [f.result(30) for f in futures] == [0, 1, 2, 3]
    ex.shutdown(wait=True)


def test_shutdown_cancel_futures_cancels_the_queued_jobs_and_waits_for_the_running(make, gate):
    ex = make()
    running = [gate.job(ex, f"r{i}") for i in range(WORKERS)]
    gate.wait_started(WORKERS)
    queued = [gate.job(ex, f"q{i}") for i in range(8)]
    tail = queued[4:]  # pending on every executor (see the cancel test)

    def open_once_cancelled() -> None:
        # the standard executors never notify waiters of what shutdown cancels: poll
        deadline = time.monotonic() + GATE_TIMEOUT / 2
        while not all(f.cancelled() for f in tail) and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.open()

    opener = threading.Thread(target=open_once_cancelled)
    opener.start()
    try:
        ex.shutdown(wait=True, cancel_futures=True)
    finally:
        gate.open()
        opener.join()
    assert all(f.cancelled() for f in tail)
    assert [f.result(0) for f in running] == ["r0", "r1"]
    ran = set(gate.started())
    assert ran == {"r0", "r1", *(f.result(0) for f in queued if not f.cancelled())}


def test_an_executor_dropped_without_shutdown_still_completes_its_futures(kind, gate):
    ex = make_executor(kind)
    try:
        futures = [gate.job(ex, i) for i in range(3)]
    except BaseException:
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    del ex
    gc.collect()
    gate.open()
    assert [f.result(30) for f in futures] == [0, 1, 2]


def test_the_context_manager_shuts_down_and_waits(make):
    with make() as ex:
        futures = [ex.submit(time.sleep, 0.05) for _ in range(4)]
    assert all(f.done() for f in futures)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(pow, 1, 1)


def test_the_initializer_runs_in_each_worker_before_its_jobs(make):
    ex = make(initializer=init_model, initargs=("m",))
    assert ex.submit(model_plus, "!").result(30) == "m!"
    assert list(ex.map(model_plus, ["a", "b", "c"])) == ["ma", "mb", "mc"]


def test_a_failing_initializer_breaks_the_executor(make, caplog):
    caplog.set_level("CRITICAL", logger="concurrent.futures")  # each logs it
    ex = make(initializer=init_fails)
    future = ex.submit(model_plus, "?")
    with pytest.raises(BrokenExecutor):
        future.result(30)
    deadline = time.monotonic() + 10
    while True:  # it breaks from another thread
        try:
            ex.submit(pow, 2, 2)
        except BrokenExecutor:
            break
        assert time.monotonic() < deadline, "the executor never broke"
        time.sleep(0.05)


def test_a_crashed_worker_fails_its_job_with_broken_process_pool(make, kind):
    if kind == "thread":
        pytest.skip("ThreadPoolExecutor: a thread cannot die alone (os._exit ends the process)")
    ex = make()
    with pytest.raises(BrokenProcessPool):
        ex.submit(crash).result(60)


# -- interpreter exit (in a child interpreter) ---------------------------------------------------

MAKERS = {
    "process": "concurrent.futures.ProcessPoolExecutor(1)",
    "thread": "concurrent.futures.ThreadPoolExecutor(1)",
    "rdispy": "rdispy.Executor(1)",
}


def run_script(kind: str, body: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run ``body`` as a script file (``MAKE`` is this parameter's executor), so that any start
    method of ProcessPoolExecutor can import its functions."""
    imports = "import concurrent.futures, sys, time\n" + ("import rdispy\n" * (kind == "rdispy"))
    script = folder / "script.py"
    script.write_text(imports + textwrap.dedent(body).replace("MAKE", MAKERS[kind]))
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_jobs_left_pending_complete_before_the_interpreter_exits(kind, tmp_path):
    done = run_script(
        kind,
        """
        def slow(word):
            time.sleep(0.3)
            print(word, flush=True)
        if __name__ == "__main__":
            never_shut = MAKE
            never_shut.submit(slow, "banana")
            no_wait = MAKE
            no_wait.submit(slow, "apple")
            no_wait.shutdown(wait=False)
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "apple" in done.stdout and "banana" in done.stdout
    assert done.stderr == ""  # no traceback, no warning


def test_submit_at_interpreter_exit_raises_runtime_error(kind, tmp_path):
    done = run_script(
        kind,
        """
        import atexit
        def late():
            try:
                ex.submit(pow, 2, 2)
            except RuntimeError as exc:
                print("refused:", exc)
        if __name__ == "__main__":
            ex = MAKE
            atexit.register(late)
            assert ex.submit(pow, 2, 2).result(30) == 4
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    # the standard executors' workers see the exit first and say "after shutdown"
    assert re.fullmatch(
        r"refused: cannot schedule new futures after (interpreter )?shutdown\n", done.stdout
    ), done.stdout
