"""Same-host handoff files: spooling, hash checks, names on the wire, and the crash sweep."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rdispy import handoff, serialization, wire
from rdispy.errors import DeserializationError, ProtocolError


@pytest.fixture
def folder() -> handoff.Folder:
    made = handoff.Folder("unit-test")
    yield made
    made.close()


def test_small_payload_stays_inline(folder: handoff.Folder) -> None:
    spool = handoff.Spool(folder, "a-1")
    serialization.dump(((1, 2), {}), spool, "arguments")
    inline = spool.finish()
    assert inline is not None and serialization.loads(inline) == ((1, 2), {})
    assert not (folder.path / "a-1").exists()


def test_large_payload_goes_to_a_hashed_file(folder: handoff.Folder) -> None:
    data = os.urandom(handoff.MIN_BYTES + 10)
    spool = handoff.Spool(folder, "a-2")
    serialization.dump(((data,), {}), spool, "arguments")
    assert spool.finish() is None
    stored = handoff.read(folder.path, "a-2", spool.digest)
    assert len(stored) == spool.size
    assert serialization.loads(stored) == ((data,), {})
    assert (folder.path / "a-2").stat().st_mode & 0o077 == 0


def test_altered_file_is_refused(folder: handoff.Folder) -> None:
    digest = handoff.write(folder.path, "r-1", b"original")
    (folder.path / "r-1").write_bytes(b"altered!")
    with pytest.raises(DeserializationError):
        handoff.read(folder.path, "r-1", digest)


def test_folder_address_is_local_only_here(folder: handoff.Folder) -> None:
    assert handoff.local_folder(folder.address.encode()) == folder.path
    assert handoff.local_folder(b"0123456789abcdef:" + folder.name.encode()) is None
    assert handoff.local_folder(folder.address.encode().split(b":")[0] + b":..") is None


def test_disabled_by_environment(monkeypatch: pytest.MonkeyPatch, folder: handoff.Folder) -> None:
    monkeypatch.setenv(handoff.ENV_HANDOFF, "0")
    assert not handoff.enabled()
    assert handoff.local_folder(folder.address.encode()) is None


def test_sweep_removes_folders_of_dead_processes(folder: handoff.Folder) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    stale = handoff.base_dir() / f"crashed.{dead.stdout.strip()}"
    stale.mkdir()
    (stale / "a-1").write_bytes(b"x")
    handoff.sweep()
    assert not stale.exists()
    assert folder.path.exists()  # ours: its process is alive


def _job(**extra: bytes) -> dict[bytes, bytes]:
    fields = {b"v": wire.VERSION, b"id": b"c-1", b"c": b"c", b"fn": b"a" * 64, b"k": b"call"}
    fields.update({key.encode(): value for key, value in extra.items()})
    return fields


def test_job_entry_names_a_file_instead_of_a_payload() -> None:
    wire.validate_job(_job(p=b"x"))
    wire.validate_job(_job(sm=b"abcd:c.12", pf=b"a-1", pz=b"b" * 64))
    for bad in (
        _job(),
        _job(sm=b"abcd:c.12", pf=b"../etc/passwd", pz=b"b" * 64),
        _job(sm=b"abcd:..", pf=b"a-1", pz=b"b" * 64),
        _job(sm=b"abcd:c.12", pf=b"a-1", pz=b"short"),
    ):
        with pytest.raises(ProtocolError):
            wire.validate_job(bad)
