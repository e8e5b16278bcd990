from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from pyngest.protocol.step_ids import hash_step_id
from tests.integration.server.harness import Call, Harness, done, function_config, ops

STEP = hash_step_id("work")


async def gql(h: Harness, query: str, **variables: Any) -> dict[str, Any]:
    assert h.http is not None
    resp = await h.http.post("/v0/gql", json={"query": query, "variables": variables})
    body = resp.json()
    assert resp.status_code == 200 and not body.get("errors"), body
    return dict(body["data"])


async def gql_error(h: Harness, query: str, **variables: Any) -> str:
    assert h.http is not None
    body = (await h.http.post("/v0/gql", json={"query": query, "variables": variables})).json()
    assert body.get("errors"), body
    return str(body["errors"][0]["message"])


async def one_step_app(call: Call) -> tuple:
    """Runs one step, then returns the event's data; fails when data.fail is set."""
    event = call.body["event"]
    if STEP in call.body["steps"]:
        if event["data"].get("fail"):
            return 500, {"X-Inngest-SDK": "inngest-py:v0.5.19", "x-inngest-no-retry": "true"}, {
                "name": "Error", "message": "boom"}
        return done({"ok": True, "n": event["data"].get("n")})
    return ops({"op": "StepRun", "id": STEP, "name": "work", "displayName": "work", "data": {"step": 1}})


async def running(tmp_path: Path, **config: Any) -> AsyncIterator[Harness]:
    """A started harness with one function, ``test-work`` (see :func:`one_step_app`)."""
    h = Harness(tmp_path, **config)
    await h.start()
    h.app.script = one_step_app
    await h.register(function_config(h.app, "work"))
    try:
        yield h
    finally:
        await h.stop()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async for h in running(tmp_path):
        yield h


class SyncableApp:
    """An app URL that answers the server's sync PUT by registering the harness's functions,
    as an SDK does (POST /fn/register), so createApp, updateApp and syncApp can succeed."""

    def __init__(self, h: Harness, *functions: str) -> None:
        self.h = h
        self.functions = functions
        self.runner: web.AppRunner | None = None

    async def __aenter__(self) -> str:
        async def put(request: web.Request) -> web.Response:
            url = (await request.json())["url"]
            fns = [function_config(self.h.app, n) for n in self.functions]
            assert self.h.http is not None
            resp = await self.h.http.post("/fn/register", json={
                "url": url, "appName": "test", "sdk": "py:v0.5.19", "framework": "fast_api",
                "v": "0.1", "deployType": "ping", "functions": fns})
            return web.Response(status=resp.status_code, body=resp.content, content_type="application/json")

        app = web.Application()
        app.router.add_put("/api/inngest", put)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/api/inngest"

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()
