"""REST routes the dashboard's operations offer, and the OpenAPI document checked against the
router both ways."""

from __future__ import annotations

import asyncio

from openapi_spec_validator import validate
from starlette.routing import Route

from pyngest.protocol.durations import iso_ms
from pyngest.server.api.app import build_app
from pyngest.server.registry import normalize_url
from tests.integration.dashboard.conftest import SyncableApp
from tests.integration.server.harness import Harness


def _routes(app: object) -> set[tuple[str, str]]:
    inner = app
    while not hasattr(inner, "router"):
        inner = inner.app  # type: ignore[attr-defined]
    out = set()
    for r in inner.router.routes:  # type: ignore[attr-defined]
        if isinstance(r, Route):
            for m in r.methods or []:
                if m != "HEAD":
                    out.add((m.lower(), r.path))
    return out


async def test_openapi_document_is_valid_and_matches_the_routes(harness: Harness) -> None:
    assert harness.http is not None
    doc = (await harness.http.get("/openapi.json")).json()
    validate(doc)
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    served = _routes(build_app(harness.service))
    rest = {(m, p) for m, p in served if p.startswith("/v1/")}
    rest -= {("post", "/v1/signals"), ("post", "/v1/checkpoint/{run_id}/async"),
             ("post", "/v1/http/runs/{run_id}/async")}  # SDK protocol routes, not the REST API
    assert {(m, p) for m, p in documented if p.startswith("/v1/")} == rest
    assert documented - rest <= served


async def test_management_routes(harness: Harness) -> None:
    http = harness.http
    assert http is not None
    [app] = (await http.get("/v1/apps")).json()["data"]
    assert app["name"] == "test" and app["function_count"] == 1
    [fn] = (await http.get("/v1/functions")).json()["data"]
    assert fn["slug"] == "test-work" and fn["paused"] is False
    sent = (await http.post("/v1/events", json=[{"name": "test/work", "data": {"n": 1}}])).json()["data"]
    [run] = await harness.run_ended(sent["ids"][0])
    rerun = (await http.post(f"/v1/runs/{run['run_id']}/rerun")).json()["data"]
    assert rerun["run_id"] != run["run_id"]
    invoked = await http.post("/v1/functions/test-work/invoke", json={"data": {"n": 2}})
    assert invoked.status_code == 200 and invoked.json()["data"]["event_id"]
    paused = (await http.post("/v1/functions/test-work/pause", json={"cancel_running": False})).json()["data"]
    assert paused["paused"] is True
    assert (await http.post("/v1/functions/test-work/resume")).json()["data"]["paused"] is False
    missing = await http.post("/v1/functions/nope/pause")
    assert missing.status_code == 404 and "not found" in missing.json()["error"]
    bad = await http.post("/v1/events", json={"data": {}})
    assert bad.status_code == 400


async def test_bulk_cancellation_and_replay_over_rest(harness: Harness) -> None:
    http = harness.http
    assert http is not None
    since = iso_ms(harness.clock.now_ms() - 60_000)
    ids = await harness.send({"name": "test/work", "data": {"fail": True}})
    await harness.run_ended(ids[0])
    created = await http.post("/v1/cancellations", json={
        "app_id": "test", "function_id": "test-work", "started_after": since, "if": "event.data.n == 1"})
    assert created.status_code == 201
    body = created.json()  # the created cancellation itself, as the cancellation guide shows
    assert body["function_id"] == "test-work" and body["matched"] == 0 and body["if"] == "event.data.n == 1"
    wrong_app = await http.post("/v1/cancellations", json={"app_id": "other", "function_id": "test-work"})
    assert wrong_app.status_code == 400
    listed = (await http.get("/v1/cancellations?function_id=test-work")).json()["data"]
    assert [c["id"] for c in listed] == [body["id"]]
    replay = await http.post("/v1/replays", json={"function_id": "test-work", "from": since, "statuses": ["Failed"]})
    assert replay.status_code == 201 and replay.json()["data"]["total"] == 1
    for _ in range(300):
        [rec] = (await http.get("/v1/replays")).json()["data"]
        if rec["finished_at"]:
            break
        await asyncio.sleep(0.02)
    assert rec["status"] == "completed" and rec["scheduled"] == 1
    bad = await http.post("/v1/replays", json={"function_id": "test-work", "from": since, "statuses": ["Nope"]})
    assert bad.status_code == 400


async def test_app_routes_add_edit_resync_and_delete(harness: Harness) -> None:
    http = harness.http
    assert http is not None
    await harness.service.syncer.start()  # the harness registers apps directly; these go over HTTP
    [app] = (await http.get("/v1/apps")).json()["data"]
    assert app["url"] == normalize_url(harness.app.url) and app["sdk_language"] == "py"
    fns = (await http.get("/v1/apps/test/functions")).json()["data"]
    assert [f["slug"] for f in fns] == ["test-work"]
    assert (await http.get("/v1/apps/nope/functions")).status_code == 404
    dead = "http://127.0.0.1:9/api/inngest"
    async with SyncableApp(harness, "work") as url:
        moved = await http.patch(f"/v1/apps/{app['id']}", json={"url": url})
        assert moved.status_code == 200 and moved.json()["data"]["url"] == normalize_url(url)
        assert moved.json()["data"]["sync_error"] is None
        synced = await http.post(f"/v1/apps/{app['id']}/sync")
        assert synced.status_code == 200 and synced.json()["data"]["function_count"] == 1
        refused = await http.patch(f"/v1/apps/{app['id']}", json={"url": dead})
        assert refused.status_code == 502 and "could not reach" in refused.json()["data"]["sync_error"]
        assert (await http.patch(f"/v1/apps/{app['id']}", json={})).status_code == 400
        deleted = await http.delete(f"/v1/apps/{app['id']}")
        assert deleted.status_code == 200 and deleted.json()["data"] == {"id": app["id"], "deleted": True}
        assert (await http.get("/v1/apps")).json()["data"] == []
        assert (await http.delete(f"/v1/apps/{app['id']}")).status_code == 404
        added = await http.post("/v1/apps", json={"url": url})
        assert added.status_code == 200 and added.json()["data"]["error"] is None
        [back] = (await http.get("/v1/apps")).json()["data"]
        assert back["url"] == normalize_url(url) and added.json()["data"]["app_id"] == back["id"]
    gone = await http.post(f"/v1/apps/{back['id']}/sync")
    assert gone.status_code == 502 and "could not reach" in gone.json()["data"]["sync_error"]
    bad = await http.post("/v1/apps", json={"url": dead})
    assert bad.status_code == 502 and "could not reach" in bad.json()["data"]["error"]
    assert (await http.post("/v1/apps", json={"url": "ftp://x"})).status_code == 400
