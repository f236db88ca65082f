"""Command line arguments and errors (CliRunner, no processes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rdispy.cli import COMMANDS, main
from rdispy.server import free_port


def test_help_lists_every_command_with_one_line_each():
    result = CliRunner().invoke(main, ["--help"], terminal_width=100)
    assert result.exit_code == 0
    listed = result.output.split("Commands:\n", 1)[1].splitlines()
    assert sorted(line.split()[0] for line in listed if line.strip()) == sorted(COMMANDS)
    for command in COMMANDS:
        line = next(line for line in listed if line.split()[0] == command)
        assert len(line.split()) > 2 and not line.rstrip().endswith("..."), line
    assert "-v, --verbose" in result.output and "-q, --quiet" in result.output


def test_a_command_loads_only_its_own_module():
    """A worker (and the embedded default's node) starts without importing the other commands."""
    code = (
        "import sys\n"
        "from rdispy.cli import main\n"
        "try:\n"
        "    main(['worker', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('rdispy.cli.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "['rdispy.cli.worker']"


@pytest.mark.parametrize("command", ["worker", "scheduler", "submit", "relay", "status", "monitor"])
def test_commands_that_talk_to_redis_take_redis_and_read_the_environment(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "--redis URL" in result.output and "RDISPY_REDIS" in result.output


def test_worker_rejects_a_bad_url_with_a_one_line_error():
    result = CliRunner().invoke(main, ["worker", "--redis", "http://x"])
    assert result.exit_code == 2 and "unsupported Redis URL" in result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


def test_worker_without_a_url_says_how_to_give_one():
    result = CliRunner().invoke(main, ["worker"], env={"RDISPY_REDIS": ""})
    assert result.exit_code == 2 and "pass --redis URL or set $RDISPY_REDIS" in result.output


def test_worker_rejects_zero_cpus():
    result = CliRunner().invoke(main, ["worker", "--redis", "redis://x", "--cpus", "0"])
    assert result.exit_code == 2


def test_worker_rejects_a_node_name_that_would_break_key_names():
    for bad in ("a:b", "a/b", "x y", "n*"):
        result = CliRunner().invoke(main, ["worker", "--redis", "redis://x", "--name", bad])
        assert result.exit_code == 2 and "invalid node name" in result.output


# -- rdispy submit: everything that fails before a run starts, in one line with exit code 2 --


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "prog.sh"
    path.write_text("#!/bin/sh\necho hi\n")
    path.chmod(0o755)
    return path


def _one_line_error(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output


def test_submit_with_a_missing_program_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(main, ["submit", str(tmp_path / "nope")])
    _one_line_error(result, "program", "nope", "not found")


def test_submit_with_a_missing_file_is_a_one_line_error(program, tmp_path):
    result = CliRunner().invoke(main, ["submit", "-f", str(tmp_path / "gone.csv"), str(program)])
    _one_line_error(result, "file", "gone.csv", "not found")


def test_submit_with_a_folder_as_program_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(main, ["submit", str(tmp_path)])
    _one_line_error(result, "is not a file")


def test_submit_with_a_program_that_cannot_run_is_a_one_line_error(program):
    program.chmod(0o644)
    result = CliRunner().invoke(main, ["submit", str(program)])
    _one_line_error(result, "not executable")


def test_submit_with_two_files_of_one_name_is_refused(program, tmp_path):
    other = tmp_path / "sub"
    other.mkdir()
    (other / "prog.sh").write_text("x")
    result = CliRunner().invoke(main, ["submit", "-f", str(other / "prog.sh"), str(program)])
    _one_line_error(result, "share a name")


def test_submit_with_unbalanced_quotes_in_args_is_a_one_line_error(program):
    result = CliRunner().invoke(main, ["submit", "-a", "1 'two", str(program)])
    _one_line_error(result, "No closing quotation")


def test_submit_without_reachable_redis_is_a_one_line_error(program):
    url = f"redis://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        main, ["-q", "submit", "--redis", url, "--connect-timeout", "0.3", str(program)]
    )
    _one_line_error(result, "cannot reach Redis")


def test_submit_reads_the_url_from_the_environment(program):
    url = f"redis://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        main,
        ["submit", "--connect-timeout", "0.2", str(program)],
        env={"RDISPY_REDIS": url},
    )
    _one_line_error(result, "cannot reach Redis", url.split("//")[1])


def test_submit_with_a_bad_url_is_a_one_line_error(program):
    result = CliRunner().invoke(main, ["submit", "--redis", "http://x", str(program)])
    _one_line_error(result, "unsupported Redis URL")


@pytest.mark.parametrize(
    "args",
    [["--timeout", "0"], ["--timeout", "x"], ["--cpus", "0"], []],
    ids=["zero-timeout", "bad-timeout", "zero-cpus", "no-program"],
)
def test_submit_rejects_bad_arguments(args, program):
    tail = [str(program)] if args else []
    result = CliRunner().invoke(main, ["submit", *args, *tail])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_submit_out_must_be_a_folder(program, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    result = CliRunner().invoke(main, ["submit", "--out", str(afile), str(program)])
    assert result.exit_code == 2 and "Traceback" not in result.output
