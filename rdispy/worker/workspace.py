"""Where a node keeps dependency files and runs jobs.

Files a client ships (``depends``, programs) travel as content-addressed blobs.  A node keeps
each blob once in its cache (``<root>/blobs/<sha256>``, checked against its hash when fetched, so
a truncated or altered copy is never used) and links it into the folder of each cluster session
that needs it (``<root>/sessions/<session>/<name>``); jobs of that session run there.  A changed
file is a new blob, never a stale copy.  File names are plain base names, checked again here:
nothing a client sends can write outside the session folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import redis

from rdispy import serialization
from rdispy.errors import JobError
from rdispy.keys import Keys


def check_file_name(name: str, job_id: str | None = None) -> str:
    """A dependency's name must be a plain base name: no folders, no '..', no NUL, not too long."""
    if (
        not name
        or name in (".", "..")
        or any(c in name for c in "/\\\x00")
        or len(name.encode()) > 255
    ):
        raise JobError(f"refused dependency name {name[:80]!r}: only plain file names", job_id)
    return name


class Workspace:
    """The blob cache and session folders of one node (shared by its consumers)."""

    def __init__(self, client: redis.Redis, keys: Keys, root: Path) -> None:
        self.client = client
        self.keys = keys
        self.root = root
        self.blobs = root / "blobs"
        self.sessions = root / "sessions"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.sessions.mkdir(parents=True, exist_ok=True)
        self._ready: dict[tuple[str, bytes], tuple[Path, dict[str, Any]]] = {}

    def blob(self, digest: str, job_id: str) -> Path:
        """Path of a cached blob, fetched from Redis (and hash-checked) when not cached yet."""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise JobError(f"malformed blob digest {digest[:80]!r}", job_id)
        path = self.blobs / digest
        if path.exists():
            return path
        data: Any = self.client.get(self.keys.blob(digest))
        if data is None:
            raise JobError(
                f"dependency blob {digest[:12]} is missing (expired?); submit again", job_id
            )
        if hashlib.sha256(data).hexdigest() != digest:
            raise JobError(f"dependency blob {digest[:12]} does not match its hash", job_id)
        partial = self.blobs / f".{digest}.{os.getpid()}.part"
        try:
            partial.write_bytes(data)
            os.replace(partial, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        return path

    def prepare(
        self, session: str, manifest: bytes | None, job_id: str
    ) -> tuple[Path, dict[str, Any]]:
        """The session's folder with every dependency file in place, and the objects (functions,
        classes, modules) the computation's globals must see."""
        check_file_name(session, job_id)
        key = (session, manifest or b"")
        folder = self.sessions / session
        if key in self._ready:
            return self._ready[key]
        folder.mkdir(parents=True, exist_ok=True)
        names: dict[str, Any] = {}
        if manifest:
            content = serialization.loads(
                self.blob(manifest.decode(), job_id).read_bytes(), "dependencies", job_id
            )
            for name, digest, mode in content["files"]:
                self._place(folder, check_file_name(name, job_id), self.blob(digest, job_id), mode)
            names = content["globals"]
        self._ready[key] = (folder, names)
        return folder, names

    @staticmethod
    def _place(folder: Path, name: str, source: Path, mode: int) -> None:
        target = folder / name
        if target.is_symlink() or (target.exists() and not target.is_file()):
            raise JobError(f"refused dependency {name!r}: something else is in its place")
        partial = folder / f".{name}.{os.getpid()}.part"
        shutil.copyfile(source, partial, follow_symlinks=False)
        os.chmod(partial, mode & 0o755)  # never setuid/setgid bits from a client
        os.replace(partial, target)

    def forget(self, session: str) -> Path | None:
        """Drop a closed session; returns its folder (to remove) if it had one."""
        found = [key for key in self._ready if key[0] == session]
        for key in found:
            del self._ready[key]
        folder = self.sessions / session
        return folder if folder.is_dir() else None
