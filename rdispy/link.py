"""A dedicated connection for the per-job hot path, without redis-py's per-command overhead.

redis-py's client adds tens of microseconds per command (connection-pool checkout, retry and event
machinery) on top of a ~50 us round trip; rdispy's few hot-path commands (XADD, XREAD,
XREADGROUP, the publish script) go through one pinned connection here instead, and pipelines are
one packed write and N reads.  Errors surface as redis-py's own exceptions; after a connection
error the next call reconnects.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.commands.core import Script

log = logging.getLogger(__name__)

Command = Sequence[Any]


@dataclass(frozen=True)
class Entry:
    """One stream entry and the stream it came from."""

    stream: str
    eid: bytes
    fields: dict[bytes, bytes]


class Link:
    """One pinned connection of ``client``'s pool; not thread-safe (one link per thread)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._conn: Any = client.connection_pool.make_connection()
        self._unread = 0  # replies of posted commands, read before the next pipeline's

    def call(self, *command: Any, timeout: float | None = None) -> Any:
        """Send one command and return its reply (``timeout`` for blocking reads)."""
        return self.pipeline([command], timeout)[0]

    def pipeline(
        self, commands: Sequence[Command], timeout: float | None = None, raise_on_error: bool = True
    ) -> list[Any]:
        """Send commands in one write; returns replies in order.  An error reply is raised after
        every reply was read, so the connection stays in step; or, with ``raise_on_error=False``,
        returned in its place."""
        conn = self._conn
        try:
            conn.send_packed_command(_pack(conn, commands), check_health=False)
            self._read_posted()
            replies: list[Any] = []
            failure: redis.ResponseError | None = None
            for _ in commands:
                try:
                    if timeout is None:
                        replies.append(conn.read_response())
                    else:
                        replies.append(conn.read_response(timeout=timeout))
                except redis.ResponseError as exc:
                    failure = failure or exc
                    replies.append(exc)
        except BaseException:
            conn.disconnect()
            self._unread = 0
            raise
        if failure is not None and raise_on_error:
            raise failure
        return replies

    def post(self, *command: Any) -> None:
        """Send a command without waiting; its reply is read (and an error logged) later."""
        try:
            self._conn.send_packed_command(self._conn.pack_command(*command), check_health=False)
        except BaseException:
            self._conn.disconnect()
            self._unread = 0
            raise
        self._unread += 1

    def _read_posted(self) -> None:
        while self._unread:
            self._unread -= 1
            try:
                self._conn.read_response()
            except redis.ResponseError as exc:
                log.warning("a posted command failed: %s", exc)

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


def _pack(conn: Any, commands: Sequence[Command]) -> list[bytes | memoryview]:
    """The RESP bytes of ``commands``, large byte arguments left in place as their own chunks."""
    if not any(
        isinstance(arg, bytes) and len(arg) >= LARGE_ARGUMENT
        for command in commands
        for arg in command
    ):
        packed: list[bytes | memoryview] = conn.pack_commands(commands)
        return packed
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
