"""The little of RESP the relay needs: encode a command, and find where one reply ends in a byte
buffer without decoding it (replies are forwarded as the server sent them)."""

from __future__ import annotations

from collections.abc import Sequence

#: Reply types whose header line is the whole reply (simple string, error, integer, RESP3 ...).
_LINE_TYPES = frozenset(b"+-:,#_(")
#: Types whose header carries a byte length followed by that many bytes and CRLF.
_BULK_TYPES = frozenset(b"$!=")
#: Aggregates of n elements (array, set, push) and of n pairs (map, attributes).
_ARRAY_TYPES = frozenset(b"*~>")
_MAP_TYPES = frozenset(b"%|")


def encode_command(args: Sequence[bytes]) -> bytes:
    """A command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n" % len(arg))
        parts.append(arg)
        parts.append(b"\r\n")
    return b"".join(parts)


def error_reply(text: str) -> bytes:
    """A RESP error line (CR and LF removed from the text)."""
    clean = text.replace("\r", " ").replace("\n", " ")
    return b"-" + clean.encode() + b"\r\n"


def bulk_reply(data: bytes, kind: bytes = b"$") -> bytes:
    """A bulk string (or, with kind ``=``, a RESP3 verbatim string whose data starts ``txt:``)."""
    return kind + b"%d\r\n%s\r\n" % (len(data), data)


class ReplyScanner:
    """Finds the end of the next complete reply in a growing buffer; resumable, so a large reply
    arriving in many chunks is scanned once, not once per chunk."""

    def __init__(self) -> None:
        self._pos = 0
        self._todo = 1

    def scan(self, buf: bytes | bytearray) -> int | None:
        """The index just past the first complete reply in ``buf``, or None if it is not all
        there yet (call again with the same buffer, grown).  Raises ValueError on garbage."""
        pos, todo = self._pos, self._todo
        while todo:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            kind = buf[pos]
            if kind in _LINE_TYPES:
                pos, todo = eol + 2, todo - 1
                continue
            size = int(buf[pos + 1 : eol])
            if kind in _BULK_TYPES:
                end = eol + 2 + max(size, 0) + (2 if size >= 0 else 0)
                if end > len(buf):
                    break
                pos, todo = end, todo - 1
            elif kind in _ARRAY_TYPES:
                pos, todo = eol + 2, todo - 1 + max(size, 0)
            elif kind in _MAP_TYPES:
                pos, todo = eol + 2, todo - 1 + 2 * max(size, 0)
            else:
                raise ValueError(f"not a RESP reply: type byte {kind!r}")
        self._pos, self._todo = pos, todo
        if todo:
            return None
        self._pos, self._todo = 0, 1
        return pos
