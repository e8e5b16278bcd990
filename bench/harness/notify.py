"""Completion notices over UDP on loopback.

An Inngest-style run has no "call and wait for the result" API, so the benchmark apps end each
function with one datagram naming the run's key; the load generator awaits that datagram. A
datagram costs the app a few microseconds and the server nothing, so the measurement does not
load the system it measures (polling the REST API would). The notice leaves while the app
answers its last request, before the server commits the run as completed: that commit, a
fraction of a millisecond, is outside what is timed (docs/benchmarks.md says so).
"""

from __future__ import annotations

import asyncio
import os
import socket

ENV = "BENCH_NOTIFY_ADDR"


class Completions(asyncio.DatagramProtocol):
    """Listens for notices and resolves the future waiting for each key."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[float]] = {}
        self._early: set[str] = set()
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        self.transport = transport
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.port = sock.getsockname()[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def expect(self, key: str) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if key in self._early:
            self._early.discard(key)
            fut.set_result(asyncio.get_running_loop().time())
        else:
            self._waiting[key] = fut
        return fut

    def forget(self, key: str) -> None:
        self._waiting.pop(key, None)

    def datagram_received(self, data: bytes, addr: object) -> None:
        key = data.decode()
        fut = self._waiting.pop(key, None)
        if fut is None:
            self._early.add(key)  # arrived before expect() (possible with a fast system)
        elif not fut.done():
            fut.set_result(asyncio.get_running_loop().time())

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Notifier:
    """The app side: one unconnected UDP socket, reused for every notice."""

    def __init__(self) -> None:
        host, port = os.environ[ENV].rsplit(":", 1)
        self.addr = (host, int(port))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def done(self, key: object) -> None:
        self.sock.sendto(str(key).encode(), self.addr)
