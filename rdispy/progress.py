"""Progress of many jobs: a bar (tqdm) on a terminal, plain lines where output goes to a file.

    for future in rdispy.progress.progress(futures, desc="jobs"):
        print(future.result())            # each future or DispyJob as soon as it completes

``Executor.map(..., progress=True)``, ``JobCluster.wait(progress=True)`` and `rdispy submit` show
the same bar.  When the stream is not a terminal (a log, CI), a line is printed each time another
tenth of the jobs is done, at most every ``interval`` seconds otherwise, and at the end.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
import types
from collections.abc import Iterable, Iterator
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

#: Seconds between plain progress lines when the total is unknown or progress is slow.
PLAIN_INTERVAL = 10.0


class Progress:
    """A progress display of ``total`` units (None: unknown), thread-safe; ``update`` from any
    thread.  With ``auto_close`` it closes itself once ``total`` is reached; ``close()`` ends
    it in any case."""

    def __init__(
        self,
        total: int | None,
        desc: str | None = None,
        file: TextIO | None = None,
        unit: str = "job",
        interval: float = PLAIN_INTERVAL,
        auto_close: bool = True,
    ) -> None:
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.auto_close = auto_close
        self.file = file if file is not None else sys.stderr
        self.count = 0
        self.closed = False
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_line = self._started
        self._last_step = 0  # tenths reported so far (plain lines)
        self._last_count = 0
        self._bar: Any = None
        if _is_terminal(self.file):
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, desc=desc, unit=unit, file=self.file, dynamic_ncols=True, leave=True
            )
        if total == 0 and auto_close:
            self.close()

    def update(self, n: int = 1) -> None:
        with self._lock:
            if self.closed:
                return
            self.count += n
            if self._bar is not None:
                self._bar.update(n)
            else:
                self._plain_line()
            if self.auto_close and self.total is not None and self.count >= self.total:
                self._close()

    def write(self, text: str, file: TextIO | None = None) -> None:
        """Print a line (to stdout by default) without breaking the bar."""
        target = file if file is not None else sys.stdout
        with self._lock:
            if self._bar is not None and not self.closed:
                self._bar.write(text, file=target)
            else:
                print(text, file=target, flush=True)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.count != self._last_count or self.count == 0:
            self._print_line()

    def _plain_line(self) -> None:
        now = time.monotonic()
        if self.total:
            step = min(10, self.count * 10 // self.total)
            if step > self._last_step:
                self._last_step = step
                self._print_line()
                return
        if now - self._last_line >= self.interval:
            self._print_line()

    def _print_line(self) -> None:
        elapsed = time.monotonic() - self._started
        label = f"{self.desc}: " if self.desc else ""
        if self.total:
            done = f"{self.count}/{self.total} {self.unit}s ({100 * self.count // self.total}%)"
        else:
            done = f"{self.count} {self.unit}s"
        print(f"{label}{done} done in {elapsed:.1f}s", file=self.file, flush=True)
        self._last_line, self._last_count = time.monotonic(), self.count

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Completed(Iterator[T]):
    """What ``progress()`` returns: iterates its futures or jobs as they complete.  The bar
    stays (below lines printed with ``write``) until the iteration ends or ``close()``."""

    def __init__(self, items: list[T], bar: Progress) -> None:
        self.bar = bar
        self._left = len(items)
        self._done: queue.SimpleQueue[T] = queue.SimpleQueue()
        for item in items:
            item.add_done_callback(self._done.put)  # type: ignore[attr-defined]

    def __next__(self) -> T:
        if self._left == 0:
            self.bar.close()
            raise StopIteration
        while True:
            try:
                item = self._done.get(timeout=0.5)  # short waits keep Ctrl-C prompt
                break
            except queue.Empty:
                continue
        self._left -= 1
        self.bar.update()
        return item

    def write(self, text: str, file: TextIO | None = None) -> None:
        """Print a line (to stdout by default) without breaking the bar."""
        self.bar.write(text, file)

    def close(self) -> None:
        self.bar.close()


def progress(
    futures_or_jobs: Iterable[T],
    total: int | None = None,
    desc: str | None = None,
    *,
    file: TextIO | None = None,
    unit: str = "job",
) -> Completed[T]:
    """Iterate futures (rdispy's or any ``concurrent.futures.Future``) or ``DispyJob`` objects
    as they complete, showing a progress bar on ``file`` (stderr by default).

    ``total`` is what the bar counts to (default: how many were given).  Each item is yielded
    once, when it is done (result, exception or cancelled); the iterator can be left early.
    """
    items = list(futures_or_jobs)
    for item in items:
        if not callable(getattr(item, "add_done_callback", None)):
            raise TypeError(
                f"progress() takes futures or DispyJob objects, not {type(item).__name__}"
            )
    bar = Progress(len(items) if total is None else total, desc, file, unit, auto_close=False)
    return Completed(items, bar)


def _is_terminal(file: TextIO) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):
        return False


class _CallableModule(types.ModuleType):
    """``rdispy.progress`` is this module, and calling it calls ``progress`` (what the name
    meant before it named the module: ``rdispy.progress(futures)`` keeps working)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return progress(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
