"""Environments across the processes of a cluster: a branch made through one process (by a sync)
is used by another at once (an event sent to it), and a branch event never triggers production."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from pyngest.protocol import signing
from pyngest.server.environments import BRANCH_ARCHIVE_MS
from pyngest.server.model import DEFAULT_ENV
from tests.integration.cluster.harness import Cluster
from tests.integration.server.harness import Call, done, function_config

KEY = "signkey-prod-" + "ef" * 32
AUTH = {"Authorization": f"Bearer {signing.hash_signing_key(KEY)}"}
DAY = 86_400_000


async def _runs(http: httpx.AsyncClient, event_id: str, env: str | None = None) -> list[dict[str, Any]]:
    headers = {**AUTH, **({"x-inngest-env": env} if env else {})}
    resp = await http.get(f"/v1/events/{event_id}/runs", headers=headers)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


async def test_a_branch_made_through_one_node_is_used_by_another_at_once(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, nodes=2, mode="start", signing_key=KEY, event_keys=["key"])
    await cluster.start()
    try:
        async def script(call: Call) -> tuple:
            return done({"fn": call.body["ctx"]["fn_id"]})

        cluster.app.script = script
        a, b = cluster.nodes
        fn = function_config(cluster.app, "order", triggers=[{"event": "shop/order"}])
        body = {"appName": "shop", "url": cluster.app.url, "sdk": "py:v0.5.19", "functions": [fn]}
        for env in (None, "feature-9"):
            headers = {**AUTH, **({"x-inngest-env": env} if env else {})}
            resp = await a.http.post("/fn/register", json=body, headers=headers)
            assert resp.status_code == 200, resp.text
        # straight to the other process: it learns of the branch (or makes it, finding it made)
        sent = await b.http.post("/e/key?x-inngest-env=feature-9", json={"name": "shop/order"})
        assert sent.status_code == 200, sent.text
        branch_event = sent.json()["ids"][0]
        prod_event = (await b.http.post("/e/key", json={"name": "shop/order"})).json()["ids"][0]
        branches = [e for e in b.service.registry.envs.envs.values() if e.name == "feature-9"]
        assert len(branches) == 1 and branches[0].parent_id == DEFAULT_ENV
        branch_fn = next(f for f in a.service.registry.functions.values() if f.env_id == branches[0].id)
        deadline = time.monotonic() + 20
        while True:
            got = await _runs(a.http, branch_event, "feature-9"), await _runs(a.http, prod_event)
            if all(r and r[0]["status"] == "Completed" for r in got):
                break
            assert time.monotonic() < deadline, got
            await asyncio.sleep(0.02)
        assert [r["function_id"] for r in got[0]] == [branch_fn.id]
        assert [r["environment_id"] for r in got[1]] == [DEFAULT_ENV]
        assert await _runs(a.http, branch_event) == []  # production does not see the branch's event
    finally:
        await cluster.stop()


async def test_branch_auto_archive_is_done_once_and_every_node_refuses_the_branch(tmp_path: Path) -> None:
    """Both processes' timers wake at the same test-clock moment and run the archiving together:
    one archives the branch, the other finds it done; both refuse its events from then on."""
    cluster = Cluster(tmp_path, nodes=2, mode="start", signing_key=KEY, event_keys=["key"])
    await cluster.start()
    try:
        async def script(call: Call) -> tuple:
            return done("ok")

        cluster.app.script = script
        a, b = cluster.nodes
        fn = function_config(cluster.app, "order", triggers=[{"event": "shop/order"}])
        body = {"appName": "shop", "url": cluster.app.url, "sdk": "py:v0.5.19", "functions": [fn]}
        resp = await a.http.post("/fn/register", json=body, headers={**AUTH, "x-inngest-env": "preview-7"})
        assert resp.status_code == 200, resp.text
        await cluster.advance(DAY)
        # a deploy through the other process moves the date on for both
        resp = await b.http.post("/fn/register", json=body, headers={**AUTH, "x-inngest-env": "preview-7"})
        assert resp.status_code == 200, resp.text
        branch = next(e for e in a.service.registry.envs.envs.values() if e.name == "preview-7")
        deadline = time.monotonic() + 10
        while a.service.registry.envs.envs[branch.id].auto_archive_ms != cluster.clock.now_ms() + BRANCH_ARCHIVE_MS:
            assert time.monotonic() < deadline, "node a did not read the deploy made through node b"
            await asyncio.sleep(0.02)
        await cluster.advance(BRANCH_ARCHIVE_MS - 1)
        for node in (a, b):
            assert (await node.http.post("/e/key?x-inngest-env=preview-7", json={"name": "shop/order"})).status_code \
                == 200
        await cluster.advance(1)
        for node in (a, b):
            resp = await node.http.post("/e/key?x-inngest-env=preview-7", json={"name": "shop/order"})
            assert resp.status_code == 401 and resp.json()["error"] == "Event key not found"
        deadline = time.monotonic() + 10
        while not all(n.service.registry.envs.envs[branch.id].archived_ms for n in (a, b)):
            assert time.monotonic() < deadline, "the archive was not written down and read by both nodes"
            await asyncio.sleep(0.02)
        assert a.service.registry.envs.auto_archived + b.service.registry.envs.auto_archived == 1
        rows = [e for e in await a.service.store.list_envs() if e.id == branch.id]
        assert rows[0].archived_ms == rows[0].auto_archive_ms == cluster.clock.now_ms()
        # production keeps working on both
        assert (await b.http.post("/e/key", json={"name": "shop/order"})).status_code == 200
    finally:
        await cluster.stop()
