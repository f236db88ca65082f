"""The program runner of `rdispy submit`: a job folder of its own, created files returned."""

from __future__ import annotations

import os
from pathlib import Path

from rdispy.programs import RUNS, ProgramRun, collect_files, run_program_collect

SCRIPT = """#!/bin/sh
cat data.txt
mkdir -p sub
echo "made $1" > sub/out.txt
printf x > "$2"
echo oops >&2
exit "$3"
"""


def _session(tmp_path: Path) -> Path:
    session = tmp_path / "session"
    session.mkdir()
    (session / "prog.sh").write_text(SCRIPT)
    (session / "prog.sh").chmod(0o755)
    (session / "data.txt").write_text("shared data\n")
    return session


def test_a_run_sees_the_session_files_and_returns_only_what_it_created(
    tmp_path, monkeypatch, capfd
):
    session = _session(tmp_path)
    monkeypatch.chdir(session)
    run = run_program_collect("prog.sh", "a", "extra.bin", 3)
    assert isinstance(run, ProgramRun) and run.exit_code == 3
    assert [(f.path, f.data) for f in run.files] == [
        ("extra.bin", b"x"),
        ("sub/out.txt", b"made a\n"),
    ]
    assert run.left_out == ()
    out, err = capfd.readouterr()
    assert out == "shared data\n" and err == "oops\n"
    assert not any((session / RUNS).iterdir())  # the job folder is gone
    assert sorted(p.name for p in session.iterdir()) == sorted([RUNS, "data.txt", "prog.sh"])


def test_runs_do_not_see_each_others_files(tmp_path, monkeypatch):
    session = _session(tmp_path)
    monkeypatch.chdir(session)
    first = run_program_collect("prog.sh", "1", "one.bin", 0)
    second = run_program_collect("prog.sh", "2", "two.bin", 0)
    assert [f.path for f in first.files] == ["one.bin", "sub/out.txt"]
    assert [f.path for f in second.files] == ["sub/out.txt", "two.bin"]


def test_files_over_the_budget_are_left_out_with_their_size(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"a" * 100)
    (tmp_path / "b.bin").write_bytes(b"b" * 5000)
    (tmp_path / "c.txt").write_bytes(b"c" * 100)
    os.symlink("/etc/hostname", tmp_path / "link")
    files, left_out = collect_files(tmp_path, 1000)
    assert [f.path for f in files] == ["a.txt", "c.txt"]
    assert left_out == (("b.bin", 5000),)
