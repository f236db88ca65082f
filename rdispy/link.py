"""A dedicated connection for the per-job hot path, without redis-py's per-command overhead.

redis-py's client adds tens of microseconds per command (connection-pool checkout, retry and event
machinery) on top of a ~50 us round trip; rdispy's few hot-path commands (XADD, XREAD,
XREADGROUP, the publish script) go through one pinned connection here instead, and pipelines are
one packed write and N reads.  Errors surface as redis-py's own exceptions; after a connection
error the next call reconnects.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.commands.core import Script

_pack_command: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _pack_command
except ImportError:  # redis-py packs instead
    _pack_command = None

log = logging.getLogger(__name__)

Command = Sequence[Any]


@dataclass(frozen=True)
class Entry:
    """One stream entry and the stream it came from."""

    stream: str
    eid: bytes
    fields: dict[bytes, bytes]


#: Called with the replies of commands sent ahead (errors in place), or None when the connection
#: failed before they were read (the commands may or may not have run).
ReplyHandler = Callable[[list[Any] | None], None]


class Link:
    """One pinned connection of ``client``'s pool; not thread-safe (one link per thread).

    Commands can be sent ahead (``send``, ``post``) and their replies read later: the next read
    on the link first reads those, in order, and hands them to the handler given with them.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._conn: Any = client.connection_pool.make_connection()
        self._owed: deque[tuple[int, ReplyHandler | None]] = deque()  # sent, replies unread

    def call(self, *command: Any, timeout: float | None = None) -> Any:
        """Send one command and return its reply (``timeout`` for blocking reads)."""
        return self.pipeline([command], timeout)[0]

    def pipeline(
        self,
        commands: Sequence[Command],
        timeout: float | None = None,
        raise_on_error: bool = True,
        settled: Callable[[], None] | None = None,
        large: bool | None = None,
    ) -> list[Any]:
        """Send commands in one write; returns replies in order.  Replies owed to commands sent
        ahead are read first and handed to their handlers; then ``settled`` is called, before
        this pipeline's own replies are read.  An error reply is raised after every reply was
        read, so the connection stays in step; or, with ``raise_on_error=False``, returned in
        its place.  ``large`` says whether an argument may be LARGE_ARGUMENT bytes or more
        (None: look)."""
        conn = self._conn
        try:
            self._write(_pack(conn, commands, large))
            self.settle()
            if settled is not None:
                settled()
            replies, failure = self._read(len(commands), timeout)
        except BaseException:
            self._broken()
            raise
        if failure is not None and raise_on_error:
            raise failure
        return replies

    def send(
        self,
        commands: Sequence[Command],
        on_replies: ReplyHandler | None = None,
        large: bool | None = None,
    ) -> None:
        """Send commands without waiting for their replies; the next read on the link reads them
        and hands them to ``on_replies`` (without one, error replies are logged)."""
        packed = _pack(self._conn, commands, large)
        self._owed.append((len(commands), on_replies))
        try:
            self._write(packed)
        except BaseException:
            self._broken()
            raise

    @property
    def owed(self) -> int:
        """How many sends' replies are still to be read."""
        return len(self._owed)

    def post(self, *command: Any) -> None:
        """Send a command without waiting; its reply is read (and an error logged) later."""
        self.send([command])

    def settle(self, leave: int = 0) -> None:
        """Read the replies owed to commands sent ahead, all but those of the last ``leave``
        sends."""
        try:
            while len(self._owed) > leave:
                count, handler = self._owed[0]
                replies, _ = self._read(count, None)
                self._owed.popleft()
                if handler is not None:
                    handler(replies)
                else:
                    for reply in replies:
                        if isinstance(reply, Exception):
                            log.warning("a posted command failed: %s", reply)
        except BaseException:
            self._broken()
            raise

    def _write(self, packed: list[bytes | memoryview]) -> None:
        if self._conn._sock is None:  # connect() first: a Sentinel-managed connection finds
            self._conn.connect()  # its primary there (send_packed_command skips that step)
        self._conn.send_packed_command(packed, check_health=False)

    def _read(
        self, count: int, timeout: float | None
    ) -> tuple[list[Any], redis.ResponseError | None]:
        conn = self._conn
        replies: list[Any] = []
        failure: redis.ResponseError | None = None
        for _ in range(count):
            try:
                if timeout is None:
                    replies.append(conn.read_response())
                else:
                    replies.append(conn.read_response(timeout=timeout))
            except redis.ResponseError as exc:
                failure = failure or exc
                replies.append(exc)
        return replies, failure

    def _broken(self) -> None:
        """The connection is out of step: drop it (the next command reconnects) and tell the
        handlers of commands sent ahead that their replies are lost."""
        self._conn.disconnect()
        owed, self._owed = self._owed, deque()
        for _, handler in owed:
            if handler is not None:
                handler(None)

    def script_call(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Command:
        """The EVALSHA command of ``script`` (load it once with ``load``)."""
        return ("EVALSHA", script.sha, len(keys), *keys, *args)

    def run_scripts(
        self, script: Script, calls: Sequence[tuple[Sequence[Any], Sequence[Any]]]
    ) -> list[Any]:
        """Run ``script`` once per (keys, args) in one pipeline, loading it if the server lacks it
        (first use, or a server that restarted empty)."""
        commands = [self.script_call(script, keys, args) for keys, args in calls]
        try:
            return self.pipeline(commands)
        except redis.exceptions.NoScriptError:
            self.call("SCRIPT", "LOAD", script.script)
            return self.pipeline(commands)

    def close(self) -> None:
        self._conn.disconnect()


#: Arguments at least this long are sent as chunks of their own, not copied into the packed
#: commands (a 10 MB payload would otherwise be copied once more on its way to the socket).
LARGE_ARGUMENT = 1 << 16


def has_large(values: Iterable[bytes]) -> bool:
    """Whether any of these byte strings is LARGE_ARGUMENT bytes or more (one pass in C)."""
    return max(map(len, values), default=0) >= LARGE_ARGUMENT


def _pack(
    conn: Any, commands: Sequence[Command], large: bool | None = None
) -> list[bytes | memoryview]:
    """The RESP bytes of ``commands``, large byte arguments left in place as their own chunks."""
    if large is None:
        large = any(
            isinstance(arg, bytes) and len(arg) >= LARGE_ARGUMENT
            for command in commands
            for arg in command
        )
    if not large:
        if _pack_command is None:
            packed: list[bytes | memoryview] = conn.pack_commands(commands)
            return packed
        # hiredis packs bytes, str, int and float itself (redis-py's packer adds a pass per arg)
        return [b"".join([_pack_command(tuple(command)) for command in commands])]
    chunks: list[bytes | memoryview] = []
    for command in commands:
        head = [b"*%d\r\n" % len(command)]
        for arg in command:
            if isinstance(arg, bytes) and len(arg) >= LARGE_ARGUMENT:
                head.append(b"$%d\r\n" % len(arg))
                chunks += [b"".join(head), arg]
                head = [b"\r\n"]
            else:
                data = conn.encoder.encode(arg)
                head.append(b"$%d\r\n%s\r\n" % (len(data), data))
        chunks.append(b"".join(head))
    return chunks


def all_stream_entries(reply: Any) -> list[Entry]:
    """Entries of every stream in a raw XREAD/XREADGROUP reply, in reply order."""
    if not reply:
        return []
    pairs = list(reply.items()) if isinstance(reply, dict) else [(s[0], s[1]) for s in reply]
    entries: list[Entry] = []
    for stream, items in pairs:
        name = stream.decode() if isinstance(stream, bytes) else str(stream)
        for eid, flat in items:
            if flat is None:  # an entry deleted while pending
                continue
            it = iter(flat)
            entries.append(Entry(name, eid, dict(zip(it, it, strict=True))))
    return entries


def deleted_entries(reply: Any) -> list[tuple[str, bytes]]:
    """(stream, id) of the entries of a raw XREADGROUP backlog reply that were deleted while
    pending (the server returns them with no fields)."""
    if not reply:
        return []
    pairs = list(reply.items()) if isinstance(reply, dict) else [(s[0], s[1]) for s in reply]
    return [
        (stream.decode() if isinstance(stream, bytes) else str(stream), eid)
        for stream, items in pairs
        for eid, flat in items
        if flat is None
    ]


def stream_entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """(id, fields) of the entries in a raw XREAD reply on a single stream."""
    return [(entry.eid, entry.fields) for entry in all_stream_entries(reply)]
