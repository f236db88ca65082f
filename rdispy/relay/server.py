"""The running relay: a TCP listener for nodes (one ``proxy.Session`` each) and a UDP responder
for discovery broadcasts; stops cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from dataclasses import dataclass
from typing import cast

from rdispy import connection, wire
from rdispy.keys import Keys
from rdispy.relay import discovery
from rdispy.relay.policy import Policy
from rdispy.relay.proxy import Session, keepalive, upstream_opener

log = logging.getLogger(__name__)


@dataclass
class RelayConfig:
    url: str
    keys: Keys
    name: str
    host: str = "0.0.0.0"
    port: int = discovery.RELAY_PORT
    secret: str | None = None
    discovery_port: int | None = discovery.DISCOVERY_PORT  # None: do not answer broadcasts
    connect_timeout: float | None = None


class _Responder(asyncio.DatagramProtocol):
    def __init__(self, config: RelayConfig, advertised_port: int) -> None:
        self.config = config
        self.port = advertised_port
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        parsed = discovery.parse_request(data)
        if parsed is None or self.transport is None:
            return
        cluster, nonce = parsed
        if cluster != self.config.keys.cluster:
            return
        peer = str(addr[0])
        host = self.config.host
        if host in ("", "0.0.0.0"):
            try:
                host = discovery.local_address_towards(peer)
            except OSError:
                return
        log.info("relay %s: answering discovery from %s with %s", self.config.name, peer, host)
        reply = discovery.answer(cluster, nonce, f"{host}:{self.port}", self.config.secret)
        self.transport.sendto(reply, addr)


class Relay:
    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.policy = Policy(config.keys, wire.Signer(config.secret), config.name)
        self.open_upstream = upstream_opener(config.url)
        self.sessions: dict[asyncio.Task[None], Session | None] = {}

    def run(self) -> int:
        """Check that Redis answers, then serve until SIGINT/SIGTERM."""
        client = connection.connect(self.config.url)
        stop = {"now": False}
        with contextlib.ExitStack() as stack:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous = signal.signal(sig, lambda *_: stop.update(now=True))
                stack.callback(signal.signal, sig, previous)
            connection.wait_for(
                client, self.config.url, self.config.connect_timeout, lambda: stop["now"]
            )
        client.close()
        if stop["now"]:
            return 0
        asyncio.run(self.serve())
        return 0

    async def serve(self, started: asyncio.Event | None = None) -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stopping.set)
        server = await asyncio.start_server(
            self._accept, self.config.host or None, self.config.port, reuse_address=True
        )
        port = server.sockets[0].getsockname()[1]
        udp = None
        if self.config.discovery_port is not None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.bind(("", self.config.discovery_port))
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _Responder(self.config, port), sock=sock
            )
        log.info(
            "relay %s listening on %s:%d for cluster %s%s, forwarding to %s",
            self.config.name,
            self.config.host,
            port,
            self.config.keys.cluster,
            f", discovery on UDP {self.config.discovery_port}" if udp else "",
            connection.redact(self.config.url),
        )
        if started is not None:
            started.set()
        try:
            await stopping.wait()
        finally:
            log.info("relay %s: stopping", self.config.name)
            server.close()
            if udp is not None:
                udp.close()
            for session in self.sessions.values():
                if session is not None:
                    session.close()  # both ends: its tasks see EOF and end
            if self.sessions:
                await asyncio.wait(list(self.sessions), timeout=2.0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.sessions[task] = None
        keepalive(writer)
        try:
            try:
                up = await self.open_upstream()
            except (OSError, ConnectionError, asyncio.TimeoutError) as exc:
                log.warning(
                    "relay %s: Redis unreachable (%s); dropping a node", self.config.name, exc
                )
                writer.close()
                return
            session = self.sessions[task] = Session(self.policy, (reader, writer), up)
            await session.run()
        finally:
            del self.sessions[task]
