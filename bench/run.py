"""Entry point: ``python bench/run.py`` (from anywhere) or ``python -m bench`` (repository root).

The job functions must be importable as ``bench.jobs`` in this process and in every worker
process, whichever executor starts them and whatever the current directory; so the repository
root goes on ``sys.path`` here and on ``PYTHONPATH`` for the children.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)


def _make_importable() -> None:
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if ROOT not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([ROOT, *filter(None, paths)])


def main(argv: list[str] | None = None) -> int:
    _make_importable()
    from bench.cli import main as run

    return run(argv)


if __name__ == "__main__":
    raise SystemExit(main())
