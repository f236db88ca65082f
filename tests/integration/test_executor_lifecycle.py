"""ProcessPoolExecutor's lifecycle contract on the embedded default (issue 13): ``Executor(4)``,
``initializer=``, what jobs print, ``shutdown(wait=False)`` and interpreter exit, remote
tracebacks of the standard type with their source lines."""

from __future__ import annotations

import concurrent.futures.process
import logging
import subprocess
import sys
import textwrap
import time
from concurrent.futures import BrokenExecutor
from pathlib import Path

import pytest

import rdispy
from rdispy.worker.node import live_nodes

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def init_model(value: str) -> None:
    global MODEL
    MODEL = value


def model_plus(suffix: str) -> str:
    return MODEL + suffix  # noqa: F821  # assigned by init_model in the consumer


def model_twice() -> str:
    return MODEL * 2  # noqa: F821


def init_fails() -> None:
    raise ValueError("no model here")


def shout(word: str) -> str:
    print(word)
    print(word.upper(), file=sys.stderr)
    return word


def fails_with_a_comment() -> None:
    raise RuntimeError(123)  # the line the traceback shows


def run_script(body: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    script = "import rdispy, sys, time\n" + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_a_number_as_first_argument_is_max_workers():
    with rdispy.Executor(3) as ex:
        d = ex._dispatcher
        [node] = live_nodes(d.client, d.keys, d.signer)  # registered before Executor returns
        assert int(node["cpus"]) == 3
        assert ex.submit(pow, 2, 5).result(30) == 32
    with pytest.raises(ValueError, match="max_workers"):
        rdispy.Executor(0)


def test_the_initializer_runs_before_jobs_and_its_globals_reach_every_function():
    with rdispy.Executor(2, initializer=init_model, initargs=("m",)) as ex:
        assert ex.submit(model_plus, "!").result(30) == "m!"
        assert ex.submit(model_twice).result(30) == "mm"
        assert list(ex.map(model_plus, ["a", "b", "c"])) == ["ma", "mb", "mc"]


def test_a_failing_initializer_breaks_the_executor(caplog):
    caplog.set_level(logging.CRITICAL, logger="concurrent.futures")
    ex = rdispy.Executor(1, initializer=init_fails)
    try:
        future = ex.submit(model_twice)
        with pytest.raises(concurrent.futures.process.BrokenProcessPool) as info:
            future.result(30)
        assert isinstance(info.value, rdispy.InitializerFailed)
        assert "no model here" in str(info.value)
        deadline = time.monotonic() + 10
        while True:  # the executor breaks from the future's done-callback
            try:
                ex.submit(pow, 2, 2)
            except BrokenExecutor:
                break
            assert time.monotonic() < deadline, "the executor never broke"
            time.sleep(0.05)
        assert any("Exception in initializer" in r.getMessage() for r in caplog.records)
    finally:
        ex.shutdown(wait=True)


def test_what_a_job_prints_is_echoed_here_and_kept_on_the_future(capfd):
    with rdispy.Executor(1) as ex:
        future = ex.submit(shout, "apple")
        assert future.result(30) == "apple"
        assert future.stdout == "apple\n"
    out, err = capfd.readouterr()
    assert "apple" in out and "APPLE" in err
    with rdispy.Executor(1, echo_output=False) as quiet:
        assert quiet.submit(shout, "pear").result(30) == "pear"
    out, err = capfd.readouterr()
    assert "pear" not in out and "PEAR" not in err


def test_shutdown_without_wait_returns_at_once_and_the_jobs_still_complete():
    ex = rdispy.Executor(1)
    futures = [ex.submit(time.sleep, 0.3) for _ in range(3)]
    started = time.monotonic()
    ex.shutdown(wait=False)
    assert time.monotonic() - started < 0.25
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(pow, 1, 1)
    assert [f.result(30) for f in futures] == [None, None, None]
    ex.shutdown(wait=True)  # joins the background close


def test_jobs_left_pending_complete_before_the_interpreter_exits():
    done = run_script(
        """
        def slow(word):
            time.sleep(0.5)
            print(word)
        if __name__ == "__main__":
            never_shut = rdispy.Executor(1)
            never_shut.submit(slow, "banana")
            no_wait = rdispy.Executor(1)
            no_wait.submit(slow, "apple")
            no_wait.shutdown(wait=False)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "apple" in done.stdout and "banana" in done.stdout
    assert "Traceback" not in done.stderr and "unreachable" not in done.stderr


def test_submit_at_interpreter_exit_raises_runtime_error():
    done = run_script(
        """
        import atexit
        ex = rdispy.Executor(1)
        def late():
            try:
                ex.submit(pow, 2, 2)
            except RuntimeError as exc:
                print("refused:", exc)
        atexit.register(late)
        ex.submit(pow, 2, 2).result(30)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "refused: cannot schedule new futures after interpreter shutdown" in done.stdout


def test_a_remote_traceback_is_the_standard_type_with_source_lines():
    with rdispy.Executor(1) as ex:
        with pytest.raises(RuntimeError) as info:
            ex.submit(fails_with_a_comment).result(30)
    cause = info.value.__cause__
    assert type(cause) is concurrent.futures.process._RemoteTraceback
    assert "raise RuntimeError(123)  # the line the traceback shows" in cause.tb
    assert __file__ in cause.tb
