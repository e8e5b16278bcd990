"""Webhooks across processes sharing one PostgreSQL database: one made or changed on one process
takes requests on the others (each reads the webhooks again every 2 s while requests arrive)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.integration.cluster.harness import Cluster


async def test_a_webhook_made_on_one_process_takes_requests_on_another(tmp_path: Path) -> None:
    c = Cluster(tmp_path, nodes=2)
    await c.start()
    try:
        a, b = c.nodes
        made = await a.http.post("/v1/webhooks", json={
            "name": "Clerk", "transform": "function transform(e) { return {name: 'clerk/' + e.type, data: {}} }"})
        hook = made.json()["data"]
        first = await b.http.post(f"/e/{hook['key']}", json={"type": "user.created"})
        assert first.status_code == 200, first.text
        changed = await a.http.put(f"/v1/webhooks/{hook['id']}", json={
            "transform": "function transform(e) { return {name: 'clerk2/' + e.type, data: {}} }"})
        assert changed.status_code == 200
        c.clock.advance(2_500)  # past the refresh interval: b's next request reads the webhooks again

        async def name_on_b() -> str:
            resp = await b.http.post(f"/e/{hook['key']}", json={"type": "user.deleted"})
            [event_id] = resp.json()["ids"]
            return str((await b.http.get(f"/v1/events/{event_id}")).json()["data"]["name"])

        for _ in range(100):
            if await name_on_b() == "clerk2/user.deleted":
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("process b never saw the changed transform")
        await a.http.delete(f"/v1/webhooks/{hook['id']}")
        c.clock.advance(2_500)
        for _ in range(100):
            gone = await b.http.post(f"/e/{hook['key']}", json={"type": "x"})
            if gone.status_code == 400 and "event name is empty" in gone.json()["error"]:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("process b kept the deleted webhook")
    finally:
        await c.stop()
