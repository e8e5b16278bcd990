from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

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
