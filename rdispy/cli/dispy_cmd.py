"""dispy's command line (``dispy_cmd.py``) on rdispy: the same options, and every job reported in
dispy's words, so that scripts which parse dispy's output keep working.

``rdispy dispy [dispy_cmd.py's options] PROGRAM`` or ``python -m rdispy.cli.dispy_cmd ...`` run
PROGRAM once per ``-a "ARGS"`` and print, per job in submission order, the lines dispy prints::

    Job N with arguments "ARGS" failed with "EXCEPTION"
    Job N with arguments "ARGS" exited with: "EXIT CODE"          (when not 0)
    Job N with arguments "ARGS" produced output: "b'...'"          (stdout, bytes as in dispy)
    Job N with argumens "ARGS" produced error messages: "b'...'"   (dispy's spelling)

then ``print_status``'s table.  dispy's networking options (``--ip_addr``, ``--certfile``,
``--keyfile``) are accepted and have no effect; the cluster is reached through ``--redis``
(``$RDISPY_REDIS``; without it, the embedded default on this machine's cores) and
``--scheduler_node`` makes it a SharedJobCluster, whose scheduler is found through Redis.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from rdispy import defaults

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    """dispy_cmd.py's arguments (4.15.2), plus where the cluster is."""
    p = argparse.ArgumentParser(prog="rdispy dispy")
    p.add_argument("computation", help="program to distribute and parallelize")
    p.add_argument(
        "-c",
        action="store_false",
        dest="cleanup",
        default=True,
        help="if given, nodes keep the files transferred when the computation is over",
    )
    p.add_argument(
        "-d",
        "--debug",
        action="store_true",
        dest="loglevel",
        default=False,
        help="if given, debug messages are printed",
    )
    p.add_argument(
        "-a",
        action="append",
        dest="args",
        default=[],
        help="argument(s) to program; repeat for multiple instances",
    )
    p.add_argument(
        "-f",
        action="append",
        dest="depends",
        default=[],
        help="dependencies (files) needed by program",
    )
    p.add_argument(
        "-n",
        "--nodes",
        action="append",
        dest="nodes",
        default=[],
        help="list of nodes (names or IP address) acceptable for this computation",
    )
    p.add_argument("--ip_addr", dest="ip_addr", default=None, help="(dispy's; no effect)")
    p.add_argument(
        "--secret",
        dest="secret",
        default=os.environ.get(defaults.ENV_SECRET, ""),
        help=f"shared secret of the cluster (also ${defaults.ENV_SECRET})",
    )
    p.add_argument("--certfile", dest="certfile", default="", help="(dispy's; no effect)")
    p.add_argument("--keyfile", dest="keyfile", default="", help="(dispy's; no effect)")
    p.add_argument(
        "--scheduler_node",
        dest="scheduler_node",
        default=None,
        help="submit through the cluster's shared scheduler (a SharedJobCluster)",
    )
    p.add_argument(
        "--redis",
        dest="redis_url",
        default=os.environ.get(defaults.ENV_REDIS_URL),
        help=f"Redis URL of the cluster (also ${defaults.ENV_REDIS_URL}; none: the "
        "embedded default on this machine's cores)",
    )
    p.add_argument(
        "--cluster",
        dest="cluster",
        default=defaults.CLUSTER,
        help="cluster name (default: %(default)s)",
    )
    return p  # fmt: skip


def job_lines(
    index: Any, args: str, exception: Any, result: Any, stdout: Any, stderr: Any
) -> list[str]:
    """What dispy_cmd.py prints for one ended job, word for word (``result`` is a program's
    exit code; output as the job has it: bytes from a program, as in dispy)."""
    if exception:
        return [f'Job {index} with arguments "{args}" failed with "{exception}"']
    lines = []
    if result:
        lines.append(f'Job {index} with arguments "{args}" exited with: "{result}"')
    if stdout:
        lines.append(f'Job {index} with arguments "{args}" produced output: "{stdout}"')
    if stderr:
        lines.append(f'Job {index} with argumens "{args}" produced error messages: "{stderr}"')
    return lines


def run(argv: Sequence[str]) -> int:
    """Run dispy_cmd.py's job loop with rdispy's JobCluster; the exit code, 0 as dispy's."""
    from rdispy.client.cluster import JobCluster
    from rdispy.client.shared_cluster import SharedJobCluster

    config = vars(parser().parse_args(list(argv)))
    if config.pop("loglevel"):
        logging.getLogger("rdispy").setLevel(logging.DEBUG)
    for ignored in ("ip_addr", "certfile", "keyfile"):
        if config.pop(ignored):
            log.info("dispy's --%s has no effect on rdispy", ignored)
    runs: list[str] = config.pop("args")
    shared = config.pop("scheduler_node") is not None
    kind = SharedJobCluster if shared else JobCluster
    cluster = kind(
        config["computation"],
        nodes=config["nodes"] or None,
        depends=config["depends"],
        cleanup=config["cleanup"],
        secret=config["secret"],
        redis_url=config["redis_url"],
        cluster=config["cluster"],
    )
    try:
        jobs = []
        for n, arg in enumerate(runs, start=1):
            job = cluster.submit(*arg.split())
            job.id = n
            jobs.append((job, arg))
        for job, arg in jobs:
            job()
            for line in job_lines(job.id, arg, job.exception, job.result, job.stdout, job.stderr):
                print(line)
        cluster.print_status()
    finally:
        cluster.close()
    return 0


@click.command(
    short_help="dispy_cmd.py's command line: dispy's options and output.",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
def dispy(argv: tuple[str, ...]) -> None:
    """Run a program once per -a "ARGS" as dispy_cmd.py does, printing each job in dispy's words
    (`rdispy dispy -h` lists dispy_cmd.py's options)."""
    sys.exit(run(argv))


def main() -> None:
    """``python -m rdispy.cli.dispy_cmd``."""
    from rdispy.cli import configure_logging

    configure_logging(0, False)
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
