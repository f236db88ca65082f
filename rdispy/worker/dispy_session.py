"""What a JobCluster's computation finds on a node, as a dispynode gives it.

A dispynode runs a job in a process whose globals are dispynode's own module globals (``os``,
``sys``, ``time``, ``socket``, ... are there without an import) plus ``dispy_node_name``,
``dispy_node_ip_addr``, ``dispy_job_path``, ``dispy_provisional_result`` and
``dispy_send_file``; dispy's own examples rely on all of them.  ``job_globals`` gives those
names for one node and session; the consumer adds each only where the computation did not
define it.

A setup function runs once per consumer process (each keeps its own globals), serialized on
the node by ``setup_lock`` so that a setup that reads and then deletes a dependency file (as
dispy's ``replace_inmem`` example does) finds it each time.  ``setup_ok`` is dispy's reading
of setup's return value: 0 (or None), 1 and 2 are success, anything else fails the node.

``share_namespace`` and ``in_namespace`` give a session's dependencies, setup and cleanup the
computation's globals, one namespace as on a dispynode.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rdispy import job_context, processes

log = logging.getLogger(__name__)

#: The modules dispynode.py imports at its top, hence in every job's globals there.
DISPYNODE_MODULES = (
    "os",
    "sys",
    "time",
    "stat",
    "socket",
    "multiprocessing",
    "threading",
    "subprocess",
    "traceback",
    "marshal",
    "tempfile",
    "shutil",
    "glob",
    "pickle",
    "io",
    "signal",
    "platform",
    "copy",
    "struct",
    "hashlib",
    "re",
    "errno",
)

#: Setup return values dispynode takes as success (0: run jobs in forked processes, 1: copy
#: setup's globals into each job, 2: keep the setup process); rdispy runs all three alike.
SETUP_OK = (None, 0, 1, 2)


def job_globals(node: str, ip: str, folder: Path) -> dict[str, Any]:
    """The names a dispynode job process has, for jobs of a session in ``folder``."""
    names: dict[str, Any] = {}
    for module in DISPYNODE_MODULES:
        with contextlib.suppress(ImportError):
            names[module] = importlib.import_module(module)
    import rdispy

    names.update(
        dispy=rdispy,
        dispy_node_name=node,
        dispy_node_ip_addr=ip,
        dispy_job_path=str(folder),
        dispy_provisional_result=job_context.provisional_result,
        dispy_send_file=job_context.send_file,
    )
    return names


def add_job_globals(namespace: dict[str, Any], names: dict[str, Any]) -> None:
    """Give ``namespace`` each of ``names`` it does not define itself."""
    for name, value in names.items():
        namespace.setdefault(name, value)


def setup_ok(status: object) -> bool:
    return status in SETUP_OK


@contextlib.contextmanager
def setup_lock(folder: Path) -> Iterator[None]:
    """Hold the node-wide lock of one session's setup (a file lock in its folder)."""
    with processes.file_lock(folder / ".rdispy-setup.lock"):
        yield


def remove_lock(folder: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(folder / ".rdispy-setup.lock")


def share_namespace(namespace: dict[str, Any], names: dict[str, Any]) -> None:
    """Put the session's (and the job's) dependencies into the computation's globals, each
    function among them rebound to those globals: one namespace, as on a dispynode, so that a
    dependency sees ``dispy_node_name`` and the other dependencies (what each function brought
    along is kept)."""
    for name, value in names.items():
        if isinstance(value, types.FunctionType) and value.__globals__ is not namespace:
            for key, item in value.__globals__.items():
                namespace.setdefault(key, item)
            value = names[name] = in_namespace(value, namespace)  # once per session here
        namespace[name] = value


def in_namespace(fn: Callable[..., Any], namespace: dict[str, Any]) -> Callable[..., Any]:
    """``fn`` rebound to the computation's globals, so that a dispy setup's ``global x``
    defines ``x`` for the computation (functools.partial setups included)."""
    if isinstance(fn, functools.partial):
        return functools.partial(in_namespace(fn.func, namespace), *fn.args, **fn.keywords)
    if isinstance(fn, types.FunctionType):
        return types.FunctionType(
            fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__
        )
    return fn
