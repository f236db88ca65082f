"""Adapter: CPython's own test_concurrent_futures, run against rdispy.Executor.

The suite is taken at test time from the interpreter's ``test`` package or, where the interpreter
ships without it, from Debian's ``libpython3.X-testsuite`` (/usr/lib/python3.X/test); nothing of
it is copied here.  ``build`` makes unittest classes from its executor-generic mixins (ExecutorTest
with the process pool's extras, WaitTests, AsCompletedTests, the shutdown, initializer and
deadlock tests) combined with a mixin whose ``executor_type`` is rdispy's, in two variants: the
embedded default, and a client of two `rdispy worker` nodes (see ``Nodes``).  FutureTests also run
on RemoteFuture.

What the adapter does to the loaded module, and nothing else:
- its functions are pickled by value (``cloudpickle.register_pickle_by_value``), as a user's
  ``__main__`` is, since worker processes may not import it;
- the subprocess tests' ``assert_python_ok`` gets ``PYTHONPATH`` pointing at ``shim/`` (which
  makes ``from concurrent.futures import RdispyExecutor`` and the suite's own module importable
  in the child); passing an environment is what makes it drop ``-I``, nothing else changes.

Every test that does not run is in SKIPS, with its reason.
"""

from __future__ import annotations

import functools
import importlib
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
import types
import unittest
from pathlib import Path
from typing import Any

import cloudpickle
import psutil

from tests.conformance.executors import (
    RdispyClusterExecutor,
    RdispyExecutor,
)

ROOT = Path(__file__).resolve().parents[2]
SHIM = Path(__file__).resolve().parent / "shim"
MODULE = "test.test_concurrent_futures"
#: Nodes of the cluster variant, and consumers on each (the suite assumes at most 5 workers).
NODES, NODE_CPUS = 2, 2

#: Tests that do not run, by "<group>.<test>" (both variants) or "<variant>:<group>.<test>".
SKIPS: dict[str, str] = {
    # ProcessPoolExecutor internals and options
    "Executor.test_killed_child": "terminates a process of PPE's private _processes (a killed "
    "consumer is covered by Deadlock.test_crash_during_func_exec_on_worker)",
    "Executor.test_saturation": "counts PPE's private _processes",
    "Executor.test_idle_process_reuse_one": "counts PPE's private _processes",
    "Executor.test_idle_process_reuse_multiple": "counts PPE's private _processes",
    "Executor.test_max_tasks_per_child": "max_tasks_per_child is a PPE option",
    "Executor.test_max_tasks_per_child_defaults_to_spawn_context": "PPE's mp_context option",
    "Executor.test_max_tasks_early_shutdown": "max_tasks_per_child is a PPE option",
    "Executor.test_ressources_gced_in_workers": "sends a multiprocessing Manager proxy, whose "
    "authkey only multiprocessing children of this process hold",
    "Shutdown.test_processes_terminate": "counts PPE's private _processes",
    "Shutdown.test_context_manager_shutdown": "builds futures.ProcessPoolExecutor itself, not "
    "executor_type",
    "Shutdown.test_del_shutdown": "builds futures.ProcessPoolExecutor itself, not executor_type",
    "Shutdown.test_shutdown_no_wait": "builds futures.ProcessPoolExecutor itself, not "
    "executor_type",
    "Deadlock.test_shutdown_deadlock_pickle": "joins PPE's private _executor_manager_thread",
    # FutureTests on RemoteFuture
    "RemoteFuture.test_multiple_set_result": "matches the repr '<Future at 0x...', and a "
    "RemoteFuture's names its job ('<RemoteFuture job=... state=...>')",
    "RemoteFuture.test_multiple_set_exception": "matches the repr '<Future at 0x...', and a "
    "RemoteFuture's names its job ('<RemoteFuture job=... state=...>')",
    "RemoteFuture.test_done_callback_raises": "reads the callback error's log record on stderr, "
    "where pytest's log capture takes it (fails so for the stdlib Future under pytest too)",
    "RemoteFuture.test_done_callback_raises_already_succeeded": "reads the callback error's log "
    "record on stderr, where pytest's log capture takes it (so for the stdlib Future too)",
}


def locate() -> tuple[Path | None, str]:
    """The folder holding test_concurrent_futures.py, or None and why it is missing."""
    import test

    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    folders = [*test.__path__, f"/usr/lib/python{version}/test"]
    for folder in folders:
        if (Path(folder) / "test_concurrent_futures.py").is_file():
            return Path(folder), ""
        if (Path(folder) / "test_concurrent_futures").is_dir():
            return None, f"Python {version} splits the suite into a package: not adapted yet"
    return None, (
        f"CPython's test_concurrent_futures is not installed (apt-get install "
        f"libpython{version}-testsuite; looked in {', '.join(map(str, folders))})"
    )


def shim_env(folder: Path) -> dict[str, str]:
    """What a process needs to import rdispy's executor types from concurrent.futures and the
    suite's own module (see shim/sitecustomize.py)."""
    path = os.pathsep.join([str(SHIM), str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    return {"PYTHONPATH": path, "RDISPY_CPYTHON_TESTS": str(folder)}


def load() -> tuple[types.ModuleType | None, str]:
    """Import the suite as ``test.test_concurrent_futures``; None and the reason when absent."""
    folder, reason = locate()
    if folder is None:
        return None, reason
    import test
    from test.support import script_helper

    if str(folder) not in test.__path__:
        test.__path__.append(str(folder))
    try:
        suite = importlib.import_module(MODULE)
    except unittest.SkipTest as exc:
        return None, f"the suite skips itself: {exc}"
    cloudpickle.register_pickle_by_value(suite)
    suite.assert_python_ok = functools.partial(  # type: ignore[attr-defined]
        script_helper.assert_python_ok, **shim_env(folder)
    )
    return suite, ""


class Nodes:
    """Two `rdispy worker` nodes of a fresh cluster on a server, for the cluster variant; their
    processes (and consumers they replace) are ended by ``stop``."""

    def __init__(self, url: str, cluster: str, folder: Path, log_dir: Path) -> None:
        self.url, self.cluster = url, cluster
        env = dict(os.environ, RDISPY_HEARTBEAT="0.25", PYTHONUNBUFFERED="1", **shim_env(folder))
        self.procs: list[subprocess.Popen[bytes]] = []
        for n in range(NODES):
            log = (log_dir / f"cpython-node{n}.log").open("wb")
            command = [sys.executable, "-m", "rdispy", "worker", "--redis", url]
            command += ["--cpus", str(NODE_CPUS), "--name", f"cpy{n}", "--cluster", cluster]
            self.procs.append(
                subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
            )
        deadline = time.monotonic() + 30
        while sum(len(self.consumers(p.pid)) for p in self.procs) < NODES * NODE_CPUS:
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the cluster variant's nodes did not start (see {log_dir})")
            time.sleep(0.05)

    @staticmethod
    def consumers(pid: int) -> list[psutil.Process]:
        try:
            return psutil.Process(pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def tree(self) -> set[int]:
        """Every process of the nodes now (consumers come and go as crashed ones are replaced)."""
        return {p.pid for p in self.procs} | {
            c.pid for p in self.procs for c in self.consumers(p.pid)
        }

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                for child in self.consumers(proc.pid):
                    child.kill()
                proc.kill()
                proc.wait()


def _context(self: Any) -> Any:
    """The suite's crash tests pass ``mp_context=self.get_context()``; ignored by rdispy."""
    return mp.get_context()


#: Suite classes run per variant, by group name (the first word of SKIPS keys).
GROUPS = {
    "Executor": "ProcessPoolExecutorTest",  # ExecutorTest and the process pool's extras
    "Wait": "WaitTests",
    "AsCompleted": "AsCompletedTests",
    "Shutdown": "ProcessPoolShutdownTest",  # ExecutorShutdownTest and the process pool's extras
    "Initializer": "InitializerMixin",
    "FailingInitializer": "FailingInitializerMixin",
    "Deadlock": "ExecutorDeadlockTest",
}
VARIANTS = {"Embedded": RdispyExecutor, "Cluster": RdispyClusterExecutor}


def skip_reason(variant: str, group: str, test: str) -> str | None:
    return SKIPS.get(f"{variant}:{group}.{test}") or SKIPS.get(f"{group}.{test}")


def build(suite: types.ModuleType, variant: str, module: str) -> dict[str, type]:
    """Test classes ``Test<variant><group>`` for every group, with SKIPS applied."""
    mixin = type(
        f"{variant}Mixin",
        (suite.ExecutorMixin,),
        {"executor_type": VARIANTS[variant], "get_context": _context, "__module__": module},
    )
    classes: dict[str, type] = {}
    for group, source in GROUPS.items():
        name = f"Test{variant}{group}"
        cls = type(
            name, (getattr(suite, source), mixin, suite.BaseTestCase), {"__module__": module}
        )
        for attr in dir(cls):
            reason = skip_reason(variant, group, attr) if attr.startswith("test_") else None
            if reason:
                setattr(cls, attr, unittest.skip(reason)(getattr(cls, attr)))
        classes[name] = cls
    return classes


def remote_future_tests(suite: types.ModuleType, module: str) -> type:
    """FutureTests with every ``Future()`` they make a RemoteFuture (one with no cluster behind
    it: these tests set results and cancel by hand)."""
    from rdispy.client.future import RemoteFuture

    counter = iter(range(1, 1 << 30))

    def make() -> RemoteFuture:
        return RemoteFuture(f"cpython-{next(counter)}", None)

    def set_up(self: Any) -> None:
        self._stdlib_future = suite.Future
        suite.Future = make
        suite.FutureTests.setUp(self)

    def tear_down(self: Any) -> None:
        suite.Future = self._stdlib_future
        suite.FutureTests.tearDown(self)

    body: dict[str, Any] = {"setUp": set_up, "tearDown": tear_down, "__module__": module}
    for attr in dir(suite.FutureTests):
        reason = SKIPS.get(f"RemoteFuture.{attr}")
        if reason:
            body[attr] = unittest.skip(reason)(getattr(suite.FutureTests, attr))
    return type("TestRemoteFuture", (suite.FutureTests,), body)
