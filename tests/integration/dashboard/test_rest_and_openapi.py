"""REST routes the dashboard's operations offer, and the OpenAPI document checked against the
router both ways."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from starlette.routing import Route

from pyngest.protocol.durations import iso_ms
from pyngest.protocol.step_ids import hash_step_id
from pyngest.server.api.app import build_app
from pyngest.server.registry import normalize_url
from tests.integration.dashboard.conftest import SyncableApp, one_step_app
from tests.integration.server.harness import Call, Harness, ops


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
    # realtime: upstream's wire format (an empty 200, an event stream), written in docs/realtime.md
    rest -= {("post", "/v1/realtime/publish"), ("post", "/v1/realtime/token"), ("get", "/v1/realtime/sse")}
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


class Documented:
    """Sends REST requests and checks each answer against ``/openapi.json``: its status code is
    one the route documents, and its JSON body validates against that response's schema."""

    def __init__(self, h: Harness, doc: dict[str, Any]) -> None:
        assert h.http is not None
        self.http = h.http
        self.doc = doc
        self.routes = [(m, p, re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"))
                       for p, ops in doc["paths"].items() if p.startswith("/v1/") for m in ops]
        self.seen: set[tuple[str, str]] = set()

    async def __call__(self, method: str, url: str, status: int, **kw: Any) -> Any:
        resp = await self.http.request(method.upper(), url, **kw)
        assert resp.status_code == status, (method, url, resp.status_code, resp.text)
        [path] = [p for m, p, rx in self.routes if m == method and rx.match(url.split("?")[0])]
        responses = self.doc["paths"][path][method]["responses"]
        assert str(status) in responses, f"{method} {path} answers {status}, which the document does not list"
        schema = responses[str(status)]["content"]["application/json"]["schema"]
        validator = Draft202012Validator({**schema, "components": self.doc["components"]},
                                         format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(resp.json())]
        assert errors == [], (method, url, status, errors)
        self.seen.add((method, path))
        return resp.json()


async def test_every_rest_route_answers_as_the_openapi_document_says(harness: Harness) -> None:
    assert harness.http is not None
    doc = (await harness.http.get("/openapi.json")).json()
    api = Documented(harness, doc)
    hold = hash_step_id("hold")

    async def script(call: Call) -> tuple:
        if call.body["event"]["data"].get("hold"):
            return ops({"op": "WaitForEvent", "id": hold, "name": "test/never", "opts": {"event": "test/never", "timeout": "1h"}})
        return await one_step_app(call)

    harness.app.script = script
    since = iso_ms(harness.clock.now_ms() - 60_000)
    until = iso_ms(harness.clock.now_ms() + 60_000)
    # events and runs
    [done_event] = (await api("post", "/v1/events", 200, json=[{"name": "test/work", "data": {"n": 1}}]))["data"]["ids"]
    [run] = await harness.run_ended(done_event)
    await api("post", "/v1/events", 400, json={"data": {}})
    await api("get", "/v1/events", 200)
    await api("get", f"/v1/events/{done_event}", 200)
    await api("get", "/v1/events/01J0000000000000000000000X", 404)
    await api("get", f"/v1/events/{done_event}/runs", 200)
    await api("get", f"/v1/events/{done_event}/skips", 200)
    await api("get", "/v1/runs", 200)
    await api("get", f"/v1/runs/{run['run_id']}", 200)
    await api("get", "/v1/runs/01J0000000000000000000000X", 404)
    await api("get", "/v1/runs/not-a-run-id", 400)
    await api("delete", "/v1/runs/not-a-run-id", 400)
    await api("post", f"/v1/runs/{run['run_id']}/rerun", 200)
    await api("post", "/v1/runs/01J0000000000000000000000X/rerun", 404)
    held = await harness.send(*({"name": "test/work", "data": {"hold": True, "k": i}} for i in range(4)))
    await harness.settle(40)
    held_runs = [(await harness.runs_for(e))[0]["run_id"] for e in held]
    await api("delete", f"/v1/runs/{held_runs[0]}", 200)
    await api("post", f"/v1/runs/{held_runs[1]}/cancel", 200)
    # functions
    await api("get", "/v1/functions", 200)
    await api("post", "/v1/functions/test-work/invoke", 200, json={"data": {"n": 2}})
    await api("post", "/v1/functions/nope/invoke", 404, json={})
    await api("post", "/v1/functions/test-work/pause", 200, json={"cancel_running": False})
    await api("post", "/v1/functions/test-work/resume", 200)
    await api("post", "/v1/functions/nope/resume", 404)
    # bulk cancellation and replay
    cancel = await api("post", "/v1/cancellations", 201, json={
        "function_id": "test-work", "started_after": since, "started_before": until, "if": "event.data.k == 2"})
    await api("post", "/v1/cancellations", 400, json={"function_id": "test-work", "if": "event.data.k >"})
    await api("get", "/v1/cancellations?function_id=test-work", 200)
    await api("get", f"/v1/cancellations/{cancel['id']}", 200)
    await api("delete", f"/v1/cancellations/{cancel['id']}", 200)
    await api("get", "/v1/cancellations/nope", 404)
    replay = (await api("post", "/v1/replays", 201, json={
        "function_id": "test-work", "from": since, "until": until, "statuses": ["Cancelled"]}))["data"]
    await api("post", "/v1/replays", 400, json={"function_id": "test-work", "from": since, "statuses": ["Nope"]})
    await api("get", "/v1/replays", 200)
    await api("get", f"/v1/replays/{replay['id']}", 200)
    await api("delete", f"/v1/replays/{replay['id']}", 200)
    await api("delete", "/v1/replays/nope", 404)
    # apps
    await harness.service.syncer.start()  # the harness registers apps directly; these go over HTTP
    [app] = (await api("get", "/v1/apps", 200))["data"]
    await api("get", "/v1/apps/test/functions", 200)
    await api("get", "/v1/apps/nope/functions", 404)
    dead = "http://127.0.0.1:9/api/inngest"
    async with SyncableApp(harness, "work") as url:
        await api("patch", f"/v1/apps/{app['id']}", 200, json={"url": url})
        await api("post", f"/v1/apps/{app['id']}/sync", 200)
        await api("patch", f"/v1/apps/{app['id']}", 502, json={"url": dead})
        await api("patch", f"/v1/apps/{app['id']}", 400, json={})
        await api("delete", f"/v1/apps/{app['id']}", 200)
        await api("delete", f"/v1/apps/{app['id']}", 404)
        added = (await api("post", "/v1/apps", 200, json={"url": url}))["data"]
    await api("post", f"/v1/apps/{added['app_id']}/sync", 502)
    await api("post", "/v1/apps", 502, json={"url": dead})
    await api("post", "/v1/apps", 400, json={"url": "ftp://x"})
    # webhooks
    hook = (await api("post", "/v1/webhooks", 200, json={"name": "hook"}))["data"]
    await api("post", "/v1/webhooks", 400, json={"name": ""})
    await api("get", "/v1/webhooks", 200)
    await api("get", f"/v1/webhooks/{hook['id']}", 200)
    await api("get", "/v1/webhooks/nope", 404)
    await api("put", f"/v1/webhooks/{hook['id']}", 200,
              json={"transform": "function transform(e) { return {name: 'x/' + e.k, data: e} }"})
    await api("patch", f"/v1/webhooks/{hook['id']}", 400, json={"transform": "function ("})
    await api("post", "/v1/webhooks/test", 200, json={"payload": {"k": 1}})
    assert (await harness.http.post(f"/e/{hook['key']}", content=b"not json")).status_code == 400
    [failure] = (await api("get", f"/v1/webhooks/{hook['id']}/failures", 200))["data"]
    await api("post", f"/v1/webhooks/failures/{failure['id']}/replay", 400)
    await api("post", "/v1/webhooks/failures/nope/replay", 404)
    await api("delete", f"/v1/webhooks/{hook['id']}", 200)
    documented = {(m, p) for m, p, _ in api.routes}
    # environments and keys are start mode's: checked by the next test
    assert {(m, p) for m, p in documented - api.seen if not p.startswith(("/v1/envs", "/v1/keys/"))} == set()


async def test_environment_and_key_routes_answer_as_the_openapi_document_says(tmp_path: Path) -> None:
    key = "signkey-prod-" + "ab" * 32
    h = Harness(tmp_path, mode="start", signing_key=key, event_keys=["k1"])
    await h.start()
    try:
        assert h.http is not None
        api = Documented(h, (await h.http.get("/openapi.json")).json())
        staging = (await api("post", "/v1/envs", 201, json={"name": "staging"}))["data"]
        await api("post", "/v1/envs", 409, json={"name": "staging"})
        await api("post", "/v1/envs", 400, json={"name": ""})
        await api("get", "/v1/envs", 200)
        await api("post", f"/v1/envs/{staging['id']}/archive", 200)
        await api("post", f"/v1/envs/{staging['id']}/unarchive", 200)
        await api("post", "/v1/envs/nope/archive", 404)
        assert (await h.http.post("/e/k1?x-inngest-env=preview", json={"name": "a/b"})).status_code == 200
        branch = next(e for e in (await h.http.get("/v1/envs")).json()["data"] if e["name"] == "preview")
        await api("patch", f"/v1/envs/{branch['id']}", 200, json={"auto_archive": False})
        await api("patch", f"/v1/envs/{staging['id']}", 400, json={"auto_archive": False})
        await api("patch", "/v1/envs/nope", 404, json={"auto_archive": False})
        await api("get", "/v1/keys/event", 200)
        created = (await api("post", "/v1/keys/event", 201, json={"name": "web"}))["data"]
        await api("post", "/v1/keys/event", 400, json={"name": "web", "filter": {"ips": {}}})
        await api("patch", f"/v1/keys/event/{created['id']}", 200, json={"name": "web-2"})
        await api("patch", "/v1/keys/event/nope", 404, json={"name": "x"})
        rotated = (await api("post", f"/v1/keys/event/{created['id']}/rotate", 200))["data"]
        await api("post", "/v1/keys/event/nope/rotate", 404)
        await api("delete", f"/v1/keys/event/{rotated['id']}", 200)
        await api("delete", f"/v1/keys/event/{rotated['id']}", 404)
        await api("get", "/v1/keys/signing", 200)
        await api("post", "/v1/keys/signing/rotate", 409)
        nxt = (await api("post", "/v1/keys/signing", 201))["data"]
        await api("post", "/v1/keys/signing", 409)
        await api("post", "/v1/keys/signing/rotate", 200)
        old = [k for k in (await api("get", "/v1/keys/signing", 200))["data"] if k["state"] == "previous"]
        await api("delete", f"/v1/keys/signing/{nxt['id']}", 409)
        await api("delete", "/v1/keys/signing/nope", 404)
        await api("delete", f"/v1/keys/signing/{old[0]['id']}", 200)  # the harness's key: the last call
        documented = {(m, p) for m, p, _ in api.routes if p.startswith(("/v1/envs", "/v1/keys/"))}
        assert documented - api.seen == set()
    finally:
        await h.stop()
