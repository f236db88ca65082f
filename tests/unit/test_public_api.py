"""The public API is exactly rdispy.__all__."""

from __future__ import annotations

import concurrent.futures

import rdispy


def test_every_exported_name_resolves():
    for name in rdispy.__all__:
        assert getattr(rdispy, name) is not None


def test_executor_is_a_standard_executor_and_errors_share_one_root():
    assert issubclass(rdispy.Executor, concurrent.futures.Executor)
    assert issubclass(rdispy.RemoteFuture, concurrent.futures.Future)
    for name in rdispy.__all__:
        value = getattr(rdispy, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, rdispy.RdispyError)
    assert issubclass(rdispy.ExecutorBroken, concurrent.futures.BrokenExecutor)
