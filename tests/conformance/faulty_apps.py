"""Apps that misbehave on the wire, for the torture test: one hangs (accepts the request and
never answers), one answers garbage, one resets the connection. Each is a bare TCP server (no
SDK), registered with ``/fn/register`` like an app, and logs every request it got: the run and
the attempt the server sent (the request body's ``ctx``).

They run on an event loop of their own, in a thread, so synchronous tests can use them.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import threading
from typing import Any

import requests

from tests.integration.server.test_app_isolation import HungApp

MODES = ("hung", "garbage", "reset")

def _answer(status: str, headers: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\n{headers}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode() + body


# What the garbage app answers, at random: a page that is no SDK's, and an SDK's "206 steps"
# that is not JSON. The server must treat both as a failed attempt (retried, then the run fails).
_GARBAGE = (
    _answer("200 OK", "Content-Type: text/html\r\n", b"<html>\x00\xff\xfe garbage</"),
    _answer("206 Partial Content", "Content-Type: application/json\r\nX-Inngest-SDK: inngest-py:v0.5.19\r\n",
            b'[{"op": "Step", \x01'),
)


class FaultyApp(HungApp):
    """:class:`HungApp` (the hung app of the app-isolation tests), extended: it reads each whole
    request, logs its run and attempt, then hangs, answers garbage, or resets, by ``mode``."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        assert mode in MODES, mode
        self.mode = mode
        self.requests: list[tuple[str, int]] = []  # (run id, attempt) of every request, in order

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            ctx = json.loads(await reader.readexactly(length)).get("ctx") or {}
            self.requests.append((str(ctx.get("run_id")), int(ctx.get("attempt", -1))))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, ConnectionError):
            writer.close()
            return
        if self.mode == "hung":
            try:
                while await reader.read(65536):
                    pass  # never answer; the server gives up at its step timeout
            except ConnectionError:
                pass
        elif self.mode == "garbage":
            writer.write(random.choice(_GARBAGE))
            await writer.drain()
            writer.close()
        else:  # a reset: close with SO_LINGER 0, so the kernel sends RST, not FIN
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

    def attempts(self) -> dict[str, set[int]]:
        """Run id -> the attempts of it this app was sent."""
        out: dict[str, set[int]] = {}
        for run_id, attempt in list(self.requests):
            out.setdefault(run_id, set()).add(attempt)
        return out


class FaultyApps:
    """The three faulty apps on one event loop in a background thread."""

    def __init__(self) -> None:
        self.apps = {mode: FaultyApp(mode) for mode in MODES}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        for app in self.apps.values():
            asyncio.run_coroutine_threadsafe(app.start(), self._loop).result(timeout=10)

    def stop(self) -> None:
        for app in self.apps.values():
            asyncio.run_coroutine_threadsafe(app.stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def register(self, server_url: str, retries: int) -> dict[str, str]:
        """Sync each app with one function (``torture-<mode>-go``, triggered by
        ``torture-<mode>/go``) that retries ``retries`` times; return mode -> event name."""
        events = {}
        for mode, app in self.apps.items():
            slug = f"torture-{mode}-go"
            events[mode] = f"torture-{mode}/go"
            body: dict[str, Any] = {
                "appName": f"torture-{mode}", "url": app.url, "sdk": "py:v0.5.19", "framework": "fast_api",
                "v": "0.1", "deployType": "ping",
                "functions": [{
                    "id": slug, "name": slug, "triggers": [{"event": events[mode]}],
                    "steps": {"step": {"id": "step", "name": "step", "retries": {"attempts": retries},
                                       "runtime": {"type": "http", "url": f"{app.url}?fnId={slug}&stepId=step"}}},
                }],
            }
            res = requests.post(f"{server_url}/fn/register", json=body, timeout=30)
            assert res.status_code == 200, f"registering the {mode} app: {res.status_code} {res.text}"
        return events
