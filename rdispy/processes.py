"""Platform-specific process handling, kept in one place: process groups, signals, parent death.

Everything here degrades to a no-op where the platform lacks the feature (macOS has no
PR_SET_PDEATHSIG), so importing rdispy never fails on a supported system.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

IS_LINUX = sys.platform.startswith("linux")
_PR_SET_PDEATHSIG = 1

#: Exit status of a consumer whose job ran out of its memory limit (MemoryError under the rlimit).
EXIT_MEMORY = 86


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent thread dies (Linux only)."""
    if not IS_LINUX:
        return
    try:
        # the process's own symbols, libc's among them (find_library would run ldconfig: a
        # subprocess, tens of ms, in every consumer and embedded node started)
        libc = ctypes.CDLL(None, use_errno=True)
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


try:
    import resource as _resource
except ImportError:  # not a Unix
    _resource = None  # type: ignore[assignment]

#: ru_maxrss is in KiB on Linux, in bytes on macOS.
_RSS_DIVISOR = 1024 if sys.platform == "darwin" else 1


def peak_rss_kib(usage: Any = None) -> int | None:
    """Peak resident memory in KiB from ``usage`` (a ``resource.struct_rusage``; default: this
    process so far, or the largest of its waited-for children), or None where it cannot be
    measured.  Cheap (two getrusage calls): consumers call it after every job."""
    if usage is not None:
        return int(usage.ru_maxrss // _RSS_DIVISOR)
    if _resource is None:
        return None
    own = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss
    children = _resource.getrusage(_resource.RUSAGE_CHILDREN).ru_maxrss
    return int(max(own, children) // _RSS_DIVISOR)


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


def limit_memory(limit: int) -> bool:
    """Cap this process's data (heap and private writable mappings: RLIMIT_DATA, which Linux
    enforces on mmap since 4.7) so that an allocation past ``limit`` bytes fails with MemoryError
    instead of waking the kernel's OOM killer.  Children the job starts inherit the cap (each its
    own).  Linux only (macOS does not enforce it); returns whether the cap is in force."""
    if not IS_LINUX:
        return False
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    except (ValueError, OSError) as exc:
        log.warning("cannot cap memory at %d bytes: %s", limit, exc)
        return False
    return True


def prefer_oom_kill(score: int = 500) -> None:
    """Make the kernel's OOM killer pick this process (a consumer running user code) before its
    supervisor, should the machine run out of memory anyway (Linux only; raising is allowed)."""
    if IS_LINUX:
        with contextlib.suppress(OSError):
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(score))


def group_rss() -> dict[int, int]:
    """Resident memory (bytes) per process group, summed over its processes, from /proc (Linux
    only; empty elsewhere).  A consumer leads its own group, so this covers its job and every
    process the job started."""
    totals: dict[int, int] = {}
    if not IS_LINUX:
        return totals
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        try:
            pgrp, rss = int(fields[2]), int(fields[21])
        except (IndexError, ValueError):
            continue
        totals[pgrp] = totals.get(pgrp, 0) + rss * page
    return totals


@contextlib.contextmanager
def file_lock(path: Any) -> Any:
    """Hold an exclusive advisory lock on the file ``path`` (created if missing) for the
    ``with`` block: one holder among all processes of the host.  Without ``fcntl`` (not a POSIX
    system) the block runs unlocked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
