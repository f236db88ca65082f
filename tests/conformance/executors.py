"""The executor types the CPython suite runs with: rdispy.Executor under names of its own, so that
the suite's subprocess tests can write ``from concurrent.futures import <name>`` (see
``shim/sitecustomize.py``) and the suite's ``executor_type(max_workers=..., **kwargs)`` builds one.

``mp_context`` is a ProcessPoolExecutor option with no meaning for rdispy; the suite's crash tests
pass it, so it is accepted here and ignored (nothing else is changed).
"""

from __future__ import annotations

import os
from typing import Any

import rdispy

#: Environment of the cluster variant: its server's URL and cluster name (set by the adapter, and
#: inherited by the suite's subprocesses).
URL_VAR = "RDISPY_CONFORMANCE_URL"
CLUSTER_VAR = "RDISPY_CONFORMANCE_CLUSTER"


class RdispyExecutor(rdispy.Executor):
    """The embedded default (a private server and ``max_workers`` local consumers)."""

    def __init__(self, max_workers: int | None = None, *, mp_context: Any = None, **kw: Any):
        super().__init__(None, max_workers, **kw)


class RdispyClusterExecutor(rdispy.Executor):
    """A client of the cluster of `rdispy worker` nodes the adapter started."""

    def __init__(self, max_workers: int | None = None, *, mp_context: Any = None, **kw: Any):
        url, cluster = os.environ[URL_VAR], os.environ[CLUSTER_VAR]
        super().__init__(url, max_workers, cluster=cluster, **kw)
