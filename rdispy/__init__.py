"""rdispy: run Python functions and programs in parallel on the cores of one machine or of many,
with Redis streams as the only moving part between them.

    import rdispy
    with rdispy.Executor() as ex:            # embedded default: private server + local consumers
        print(list(ex.map(pow, range(10), range(10))))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from rdispy.errors import (
    BrokerError,
    ConfigError,
    DependencyTransferError,
    DeserializationError,
    ExecutorBroken,
    InitializerFailed,
    JobAbandoned,
    JobError,
    JobLost,
    JobRefused,
    JobTerminated,
    JobTimeout,
    MemoryLimitExceeded,
    NodeLost,
    NodeNameInUse,
    NoNodesError,
    PayloadTooLarge,
    ProtocolError,
    RdispyError,
    RemoteError,
    ResultTooLarge,
    SerializationError,
    SignatureError,
    WorkerCrashed,
)
from rdispy.job_context import provisional_result, send_file
from rdispy.progress import progress  # the function; the module stays rdispy.progress in imports

#: dispy's names for the same functions, so `import rdispy as dispy` programs run unchanged.
dispy_provisional_result = provisional_result
dispy_send_file = send_file

if TYPE_CHECKING:
    from rdispy.avail import DispyNodeAvailInfo
    from rdispy.client.cluster import JobCluster, SharedJobCluster
    from rdispy.client.dispy_job import DispyJob, DispyNode
    from rdispy.client.dispy_logger import logger
    from rdispy.client.executor import Executor
    from rdispy.client.future import RemoteFuture, updates
    from rdispy.client.recover import recover
    from rdispy.programs import ProgramRun
    from rdispy.scheduler.placement import NodeAllocate

__all__ = [
    "BrokerError",
    "ConfigError",
    "DependencyTransferError",
    "DeserializationError",
    "DispyJob",
    "DispyNode",
    "DispyNodeAvailInfo",
    "Executor",
    "ExecutorBroken",
    "InitializerFailed",
    "JobAbandoned",
    "JobLost",
    "JobRefused",
    "JobCluster",
    "JobError",
    "JobTerminated",
    "JobTimeout",
    "MemoryLimitExceeded",
    "NoNodesError",
    "NodeAllocate",
    "NodeLost",
    "NodeNameInUse",
    "PayloadTooLarge",
    "ProgramRun",
    "ProtocolError",
    "RdispyError",
    "RemoteError",
    "RemoteFuture",
    "ResultTooLarge",
    "SerializationError",
    "SharedJobCluster",
    "SignatureError",
    "WorkerCrashed",
    "__version__",
    "dispy_provisional_result",
    "dispy_send_file",
    "logger",
    "progress",
    "provisional_result",
    "recover",
    "send_file",
    "updates",
]

_LAZY = {
    "Executor": "rdispy.client.executor",
    "RemoteFuture": "rdispy.client.future",
    "updates": "rdispy.client.future",
    "recover": "rdispy.client.recover",
    "JobCluster": "rdispy.client.cluster",
    "SharedJobCluster": "rdispy.client.cluster",
    "NodeAllocate": "rdispy.scheduler.placement",
    "DispyJob": "rdispy.client.dispy_job",
    "DispyNode": "rdispy.client.dispy_job",
    "DispyNodeAvailInfo": "rdispy.avail",
    "logger": "rdispy.client.dispy_logger",
    "ProgramRun": "rdispy.programs",
}


def __getattr__(name: str) -> Any:
    """Import the client lazily, so `rdispy worker` and `import rdispy` stay fast."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rdispy' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
