"""Platform-specific process handling, kept in one place: process groups, signals, parent death.

Everything here degrades to a no-op where the platform lacks the feature (macOS has no
PR_SET_PDEATHSIG), so importing rdispy never fails on a supported system.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import select
import signal
import sys
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

IS_LINUX = sys.platform.startswith("linux")
_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent thread dies (Linux only)."""
    if not IS_LINUX:
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except OSError:  # pragma: no cover - libc without prctl
        pass


def child_preexec(own_group: bool = True) -> Callable[[], None]:
    """A ``preexec_fn`` for subprocess children that must die with their parent.

    The parent-death signal is tied to the thread that forked; it is only set when that thread
    is the main thread, which lives as long as the process.  Children also watch their owner's
    pid, so they exit either way.
    """
    main = threading.current_thread() is threading.main_thread()

    def preexec() -> None:
        if own_group:
            os.setpgid(0, 0)
        if main:
            set_parent_death_signal(signal.SIGKILL)

    return preexec


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists (and is not a zombie we could reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send a signal to the process group led by ``pid`` (the job and every process it started)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def describe_status(status: int) -> str:
    """Human wording of a waitpid status: 'killed by signal SIGKILL' or 'exit code 3'."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by signal {name}"
    return f"exit code {os.WEXITSTATUS(status)}"


def install_stop_handlers(handler: Callable[[int], None]) -> None:
    """Route SIGTERM and SIGINT to ``handler(signum)`` (main thread only)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: handler(signum))


class SignalWaker:
    """Lets a single-threaded loop sleep until a tick passes or a signal arrives (SIGCHLD from
    a dying child, SIGTERM/SIGINT), instead of finishing a sleep first.  Main thread only."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so SIGCHLD reaches the fd

    def wait(self, timeout: float) -> None:
        ready, _, _ = select.select([self._read], [], [], timeout)
        if ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._read, 4096)

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.close(self._read)
        os.close(self._write)


def reset_child_signals() -> None:
    """Give a forked child default signal dispositions, so it does not run the parent's handlers."""
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
