"""rdispy.defaults is the one place every RDISPY_* environment variable is named."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from rdispy import defaults

PACKAGE = Path(defaults.__file__).parent
NAME = re.compile(r"RDISPY_[A-Z0-9_]+")


def _declared() -> set[str]:
    return {
        value
        for name, value in vars(defaults).items()
        if name.startswith("ENV_") and isinstance(value, str)
    }


def test_every_variable_mentioned_anywhere_in_rdispy_is_declared_in_defaults() -> None:
    mentioned = {
        (name, str(path.relative_to(PACKAGE)))
        for path in PACKAGE.rglob("*.py")
        for name in NAME.findall(path.read_text())
    }
    undeclared = {(name, where) for name, where in mentioned if name not in _declared()}
    assert undeclared == set(), undeclared


def test_no_module_but_defaults_spells_a_variable_out_in_code() -> None:
    """Prose (docstrings, help text) may name ``$RDISPY_REDIS``; code uses ``defaults.ENV_*``."""
    spelled = set()
    for path in PACKAGE.rglob("*.py"):
        if path.name == "defaults.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if NAME.fullmatch(node.value):
                    spelled.add((node.value, str(path.relative_to(PACKAGE))))
    assert spelled == set(), spelled


def test_the_two_connect_timeouts_have_two_names() -> None:
    """``Executor(connect_timeout=)`` (and the CLI's ``--connect-timeout``) is how long a client
    waits, retrying, for Redis: WAIT_FOR_REDIS; one socket's connect is SOCKET_CONNECT_TIMEOUT."""
    import inspect

    from rdispy import connection
    from rdispy.client.executor import Executor

    default = inspect.signature(Executor).parameters["connect_timeout"].default
    assert default == defaults.WAIT_FOR_REDIS
    client = connection.connect("redis://127.0.0.1:1")
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_connect_timeout"] == defaults.SOCKET_CONNECT_TIMEOUT
    assert not hasattr(defaults, "CONNECT_TIMEOUT")
    client.close()
