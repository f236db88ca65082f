"""What the supervisor tells each consumer it forks: ``ConsumerConfig``, one for all consumers
of a node."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rdispy import defaults
from rdispy.keys import Keys


@dataclass(frozen=True)
class ConsumerConfig:
    """What a consumer needs to know; shared by all consumers of a node."""

    url: str
    keys: Keys
    node: str
    secret: str | None = None
    max_result: int = defaults.MAX_RESULT
    max_output: int = defaults.MAX_OUTPUT  # characters kept of a job's stdout, and of its stderr
    owner_pid: int | None = None
    ip: str = "127.0.0.1"
    cpus: int = 1  # the node's cores: jobs that need several hold that many
    memory_limit: int | None = None  # bytes per consumer (RLIMIT_DATA), None for no limit
    workdir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "rdispy-node")
