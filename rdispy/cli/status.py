"""`rdispy status`: a cluster's nodes, queues, clients and counters, or one job's attempts."""

from __future__ import annotations

import json
import sys
import time

import click

from rdispy.cli import cluster_option, prefix_option, redis_option, require_redis_url
from rdispy.keys import Keys


@click.command(short_help="Show nodes, queues, clients, counters, or one job.")
@redis_option
@cluster_option
@prefix_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema in the README).")
@click.option(
    "--watch",
    type=click.FloatRange(min=0.1),
    is_flag=False,
    flag_value=2.0,
    default=None,
    metavar="[SECONDS]",
    help="Refresh every SECONDS (default 2) until Ctrl-C.",
)
@click.option("--job", "job_id", metavar="ID", help="Show one job's state and attempt history.")
def status(
    redis_url: str | None,
    cluster: str,
    prefix: str,
    as_json: bool,
    watch: float | None,
    job_id: str | None,
) -> None:
    """Show a cluster's nodes, queues, clients and counters (or one job with --job)."""
    from rdispy import connection
    from rdispy.monitor import state, text

    redis_url = require_redis_url(redis_url)
    keys = Keys(cluster, prefix)
    client = connection.connect(redis_url)
    try:  # one PING: an unreachable Redis is the same error (exit 2) as for other commands
        connection.wait_for(client, redis_url, 0)
    except BaseException:
        client.close()
        raise
    unknown = False

    def show() -> None:
        nonlocal unknown
        if job_id is not None:
            job = state.read_job(client, keys, job_id)
            unknown = job.state == "unknown"
            payload: dict[str, object] = {"schema": state.SCHEMA_VERSION, **job.to_dict()}
            rendered = text.render_job(job)
        else:
            current = state.read_state(client, keys)
            current.clusters = state.list_clusters(client, prefix)
            payload = current.to_dict()
            rendered = text.render_state(current)
        if as_json:
            click.echo(json.dumps(payload, sort_keys=True))
        else:
            if watch is not None and sys.stdout.isatty():
                click.echo("\x1b[H\x1b[2J", nl=False)  # clear the screen
            click.echo(rendered)

    try:
        show()
        while watch is not None:
            time.sleep(watch)
            if not as_json:
                click.echo()
            show()
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
    if unknown and watch is None:
        click.echo(
            f"job {job_id}: unknown in cluster {cluster} (never submitted, or expired)", err=True
        )
        sys.exit(1)
