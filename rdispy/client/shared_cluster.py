"""dispy's SharedJobCluster on rdispy: a JobCluster whose jobs wait in its client's own queue,
from which a fair scheduler (`rdispy scheduler`, or one in this process) feeds the shared
stream round-robin, so that clients share the nodes fairly."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from rdispy.client.cluster import JobCluster
from rdispy.keys import Keys
from rdispy.scheduler import fair

log = logging.getLogger(__name__)


class SharedJobCluster(JobCluster):
    """A JobCluster that shares the nodes with other clients fairly (dispy's SharedJobCluster).

    Its jobs wait in this client's own queue, and a fair scheduler feeds the shared stream
    round-robin from every client's queue: `rdispy scheduler` when one runs, else (by default)
    one started in this process, so jobs never wait for a scheduler that is not there.
    ``scheduler=False`` never starts one here; ``True`` always does.
    """

    _fair = True

    def __init__(
        self,
        computation: Callable[..., Any] | str,
        *args: Any,
        scheduler: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(computation, *args, **kwargs)
        self._scheduler: fair.FairScheduler | None = None
        client, keys = self._dispatcher.client, self._dispatcher.keys
        if scheduler or (scheduler is None and not _scheduler_seen(client, keys)):
            self._scheduler, _ = fair.start_thread(self._dispatcher.url, keys)
            log.info("SharedJobCluster: no `rdispy scheduler` seen; scheduling in this process")

    def close(self, timeout: float | None = None, terminate: bool = False) -> None:
        """As ``JobCluster.close``, then stop the scheduler this process started, if any."""
        super().close(timeout, terminate)
        if self._scheduler is not None:
            self._scheduler.stop()


def _scheduler_seen(client: Any, keys: Keys, wait: float = 1.0) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if fair.running(client, keys):
            return True
        time.sleep(0.1)
    return False
