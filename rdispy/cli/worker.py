"""`rdispy worker`: run a node (a supervisor with one consumer per core)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import click

from rdispy.cli import cluster_option, prefix_option, redis_option, require_redis_url, secret_option
from rdispy.errors import ConfigError
from rdispy.keys import Keys


@click.command(short_help="Run a node: one consumer process per core.")
@redis_option
@click.option(
    "--cpus",
    type=click.IntRange(min=1),
    default=None,
    help="Consumer processes (default: the number of cores).",
)
@click.option("--name", default=None, help="Node name (default: host name and pid).")
@cluster_option
@prefix_option
@secret_option
@click.option(
    "--heartbeat", type=click.FloatRange(min=0.05), default=None, help="Seconds between heartbeats."
)
@click.option(
    "--connect-timeout",
    type=float,
    default=None,
    help="Give up after this many seconds without Redis (default: wait forever).",
)
@click.option(
    "--max-result",
    type=click.IntRange(min=1),
    default=None,
    metavar="BYTES",
    help="Largest pickled result of one job (default: 256 MiB); a larger one fails the job with "
    "ResultTooLarge.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the dependency cache and job folders (default: one in the temp folder).",
)
@click.option(
    "--discover",
    is_flag=True,
    help="Without --redis: find a `rdispy relay` on this host's networks (UDP broadcast on port "
    "51350) and connect through it.",
)
@click.option("--owner-pid", type=int, default=None, hidden=True)
@click.option("--stop-server-with-owner", is_flag=True, hidden=True)
def worker(
    redis_url: str | None,
    cpus: int | None,
    name: str | None,
    cluster: str,
    prefix: str,
    secret: str | None,
    heartbeat: float | None,
    connect_timeout: float | None,
    max_result: int | None,
    workdir: Path | None,
    discover: bool,
    owner_pid: int | None,
    stop_server_with_owner: bool,
) -> None:
    """Run a node: one consumer process per core, serving the cluster's jobs."""
    from rdispy import defaults
    from rdispy.worker.supervisor import Supervisor, SupervisorConfig

    if not redis_url and discover:
        from rdispy.relay.discovery import discover as find_relay

        redis_url = find_relay(cluster, secret, connect_timeout)
    redis_url = require_redis_url(redis_url)
    if name is not None and (not name or any(c in name for c in ":/{}*?[] \t\n")):
        raise ConfigError(
            f"invalid node name {name!r}: no colons, slashes, braces, wildcards or spaces"
        )
    config = SupervisorConfig(
        url=redis_url,
        cpus=cpus or os.cpu_count() or 1,
        name=name or f"{socket.gethostname()}-{os.getpid()}",
        keys=Keys(cluster, prefix),
        secret=secret,
        heartbeat=heartbeat or defaults.HEARTBEAT_INTERVAL,
        owner_pid=owner_pid,
        stop_server_with_owner=stop_server_with_owner,
        connect_timeout=connect_timeout,
        max_result=max_result or defaults.MAX_RESULT,
        workdir=workdir,
    )
    sys.exit(Supervisor(config).run())
