"""`rdispy server`: run the bundled Redis-compatible server for a multi-machine cluster."""

from __future__ import annotations

import sys
import time

import click

from rdispy import defaults, processes
from rdispy.server import EmbeddedServer


@click.command(short_help="Run the bundled Redis-compatible server.")
@click.option("--port", type=click.IntRange(1, 65535), default=6379, show_default=True)
@click.option(
    "--bind",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0 for every interface).",
)
@click.option(
    "--password",
    default=None,
    envvar=defaults.ENV_SERVER_PASSWORD,
    help="Require this password (strongly advised off loopback).",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default=None,
    help="Data folder (default: a temporary one, removed at exit).",
)
@click.option("--appendonly", is_flag=True, help="Persist with an append-only file in --dir.")
def server(
    port: int, bind: str, password: str | None, directory: str | None, appendonly: bool
) -> None:
    """Run the bundled server and print the URL for workers and clients."""
    srv = EmbeddedServer(
        port=port,
        bind=bind,
        password=password,
        appendonly=appendonly,
        directory=directory,
        own_group=False,
    )
    stop = {"now": False}
    # before the start, so that a signal during it still stops the server cleanly
    processes.install_stop_handlers(lambda _sig: stop.__setitem__("now", True))
    srv.start()
    shown_host = bind if bind not in ("0.0.0.0", "::") else "<this-host>"
    auth = ":<password>@" if password else ""
    click.echo(f"rdispy server (pid {srv.pid}) listening on {bind}:{port}")
    click.echo(f"  workers: rdispy worker --redis redis://{auth}{shown_host}:{port}")
    click.echo(f"  clients: rdispy.Executor('redis://{auth}{shown_host}:{port}')")
    if bind not in ("127.0.0.1", "::1", "localhost") and not password:
        click.echo("warning: listening beyond loopback without --password", err=True)
    sys.stdout.flush()
    assert srv.process is not None
    try:
        while not stop["now"] and srv.process.poll() is None:
            time.sleep(0.2)
    finally:
        srv.stop()
    sys.exit(0 if stop["now"] else 1)
