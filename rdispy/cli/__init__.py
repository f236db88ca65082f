"""The `rdispy` command line (click).  This is the only place that configures logging and turns
rdispy errors into exit codes: 2 for usage and configuration errors, 1 for failures.

Shared options for commands: ``@redis_option`` (``--redis URL``, also ``$RDISPY_REDIS``; a
command that needs one calls ``require_redis_url``), ``@cluster_option``, ``@prefix_option``,
``@secret_option``.  Give each command a one-line ``short_help`` for ``rdispy --help``.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click
import redis

from rdispy import __version__, connection, defaults
from rdispy.errors import BrokerError, ConfigError, RdispyError


def configure_logging(verbose: int, quiet: bool) -> None:
    """Log to stderr: rdispy's own lifecycle lines at INFO, -v for all INFO, -vv for DEBUG."""
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if verbose == 0:
        logging.getLogger("rdispy").setLevel(logging.WARNING if quiet else logging.INFO)


redis_option = click.option(
    "--redis",
    "redis_url",
    envvar=defaults.ENV_REDIS_URL,
    metavar="URL",
    help=f"Redis URL (redis://, rediss://, unix://); also read from ${defaults.ENV_REDIS_URL}.",
)
cluster_option = click.option(
    "--cluster",
    default=defaults.CLUSTER,
    show_default=True,
    help="Cluster name; clients and nodes of one cluster share its queue.",
)
prefix_option = click.option(
    "--prefix", default=defaults.KEY_PREFIX, show_default=True, help="Prefix of every key."
)
secret_option = click.option(
    "--secret",
    envvar=defaults.ENV_SECRET,
    metavar="SECRET",
    help=f"Shared secret for signing envelopes; also read from ${defaults.ENV_SECRET}.",
)


def require_redis_url(redis_url: str | None) -> str:
    """The ``--redis`` value of a command that cannot run without one (ConfigError: exit 2)."""
    if not redis_url:
        raise ConfigError(f"no Redis URL: pass --redis URL or set ${defaults.ENV_REDIS_URL}")
    return redis_url


class SetupError(click.ClickException):
    """A one-line error with exit code 2: wrong options or files, or no usable Redis."""

    exit_code = 2


#: The commands, each imported when it runs (or for ``--help``): a worker does not load what
#: ``submit`` or ``monitor`` need, which is most of its start-up time (the embedded default's
#: cold start includes it).
COMMANDS = {
    "worker": "rdispy.cli.worker",
    "server": "rdispy.cli.server",
    "scheduler": "rdispy.cli.scheduler",
    "submit": "rdispy.cli.submit",
    "relay": "rdispy.cli.relay",
    "status": "rdispy.cli.status",
    "monitor": "rdispy.cli.monitor",
    "dispy": "rdispy.cli.dispy_cmd",
}


class RdispyGroup(click.Group):
    """Maps rdispy errors to one-line messages and exit codes instead of tracebacks: 2 for
    configuration and connection errors, 1 for other failures."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *super().list_commands(ctx)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return super().get_command(ctx, cmd_name)
        command = getattr(importlib.import_module(module), cmd_name)
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (ConfigError, BrokerError) as exc:
            raise SetupError(str(exc)) from exc
        except RdispyError as exc:
            raise click.ClickException(str(exc)) from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:  # no usable Redis: as setup
            raise SetupError(f"cannot reach Redis: {connection.error_text(exc)}") from exc
        except redis.RedisError as exc:
            raise click.ClickException(f"Redis refused: {connection.error_text(exc)}") from exc


@click.group(cls=RdispyGroup)
@click.version_option(__version__, prog_name="rdispy")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def main(verbose: int, quiet: bool) -> None:
    """rdispy: run Python work in parallel on the cores of one machine or many, over Redis."""
    configure_logging(verbose, quiet)
