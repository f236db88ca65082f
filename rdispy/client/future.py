"""RemoteFuture: a concurrent.futures.Future for a job on the cluster.

It behaves exactly like the standard Future (``wait``/``as_completed`` work on it) and adds what a
dispy user expects to see of a job: its id, node, pid, start/end times and captured output.
``cancel()`` asks the cluster; it succeeds only while no consumer has taken the job, and then the
job never runs.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rdispy.client.dispatcher import Dispatcher


class RemoteFuture(Future[Any]):
    """The future of one job.  Attributes are filled when its result arrives."""

    def __init__(self, job_id: str, dispatcher: Dispatcher | None) -> None:
        super().__init__()
        self.job_id = job_id
        self._dispatcher = dispatcher
        self.entry_id: bytes | None = None  # the job's stream entry, once sent
        self.node: str | None = None
        self.pid: int | None = None
        self.start_time: float | None = None
        self.end_time: float | None = None
        self.stdout: str = ""
        self.stderr: str = ""

    def cancel(self) -> bool:
        """Cancel the job if no consumer has taken it yet; True means it will never run."""
        if self.done():
            return self.cancelled()
        if self._dispatcher is None or not self._dispatcher.cancel_remote(self):
            return False
        return super().cancel()

    def __repr__(self) -> str:
        return f"<RemoteFuture job={self.job_id} {super().__repr__().split(' ', 2)[-1]}"
