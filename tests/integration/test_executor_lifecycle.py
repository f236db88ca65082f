"""What rdispy adds to ProcessPoolExecutor's lifecycle on the embedded default (issue 13):
``Executor(4)``, a failing ``initializer=`` reported with its error, what jobs print.  The
lifecycle contract itself (initializer, shutdown, interpreter exit, remote tracebacks), shown on
the standard executors too, is in test_executor_contract.py."""

from __future__ import annotations

import concurrent.futures.process
import logging
import sys
import time

import pytest

import rdispy
from rdispy.nodes import live_nodes

pytestmark = pytest.mark.integration


def model_twice() -> str:
    return MODEL * 2  # noqa: F821  # never set: the initializer fails


def init_fails() -> None:
    raise ValueError("no model here")


def shout(word: str) -> str:
    print(word)
    print(word.upper(), file=sys.stderr)
    return word


def test_a_number_as_first_argument_is_max_workers():
    with rdispy.Executor(3) as ex:
        d = ex._dispatcher
        [node] = live_nodes(d.client, d.keys, d.signer)  # registered before Executor returns
        assert int(node["cpus"]) == 3
        assert ex.submit(pow, 2, 5).result(30) == 32
    with pytest.raises(ValueError, match="max_workers"):
        rdispy.Executor(0)


def test_a_failing_initializer_is_reported_with_its_error_here(caplog):
    caplog.set_level(logging.CRITICAL, logger="concurrent.futures")
    ex = rdispy.Executor(1, initializer=init_fails)
    try:
        future = ex.submit(model_twice)
        with pytest.raises(concurrent.futures.process.BrokenProcessPool) as info:
            future.result(30)
        assert isinstance(info.value, rdispy.InitializerFailed)
        assert "no model here" in str(info.value)  # a process pool's names no cause
        deadline = time.monotonic() + 10  # logged here, where a process pool logs in its worker
        while not any("Exception in initializer" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the failure was never logged"
            time.sleep(0.05)
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
