"""Small helpers the fault and integration tests share."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import rdispy
from tests.conftest import HEARTBEAT

#: Generous bound for one step of a fault test, as a multiple of the heartbeat.
DEADLINE = 60 * HEARTBEAT


def wait_until(predicate: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(HEARTBEAT / 10)


@contextlib.contextmanager
def executor(url: str, **options: Any) -> Iterator[rdispy.Executor]:
    """An Executor that never waits for its jobs on the way out, so a failing test ends."""
    ex = rdispy.Executor(url, **options)
    try:
        yield ex
    finally:  # withdraw what is queued and close now (shutdown(wait=False) drains in the back)
        ex._dispatcher.cancel_all()
        ex.detach()


# jobs the monitor tests run: two functions that work and one that fails
def square(x: int) -> int:
    return x * x


def greet(name: str) -> str:
    return f"hello {name}"


def explode() -> None:
    raise ValueError("boom")
