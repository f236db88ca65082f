"""Running a program as a job (dispy's JobCluster with a program path, and `rdispy submit`).

The program arrives as a dependency file in the session folder; each job runs it with its own
arguments there, in its own process group, and returns its exit code; its stdout and stderr
become the job's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rdispy.worker.workspace import check_file_name


def run_program(name: str, *args: object) -> int:
    """Run ``./name args...`` in the current (session) folder; returns the exit code."""
    program = Path.cwd() / check_file_name(name)
    command = [str(program), *map(str, args)]
    if program.suffix == ".py":
        command.insert(0, sys.executable)
    result = subprocess.run(command, capture_output=True, text=True)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode if result.returncode >= 0 else 128 - result.returncode
