"""A short path through the HTTP server for checkpoints and events (issue 16).

A checkpointing SDK sends ``POST /v1/checkpoint/{runId}/async`` once per step and waits for the
answer before the next step runs, so each one's cost is paid ten times per ten-step run. Behind
uvicorn's HTTP protocol such a request costs about three times what parsing and answering it
does (measured: 85 µs against 28 µs of server CPU per request for an app that only answers): a
request-response cycle object, the proxy-headers middleware, an event per request, the checks
of every response header, a timer per keep-alive.

:class:`LaneProtocol` is uvicorn's own HTTP protocol (httptools) with one change: a checkpoint,
or an event request (``POST /e/{key}``, each run's first request) of at most ``EVENTS_MAX_BODY``,
that arrives on an idle keep-alive HTTP/1.1 connection with its whole body announced within the
limit, is read into memory and given to the same ASGI application, through a
receive that hands over the body at once and a send that collects the answer and writes it in
one piece. The application, its guards (cross-site browser writes, the dev server's Host check),
the Bearer key's environment and every answer are those of any other request; only the
transport's plumbing is thinner. Everything else — other paths, pipelined requests, ``Expect:
100-continue``, chunked bodies, upgrades, HTTP/1.0 — goes uvicorn's way unchanged.

It leans on uvicorn's protocol's per-connection state (``url``, ``headers``, ``scope``,
``cycle``, ``parser``, ``flow``); :func:`lane_protocol` checks those are there and serves
without the short path when a uvicorn release has moved them.
"""

from __future__ import annotations

import asyncio
import http
import logging
from typing import Any

from starlette.types import ASGIApp, Message

from pyngest.server.api.limits import DEFAULT_MAX_BODY_BYTES
from pyngest.server.awake import KeepAwake

log = logging.getLogger("pyngest.api")

_PREFIXES = (b"/v1/checkpoint/", b"/v1/http/runs/")
# Events (``POST /e/{key}``) take the short path only this small: the event API checks the key
# before it reads a body, and a body this size is in memory with the request's first bytes anyway.
EVENTS_MAX_BODY = 64 * 1024

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - uvicorn without httptools support
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

# what LaneProtocol reads or sets of uvicorn's protocol, checked once (lane_protocol)
_UVICORN_STATE = ("on_message_begin", "on_url", "on_header", "on_headers_complete", "on_body",
                  "on_message_complete", "on_response_complete", "shutdown", "connection_lost")


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode("latin-1"))


_STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}


class _LaneCycle:
    """One request on the short path, in uvicorn's place of its request-response cycle: the
    fields uvicorn's protocol reads of a cycle (``connection_lost``, ``shutdown``, pipelining)."""

    __slots__ = ("body", "disconnected", "keep_alive", "message_event", "response_complete")

    def __init__(self) -> None:
        self.body = bytearray()
        self.disconnected = False
        self.keep_alive = True  # shutdown() clears it: the connection closes after the answer
        self.message_event = asyncio.Event()  # set by connection_lost
        self.response_complete = False


if HttpToolsProtocol is not None:

    class LaneProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol with checkpoints on the short path (module docstring)."""

        lane_app: ASGIApp  # the application without uvicorn's proxy-headers wrapper
        keep_awake: KeepAwake | None = None  # told of every answer (server/awake.py)
        max_body = DEFAULT_MAX_BODY_BYTES

        def on_headers_complete(self) -> None:
            if self._takes_lane():
                self.cycle = _LaneCycle()  # type: ignore[assignment]
                return
            super().on_headers_complete()

        def _takes_lane(self) -> bool:
            url: bytes = self.url
            event = url.startswith(b"/e/")
            if not event and not url.startswith(_PREFIXES):
                return False
            try:
                path = url.decode("ascii")
            except UnicodeDecodeError:
                return False
            # (on str: ``b"%" in url`` first tries the operand as an int, a TypeError each time)
            if "%" in path or "?" in path or "#" in path:
                return False
            if (len(path) == 3 or "/" in path[3:]) if event else checkpoint_run(path) is None:
                return False
            parser = self.parser
            if parser.get_method() != b"POST" or parser.get_http_version() != "1.1" or parser.should_upgrade() \
                    or not parser.should_keep_alive() or self.expect_100_continue:
                return False
            if self.limit_concurrency is not None or not (self.cycle is None or self.cycle.response_complete):
                return False  # a request before it is still being answered: uvicorn queues this one
            length = None
            for name, value in self.headers:
                if name == b"content-length":
                    length = int(value) if value.isdigit() else None
                elif name == b"transfer-encoding":
                    return False
            if length is None or length > (EVENTS_MAX_BODY if event else self.max_body):
                return False  # larger: read as it arrives, the usual way (refused when over a limit)
            scope = self.scope
            scope["method"] = "POST"
            scope["path"] = self.root_path + path
            scope["raw_path"] = self.root_path.encode("ascii") + url
            scope["query_string"] = b""
            return True

        def on_body(self, body: bytes) -> None:
            cycle = self.cycle
            if isinstance(cycle, _LaneCycle):
                cycle.body += body  # no more than Content-Length says: the parser keeps to it
                return
            super().on_body(body)

        def on_message_complete(self) -> None:
            cycle = self.cycle
            if isinstance(cycle, _LaneCycle):
                task = self.loop.create_task(self._answer(cycle, self.scope, bytes(cycle.body)))
                cycle.body = bytearray()
                task.add_done_callback(self.tasks.discard)
                self.tasks.add(task)
                return
            super().on_message_complete()

        async def _answer(self, cycle: _LaneCycle, scope: Any, body: bytes) -> None:
            started: list[Message] = []
            chunks: list[bytes] = []
            delivered = False

            async def receive() -> Message:
                nonlocal delivered
                if not delivered:
                    delivered = True
                    return {"type": "http.request", "body": body, "more_body": False}
                if not cycle.response_complete and not cycle.disconnected:
                    await cycle.message_event.wait()
                return {"type": "http.disconnect"}

            async def send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    started.append(message)
                elif message["type"] == "http.response.body":
                    chunks.append(message.get("body", b""))

            try:
                await self.lane_app(scope, receive, send)
                if not started:
                    raise RuntimeError("the application returned without starting a response")
            except Exception:
                log.exception("Exception in ASGI application (checkpoint)")
                self._write(cycle, 500, [(b"content-type", b"text/plain; charset=utf-8")], b"Internal Server Error",
                            close=True)  # what uvicorn answers too (its answer so far, if any, is not sent)
                return
            self._write(cycle, started[0]["status"], started[0].get("headers") or [], b"".join(chunks), close=False)

        def _write(self, cycle: _LaneCycle, status: int, headers: Any, body: bytes, *, close: bool) -> None:
            cycle.response_complete = True
            if cycle.disconnected or self.transport.is_closing():
                return
            out = [_STATUS_LINES.get(status) or _status_line(status)]
            for name, value in self.server_state.default_headers:
                out += (name, b": ", value, b"\r\n")
            for name, value in headers:
                name = name.lower()
                if name == b"content-length" or name == b"transfer-encoding":
                    continue  # the body is all here: its length is written below
                if name == b"connection" and value.lower().find(b"close") >= 0:
                    close = True
                    continue
                out += (name, b": ", value, b"\r\n")
            close = close or not cycle.keep_alive
            if close:
                out.append(b"connection: close\r\n")
            out += (b"content-length: %d\r\n\r\n" % len(body), body)
            self.transport.write(b"".join(out))
            if close:
                self.transport.close()
                return
            self.on_response_complete()  # uvicorn's: next pipelined request, keep-alive timer
            if self.keep_awake is not None:
                self.keep_awake.touch()  # the SDK's next checkpoint is a fraction of a millisecond away


def checkpoint_run(path: str) -> str | None:
    """The run id of a checkpoint path (``/v1/checkpoint/{id}/async``, ``/v1/http/runs/{id}/async``)."""
    for prefix in ("/v1/checkpoint/", "/v1/http/runs/"):
        if path.startswith(prefix) and path.endswith("/async"):
            run_id = path[len(prefix):-len("/async")]
            return run_id if run_id and "/" not in run_id else None
    return None


def lane_protocol(app: ASGIApp, keep_awake: KeepAwake | None = None) -> Any:
    """The HTTP protocol class to give uvicorn (``Config(http=...)``) for ``app``: the short
    path for checkpoints, or uvicorn's ``"httptools"`` when this uvicorn's protocol is not the
    one :class:`LaneProtocol` was written against. ``keep_awake`` hears of each answer given on
    the short path."""
    if HttpToolsProtocol is None or not all(hasattr(HttpToolsProtocol, name) for name in _UVICORN_STATE):
        log.debug("checkpoints take uvicorn's usual path: its HTTP protocol is not the expected one")
        return "httptools"
    return type("LaneProtocol", (LaneProtocol,), {"lane_app": app, "keep_awake": keep_awake})
