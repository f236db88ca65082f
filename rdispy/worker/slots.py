"""A small shared-memory table between a node's supervisor and its consumers.

Each consumer owns one slot and writes into it, without any Redis round trip: the stream entry
and job id it is running (empty when idle), when that job started, its timeout, and how many
jobs the consumer has done.  The supervisor reads the slots for heartbeats (busy cores, jobs
done), to enforce timeouts and cancel running jobs, and, when a consumer dies, to know which of
its entries was running (charged an attempt) and which were only taken.  ``ReadTurns`` decides
which consumer waits on the job streams.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import select
import struct
import time
from dataclasses import dataclass

_FORMAT = struct.Struct("<40s200sddq")  # entry id, job id, start time, timeout, jobs done
_FENCED = struct.Struct("<q")  # per slot, after the table: results dropped as superseded
_WEIGHT = struct.Struct("<q")  # per slot, after those: cores the consumer's job holds or awaits
_STOP = struct.Struct("<q")  # per slot, last: the node asked to stop the running job (1)
_DONE = struct.Struct("<q")  # the jobs-done count, last in a slot's _FORMAT
_DONE_OFFSET = _FORMAT.size - _DONE.size


@dataclass(frozen=True)
class Running:
    """What one consumer is running."""

    entry_id: bytes
    job_id: str
    started: float
    timeout: float  # seconds; 0 means none


class ReadTurns:
    """Which consumer of the node waits on the job streams: one at a time.

    The server hands a new entry to the reader that has waited longest, so with every idle
    consumer waiting, sequential jobs go to each in turn and every one starts in a cold process
    (a one-consumer node answers a sequential no-op call ~0.05 ms sooner on 2 cores).  So one
    consumer waits on the streams and the others, followers, wait here.  A consumer back from a
    job, or the last reader, takes the turn at once when nobody holds it; a follower takes it
    once nobody has held it for HANDOVER seconds (the reader is running what it took), so a burst
    reaches every core within a millisecond or two.  Followers look every POLL seconds while the
    node is busy; after ACTIVE seconds without a job they sleep until the reader rings the
    doorbell on taking the next one.  Races between processes only ever let two consumers read
    at once, as they all did before.
    """

    HANDOVER = 0.001
    POLL = 0.001
    ACTIVE = 1.0
    _STATE = struct.Struct("<qqdd")  # reader, last reader (slot + 1, 0: none), ended, job taken
    _READERS = struct.Struct("<qq")  # the first two, written together
    _TIME = struct.Struct("<d")
    _ENDED_AT, _TAKEN_AT = 16, 24  # offsets of the two times

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, self._STATE.size)
        self._bell, self._ring = os.pipe()
        os.set_blocking(self._bell, False)
        os.set_blocking(self._ring, False)

    def _state(self) -> tuple[int, int, float, float]:
        reader, last, ended, taken = self._STATE.unpack_from(self._map, 0)
        return int(reader), int(last), float(ended), float(taken)

    def take(self, index: int, back_from_work: bool = False) -> bool:
        """Become the reader if nobody is and it is our turn (see the class docstring)."""
        reader, last, ended, _ = self._state()
        if reader:
            return False
        if not back_from_work and last != index + 1:
            if time.monotonic() - ended < self.HANDOVER:
                return False
        self._READERS.pack_into(self._map, 0, index + 1, index + 1)
        return True

    def end(self, index: int) -> None:
        """Stop being the reader (a read returned, failed, or the consumer is gone)."""
        reader, last, _, _ = self._state()
        if reader == index + 1:
            # when it ended first, then no reader: a follower never sees no reader, old time
            self._TIME.pack_into(self._map, self._ENDED_AT, time.monotonic())
            self._READERS.pack_into(self._map, 0, 0, last)

    def took_job(self) -> None:
        """The reader took a job: wake sleeping followers if the node was idle."""
        taken = self._state()[3]
        now = time.monotonic()
        self._TIME.pack_into(self._map, self._TAKEN_AT, now)
        if now - taken >= self.ACTIVE:
            with contextlib.suppress(BlockingIOError):  # the bell rings already
                os.write(self._ring, b"!")

    def follow(self, index: int, seconds: float) -> bool:
        """Wait up to ``seconds`` for the turn; True once taken."""
        deadline = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            reader, _, ended, taken = self._state()
            if not reader and now - ended >= self.HANDOVER and self.take(index):
                return True
            if now >= deadline:
                return False
            if not reader:
                wait = self.HANDOVER - (now - ended)
            elif now - taken < self.ACTIVE:
                wait = self.POLL
            else:
                wait = deadline - now  # idle: the bell wakes us
            if select.select([self._bell], [], [], max(min(wait, deadline - now), 0.0))[0]:
                with contextlib.suppress(BlockingIOError):  # another follower drained it
                    os.read(self._bell, 64)


class Slots:
    """``count`` slots in an anonymous shared mapping; create before forking the consumers."""

    def __init__(self, count: int) -> None:
        self.count = count
        per_slot = _FORMAT.size + _FENCED.size + _WEIGHT.size + _STOP.size
        self._map = mmap.mmap(-1, per_slot * max(count, 1))
        self._weights = struct.Struct(f"<{count}q")  # every slot's weight, read at once
        self.turns = ReadTurns()

    def _read(self, index: int) -> tuple[bytes, bytes, float, float, int]:
        eid, job, started, timeout, done = _FORMAT.unpack_from(self._map, index * _FORMAT.size)
        return eid.rstrip(b"\x00"), job.rstrip(b"\x00"), started, timeout, done

    def _write(
        self, index: int, eid: bytes, job: bytes, started: float, timeout: float, done: int
    ) -> None:
        _FORMAT.pack_into(self._map, index * _FORMAT.size, eid, job, started, timeout, done)

    def _done(self, index: int) -> int:
        return int(_DONE.unpack_from(self._map, index * _FORMAT.size + _DONE_OFFSET)[0])

    def start(
        self, index: int, entry_id: bytes, job_id: bytes, started: float, timeout: float
    ) -> None:
        _STOP.pack_into(self._map, self._stop_offset(index), 0)
        self._write(index, entry_id, job_id, started, timeout, self._done(index))

    def _stop_offset(self, index: int) -> int:
        return (_FORMAT.size + _FENCED.size + _WEIGHT.size) * self.count + _STOP.size * index

    def request_stop(self, index: int) -> None:
        """The node stops this consumer's job (cancelled, or past its timeout): the SIGTERM
        that follows raises KeyboardInterrupt in the job, as dispynode's SIGINT does."""
        _STOP.pack_into(self._map, self._stop_offset(index), 1)

    def stop_requested(self, index: int) -> bool:
        return bool(_STOP.unpack_from(self._map, self._stop_offset(index))[0])

    def finish(self, index: int) -> None:
        self._write(index, b"", b"", 0.0, 0.0, self._done(index) + 1)

    def clear(self, index: int) -> None:
        """Forget a dead consumer's job and the cores it held (its jobs-done count stays)."""
        self._write(index, b"", b"", 0.0, 0.0, self._read(index)[4])
        self.set_weight(index, 0)
        self.turns.end(index)

    def running(self, index: int) -> Running | None:
        eid, job, started, timeout, _ = self._read(index)
        return Running(eid, job.decode(errors="replace"), started, timeout) if eid else None

    def fenced(self, index: int) -> None:
        """Count a result of this consumer that was dropped: another consumer owns its job now."""
        offset = _FORMAT.size * self.count + _FENCED.size * index
        _FENCED.pack_into(self._map, offset, _FENCED.unpack_from(self._map, offset)[0] + 1)

    def fenced_total(self) -> int:
        base = _FORMAT.size * self.count
        return sum(
            _FENCED.unpack_from(self._map, base + _FENCED.size * i)[0] for i in range(self.count)
        )

    def _weight_offset(self, index: int) -> int:
        return (_FORMAT.size + _FENCED.size) * self.count + _WEIGHT.size * index

    def set_weight(self, index: int, cores: int) -> None:
        """Cores this consumer's job holds (or has reserved while it waits for them)."""
        _WEIGHT.pack_into(self._map, self._weight_offset(index), cores)

    def waiting_before(self, index: int) -> bool:
        """Whether a consumer of a lower slot holds a reservation for a job not yet started."""
        return any(
            _WEIGHT.unpack_from(self._map, self._weight_offset(i))[0] > 0 and not self._read(i)[0]
            for i in range(index)
        )

    def weight_total(self) -> int:
        """Cores held or reserved on the node."""
        return sum(self._weights.unpack_from(self._map, self._weight_offset(0)))

    def done(self) -> int:
        return sum(self._read(i)[4] for i in range(self.count))


class ClosedSessions:
    """A ring of the cluster sessions whose clients closed them, shared like the slots: the
    supervisor writes (from a signed control message), consumers read between jobs and run
    the session's cleanup, then forget it."""

    _HEADER = struct.Struct("<q")  # sessions written so far
    _ENTRY = struct.Struct("<32s?")  # session id, remove its files
    SIZE = 64

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, self._HEADER.size + self._ENTRY.size * self.SIZE)

    def written(self) -> int:
        return int(self._HEADER.unpack_from(self._map, 0)[0])

    def add(self, session: str, remove_files: bool) -> None:
        count = self.written()
        offset = self._HEADER.size + self._ENTRY.size * (count % self.SIZE)
        self._ENTRY.pack_into(self._map, offset, session.encode()[:32], remove_files)
        self._HEADER.pack_into(self._map, 0, count + 1)

    def since(self, seen: int) -> tuple[int, list[tuple[str, bool]]]:
        """Sessions closed after the first ``seen`` (at most the last SIZE), and the new count."""
        count = self.written()
        closed = []
        for index in range(max(seen, count - self.SIZE), count):
            offset = self._HEADER.size + self._ENTRY.size * (index % self.SIZE)
            raw, remove = self._ENTRY.unpack_from(self._map, offset)
            closed.append((raw.rstrip(b"\x00").decode(), bool(remove)))
        return count, closed
