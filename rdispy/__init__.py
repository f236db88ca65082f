"""rdispy: run Python functions and programs in parallel on the cores of one machine or of many,
with Redis streams as the only moving part between them.

    import rdispy
    with rdispy.Executor() as ex:            # embedded default: private server + local consumers
        print(list(ex.map(pow, range(10), range(10))))
"""

import typing as _typing

__version__ = "0.1.0"

# The public names are __all__ and rdispy's own submodules (tests/unit/test_public_api.py checks
# both ways): helpers go under a leading underscore, the rest of the API is imported lazily.
from rdispy import progress as progress  # the module; rdispy.progress.progress is the function
from rdispy.errors import (
    ActionError,
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

if _typing.TYPE_CHECKING:
    from rdispy.avail import DispyNodeAvailInfo
    from rdispy.client.cluster import JobCluster
    from rdispy.client.dispy_job import DispyJob, DispyNode
    from rdispy.client.dispy_logger import logger
    from rdispy.client.executor import Executor
    from rdispy.client.future import RemoteFuture, updates
    from rdispy.client.recover import recover
    from rdispy.client.shared_cluster import SharedJobCluster
    from rdispy.job_context import provisional_result, send_file
    from rdispy.programs import ProgramRun
    from rdispy.scheduler.placement import NodeAllocate

    #: dispy's names for the same functions, so `import rdispy as dispy` programs run unchanged.
    dispy_provisional_result = provisional_result
    dispy_send_file = send_file

__all__ = [
    "__version__",
    "ActionError",
    "BrokerError",
    "ConfigError",
    "DependencyTransferError",
    "DeserializationError",
    "dispy_provisional_result",
    "dispy_send_file",
    "DispyJob",
    "DispyNode",
    "DispyNodeAvailInfo",
    "Executor",
    "ExecutorBroken",
    "InitializerFailed",
    "JobAbandoned",
    "JobCluster",
    "JobError",
    "JobLost",
    "JobRefused",
    "JobTerminated",
    "JobTimeout",
    "logger",
    "MemoryLimitExceeded",
    "NodeAllocate",
    "NodeLost",
    "NodeNameInUse",
    "NoNodesError",
    "PayloadTooLarge",
    "ProgramRun",
    "ProtocolError",
    "provisional_result",
    "RdispyError",
    "recover",
    "RemoteError",
    "RemoteFuture",
    "ResultTooLarge",
    "send_file",
    "SerializationError",
    "SharedJobCluster",
    "SignatureError",
    "updates",
    "WorkerCrashed",
]

#: name -> (module, attribute there): imported on first use, so `import rdispy` loads neither the
#: client nor the worker.
_LAZY = {
    "Executor": ("rdispy.client.executor", "Executor"),
    "RemoteFuture": ("rdispy.client.future", "RemoteFuture"),
    "updates": ("rdispy.client.future", "updates"),
    "recover": ("rdispy.client.recover", "recover"),
    "JobCluster": ("rdispy.client.cluster", "JobCluster"),
    "SharedJobCluster": ("rdispy.client.shared_cluster", "SharedJobCluster"),
    "NodeAllocate": ("rdispy.scheduler.placement", "NodeAllocate"),
    "DispyJob": ("rdispy.client.dispy_job", "DispyJob"),
    "DispyNode": ("rdispy.client.dispy_job", "DispyNode"),
    "DispyNodeAvailInfo": ("rdispy.avail", "DispyNodeAvailInfo"),
    "logger": ("rdispy.client.dispy_logger", "logger"),
    "ProgramRun": ("rdispy.programs", "ProgramRun"),
    "provisional_result": ("rdispy.job_context", "provisional_result"),
    "send_file": ("rdispy.job_context", "send_file"),
    # dispy's names for the same functions, so `import rdispy as dispy` programs run unchanged
    "dispy_provisional_result": ("rdispy.job_context", "provisional_result"),
    "dispy_send_file": ("rdispy.job_context", "send_file"),
}


def __getattr__(name: str) -> _typing.Any:
    """Import the client lazily, so `rdispy worker` and `import rdispy` stay fast."""
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'rdispy' has no attribute {name!r}")
    import importlib

    module, attribute = where
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
