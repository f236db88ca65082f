"""A job's captured output: the bounded buffer, its cut marker, and `rdispy worker --max-output`."""

from __future__ import annotations

from unittest import mock

from click.testing import CliRunner

from rdispy import defaults
from rdispy.cli import main
from rdispy.worker import runner


def test_bounded_output_keeps_everything_under_its_limit():
    out = runner.BoundedOutput(10)
    out.write("hello")
    out.write("world")
    assert out.text() == "helloworld" and out.dropped == 0


def test_bounded_output_cuts_at_its_limit_and_says_so():
    out = runner.BoundedOutput(8)
    out.write("abcdef")
    out.write("ghijkl")
    out.write("mn")
    assert out.dropped == 6
    assert out.text() == "abcdefgh" + runner.cut_marker(8, 6)
    assert "[rdispy: output cut at 8 characters; 6 more were dropped]" in out.text()


def test_run_cuts_stdout_and_stderr_each_at_max_output():
    import sys

    def noisy() -> int:
        print("x" * 100)
        print("y" * 100, file=sys.stderr)
        return 1

    outcome = runner.run(noisy, (), {}, "job-1", max_output=50)
    assert outcome.kind == "ok"
    assert outcome.stdout.startswith("x" * 50 + "\n[rdispy: output cut at 50 characters; 51")
    assert outcome.stderr.startswith("y" * 50 + "\n[rdispy: output cut at 50 characters;")


def _config_of(args: list[str], env: dict[str, str] | None = None):
    """The SupervisorConfig `rdispy worker ARGS` would run with (the supervisor not started)."""
    seen = {}

    class Fake:
        def __init__(self, config):
            seen["config"] = config

        def run(self) -> int:
            return 0

    with mock.patch("rdispy.worker.supervisor.Supervisor", Fake):
        result = CliRunner().invoke(main, ["worker", "--redis", "redis://x", *args], env=env)
    return result, seen.get("config")


def test_max_output_option_reaches_the_supervisor_config():
    result, config = _config_of(["--max-output", "64K"])
    assert result.exit_code == 0, result.output
    assert config.max_output == 64 * 1024


def test_max_output_defaults_to_one_mib_and_reads_its_environment_variable():
    _, config = _config_of([], env={"RDISPY_MAX_OUTPUT": ""})
    assert config.max_output == defaults.MAX_OUTPUT == 1024 * 1024
    _, config = _config_of([], env={"RDISPY_MAX_OUTPUT": "2M"})
    assert config.max_output == 2 * 1024 * 1024


def test_max_output_refuses_a_bad_size():
    result, _ = _config_of(["--max-output", "lots"])
    assert result.exit_code == 2 and "not a size: 'lots'" in result.output
