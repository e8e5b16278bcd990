"""A small HTTP/1.1 client for the one request the server makes most: POSTing an execution
request to an app.

Why not aiohttp here: every step is one request, and aiohttp's general-purpose request
machinery (URL objects, header multidicts, tracing hooks) cost a quarter of the server's CPU
under load. This client does only what this path needs: POST a body with a few headers over a
pooled keep-alive connection (TLS when the URL is https), parse the answer with httptools
(fixed-length or chunked), cap its size, and time out.

A response with no length is read until the connection closes. That includes every HTTP/1.0
response, whatever ``Transfer-Encoding`` it carries: only HTTP/1.1 messages are chunked (RFC 9112
§6.1), and a proxy speaking HTTP/1.0 (Python's ``http.server``, say) may pass an app's
``Transfer-Encoding: chunked`` header along with the body it has already de-chunked.

A connection taken from the pool may have been closed by the app while idle; if it fails
before any byte of the answer arrived, the request is sent once more on a fresh connection (as
urllib3 does). The request is an execution request, which SDKs handle idempotently.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools

_MAX_HEAD = 64 * 1024  # beyond this, the head goes to the parser as it is (which refuses it)


class HTTPError(Exception):
    """The request failed without an answer (connection refused, reset, timed out...)."""


class ResponseTooLarge(HTTPError):
    pass


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # with the query string

    @staticmethod
    def parse(url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HTTPError(f"not an http(s) URL: {url}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return Target(parts.scheme, parts.hostname, port, path)

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


@functools.lru_cache(maxsize=1024)
def _target(url: str) -> Target:
    """``Target.parse``, remembered: the same few URLs are posted to over and over (an app's
    endpoint; a run's checkpoint URL, once per step)."""
    return Target.parse(url)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A POST's target and head, rendered once for the many bodies sent with them (a run's
    checkpoints, one per step): the request line and Host, then the other headers."""

    target: Target
    start: bytes  # the request line and Host, each with its CRLF
    rest: bytes  # the other headers and the blank line that ends the head

    @staticmethod
    def render(url: str, headers: dict[str, str]) -> Prepared:
        target = _target(url)
        start = f"POST {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"
        rest = "".join([f"{k}: {v}\r\n" for k, v in headers.items()]) + "\r\n"
        return Prepared(target, start.encode("latin-1"), rest.encode("latin-1"))

    def with_path(self, path: str) -> Prepared:
        """The same head for another path on the same origin."""
        target = Target(self.target.scheme, self.target.host, self.target.port, path)
        start = f"POST {path} HTTP/1.1\r\nHost: {target.host_header}\r\n"
        return Prepared(target, start.encode("latin-1"), self.rest)

    def request(self, body: bytes) -> bytes:
        return b"%sContent-Length: %d\r\n%s%s" % (self.start, len(body), self.rest, body)


class _Connection(asyncio.Protocol):
    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        # The parser has read a whole answer (or none yet): ready for the next one on this
        # kept-alive connection, as llhttp is. Making one per request cost more than the parsing.
        self._parser_clean = True
        self.closed = False
        self._waiter: asyncio.Future[Response] | None = None
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._headers: dict[str, str] = {}
        self._name = b""
        self._body: list[bytes] = []
        self._size = 0
        self._got_bytes = False
        self._keep_alive = False
        self._head: bytes | None = b""  # the status line and headers, until they are complete

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        if self._head is not None:
            if not self._head and data.startswith(b"HTTP/1.1 "):
                self._head = None  # only an HTTP/1.0 head is held back (see _take_head)
            else:
                data = self._take_head(data)
            if not data:
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # pragma: no cover - never asked for
            self._fail(HTTPError("the app tried to upgrade the connection"))
        except httptools.HttpParserError as exc:
            self._fail(HTTPError(f"the app's answer is not valid HTTP: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            # a body without a length ends at the close of the connection
            if self._status and self._headers.get("content-length") is None and "chunked" not in self._headers.get(
                "transfer-encoding", ""
            ) and self._got_bytes:
                self._finish()
                return
            self._fail(_Stale() if not self._got_bytes else HTTPError(
                f"the app closed the connection mid-answer{': ' + str(exc) if exc else ''}"))

    def _take_head(self, data: bytes) -> bytes:
        """Hold bytes back until the head is complete; then hand it to the parser without
        ``Transfer-Encoding`` if the response is HTTP/1.0 (its body ends at the close)."""
        assert self._head is not None
        buf = self._head + data
        end = buf.find(b"\r\n\r\n")
        if end < 0 and len(buf) < _MAX_HEAD:
            self._head = buf
            return b""
        self._head = None
        if end < 0 or not buf.startswith(b"HTTP/1.0 "):
            return buf
        lines = buf[:end].split(b"\r\n")
        kept = [line for line in lines if not line.lower().startswith(b"transfer-encoding:")]
        return b"\r\n".join(kept) + buf[end:]

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()
        # asked now: after the message completes, httptools always answers False
        self._keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self.max_body:
            self._fail(ResponseTooLarge(f"the app's answer is larger than {self.max_body} bytes"))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._parser_clean = True
        self._finish()

    # -- requests
    def _finish(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(self._status, self._headers, b"".join(self._body)))

    def _fail(self, exc: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def send(self, request: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._reset()
        if not self._parser_clean:
            self.parser = httptools.HttpResponseParser(self)
        self._parser_clean = False
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._waiter

    def reusable(self) -> bool:
        return not self.closed and self._keep_alive

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _expire(fut: asyncio.Future[Response], timeout: float) -> None:
    if not fut.done():
        fut.set_exception(HTTPError(f"timed out after {timeout:.0f}s waiting for the app"))


class _Stale(HTTPError):
    """A pooled connection was found closed before any answer: safe to try a fresh one."""


class HTTPClient:
    def __init__(self, *, max_body: int, connect_timeout: float = 10.0, max_idle_per_host: int = 512) -> None:
        self.max_body = max_body
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle_per_host
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None

    async def post(self, url: str, headers: dict[str, str], body: bytes, *, timeout: float) -> Response:
        return await self.post_prepared(Prepared.render(url, headers), body, timeout=timeout)

    async def post_prepared(self, prepared: Prepared, body: bytes, *, timeout: float) -> Response:
        """:meth:`post` with the URL and headers rendered beforehand (:meth:`Prepared.render`)."""
        target = prepared.target
        request = prepared.request(body)
        key = (target.scheme, target.host, target.port)
        conn, reused = await self._acquire(key, target)
        try:
            try:
                response = await self._exchange(conn, request, timeout)
            except _Stale:
                if not reused:
                    raise HTTPError("the app closed the connection without answering") from None
                conn, reused = await self._acquire(key, target, fresh=True)
                response = await self._exchange(conn, request, timeout)
        except BaseException:
            conn.close()
            raise
        self._release(key, conn)
        return response

    @staticmethod
    async def _exchange(conn: _Connection, request: bytes, timeout: float) -> Response:
        # a timer that fails the answer's future (cheaper than asyncio.wait_for on every step)
        fut = conn.send(request)
        timer = asyncio.get_running_loop().call_later(timeout, _expire, fut, timeout)
        try:
            return await fut
        finally:
            timer.cancel()

    async def _acquire(self, key: tuple[str, str, int], target: Target, fresh: bool = False) -> tuple[_Connection, bool]:
        pool = self._idle.get(key)
        while pool and not fresh:
            conn = pool.pop()
            if not conn.closed:
                return conn, True
        loop = asyncio.get_running_loop()
        kwargs: dict[str, Any] = {}
        if target.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            kwargs = {"ssl": self._ssl, "server_hostname": target.host}
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self.max_body), target.host, target.port, **kwargs),
                self.connect_timeout,
            )
        except TimeoutError:
            raise HTTPError(f"timed out connecting to {target.host}:{target.port}") from None
        except OSError as exc:
            raise HTTPError(f"could not connect to {target.host}:{target.port}: {exc.strerror or exc}") from exc
        return conn, False

    def _release(self, key: tuple[str, str, int], conn: _Connection) -> None:
        if not conn.reusable():
            conn.close()
            return
        pool = self._idle.setdefault(key, deque())
        if len(pool) >= self.max_idle:
            conn.close()
        else:
            pool.append(conn)

    def close(self) -> None:
        for pool in self._idle.values():
            for conn in pool:
                conn.close()
        self._idle.clear()
