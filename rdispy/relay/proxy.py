"""The relay's TCP proxy: one upstream Redis connection per node connection, so blocking reads
work as they would directly.  Commands are parsed (hiredis) and checked by ``Policy`` before
they go up; replies come back as the server's own bytes, in order, with the relay's own error
replies slotted in where it refused a command."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import hiredis

from rdispy import connection, defaults
from rdispy.relay import resp
from rdispy.relay.policy import Policy, Refused

log = logging.getLogger(__name__)

#: Bytes read from a socket at once.
CHUNK = 256 * 1024
_EXECABORT = resp.error_reply(
    "EXECABORT Transaction discarded because the relay refused one of its commands"
)

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


@dataclass
class _Slot:
    """One reply owed to the node, in order: the server's, the relay's, or the server's
    replaced (a refused transaction's DISCARD) or rewritten (CLIENT INFO)."""

    local: bytes | None = None
    replace: bytes | None = None
    client_info: bool = False


def upstream_opener(url: str) -> Opener:
    """A coroutine factory opening an authenticated connection to the Redis at ``url`` (for a
    ``redis+sentinel://`` URL, to the primary the sentinels name at each opening)."""
    parts = urlsplit(url)
    user, password = parts.username, parts.password
    db = parts.path.strip("/") if parts.scheme != "unix" else ""
    tls = connection.tls_context(url)
    primary: Callable[[], tuple[str, int]] | None = None
    if parts.scheme in connection.SENTINEL_SCHEMES:
        sentinels = connection.sentinel_url(url)
        user, password, db = sentinels.username, sentinels.password, str(sentinels.db)
        primary = sentinels.primary_address
        if sentinels.tls:
            tls = connection.tls_context(f"rediss://primary/?{parts.query}")
    auth: list[bytes] = []
    if password:
        name = unquote(user) if user else None
        auth = [b"AUTH", *([name.encode()] if name else []), unquote(password).encode()]

    async def open_() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if parts.scheme == "unix":
            opening = asyncio.open_unix_connection(parts.path, limit=CHUNK)
        else:
            if primary is not None:
                host, port = await asyncio.to_thread(primary)
            else:
                host, port = parts.hostname or "localhost", parts.port or 6379
            opening = asyncio.open_connection(host, port, ssl=tls, limit=CHUNK)
        reader, writer = await asyncio.wait_for(opening, defaults.SOCKET_CONNECT_TIMEOUT)
        keepalive(writer)
        hello = [auth] if auth else []
        if db and db != "0":
            hello.append([b"SELECT", db.encode()])
        for command in hello:
            writer.write(resp.encode_command(command))
            line = await reader.readline()
            if not line.startswith(b"+"):
                writer.close()
                raise ConnectionError(
                    f"Redis at {connection.redact(url)} refused the relay: {line.decode().strip()}"
                )
        return reader, writer

    return open_


def keepalive(writer: asyncio.StreamWriter) -> None:
    """TCP keepalive (and, on Linux, a bound on unacknowledged data), so a connection to a host
    that vanished is noticed in about a minute instead of TCP's quarter of an hour."""
    sock = writer.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
            if hasattr(socket, option):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 60_000)


class Session:
    """One node connection and its upstream connection."""

    def __init__(
        self,
        policy: Policy,
        down: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        up: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.policy = policy
        self.down_reader, self.down_writer = down
        self.up_reader, self.up_writer = up
        peer = self.down_writer.get_extra_info("peername") or ("?", 0)
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.slots: asyncio.Queue[_Slot | None] = asyncio.Queue()
        self.in_multi = False
        self.aborted = False
        self.refused = 0

    async def run(self) -> None:
        tasks = [asyncio.ensure_future(self._requests()), asyncio.ensure_future(self._replies())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            self.close()

    def close(self) -> None:
        for writer in (self.down_writer, self.up_writer):
            writer.close()

    async def _requests(self) -> None:
        reader = hiredis.Reader()
        while True:
            data = await self.down_reader.read(CHUNK)
            if not data:
                return
            reader.feed(data)
            out: list[bytes] = []
            while (command := reader.gets()) is not False:
                if not isinstance(command, list) or not all(isinstance(a, bytes) for a in command):
                    log.warning("relay: closing %s: not a RESP command", self.peer)
                    return
                out += self._handle(command)
            if out:
                self.up_writer.write(b"".join(out))
                await self.up_writer.drain()

    def _handle(self, command: list[bytes]) -> list[bytes]:
        """Queue the reply slot of one command; the bytes to send upstream for it."""
        name = command[0].upper() if command else b""
        if name == b"EXEC" and self.in_multi and self.aborted:
            self.in_multi = self.aborted = False
            self.slots.put_nowait(_Slot(replace=_EXECABORT))
            return [resp.encode_command([b"DISCARD"])]
        try:
            forward = self.policy.check(command)
        except Refused as exc:
            self.refused += 1
            what = name.decode(errors="replace")[:40]
            # redis-py's optional handshake extras (CLIENT MAINT_NOTIFICATIONS) are routine
            level = logging.DEBUG if name == b"CLIENT" else logging.WARNING
            log.log(level, "relay: refused %s from %s: %s", what, self.peer, exc)
            if self.in_multi:
                self.aborted = True
            self.slots.put_nowait(_Slot(local=resp.error_reply(f"ERR rdispy relay: {exc}")))
            return []
        if name == b"MULTI":
            self.in_multi, self.aborted = True, False
        elif name in (b"EXEC", b"DISCARD"):
            self.in_multi = self.aborted = False
        self.slots.put_nowait(_Slot(client_info=forward.client_info))
        return [resp.encode_command(forward.command)]

    async def _replies(self) -> None:
        buf = bytearray()
        scanner = resp.ReplyScanner()
        while True:
            slot = await self.slots.get()
            if slot is None:
                return
            if slot.local is not None:
                self.down_writer.write(slot.local)
            else:
                while (end := scanner.scan(buf)) is None:
                    data = await self.up_reader.read(CHUNK)
                    if not data:
                        return
                    buf += data
                reply = bytes(buf[:end])
                del buf[:end]
                if slot.replace is not None:
                    reply = slot.replace
                elif slot.client_info:
                    reply = self._rewrite_client_info(reply)
                self.down_writer.write(reply)
            await self.down_writer.drain()  # returns at once unless the node reads slowly

    def _rewrite_client_info(self, reply: bytes) -> bytes:
        """CLIENT INFO as the node would see it directly: ``addr=`` is the node's address (the
        worker registers it as its IP), not the relay's."""
        kind = reply[:1]
        if kind not in (b"$", b"="):
            return reply
        body = reply[reply.index(b"\r\n") + 2 : -2]
        fields = [
            b"addr=" + self.peer.encode() if f.startswith(b"addr=") else f for f in body.split(b" ")
        ]
        return resp.bulk_reply(b" ".join(fields), kind)
