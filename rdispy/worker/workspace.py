"""Where a node keeps dependency files and runs jobs.

Files a client ships (``depends``, programs) travel as content-addressed blobs.  A node keeps
each blob once in its cache (``<root>/blobs/<sha256>``, checked against its hash when fetched, so
a truncated or altered copy is never used) and copies it into the folder of each cluster session
that needs it (``<root>/sessions/<session>/<name>``); jobs of that session run there.  A changed
file is a new blob, never a stale copy.  File names are plain base names, checked again here:
nothing a client sends can write outside the session folder.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import stat
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import redis

from rdispy import serialization
from rdispy.errors import DependencyTransferError, JobError
from rdispy.keys import Keys
from rdispy.wire import check_file_name

log = logging.getLogger(__name__)


class Workspace:
    """The blob cache and session folders of one node (shared by its consumers).

    Every file is written under a name of our own, opened relative to its folder's handle with
    O_NOFOLLOW|O_EXCL, then renamed into place within that folder: a link a job left behind is
    never followed, a reader never sees a half-written file, and a failed write (disk full)
    leaves nothing behind.  Free space is checked before a write whose size is known."""

    def __init__(self, client: redis.Redis, keys: Keys, root: Path) -> None:
        self.client = client
        self.keys = keys
        self.root = root
        self.blobs = root / "blobs"
        self.sessions = root / "sessions"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.sessions.mkdir(parents=True, exist_ok=True)
        self._ready: dict[tuple[str, bytes], tuple[Path, dict[str, Any]]] = {}
        self._verified: set[str] = set()  # cached blobs this process has hash-checked

    def blob(self, digest: str, job_id: str) -> Path:
        """Path of a cached blob, fetched from Redis when not cached yet; a cached copy is
        hash-checked before its first use here (a damaged one is fetched again)."""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise JobError(f"malformed blob digest {digest[:80]!r}", job_id)
        path = self.blobs / digest
        if digest in self._verified:
            return path
        if path.exists():
            if _sha256_of(path) == digest:
                self._verified.add(digest)
                return path
            log.warning("cached blob %s does not match its hash; fetching it again", digest[:12])
        data: Any = self.client.get(self.keys.blob(digest))
        if data is None:
            raise JobError(
                f"dependency blob {digest[:12]} is missing (expired?); submit again", job_id
            )
        if hashlib.sha256(data).hexdigest() != digest:
            raise JobError(f"dependency blob {digest[:12]} does not match its hash", job_id)
        with _folder(self.blobs, job_id) as fd:
            _store(fd, self.blobs, digest, [data], len(data), 0o644, job_id)
        self._verified.add(digest)
        return path

    def prepare(
        self, session: str, manifest: bytes | None, job_id: str, again: bool = False
    ) -> tuple[Path, dict[str, Any]]:
        """The session's folder with every dependency file in place, and the objects (functions,
        classes, modules) the computation's globals must see.  ``again`` puts the files back
        even when this process placed them before (a setup may have removed them)."""
        key = (session, manifest or b"")
        ready = self._ready.get(key)  # every job of a session after its first: nothing to do
        if ready is not None and not again:
            return ready
        check_file_name(session, job_id)
        folder = self.sessions / session
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _transfer_error(exc, f"session folder {folder}", job_id) from exc
        names: dict[str, Any] = {}
        if manifest:
            content = serialization.loads(
                self.blob(manifest.decode(), job_id).read_bytes(), "dependencies", job_id
            )
            with _folder(folder, job_id) as fd:
                for name, digest, mode in content["files"]:
                    name = check_file_name(name, job_id)
                    self._place(fd, folder, name, self.blob(digest, job_id), int(mode), job_id)
            names = content["globals"]
        self._ready[key] = (folder, names)
        return folder, names

    @staticmethod
    def _place(fd: int, folder: Path, name: str, source: Path, mode: int, job_id: str) -> None:
        try:
            found = os.lstat(name, dir_fd=fd)
        except FileNotFoundError:
            found = None
        if found is not None and not stat.S_ISREG(found.st_mode):
            raise JobError(
                f"refused dependency {name!r}: something else (a link or folder) is in its place",
                job_id,
            )
        size = source.stat().st_size
        with open(source, "rb") as src:
            chunks = iter(lambda: src.read(1 << 20), b"")
            _store(fd, folder, name, chunks, size, mode, job_id)

    def forget(self, session: str) -> Path | None:
        """Drop a closed session; returns its folder (to remove) if it had one."""
        found = [key for key in self._ready if key[0] == session]
        for key in found:
            del self._ready[key]
        folder = self.sessions / session
        return folder if folder.is_dir() else None


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _folder(path: Path, job_id: str) -> Iterator[int]:
    """A handle on a folder we made, refused if it has been replaced by a link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise JobError(f"cannot open folder {path}: {exc.strerror}", job_id) from exc
    try:
        yield fd
    finally:
        os.close(fd)


def _transfer_error(exc: OSError, what: str, job_id: str) -> DependencyTransferError:
    hint = "; free space on the node or start it with --workdir on a larger disk"
    reason = exc.strerror or str(exc)
    name = errno.errorcode.get(exc.errno or 0, "")
    return DependencyTransferError(
        f"cannot store {what}: {reason}{f' ({name})' if name else ''}"
        f"{hint if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ''}",
        job_id,
        exc.errno,
    )


def _store(
    fd: int,
    folder: Path,
    name: str,
    chunks: Iterable[bytes],
    size: int,
    mode: int,
    job_id: str,
) -> None:
    """Write ``chunks`` (``size`` bytes) as ``name`` in the folder open as ``fd``: under a
    temporary name, never following a link, without setuid/setgid/sticky bits, then renamed
    into place; on any failure the partial file is removed."""
    what = f"dependency {name[:80]!r} ({size:,} bytes) in {folder}"
    try:
        space = os.fstatvfs(fd)
        free = space.f_bavail * space.f_frsize
    except OSError:
        free = None
    if free is not None and size > free:
        raise _transfer_error(
            OSError(errno.ENOSPC, f"{free:,} bytes free, {size:,} needed"), what, job_id
        )
    partial = f".rdispy-{os.getpid()}-{uuid.uuid4().hex[:8]}.part"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        out = os.open(partial, flags, 0o600, dir_fd=fd)
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
            os.fchmod(out, mode & 0o755)  # never setuid/setgid bits from a client
        finally:
            os.close(out)
        os.replace(partial, name, src_dir_fd=fd, dst_dir_fd=fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(partial, dir_fd=fd)
        raise _transfer_error(exc, what, job_id) from exc
