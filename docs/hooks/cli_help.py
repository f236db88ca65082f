"""mkdocs hook: replace ``<!-- rdispy-cli-help -->`` in a page with the ``--help`` of ``rdispy``
and of each of its commands, rendered by click from the commands' own definitions, so the command
line reference is generated from the code as the API pages are from the docstrings."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

MARKER = "<!-- rdispy-cli-help -->"
WIDTH = 100


def on_config(config: Any) -> Any:
    root = str(Path(config.config_file_path).resolve().parent)
    if root not in sys.path:  # the rdispy of this repository, installed or not
        sys.path.insert(0, root)
    return config


def _help(command: Any, name: str, parent: Any = None) -> str:
    import click

    ctx = click.Context(command, info_name=name, parent=parent, terminal_width=WIDTH)
    return command.get_help(ctx)


def cli_reference() -> str:
    import click

    from rdispy.cli import main

    top = click.Context(main, info_name="rdispy", terminal_width=WIDTH)
    parts = ["### `rdispy`", "", "```text", _help(main, "rdispy"), "```", ""]
    for name in main.list_commands(top):
        command = main.get_command(top, name)
        if command is None:
            continue
        parts += [f"### `rdispy {name}`", "", "```text", _help(command, name, top), "```", ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, **_: Any) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_reference())
