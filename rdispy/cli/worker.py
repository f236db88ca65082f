"""`rdispy worker`: run a node (a supervisor with one consumer per core)."""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path

import click

from rdispy import defaults
from rdispy.cli import cluster_option, prefix_option, redis_option, require_redis_url, secret_option
from rdispy.errors import ConfigError
from rdispy.keys import Keys

_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)
#: Smallest --memory-limit: a consumer's own data segment is some 30-40 MB before any job.
MIN_MEMORY_LIMIT = 64 * 1024 * 1024
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """Bytes in a size such as ``512MB``, ``1G``, ``1.5GiB`` or ``1000000``.  K, M, G and T are
    powers of 1024 with or without a trailing ``B``/``iB`` (as ``ulimit`` and Docker read them)."""
    match = _SIZE.fullmatch(text)
    if not match or float(match[1]) * _UNITS[match[2].lower()] < 1:
        raise ValueError(f"not a size: {text!r} (try 256MB, 1G or a number of bytes)")
    return int(float(match[1]) * _UNITS[match[2].lower()])


class Size(click.ParamType):  # type: ignore[type-arg]
    name = "SIZE"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


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
    "--max-output",
    type=Size(),
    default=None,
    envvar=defaults.ENV_MAX_OUTPUT,
    show_envvar=True,
    metavar="SIZE",
    help="Characters of a job's stdout, and of its stderr, kept and sent back (default: 1 MiB; "
    "sizes like 64K, 16MB or a number).  Output over it is cut and ends with a line "
    "'[rdispy: output cut at N characters; M more were dropped]'.",
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
@click.option(
    "--discover-interface",
    default=None,
    envvar=defaults.ENV_DISCOVER_INTERFACE,
    show_envvar=True,
    metavar="NAME",
    help="With --discover (which it implies): broadcast on this network interface only, e.g. "
    "eth1 (default: every interface that is up but the loopback).",
)
@click.option(
    "--memory-limit",
    type=Size(),
    default=None,
    help="Memory each consumer's job may use, e.g. 256MB or 1G (its data segment, and the "
    "resident memory of the job with every process it starts); a job over it fails with "
    "MemoryLimitExceeded and its consumer is replaced.  Default: no limit.",
)
@click.option(
    "--allow-eviction",
    is_flag=True,
    envvar=defaults.ENV_ALLOW_EVICTION,
    show_envvar=True,
    help="Serve a Redis whose maxmemory-policy may evict keys (refused by default: an evicted "
    "job, result or function blob is lost without a trace); only warn.",
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
    max_output: int | None,
    workdir: Path | None,
    discover: bool,
    discover_interface: str | None,
    memory_limit: int | None,
    allow_eviction: bool,
    owner_pid: int | None,
    stop_server_with_owner: bool,
) -> None:
    """Run a node: one consumer process per core, serving the cluster's jobs."""
    from rdispy.worker.supervisor import Supervisor, SupervisorConfig

    if not redis_url and (discover or discover_interface is not None):
        from rdispy.relay.discovery import discover as find_relay

        redis_url = find_relay(cluster, secret, connect_timeout, interface=discover_interface)
    redis_url = require_redis_url(redis_url)
    if name is not None and (not name or any(c in name for c in ":/{}*?[] \t\n")):
        raise ConfigError(
            f"invalid node name {name!r}: no colons, slashes, braces, wildcards or spaces"
        )
    if memory_limit is not None and memory_limit < MIN_MEMORY_LIMIT:
        raise ConfigError(
            f"--memory-limit of {memory_limit:,} bytes is too small: a consumer needs about 40 MB "
            "before it runs anything; give at least 64MB"
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
        max_output=max_output or defaults.MAX_OUTPUT,
        workdir=workdir,
        memory_limit=memory_limit,
        allow_eviction=allow_eviction,
    )
    sys.exit(Supervisor(config).run())
