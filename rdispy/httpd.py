"""``dispy.httpd`` on rdispy: ``DispyHTTPServer(cluster)`` serves rdispy's web monitor of the
cluster's Redis (nodes, jobs, throughput; cancel and drain) instead of dispy's pages.

dispy's page shows the clusters added to it; rdispy's monitor shows everything in the cluster's
key space, this cluster's jobs among them.  dispy's options keep their meaning where the monitor
has one (``host``, ``port``); ``poll_sec``, ``DocumentRoot``, ``keyfile``, ``certfile`` and
``show_job_args`` are accepted and have no effect.
"""

from __future__ import annotations

import logging
from typing import Any

from rdispy.monitor.web import DEFAULT_PORT, Monitor

log = logging.getLogger(__name__)


class DispyHTTPServer:
    """The web monitor of ``cluster`` (a JobCluster), at ``http://host:port/`` until
    ``shutdown()``."""

    def __init__(
        self,
        cluster: Any,
        host: str = "",
        port: int = DEFAULT_PORT,
        poll_sec: float = 10,
        DocumentRoot: str | None = None,  # noqa: N803 - dispy's name
        keyfile: str | None = None,
        certfile: str | None = None,
        show_job_args: bool = True,
    ) -> None:
        self._clusters = [cluster]
        keys = cluster._dispatcher.keys
        self._monitor = Monitor(
            cluster.url,
            keys.cluster,
            keys.prefix,
            secret=getattr(cluster, "_secret", None),
            port=port,
            bind=host or "127.0.0.1",
        )
        self._monitor.start()
        log.info("dispy httpd: rdispy monitor at %s", self._monitor.url)

    @property
    def url(self) -> str:
        return self._monitor.url

    def add_cluster(self, cluster: Any) -> None:
        """dispy shows several clusters on one page; rdispy's monitor shows every job in the
        cluster's key space already, so this only keeps the list."""
        self._clusters.append(cluster)

    def del_cluster(self, cluster: Any) -> None:
        if cluster in self._clusters:
            self._clusters.remove(cluster)

    def shutdown(self, wait: bool = True) -> None:
        """Stop serving (the page's last state stays as the browser shows it)."""
        self._monitor.stop()
