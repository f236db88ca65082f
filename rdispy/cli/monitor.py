"""`rdispy monitor`: the live web page, JSON API and Prometheus metrics of a cluster."""

from __future__ import annotations

import signal

import click

from rdispy.cli import (
    cluster_option,
    prefix_option,
    redis_option,
    require_redis_url,
    secret_option,
)


@click.command(short_help="Serve a live web page of the cluster.")
@redis_option
@cluster_option
@prefix_option
@secret_option
@click.option("--port", type=click.IntRange(0, 65535), default=8181, show_default=True)
@click.option(
    "--bind",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; anything but loopback lets others cancel jobs and drain nodes.",
)
def monitor(
    redis_url: str | None, cluster: str, prefix: str, secret: str | None, port: int, bind: str
) -> None:
    """Serve a live web page of the cluster (nodes, queues, jobs, throughput) until Ctrl-C."""
    from rdispy.monitor.web import Monitor

    redis_url = require_redis_url(redis_url)
    server = Monitor(redis_url, cluster, prefix, secret=secret, port=port, bind=bind).start()
    click.echo(f"rdispy monitor of cluster {cluster}: {server.url}", err=True)

    def stop(*_: object) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, stop)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
