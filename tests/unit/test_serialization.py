"""serialization: cloudpickle for functions, remote exceptions rebuilt with their traceback."""

from __future__ import annotations

import concurrent.futures.process
import pickle
import sys
import threading

import pytest

from rdispy import serialization
from rdispy.errors import DeserializationError, RemoteError, SerializationError


class Custom(Exception):
    pass


def test_lambdas_and_closures_round_trip():
    base = 10
    fn = serialization.loads(serialization.dumps(lambda x: x + base))
    assert fn(1) == 11


def test_unpicklable_value_raises_serialization_error_naming_what():
    with pytest.raises(SerializationError, match="cannot pickle the arguments"):
        serialization.dumps(threading.Lock(), "arguments")


def test_corrupt_payload_raises_deserialization_error():
    with pytest.raises(DeserializationError, match="job j1"):
        serialization.loads(b"not a pickle", "payload", "j1")


class _ExitAtUnpickle:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return sys.exit, (1,)


def test_unpickling_errors_are_broken_process_pool_and_catch_system_exit():
    """As ProcessPoolExecutor: a payload that cannot be unpickled (even one whose unpickling
    calls sys.exit) is a BrokenProcessPool, and of the original type, never a SystemExit."""
    with pytest.raises(concurrent.futures.process.BrokenProcessPool) as info:
        serialization.loads(pickle.dumps(_ExitAtUnpickle()), "result", "j2")
    assert isinstance(info.value, DeserializationError) and "SystemExit" in str(info.value)
    with pytest.raises(pickle.UnpicklingError) as info2:
        serialization.loads(b"not a pickle", "payload", "j1")
    assert isinstance(info2.value, concurrent.futures.process.BrokenProcessPool)
    again = pickle.loads(pickle.dumps(info2.value))
    assert isinstance(again, pickle.UnpicklingError) and isinstance(again, DeserializationError)
    assert isinstance(again, concurrent.futures.process.BrokenProcessPool)


def test_exception_keeps_type_and_gets_remote_traceback_cause():
    try:
        raise Custom("bad")
    except Custom as exc:
        data = serialization.dump_exception(exc)
    rebuilt = serialization.load_exception(data)
    assert type(rebuilt) is Custom and str(rebuilt) == "bad"
    # ProcessPoolExecutor's own type, as code written for it expects
    assert type(rebuilt.__cause__) is concurrent.futures.process._RemoteTraceback
    assert "raise Custom" in str(rebuilt.__cause__) and "raise Custom" in rebuilt.__cause__.tb


def test_unpicklable_exception_falls_back_to_remote_error():
    class Holder(Exception):
        def __init__(self):
            super().__init__("holds a lock")
            self.lock = threading.Lock()

    try:
        raise Holder()
    except Holder as exc:
        data = serialization.dump_exception(exc, "j2")
    rebuilt = serialization.load_exception(data)
    assert isinstance(rebuilt, RemoteError) and rebuilt.job_id == "j2"
    assert "Holder" in rebuilt.exc_type and "holds a lock" in str(rebuilt)
    assert pickle.loads(pickle.dumps(rebuilt)).traceback == rebuilt.traceback


class KeywordOnly(Exception):
    """Pickles, but cannot be unpickled: its ``__init__`` takes no positional argument."""

    def __init__(self, *, code: int) -> None:
        super().__init__(f"failed with code {code}")


@pytest.mark.parametrize("make", [lambda: KeywordOnly(code=7), lambda: NoArgs()])
def test_an_exception_that_cannot_be_rebuilt_keeps_its_name_message_and_traceback(make):
    try:
        raise make()
    except Exception as exc:
        original = exc
        data = serialization.dump_exception(exc, "j4")
    with pytest.raises(TypeError):  # what the plain envelope lost before
        pickle.loads(pickle.dumps(original))
    rebuilt = serialization.load_exception(data, "j4")
    assert isinstance(rebuilt, RemoteError) and rebuilt.job_id == "j4"
    assert rebuilt.exc_type == f"{__name__}.{type(original).__qualname__}"
    assert str(original) in str(rebuilt)
    assert "raise make()" in rebuilt.traceback and "cannot be rebuilt here" in rebuilt.rebuild_error
    assert type(rebuilt.__cause__) is concurrent.futures.process._RemoteTraceback
    assert "raise make()" in rebuilt.__cause__.tb


class NoArgs(Exception):
    def __init__(self) -> None:
        super().__init__("no arguments", "two")

    def __reduce__(self):  # the default reduce passes self.args back to __init__
        return (type(self), self.args)


def test_exception_that_cannot_be_unpickled_here_becomes_remote_error():
    rebuilt = serialization.load_exception(b"garbage", "j3")
    assert isinstance(rebuilt, RemoteError) and rebuilt.job_id == "j3"


def test_the_runtime_tag_names_python_and_cloudpickle_minor_versions():
    from rdispy.serialization import runtime_tag

    assert runtime_tag("3.11.7", "3.1.1") == b"py3.11/cp3.1"
    assert runtime_tag("3.12.0rc1", "3.0.0") == b"py3.12/cp3.0"
    assert runtime_tag("3.11.2", "3.1.0") == runtime_tag("3.11.7", "3.1.1")  # patches match
