"""A small shared-memory table between a node's supervisor and its consumers.

Each consumer owns one slot and writes into it, without any Redis round trip: the stream entry
id of the job it is running (empty when idle), when that job started, and how many jobs it has
done.  The supervisor reads the slots for heartbeats (busy cores, jobs done) and, when a consumer
dies, to know which of its entries was running (charged an attempt) and which were only taken.
"""

from __future__ import annotations

import mmap
import struct

_FORMAT = struct.Struct("<40sdq")  # entry id, start time, jobs done


class Slots:
    """``count`` slots in an anonymous shared mapping; create before forking the consumers."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._map = mmap.mmap(-1, _FORMAT.size * max(count, 1))

    def _read(self, index: int) -> tuple[bytes, float, int]:
        raw, started, done = _FORMAT.unpack_from(self._map, index * _FORMAT.size)
        return raw.rstrip(b"\x00"), started, done

    def start(self, index: int, entry_id: bytes, started: float) -> None:
        _, _, done = self._read(index)
        _FORMAT.pack_into(self._map, index * _FORMAT.size, entry_id, started, done)

    def finish(self, index: int) -> None:
        _, _, done = self._read(index)
        _FORMAT.pack_into(self._map, index * _FORMAT.size, b"", 0.0, done + 1)

    def running(self, index: int) -> bytes:
        """Entry id the consumer in this slot is running, or b''."""
        return self._read(index)[0]

    def clear(self, index: int) -> None:
        """Forget a dead consumer's job (its jobs-done count stays)."""
        _, _, done = self._read(index)
        _FORMAT.pack_into(self._map, index * _FORMAT.size, b"", 0.0, done)

    def busy(self) -> int:
        return sum(1 for i in range(self.count) if self._read(i)[0])

    def done(self) -> int:
        return sum(self._read(i)[2] for i in range(self.count))
