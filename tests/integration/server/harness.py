"""An in-process pyngest service with a test clock, and a scripted fake SDK app.

The fake app is a real HTTP server on loopback; each request it receives is handed to a script
(an async function) that decides the response, so tests can exercise exact protocol shapes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiohttp import web

from pyngest.clock import TestClock
from pyngest.protocol import headers as H
from pyngest.protocol import signing
from pyngest.server.api.app import build_app
from pyngest.server.config import ServerConfig
from pyngest.server.service import Service
from tests import backends

SDK_HEADERS = {"X-Inngest-SDK": "inngest-py:v0.5.19", "x-inngest-req-version": "2"}


@dataclass
class Call:
    step_id: str
    body: dict[str, Any]
    raw: bytes
    headers: dict[str, str]


Reply = tuple[int, dict[str, str], Any]
Script = Callable[[Call], Awaitable[Reply]]


def ops(*items: dict[str, Any], version: str = "2") -> Reply:
    return 206, {**SDK_HEADERS, "x-inngest-req-version": version}, list(items)


def done(value: Any) -> Reply:
    return 200, dict(SDK_HEADERS), value


@dataclass
class FakeApp:
    script: Script | None = None
    calls: list[Call] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/inngest", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/inngest"

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        call = Call(request.query.get("stepId", ""), orjson.loads(raw), raw, dict(request.headers))
        self.calls.append(call)
        assert self.script is not None, "no script set"
        status, headers, body = await self.script(call)
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        return web.Response(status=status, headers=headers, body=data, content_type=None)


def function_config(app: FakeApp, fn_id: str, *, triggers: list[dict[str, Any]] | None = None,
                    retries: int = 0, **extra: Any) -> dict[str, Any]:
    slug = f"test-{fn_id}"
    return {
        "id": slug,
        "name": fn_id,
        "triggers": triggers or [{"event": f"test/{fn_id}"}],
        "steps": {"step": {"id": "step", "name": "step", "retries": {"attempts": retries},
                           "runtime": {"type": "http", "url": f"{app.url}?fnId={slug}&stepId=step"}}},
        **extra,
    }


class Harness:
    def __init__(self, directory: Path, **config: Any) -> None:
        self.clock = TestClock(start_ms=1_800_000_000_000)
        self.backend = backends.BACKEND
        self.schema: str | None = None
        if self.backend == "postgres":
            self.schema = backends.schema_for(directory)
            config.setdefault("postgres_uri", backends.postgres_uri(self.schema))
            config.setdefault("redis_uri", backends.REDIS_URI)
        config.setdefault("queue_workers", 8)
        self.config = ServerConfig(sqlite_dir=directory, discovery=False, poll=False, **config)
        self.service = Service(self.config, clock=self.clock)
        self.app = FakeApp()
        self.http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        await self.app.start()
        if self.schema is not None:
            await backends.create_schema(self.schema)
        await self.service.start(sync_apps=False)
        headers = {}
        if self.config.signing_key:
            headers["Authorization"] = f"Bearer {signing.hash_signing_key(self.config.signing_key)}"
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(self.service)),
                                      base_url="http://localhost", headers=headers)

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        self.service.config.shutdown_grace_s = 1
        await self.service.stop()
        await self.app.stop()

    async def register(self, *functions: dict[str, Any]) -> None:
        outcome = await self.service.registry.register({
            "appName": "test", "url": self.app.url, "sdk": "py:v0.5.19", "framework": "fast_api",
            "functions": list(functions),
        })
        await self.service.after_sync(outcome)

    async def send(self, *events: dict[str, Any], headers: dict[str, str] | None = None) -> list[str]:
        assert self.http is not None
        resp = await self.http.post("/e/key", json=list(events), headers=headers or {})
        body = resp.json()
        assert resp.status_code == 200, body
        return list(body["ids"])

    async def runs_for(self, event_id: str) -> list[dict[str, Any]]:
        assert self.http is not None
        resp = await self.http.get(f"/v1/events/{event_id}/runs")
        return list(resp.json()["data"])

    async def run_ended(self, event_id: str, timeout: float = 5.0, count: int = 1) -> list[dict[str, Any]]:
        """Wait (in real time) for the runs an event started to end."""
        deadline = time.monotonic() + timeout
        while True:
            runs = await self.runs_for(event_id)
            if len(runs) >= count and all(r["status"] not in ("Queued", "Running") for r in runs):
                return runs
            if time.monotonic() > deadline:
                raise AssertionError(f"runs did not end in time: {runs}")
            await asyncio.sleep(0.01)

    async def settle(self, rounds: int = 20) -> None:
        """Let in-process work run (real time) without moving the test clock."""
        for _ in range(rounds):
            await asyncio.sleep(0.005)
        if self.service.cluster is not None:
            await self.service.cluster.quiesce()

    async def advance(self, ms: int) -> None:
        """Let pending work finish at the current time, then move the clock."""
        await self.settle()
        self.clock.advance(ms)
        await self.settle()


def error_op(op_id: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"op": "StepError", "id": op_id, "name": op_id, "error": {"name": "Error", "message": message}, **extra}


__all__ = ["H", "FakeApp", "Harness", "ops", "done", "function_config", "error_op", "SDK_HEADERS"]
