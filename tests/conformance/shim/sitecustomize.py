"""Loaded by Python at start-up when this folder is on PYTHONPATH: in the CPython suite's
subprocess tests and in the worker nodes the adapter starts.

It makes two lines of the suite's subprocess scripts work unchanged with rdispy:
``from concurrent.futures import RdispyExecutor`` (rdispy's executor types, see ``executors``), and
``from test.test_concurrent_futures import sleep_and_print`` (the suite's own file, from the
folder named by RDISPY_CPYTHON_TESTS when the interpreter's ``test`` package lacks it).
"""

import os


def _install() -> None:
    folder = os.environ.get("RDISPY_CPYTHON_TESTS")
    if folder:
        import test

        if folder not in test.__path__:
            test.__path__.append(folder)
    import concurrent.futures as cf

    previous = cf.__getattr__

    def __getattr__(name: str) -> object:
        if name in ("RdispyExecutor", "RdispyClusterExecutor"):
            from tests.conformance import executors

            return getattr(executors, name)
        return previous(name)

    cf.__getattr__ = __getattr__


_install()
