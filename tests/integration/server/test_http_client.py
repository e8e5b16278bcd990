"""The lean HTTP client the executor posts execution requests with, against a real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from pyngest.httpclient import HTTPClient, HTTPError, ResponseTooLarge


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[tuple[str, int]]]]:
    peers: list[tuple[str, int]] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        body = await request.read()
        mode = request.query.get("mode", "")
        if mode == "chunked":
            resp = web.StreamResponse(status=206, headers={"X-Inngest-SDK": "t"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for part in (b"[", b'{"op":"StepRun"}', b"]"):
                await resp.write(part)
            await resp.write_eof()
            return resp
        if mode == "slow":
            await asyncio.sleep(5)
        if mode == "big":
            return web.Response(body=b"x" * 2048)
        if mode == "close":
            return web.Response(body=b"bye", headers={"Connection": "close"})
        return web.Response(body=body[::-1], headers={"X-Echo": request.headers.get("X-Test", ""),
                                                       "Set-Cookie": "a=1"})

    app = web.Application()
    app.router.add_post("/api", handle)
    runner = web.AppRunner(app, keepalive_timeout=0.3)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/api", peers
    finally:
        await runner.cleanup()


async def test_posts_reuse_a_kept_alive_connection(server: tuple[str, list[tuple[str, int]]]) -> None:
    url, peers = server
    client = HTTPClient(max_body=1024)
    try:
        first = await client.post(url + "?a=1", {"X-Test": "yes"}, b"abc", timeout=5)
        second = await client.post(url, {}, b"xyz", timeout=5)
        assert (first.status, first.body, first.headers["x-echo"]) == (200, b"cba", "yes")
        assert second.body == b"zyx"
        assert peers[0] == peers[1], "the second request went over the same connection"
    finally:
        client.close()


async def test_chunked_answers_and_closing_servers(server: tuple[str, list[tuple[str, int]]]) -> None:
    url, peers = server
    client = HTTPClient(max_body=1024)
    try:
        resp = await client.post(url + "?mode=chunked", {}, b"", timeout=5)
        assert resp.status == 206 and resp.body == b'[{"op":"StepRun"}]' and resp.headers["x-inngest-sdk"] == "t"
        closed = await client.post(url + "?mode=close", {}, b"", timeout=5)
        assert closed.body == b"bye"
        after = await client.post(url, {}, b"1", timeout=5)
        assert after.body == b"1" and peers[-1] != peers[-2], "a closed connection is not reused"
        await asyncio.sleep(0.6)  # the server drops the idle connection (keep-alive 0.3 s)
        again = await client.post(url, {}, b"2", timeout=5)
        assert again.body == b"2", "a connection the server closed while idle is replaced"
    finally:
        client.close()


async def test_limits_timeouts_and_refusals_are_errors(server: tuple[str, list[tuple[str, int]]]) -> None:
    url, _ = server
    client = HTTPClient(max_body=1024)
    try:
        with pytest.raises(ResponseTooLarge):
            await client.post(url + "?mode=big", {}, b"", timeout=5)
        with pytest.raises(HTTPError, match="timed out"):
            await client.post(url + "?mode=slow", {}, b"", timeout=0.2)
        ok = await client.post(url, {}, b"ok", timeout=5)
        assert ok.body == b"ko"
        with pytest.raises(HTTPError, match="could not connect"):
            await client.post("http://127.0.0.1:1/api", {}, b"", timeout=5)
        with pytest.raises(HTTPError, match="not an http"):
            await client.post("ftp://x/y", {}, b"", timeout=5)
    finally:
        client.close()


async def test_an_http10_answer_is_read_to_the_close_whatever_its_transfer_encoding() -> None:
    # RFC 9112 §6.1: only HTTP/1.1 messages are chunked. The head arrives in two pieces, cut
    # inside the Transfer-Encoding header, and the body ends when the server closes.
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 201 Created\r\nX-Inngest-SDK: t\r\nTransfer-Enc")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"oding: chunked\r\n\r\n  \n ")
        await writer.drain()
        writer.write(b'{"status": 200}')
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = HTTPClient(max_body=1024)
    try:
        resp = await client.post(f"http://127.0.0.1:{port}/api", {}, b"{}", timeout=5)
        assert (resp.status, resp.body) == (201, b'  \n {"status": 200}')
        assert "transfer-encoding" not in resp.headers
    finally:
        client.close()
        server.close()
        await server.wait_closed()
