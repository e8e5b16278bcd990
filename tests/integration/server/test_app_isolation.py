"""A hung, slow or flooded app delays only its own runs (issue 13, row 1).

The hung app is a real socket server that accepts connections, reads the request and never
answers: each request to it stays in flight for the whole step timeout (two hours by default).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.server.harness import Call, FakeApp, Harness, Reply, done, function_config

# far below the step timeout (2 h): a run of a healthy app is never held up by the hung one
PROMPTLY_S = 20.0


class HungApp:
    """Accepts connections and never answers; counts requests in flight per function slug."""

    def __init__(self) -> None:
        self.open: dict[str, int] = {}
        self.seen: dict[str, int] = {}
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/inngest"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        line = await reader.readline()
        slug = line.decode().split("fnId=", 1)[-1].split("&", 1)[0]
        self.open[slug] = self.open.get(slug, 0) + 1
        self.seen[slug] = self.seen.get(slug, 0) + 1
        try:
            while await reader.read(65536):
                pass  # never answer
        finally:
            self.open[slug] -= 1

    def in_flight(self) -> int:
        return sum(self.open.values())

    async def stop(self) -> None:
        for w in self._writers:
            w.close()
        if self._server is not None:
            self._server.close()


async def _register(h: Harness, name: str, url: str, *functions: dict[str, Any]) -> None:
    outcome = await h.service.registry.register({
        "appName": name, "url": url, "sdk": "py:v0.5.19", "framework": "fast_api", "functions": list(functions),
    })
    await h.service.after_sync(outcome)


async def _until(cond: Any, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


async def _answer(call: Call) -> Reply:
    return done({"ok": True})


@pytest.fixture
async def hung() -> Any:
    app = HungApp()
    await app.start()
    yield app
    await app.stop()


async def test_a_hung_app_holds_no_queue_worker(tmp_path: Path, hung: HungApp) -> None:
    """Many more requests hung on one app than there are queue workers: another app's event
    still becomes a run whose first request arrives promptly."""
    h = Harness(tmp_path, queue_workers=4, app_requests=20)
    await h.start()
    try:
        h.app.script = _answer
        await _register(h, "hung", hung.url, function_config(FakeApp(port=hung.port), "stuck"))
        await h.register(function_config(h.app, "ok"))
        await h.send(*[{"name": "test/stuck", "data": {"i": i}} for i in range(60)])
        await _until(lambda: hung.in_flight() >= 20, PROMPTLY_S, "the hung app's requests in flight")
        await h.settle()
        assert hung.in_flight() == 20, "the per-app limit bounds the requests in flight to one app"
        (event_id,) = await h.send({"name": "test/ok"})
        await _until(lambda: len(h.app.calls) >= 1, PROMPTLY_S, "the healthy app's first request")
        runs = await h.run_ended(event_id, timeout=PROMPTLY_S)
        assert runs[0]["status"] == "Completed"
        assert hung.in_flight() == 20 and sum(hung.seen.values()) == 20, "parked jobs are neither lost nor run twice"
    finally:
        await h.stop()


async def test_a_function_limit_keeps_room_for_the_app_s_other_functions(tmp_path: Path, hung: HungApp) -> None:
    h = Harness(tmp_path, app_requests=6, function_requests=2)
    await h.start()
    try:
        stuck_app = FakeApp(port=hung.port)
        await _register(h, "hung", hung.url, function_config(stuck_app, "one"), function_config(stuck_app, "two"))
        await h.send(*[{"name": "test/one"} for _ in range(10)], *[{"name": "test/two"} for _ in range(10)])
        await _until(lambda: hung.in_flight() >= 4, PROMPTLY_S, "requests in flight for both functions")
        await h.settle()
        assert hung.open == {"test-one": 2, "test-two": 2}
    finally:
        await h.stop()


async def test_parked_requests_start_as_slots_free(tmp_path: Path) -> None:
    """With one slot per app, a slow app's runs all complete, one request at a time, each once."""
    h = Harness(tmp_path, app_requests=1)
    await h.start()
    try:
        in_flight, peak = [0], [0]

        async def slow(call: Call) -> Reply:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            await asyncio.sleep(0.01)
            in_flight[0] -= 1
            return done(call.body["event"]["data"]["i"])

        h.app.script = slow
        await h.register(function_config(h.app, "slow"))
        ids = await h.send(*[{"name": "test/slow", "data": {"i": i}} for i in range(12)])
        for event_id in ids:
            (run,) = await h.run_ended(event_id, timeout=PROMPTLY_S)
            assert run["status"] == "Completed"
        assert peak[0] == 1
        assert len(h.app.calls) == 12
    finally:
        await h.stop()
