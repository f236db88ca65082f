"""`rdispy relay`: bridge nodes on an isolated network into the central Redis."""

from __future__ import annotations

import socket
import sys

import click

from rdispy.cli import (
    cluster_option,
    prefix_option,
    redis_option,
    require_redis_url,
    secret_option,
)
from rdispy.errors import ConfigError
from rdispy.keys import Keys


def _address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"--listen wants ADDR:PORT (e.g. 0.0.0.0:6380), not {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


@click.command(short_help="Bring nodes of an isolated network into the central Redis.")
@redis_option
@click.option(
    "--listen",
    default="0.0.0.0:6380",
    show_default=True,
    metavar="ADDR:PORT",
    help="Where nodes connect (give them redis://ADDR:PORT, or let them --discover it).",
)
@cluster_option
@prefix_option
@secret_option
@click.option("--name", default=None, help="Relay name shown in node records (default: host).")
@click.option(
    "--discovery-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="UDP port answering `rdispy worker --discover` (default 51350; 0 turns it off).",
)
@click.option(
    "--connect-timeout",
    type=float,
    default=None,
    help="Give up after this many seconds without Redis at start (default: wait forever).",
)
def relay(
    redis_url: str | None,
    listen: str,
    cluster: str,
    prefix: str,
    secret: str | None,
    name: str | None,
    discovery_port: int | None,
    connect_timeout: float | None,
) -> None:
    """Carry the Redis traffic of nodes on an isolated network (dispy's dispynetrelay).

    Only rdispy's worker commands on the cluster's own keys pass; with --secret, only signed
    node registrations."""
    from rdispy.relay.discovery import DISCOVERY_PORT
    from rdispy.relay.server import Relay, RelayConfig

    redis_url = require_redis_url(redis_url)
    host, port = _address(listen)
    if discovery_port is None:
        discovery_port = DISCOVERY_PORT
    config = RelayConfig(
        url=redis_url,
        keys=Keys(cluster, prefix),
        name=name or socket.gethostname(),
        host=host,
        port=port,
        secret=secret,
        discovery_port=discovery_port or None,
        connect_timeout=connect_timeout,
    )
    sys.exit(Relay(config).run())
