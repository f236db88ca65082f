"""Command line arguments and errors (CliRunner, no processes)."""

from __future__ import annotations

from click.testing import CliRunner

from rdispy.cli import main


def test_help_lists_every_command():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("worker", "server"):
        assert command in result.output


def test_worker_rejects_a_bad_url_with_a_one_line_error():
    result = CliRunner().invoke(main, ["worker", "--redis", "http://x"])
    assert result.exit_code == 2 and "unsupported Redis URL" in result.output
    assert "Traceback" not in result.output


def test_worker_rejects_zero_cpus():
    result = CliRunner().invoke(main, ["worker", "--redis", "redis://x", "--cpus", "0"])
    assert result.exit_code == 2


def test_worker_rejects_a_node_name_that_would_break_key_names():
    for bad in ("a:b", "a/b", "x y", "n*"):
        result = CliRunner().invoke(main, ["worker", "--redis", "redis://x", "--name", bad])
        assert result.exit_code == 2 and "invalid node name" in result.output
