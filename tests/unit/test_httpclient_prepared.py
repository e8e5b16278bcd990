"""The lean HTTP client's rendered heads (``Prepared``, the SDK's checkpoints) and its answer
parsing when the head arrives in pieces, against a raw socket server that records the bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pyngest.httpclient import HTTPClient, Prepared

Answer = Callable[[bytes], list[bytes]]


class RawServer:
    """Reads one request per connection turn and writes the answer in the given pieces."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                pieces = self.answer(request)
                for piece in pieces:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.01)  # each piece its own read on the client
                if pieces and pieces[0].startswith(b"HTTP/1.0"):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Answer], asyncio.Future[RawServer]]]:
    servers: list[RawServer] = []

    async def start(answer: Answer) -> RawServer:
        server = RawServer(answer)
        await server.start()
        servers.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()


def test_a_prepared_head_renders_what_post_sends() -> None:
    prepared = Prepared.render("http://example.com:8288/v1/x?y=1", {"content-type": "application/json", "x-a": "b"})
    assert prepared.request(b'{"k":1}') == (
        b"POST /v1/x?y=1 HTTP/1.1\r\nHost: example.com:8288\r\nContent-Length: 7\r\n"
        b"content-type: application/json\r\nx-a: b\r\n\r\n{\"k\":1}"
    )
    assert Prepared.render("https://example.com/", {}).request(b"") == (
        b"POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n"
    )


async def test_post_and_post_prepared_send_the_same_bytes(serve: Callable[[Answer], Any]) -> None:
    server = await serve(lambda _: [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
    url = f"http://127.0.0.1:{server.port}/v1/checkpoint/r/async"
    client = HTTPClient(max_body=1024)
    try:
        a = await client.post(url, {"x-a": "1"}, b"abc", timeout=5)
        b = await client.post_prepared(Prepared.render(url, {"x-a": "1"}), b"abc", timeout=5)
    finally:
        client.close()
    assert (a.status, a.body) == (b.status, b.body) == (200, b"ok")
    assert server.requests[0] == server.requests[1] == (
        f"POST /v1/checkpoint/r/async HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Length: 3\r\n"
        "x-a: 1\r\n\r\nabc"
    ).encode()


@pytest.mark.parametrize("pieces", [
    [b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok"],
    [b"HTTP/1.1 201 Created\r\nCont", b"ent-Length: 2\r\nX-A: 1\r\n", b"\r\n", b"o", b"k"],
    [b"HTT", b"P/1.1 201 Created\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok"],  # too short to tell
    [b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n", b"1\r\no\r\n", b"1\r\nk\r\n0\r\n\r\n"],
])
async def test_an_http11_answer_in_pieces(serve: Callable[[Answer], Any], pieces: list[bytes]) -> None:
    server = await serve(lambda _: pieces)
    client = HTTPClient(max_body=1024)
    try:
        for _ in range(2):  # and again on the kept-alive connection
            res = await client.post(f"http://127.0.0.1:{server.port}/", {}, b"", timeout=5)
            assert (res.status, res.body, res.headers["x-a"]) == (201, b"ok", "1")
    finally:
        client.close()


@pytest.mark.parametrize("pieces", [
    [b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nok"],
    [b"HTTP/1.0 200 OK\r\nTransfer-", b"Encoding: chunked\r\n", b"\r\no", b"k"],
])
async def test_an_http10_answer_in_pieces_is_read_to_the_close(serve: Callable[[Answer], Any],
                                                               pieces: list[bytes]) -> None:
    server = await serve(lambda _: pieces)
    client = HTTPClient(max_body=1024)
    try:
        res = await client.post(f"http://127.0.0.1:{server.port}/", {}, b"", timeout=5)
    finally:
        client.close()
    assert (res.status, res.body) == (200, b"ok")
