"""Same-host handoff of large payloads: arguments and results through shared-memory files.

A client and a consumer on the same host need not copy a 10 MB argument into Redis and out again:
the client writes the pickled bytes to a file in its own folder under ``/dev/shm`` (the temp
folder where there is none) and the job entry names the file (``pf``), its sha256 (``pz``) and
the client's folder with the identity of the host that holds it (``sm``).  Every field is part
of the signed entry, and the reader checks the hash before anything is unpickled.

    client folder  <base>/<client id>.<pid>/      mode 0700, one per dispatcher
        a-<job id>      arguments of one job (removed when its result arrives or it is cancelled)
        r-<random>      a result a consumer handed back (removed by the client once read)

A consumer whose host identity differs (another host, another user, another /dev/shm) cannot
open the file: it asks the client (a ``need`` event on the client's result stream) to upload
the bytes as a content-addressed Redis blob and reads that.  Results go through a file only
when the job's client shares the consumer's host identity; otherwise inline, as before.

Clean-up on every path: the client removes a job's file with its result or cancellation and
its folder on close; a folder whose owner process is gone (a crash) is removed by the next
``sweep``, which clients run at start and supervisors at every heartbeat; a consumer removes a
result file whose publication was refused.  ``RDISPY_HANDOFF=0`` turns the handoff off.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
import uuid
from pathlib import Path
from typing import BinaryIO

from rdispy import defaults, processes, wire
from rdispy.errors import DeserializationError

log = logging.getLogger(__name__)

#: Environment variable: "0" turns the same-host handoff off (everything goes through Redis).
ENV_HANDOFF = defaults.ENV_HANDOFF
#: Pickled arguments or results of at least this many bytes go through a file when they can.
MIN_BYTES = 1 << 20


def enabled() -> bool:
    return os.environ.get(ENV_HANDOFF, "1").strip().lower() not in ("0", "false", "no", "off")


@functools.lru_cache(maxsize=1)
def base_dir() -> Path:
    """This user's handoff folder on this host (created 0700 on first use)."""
    shm = Path("/dev/shm")
    root = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    folder = root / f"rdispy-handoff-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    st = folder.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise PermissionError(f"{folder} is not a private folder of this user; not using it")
    return folder


@functools.lru_cache(maxsize=1)
def host_id() -> str:
    """Who can read our files: same boot, same handoff folder (device and inode), same user."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    st = base_dir().stat()
    raw = f"{boot}:{st.st_dev}:{st.st_ino}:{os.getuid()}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def digest(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def write(folder: Path, name: str, data: bytes) -> str:
    """Write ``data`` as ``folder/name`` (owner-only); returns its sha256."""
    fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return digest(data)


def read(folder: Path, name: str, expected: str, job_id: str | None = None) -> bytes:
    """The bytes of ``folder/name``, checked against their sha256 (DeserializationError)."""
    data = (folder / name).read_bytes()
    if digest(data) != expected:
        raise DeserializationError(f"handoff file {name} does not match its hash", job_id)
    return data


def remove(folder: Path, name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(folder / name)


class Folder:
    """One dispatcher's handoff folder, removed by ``close``."""

    def __init__(self, client_id: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", client_id)[:100]
        self.name = f"{safe}.{os.getpid()}"
        self.path = base_dir() / self.name
        self.address = f"{host_id()}:{self.name}"  # the ``sm`` field of its jobs
        self.path.mkdir(mode=0o700, exist_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class Spool:
    """A pickling sink for one payload: in memory while under MIN_BYTES, then streamed into
    ``folder/name`` (hashed on the way, with no copy of large buffers)."""

    def __init__(self, folder: Folder, name: str) -> None:
        self.folder, self.name = folder, name
        self.size = 0
        self.digest = ""
        self._chunks: list[bytes] = []
        self._file: BinaryIO | None = None
        self._hash = hashlib.sha256()

    def write(self, data: bytes | memoryview) -> int:
        size = memoryview(data).nbytes
        if self._file is None and self.size + size >= MIN_BYTES:
            fd = os.open(self.folder.path / self.name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            self._file = os.fdopen(fd, "wb")
            for chunk in self._chunks:
                self._write(chunk)
            self._chunks = []
        if self._file is None:
            self._chunks.append(bytes(data))
        else:
            self._write(data)
        self.size += size
        return size

    def _write(self, data: bytes | memoryview) -> None:
        assert self._file is not None
        self._hash.update(data)
        self._file.write(data)

    def finish(self) -> bytes | None:
        """The payload when it stayed small; None when it is in the file (see ``digest``)."""
        if self._file is None:
            return b"".join(self._chunks)
        self._file.close()
        self.digest = self._hash.hexdigest()
        return None

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            remove(self.folder.path, self.name)


def local_folder(address: bytes) -> Path | None:
    """The folder an ``sm`` field names, when it is on this host (same identity), else None."""
    host, _, name = address.partition(b":")
    try:
        if not enabled() or host.decode() != host_id() or not wire.is_file_name(name):
            return None
        return base_dir() / name.decode()
    except (OSError, UnicodeDecodeError) as exc:
        log.debug("no same-host handoff here: %s", exc)
        return None


def result_name() -> str:
    return f"r-{uuid.uuid4().hex}"


def sweep() -> int:
    """Remove the folders of clients that are gone (crashed); returns how many."""
    removed = 0
    try:
        entries = list(os.scandir(base_dir()))
    except OSError:
        return 0
    for entry in entries:
        pid = entry.name.rsplit(".", 1)[-1]
        if entry.is_dir(follow_symlinks=False) and pid.isdigit():
            if not processes.pid_alive(int(pid)):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
    return removed
