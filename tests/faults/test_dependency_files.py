"""Dependency files a node receives (faults.md tests 27 and 28).

- 27: the node's cache on a full disk (a 1 MiB tmpfs, as root): the job fails with
  DependencyTransferError (ENOSPC) found before the transfer (free space checked against the
  known size); no partial file is left, the cache keeps its complete files, the node stays
  registered and the next job with a small file runs.  The write failing half way is covered in
  tests/unit/test_workspace.py.
- 28: names that would leave the job folder, forged into a manifest (a client only sends base
  names), are refused by the worker with a clear error; so are a link or a link-folder already
  in place; a canary folder outside stays byte for byte the same; setuid/setgid bits are dropped.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

import rdispy
import rdispy as dispy
from rdispy import serialization
from rdispy.keys import Keys
from tests.helpers import DEADLINE

pytestmark = pytest.mark.integration


def read_dep(name: str) -> tuple[str, int]:
    """A job: the sha256 and mode bits of a dependency file in its folder."""
    with open(name, "rb") as f:
        data = f.read()
    return hashlib.sha256(data).hexdigest(), os.stat(name).st_mode & 0o7777


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root`` with its bytes and mode (links as their target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(root))] = (os.readlink(path).encode(), 0)
        elif path.is_file():
            found[str(path.relative_to(root))] = (path.read_bytes(), path.stat().st_mode)
    return found


# -- 27: disk full ---------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 1 MiB tmpfs (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; tests/unit/test_workspace.py patches ENOSPC")
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)])
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_fails_the_job_cleanly_and_the_node_goes_on(
    redis_url, rclient, cluster, start_worker, tmp_path, tiny_disk
):
    keys = Keys(cluster)
    small, big = tmp_path / "small.txt", tmp_path / "big.bin"
    small.write_bytes(b"small file\n" * 10)
    big.write_bytes(os.urandom(2 * 1024 * 1024))  # twice the disk
    worker = start_worker(redis_url, 1, "node1", "--workdir", str(tiny_disk))
    incarnation = rclient.hget(keys.node("node1"), "incarnation")
    args = {"redis_url": redis_url, "cluster": cluster}

    with dispy.JobCluster(read_dep, depends=[str(small)], **args) as c:
        assert c.submit("small.txt")()[0] == hashlib.sha256(small.read_bytes()).hexdigest()
    cache_before = tree(tiny_disk / "blobs")
    assert cache_before

    with dispy.JobCluster(read_dep, depends=[str(big)], **args) as c:
        job = c.submit("big.bin")
        assert job(timeout=DEADLINE) is None
        error = job.future.exception()
        assert isinstance(error, rdispy.DependencyTransferError), job.exception
        assert error.errno == errno.ENOSPC and error.job_id == job.future.job_id
        assert "ENOSPC" in str(error) and f"{big.stat().st_size:,} needed" in str(error)
        assert "--workdir" in str(error)
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    assert not list(tiny_disk.rglob("*.part")), "a partial file was left behind"
    assert not (tiny_disk / "blobs" / digest).exists()
    cache_after = tree(tiny_disk / "blobs")  # the cache is unharmed (plus the new manifest)
    assert {k: v for k, v in cache_after.items() if k in cache_before} == cache_before
    for name, (data, _) in cache_after.items():
        assert hashlib.sha256(data).hexdigest() == name  # and every file in it is whole

    # the node stays registered, the same incarnation, and runs the next job with a small file
    assert worker.proc.poll() is None
    assert rclient.hget(keys.node("node1"), "incarnation") == incarnation
    other = tmp_path / "other.txt"
    other.write_bytes(b"next\n")
    with dispy.JobCluster(read_dep, depends=[str(other)], **args) as c:
        assert c.submit("other.txt")()[0] == hashlib.sha256(b"next\n").hexdigest()


# -- 28: path traversal ----------------------------------------------------------------------------

BAD_NAMES = [
    "../../x",
    "a/../../x",
    "/etc/passwd",
    "CANARY_ABSOLUTE",  # replaced by an absolute path into the canary folder
    "..\\x",
    "x\x00y",
    "a" * 5000,
    "..",
    ".",
    "",
]


def test_names_leaving_the_job_folder_are_refused_and_nothing_outside_changes(
    redis_url, cluster, start_worker, tmp_path
):
    work, canary = tmp_path / "work", tmp_path / "canary"
    canary.mkdir()
    (canary / "x").write_bytes(b"canary x\n")
    (canary / "data.csv").write_bytes(b"canary data\n")
    (canary / "passwd").write_bytes(b"canary passwd\n")
    before = tree(canary)
    etc_passwd = Path("/etc/passwd").read_bytes()
    legit = tmp_path / "data.csv"
    legit.write_bytes(b"1,2,3\n")
    start_worker(redis_url, 1, "node1", "--workdir", str(work))
    args = {"redis_url": redis_url, "cluster": cluster}

    with dispy.JobCluster(read_dep, depends=[str(legit)], **args) as c:
        payload = c._dispatcher.upload_blob(b"pwned\n")
        for bad in BAD_NAMES:
            name = str(canary / "x") if bad == "CANARY_ABSOLUTE" else bad
            manifest = {"files": [(name, payload, 0o644)], "globals": {}}
            c._header["dp"] = c._dispatcher.upload_blob(serialization.dumps(manifest, "depends"))
            job = c.submit("x")
            assert job(timeout=DEADLINE) is None, repr(name[:40])
            assert "refused dependency name" in job.exception, job.exception
            assert "only plain file names" in job.exception
        folder = work / "sessions" / c.session
        assert not folder.exists() or not any(folder.iterdir())

    # a link already in the job folder, pointing outside: refused, never written through
    with dispy.JobCluster(read_dep, depends=[str(legit)], **args) as c:
        folder = work / "sessions" / c.session
        folder.mkdir(parents=True)
        (folder / "data.csv").symlink_to(canary / "data.csv")
        job = c.submit("data.csv")
        assert job(timeout=DEADLINE) is None
        assert "refused dependency 'data.csv'" in job.exception
        assert "something else (a link or folder) is in its place" in job.exception

    # the job folder itself replaced by a link to the canary: refused (O_NOFOLLOW)
    with dispy.JobCluster(read_dep, depends=[str(legit)], **args) as c:
        (work / "sessions").mkdir(parents=True, exist_ok=True)
        (work / "sessions" / c.session).symlink_to(canary, target_is_directory=True)
        job = c.submit("data.csv")
        assert job(timeout=DEADLINE) is None
        assert "cannot open folder" in job.exception

    assert tree(canary) == before  # byte for byte, modes included
    assert Path("/etc/passwd").read_bytes() == etc_passwd
    assert not (tmp_path / "x").exists() and not (work / "x").exists()


def test_client_refuses_a_name_it_cannot_send_safely(redis_url, cluster, tmp_path):
    odd = tmp_path / "..\\x"
    odd.write_text("x")
    with pytest.raises(rdispy.JobError, match="refused dependency name"):
        dispy.JobCluster(read_dep, depends=[str(odd)], redis_url=redis_url, cluster=cluster)


def test_setuid_and_setgid_bits_from_the_sender_are_dropped(
    redis_url, cluster, start_worker, tmp_path
):
    tool = tmp_path / "tool.sh"
    tool.write_text("#!/bin/sh\necho hi\n")
    os.chmod(tool, 0o6777)  # setuid, setgid, world-writable
    assert tool.stat().st_mode & 0o6000 == 0o6000
    start_worker(redis_url, 1, "node1", "--workdir", str(tmp_path / "work"))
    with dispy.JobCluster(read_dep, depends=[str(tool)], redis_url=redis_url, cluster=cluster) as c:
        digest, mode = c.submit("tool.sh")()
    assert digest == hashlib.sha256(tool.read_bytes()).hexdigest()
    assert mode == 0o755  # no setuid/setgid, not writable by others
