"""The job functions every executor runs.

They live in an importable module (not ``__main__``) so that ProcessPoolExecutor pickles them by
reference and rdispy's consumers import the very same code; no executor gets a cheaper variant.
"""

from __future__ import annotations

import time
from typing import Any


def noop(value: Any = None) -> Any:
    """Return the argument unchanged: the smallest possible job."""
    return value


def payload_len(data: bytes) -> int:
    """Return the size of a (large) argument, so only the argument travels far."""
    return len(data)


def spin(loops: int) -> float:
    """Burn CPU in pure Python for ``loops`` iterations; return the CPU seconds it took.

    CPU time, not wall time: it does not count moments the process was not running, and it
    scales with the processor's speed just as the wall time of the whole batch does.
    """
    start = time.thread_time()
    total = 0
    for i in range(loops):
        total += i * i
    return time.thread_time() - start
