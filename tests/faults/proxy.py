"""A TCP proxy in a thread of the test process: optionally terminates TLS (valkey-server from the
wheel has no TLS), can be pointed at another backend (a replica that took over), and can hold
its traffic (a replication link that lags)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading


class Proxy:
    def __init__(self, backend_port: int, tls: ssl.SSLContext | None = None) -> None:
        self.backend_port = backend_port
        self.tls = tls
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing: asyncio.Event | None = None

    def start(self) -> Proxy:
        self._thread.start()
        self._flowing = self._call(self._event())
        self._server = self._call(asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _event(self) -> asyncio.Event:
        event = asyncio.Event()
        event.set()
        return event

    def hold(self) -> None:
        """Stop forwarding (what is not forwarded yet is lost when the connections are cut)."""
        assert self._flowing is not None
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def switch(self, backend_port: int) -> None:
        """New connections go to ``backend_port``; open ones are cut (as a failover does)."""
        self.backend_port = backend_port
        self._call(self._cut())

    async def _cut(self) -> None:
        for writer in list(self._writers):
            writer.close()
        if self._flowing is not None:  # held data goes nowhere now: it is lost
            self._flowing.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    assert self._flowing is not None
                    await self._flowing.wait()
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._writers -= {writer, up_writer}

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            await self._cut()
            await asyncio.sleep(0.05)

        with contextlib.suppress(Exception):
            self._call(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        with contextlib.suppress(Exception):
            self._loop.close()
