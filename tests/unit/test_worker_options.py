"""`rdispy worker` options added for the guarantees: --memory-limit sizes."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from rdispy.cli import main
from rdispy.cli.worker import parse_size


def test_sizes_are_read_like_ulimit_and_docker():
    assert parse_size("256MB") == parse_size("256M") == parse_size("256MiB") == 256 * 1024**2
    assert parse_size("1G") == parse_size("1GB") == parse_size("1 g") == 1024**3
    assert parse_size("1.5k") == 1536 and parse_size("4096") == 4096


@pytest.mark.parametrize("bad", ["", "0", "-1M", "1x", "MB", "lots"])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="not a size"):
        parse_size(bad)


def test_memory_limit_option_refuses_a_bad_size():
    result = CliRunner().invoke(main, ["worker", "--redis", "redis://x", "--memory-limit", "lots"])
    assert result.exit_code == 2 and "not a size: 'lots'" in result.output


def test_memory_limit_below_what_a_consumer_needs_is_refused():
    result = CliRunner().invoke(main, ["worker", "--redis", "redis://x", "--memory-limit", "16MB"])
    assert result.exit_code == 2 and "too small" in result.output and "64MB" in result.output
