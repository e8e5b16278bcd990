"""A small TCP proxy for tests: a load balancer in front of several pyngest processes, as a
deployment has one (each connection goes to the next backend that accepts it; a dead one is
skipped), or a cable in front of PostgreSQL or Redis that a test can cut and mend."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
from urllib.parse import urlsplit


class Balancer:
    def __init__(self, backends: list[tuple[str, int]], port: int) -> None:
        self.backends = backends
        self.port = port
        self._turn = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._cut = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)

    def cut(self) -> None:
        """Drop every connection and refuse new ones, as a lost network or a dead server would."""
        async def cut() -> None:
            self._cut = True
            for writer in list(self._open):
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(cut(), self._loop).result(timeout=10)

    def mend(self) -> None:
        async def mend() -> None:
            self._cut = False

        asyncio.run_coroutine_threadsafe(mend(), self._loop).result(timeout=10)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        upstream = None
        for _ in range(len(self.backends)):
            host, port = self.backends[next(self._turn) % len(self.backends)]
            try:
                upstream = await asyncio.open_connection(host, port)
                break
            except OSError:
                continue
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream
        self._open |= {writer, up_writer}
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._open -= {writer, up_writer}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def cable(uri: str) -> Balancer:
    """A proxy in front of the server a ``postgresql://`` or ``redis://`` URI names, started."""
    parts = urlsplit(uri)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proxy = Balancer([(parts.hostname or "127.0.0.1", parts.port or 0)], port)
    proxy.start()
    return proxy


def through(proxy: Balancer, uri: str) -> str:
    """``uri`` with its host and port replaced by the proxy's."""
    return urlsplit(uri)._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()
