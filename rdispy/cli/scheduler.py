"""`rdispy scheduler`: the fair scheduler for SharedJobCluster clients."""

from __future__ import annotations

import logging
import signal

import click

from rdispy.cli import cluster_option, prefix_option, redis_option, require_redis_url
from rdispy.keys import Keys

log = logging.getLogger(__name__)


@click.command(short_help="Share nodes fairly among SharedJobCluster clients.")
@redis_option
@cluster_option
@prefix_option
def scheduler(redis_url: str | None, cluster: str, prefix: str) -> None:
    """Feed the shared queue round-robin from every SharedJobCluster client's queue."""
    from rdispy import connection
    from rdispy.scheduler.fair import FairScheduler

    redis_url = require_redis_url(redis_url)
    client = connection.connect(redis_url)
    connection.wait_for(client, redis_url)
    fair = FairScheduler(client, Keys(cluster, prefix))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: fair.stop())
    log.info("scheduler for cluster %s at %s", cluster, connection.redact(redis_url))
    fair.run()
    log.info("scheduler stopped")
