"""The node's dependency cache under a full disk and with damaged files (faults.md test 27):
the write that fails half way leaves no partial file and a typed ENOSPC error; a size known to
exceed the free space is refused before anything is written; a damaged cached copy is never
used (its hash is checked before use) but fetched again."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from rdispy.errors import DependencyTransferError
from rdispy.keys import Keys
from rdispy.worker import workspace
from rdispy.worker.workspace import Workspace


class Blobs:
    """Stands in for Redis: GET of blob keys."""

    def __init__(self, keys: Keys, *blobs: bytes) -> None:
        self.data = {keys.blob(hashlib.sha256(b).hexdigest()): b for b in blobs}
        self.gets = 0

    def get(self, key: str) -> bytes | None:
        self.gets += 1
        return self.data.get(key)


def make(tmp_path: Path, *blobs: bytes) -> tuple[Workspace, Blobs]:
    keys = Keys("unit")
    store = Blobs(keys, *blobs)
    return Workspace(store, keys, tmp_path / "work"), store  # type: ignore[arg-type]


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_disk_filling_up_mid_write_leaves_no_partial_file(tmp_path, monkeypatch):
    small, big = b"small" * 10, os.urandom(3 * 65536)
    ws, _ = make(tmp_path, small, big)
    small_path = ws.blob(hashlib.sha256(small).hexdigest(), "job-1")
    real_write = os.write

    def filling_write(fd: int, data: Any) -> int:
        if len(data) > 65536:  # the disk fills up after the first 64 KiB
            real_write(fd, bytes(data[:65536]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(workspace.os, "write", filling_write)
    with pytest.raises(
        DependencyTransferError, match=r"No space left on device \(ENOSPC\)"
    ) as info:
        ws.blob(hashlib.sha256(big).hexdigest(), "job-2")
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC and info.value.job_id == "job-2"
    assert "--workdir" in str(info.value)
    assert files(ws.root) == [f"blobs/{small_path.name}"]  # no partial file, the cache intact
    assert small_path.read_bytes() == small


def test_size_over_the_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    data = os.urandom(4096)
    ws, _ = make(tmp_path, data)

    class Full:
        f_bavail, f_frsize = 1, 1024

    monkeypatch.setattr(workspace.os, "fstatvfs", lambda fd: Full())
    opened: list[object] = []
    real_open = os.open
    monkeypatch.setattr(
        workspace.os, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k)
    )
    with pytest.raises(DependencyTransferError, match="1,024 bytes free, 4,096 needed"):
        ws.blob(hashlib.sha256(data).hexdigest(), "job-1")
    monkeypatch.undo()
    assert [a for a in opened if str(a[0]).endswith(".part")] == []  # nothing was created
    assert files(ws.root) == []


def test_damaged_cached_copy_is_never_used(tmp_path):
    data = os.urandom(10_000)
    digest = hashlib.sha256(data).hexdigest()
    ws, _ = make(tmp_path, data)
    path = ws.blob(digest, "job-1")
    fresh, store = make(tmp_path, data)  # a new consumer process checks before its first use
    assert fresh.blob(digest, "job-2") == path and store.gets == 0  # whole: used as it is
    path.write_bytes(data[:5000])  # truncated behind our back (a crash, a full disk)
    again, store = make(tmp_path, data)
    assert again.blob(digest, "job-3").read_bytes() == data
    assert store.gets == 1  # fetched again, never used truncated


def test_error_survives_pickling_with_its_job_id_and_errno():
    import pickle

    error = DependencyTransferError("cannot store x", "job-9", errno.ENOSPC)
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), str(again), again.job_id, again.errno) == (
        DependencyTransferError,
        "job job-9: cannot store x",
        "job-9",
        errno.ENOSPC,
    )
