"""Webhooks (docs/webhooks.md): ``POST /e/{webhook key}`` through the transform into stored
events that trigger functions, failed requests kept and replayed, and the REST routes."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pyngest.protocol.ids import new_ulid
from pyngest.server.store.base import WebhookFailure
from tests import backends
from tests.integration.server.harness import Harness, done, function_config
from tests.sqlite_versions import as_version_3

GITHUB = """
function transform(evt, headers = {}, queryParams = {}, raw = "") {
  var kind = headers["X-Github-Event"];
  return [
    {name: "github/" + kind, data: {repo: evt.repository, branch: queryParams["x-inngest-env"][0]}, id: evt.id},
    {name: "github/raw", data: {raw: raw, sig: headers["X-Hub-Signature"]}, ts: 1700000000000},
  ];
}
"""


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path, webhook_timeout_ms=1000)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


async def _create(h: Harness, **body: Any) -> dict[str, Any]:
    assert h.http is not None
    resp = await h.http.post("/v1/webhooks", json=body)
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["data"])


async def _event(h: Harness, internal_id: str) -> dict[str, Any]:
    assert h.http is not None
    return dict((await h.http.get(f"/v1/events/{internal_id}")).json()["data"])


async def test_default_transform_stores_the_body_as_data_and_triggers_functions(h: Harness) -> None:
    assert h.http is not None
    h.app.script = _done
    await h.register(function_config(h.app, "on-hook", triggers=[{"event": "webhook/request.received"}]))
    hook = await _create(h, name="Stripe")
    assert hook["transform"] is None and hook["url"] == f"http://localhost/e/{hook['key']}"
    resp = await h.http.post(f"/e/{hook['key']}", json={"type": "charge.failed", "amount": 3})
    assert resp.status_code == 200, resp.text
    [event_id] = resp.json()["ids"]
    event = await _event(h, event_id)
    assert event["name"] == "webhook/request.received"
    assert event["data"] == {"type": "charge.failed", "amount": 3}
    assert event["ts"] == h.clock.now_ms()
    [run] = await h.run_ended(event_id)
    assert run["status"] == "Completed" and run["output"] == {"amount": 3}
    # ordinary event keys keep working beside webhook keys
    [plain] = await h.send({"name": "test/plain", "data": {}})
    assert (await _event(h, plain))["name"] == "test/plain"


async def _done(call: Any) -> tuple:
    return done({"amount": call.body["event"]["data"].get("amount")})


async def test_transform_gets_headers_query_params_and_raw_body_and_may_return_many_events(h: Harness) -> None:
    assert h.http is not None
    hook = await _create(h, name="GitHub", transform=GITHUB)
    body = b'{"id": "delivery-1", "repository": "acme/api"}'
    resp = await h.http.post(f"/e/{hook['key']}?x-inngest-env=branch-1", content=body,
                             headers={"x-github-event": "push", "X-HUB-SIGNATURE": "sha1=abc",
                                      "content-type": "application/json"})
    assert resp.status_code == 200, resp.text
    first, second = [await _event(h, i) for i in resp.json()["ids"]]
    assert first["name"] == "github/push" and first["id"] == "delivery-1"
    assert first["data"] == {"repo": "acme/api", "branch": "branch-1"}
    assert second["name"] == "github/raw" and second["ts"] == 1700000000000
    assert second["data"] == {"raw": body.decode(), "sig": "sha1=abc"}


async def test_failed_requests_are_kept_with_a_clear_error_and_replay_after_the_transform_is_fixed(h: Harness) -> None:
    assert h.http is not None
    hook = await _create(h, name="Linear", transform="function transform(evt) { throw new Error('no type: ' + evt.id) }")
    refused = await h.http.post(f"/e/{hook['key']}?a=1", json={"id": 7}, headers={"X-Test": "yes"})
    assert refused.status_code == 400
    answer = refused.json()
    assert answer["ids"] == [] and "the transform threw an error: Error: no type: 7" in answer["error"]
    not_json = await h.http.post(f"/e/{hook['key']}", content=b"not json")
    assert not_json.status_code == 400 and "the request body is not JSON" in not_json.json()["error"]
    listed = (await h.http.get(f"/v1/webhooks/{hook['id']}/failures")).json()["data"]
    assert [f["id"] for f in listed] == [not_json.json()["failure_id"], answer["failure_id"]]
    kept = listed[1]
    assert kept["body"] == '{"id":7}' and kept["query"] == "a=1" and kept["headers"]["X-Test"] == "yes"
    assert kept["replayed_at"] is None and "Error: no type: 7" in kept["error"]
    # still failing: the error is updated, nothing stored
    again = await h.http.post(f"/v1/webhooks/failures/{kept['id']}/replay")
    assert again.status_code == 400 and "no type" in again.json()["error"]
    fixed = await h.http.put(f"/v1/webhooks/{hook['id']}", json={
        "transform": "function transform(evt, headers, q) { return {name: 'linear/issue', data: {id: evt.id, a: q.a}} }"})
    assert fixed.status_code == 200, fixed.text
    replayed = await h.http.post(f"/v1/webhooks/failures/{kept['id']}/replay")
    assert replayed.status_code == 200, replayed.text
    [event_id] = replayed.json()["data"]["ids"]
    assert (await _event(h, event_id))["data"] == {"id": 7, "a": ["1"]}
    after = (await h.http.get(f"/v1/webhooks/{hook['id']}/failures")).json()["data"][1]
    assert after["replayed_at"] is not None and after["event_ids"] == [event_id]


@pytest.mark.parametrize(("transform", "error"), [
    ("function transform(evt) { while (true) {} }", "ran longer than its time limit of 1000 ms"),
    ("function transform(evt) { return 'x' }", "the transform returned a string"),
    ("function transform(evt) { }", "the transform returned undefined"),
    ("function transform(evt) { return {data: evt} }", "is not a valid event: event name is empty"),
    ("function transform(evt) { return [{name: 'a'}, {name: 'inngest/x'}] }", "event 2: is not a valid event"),
    ("function transform(evt) { var a = []; while (true) { a.push(new Array(100000).fill(Math.random())); } }",
     "limit"),
])
async def test_transforms_that_give_no_events_are_refused_and_kept(h: Harness, transform: str, error: str) -> None:
    assert h.http is not None
    hook = await _create(h, name="bad", transform=transform)
    resp = await h.http.post(f"/e/{hook['key']}", json={"a": 1})
    assert resp.status_code == 400 and error in resp.json()["error"], resp.text
    assert len((await h.http.get(f"/v1/webhooks/{hook['id']}/failures")).json()["data"]) == 1
    assert (await h.http.get("/v1/events")).json()["data"] == []


async def test_webhook_crud_checks_its_input(h: Harness) -> None:
    assert h.http is not None
    for body, error in [({}, "'name' must be a non-empty string"),
                        ({"name": "x", "transform": "function ("}, "is not valid JavaScript: SyntaxError"),
                        ({"name": "x", "transform": "var t = 1"}, "must define function transform"),
                        ({"name": "x", "transform": 3}, "'transform' must be a string")]:
        resp = await h.http.post("/v1/webhooks", json=body)
        assert resp.status_code == 400 and error in resp.json()["error"], (body, resp.text)
    hook = await _create(h, name="  Clerk ")
    assert hook["name"] == "Clerk"
    renamed = (await h.http.patch(f"/v1/webhooks/{hook['id']}", json={"name": "Clerk prod"})).json()["data"]
    assert renamed["name"] == "Clerk prod" and renamed["key"] == hook["key"]
    assert [w["id"] for w in (await h.http.get("/v1/webhooks")).json()["data"]] == [hook["id"]]
    assert (await h.http.get(f"/v1/webhooks/{hook['id']}")).json()["data"]["name"] == "Clerk prod"
    assert (await h.http.delete(f"/v1/webhooks/{hook['id']}")).status_code == 200
    assert (await h.http.get(f"/v1/webhooks/{hook['id']}")).status_code == 404
    # in dev any key is an event key: the deleted webhook's key now takes events, not raw bodies
    gone = await h.http.post(f"/e/{hook['key']}", json={"type": "user.created"})
    assert gone.status_code == 400 and "event name is empty" in gone.json()["error"]


async def test_testing_a_transform_stores_nothing(h: Harness) -> None:
    assert h.http is not None
    resp = await h.http.post("/v1/webhooks/test", json={
        "transform": "function transform(evt, headers, q) { return {name: 'clerk/' + evt.type, data: {h: headers['X-A'], q: q}} }",
        "payload": '{"type": "user.created"}', "headers": {"x-a": "1"}, "query": "?b=2"})
    [event] = resp.json()["data"]["events"]
    assert event["name"] == "clerk/user.created" and event["data"] == {"h": "1", "q": {"b": ["2"]}}
    default = (await h.http.post("/v1/webhooks/test", json={"payload": {"k": 1}})).json()["data"]
    assert default["events"][0]["name"] == "webhook/request.received" and default["error"] is None
    broken = (await h.http.post("/v1/webhooks/test", json={"transform": "function transform() { null.x }",
                                                           "payload": "{}"})).json()["data"]
    assert broken["events"] == [] and "TypeError" in broken["error"]
    assert (await h.http.get("/v1/events")).json()["data"] == []


async def test_the_body_size_limit_applies_and_nothing_is_kept(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_request_bytes=4096, max_event_bytes=4096)
    await h.start()
    try:
        assert h.http is not None
        hook = await _create(h, name="big")
        resp = await h.http.post(f"/e/{hook['key']}", content=b'{"a": "' + b"x" * 5000 + b'"}')
        assert resp.status_code == 413
        tested = await h.http.post("/v1/webhooks/test", json={"payload": {"a": "x" * 5000}})
        assert tested.status_code == 400 and "over the size limit of 4096 bytes" in tested.json()["error"]
        assert (await h.http.get(f"/v1/webhooks/{hook['id']}/failures")).json()["data"] == []
    finally:
        await h.stop()


async def test_start_mode_needs_the_admin_key_to_manage_webhooks_but_not_to_deliver(tmp_path: Path) -> None:
    h = Harness(tmp_path, mode="start", signing_key="a1" * 32, event_keys=["the-event-key"])
    await h.start()
    try:
        assert h.http is not None
        hook = await _create(h, name="Resend")
        assert (await h.http.get("/v1/webhooks", headers={"Authorization": "Bearer nope"})).status_code == 401
        assert (await h.http.post("/e/wrong-key", json={"name": "x"})).status_code == 401
        resp = await h.http.post(f"/e/{hook['key']}", json={"type": "email.sent"}, headers={"Authorization": ""})
        assert resp.status_code == 200, resp.text
        await h.http.delete(f"/v1/webhooks/{hook['id']}")
        assert (await h.http.post(f"/e/{hook['key']}", json={"type": "email.sent"})).status_code == 401
    finally:
        await h.stop()


async def test_failures_are_capped_per_webhook_and_removed_by_retention(h: Harness) -> None:
    store = h.service.store
    now = h.clock.now_ms()
    for i in range(12):
        await store.add_webhook_failure(WebhookFailure(new_ulid(now + i), "hook-a", now + i, "e", b"{}", {}, ""), 10)
    await store.add_webhook_failure(WebhookFailure(new_ulid(now - 10), "hook-b", now - 10, "e", b"{}", {}, ""), 10)
    kept = await store.webhook_failures("hook-a", None, 100)
    assert [f.received_ms for f in kept] == [now + i for i in range(11, 1, -1)]
    assert len(await store.webhook_failures(None, None, 100)) == 11
    await store.purge(now, 50)
    assert await store.webhook_failures("hook-b", None, 100) == []
    assert len(await store.webhook_failures("hook-a", None, 100)) == 10


async def _gql(h: Harness, query: str, **variables: Any) -> dict[str, Any]:
    assert h.http is not None
    body = (await h.http.post("/v0/gql", json={"query": query, "variables": variables})).json()
    assert not body.get("errors"), body
    return dict(body["data"])


async def test_graphql_manages_webhooks_tests_transforms_and_replays_failures(h: Harness) -> None:
    assert h.http is not None
    made = (await _gql(h, "mutation($i: WebhookInput!) { createWebhook(input: $i) { id key path transform } }",
                       i={"name": "Intercom", "transform": "function transform(e) { return e.topic }"}))["createWebhook"]
    assert made["path"] == f"/e/{made['key']}"
    assert (await h.http.post(made["path"], json={"topic": "x"})).status_code == 400
    fix = "function transform(e) { return {name: 'intercom/' + e.topic, data: {}, ts: e.created_at * 1000} }"
    tested = (await _gql(h, "mutation($t: String, $p: String!) { testWebhookTransform(transform: $t, payload: $p) "
                            "{ events error } }", t=fix, p='{"topic": "conversation", "created_at": 1700000000}'))
    assert tested["testWebhookTransform"] == {
        "events": [{"name": "intercom/conversation", "data": {}, "ts": 1700000000000, "user": {}}], "error": None}
    await _gql(h, "mutation($id: ID!, $i: WebhookInput!) { updateWebhook(id: $id, input: $i) { id } }",
               id=made["id"], i={"transform": fix})
    listed = (await _gql(h, "{ webhooks { id name transform failures { id error body replayedAt } } }"))["webhooks"]
    [hook] = listed
    assert hook["transform"] == fix and hook["name"] == "Intercom"
    [failure] = hook["failures"]
    assert "the transform returned a string" in failure["error"] and failure["replayedAt"] is None
    replayed = (await _gql(h, "mutation($id: ID!) { replayWebhookFailure(id: $id) { ids error } }",
                           id=failure["id"]))["replayWebhookFailure"]
    assert replayed["error"] is None and len(replayed["ids"]) == 1
    assert (await _event(h, replayed["ids"][0]))["name"] == "intercom/x"
    default = (await _gql(h, "{ defaultWebhookTransform }"))["defaultWebhookTransform"]
    assert "function transform(evt" in default
    assert (await _gql(h, "mutation($id: ID!) { deleteWebhook(id: $id) }", id=made["id"]))["deleteWebhook"] == made["id"]
    assert (await _gql(h, "{ webhooks { id } }"))["webhooks"] == []


async def test_a_transform_running_does_not_hold_the_event_api(tmp_path: Path) -> None:
    """While a transform spins until its time limit, ordinary events are taken and answered."""
    h = Harness(tmp_path, webhook_timeout_ms=2000)
    await h.start()
    try:
        assert h.http is not None
        hook = await _create(h, name="slow", transform="function transform(e) { while (true) {} }")
        slow = asyncio.ensure_future(h.http.post(f"/e/{hook['key']}", json={}))
        await asyncio.sleep(0.2)  # the transform is running in its isolate by now
        sent = await h.send(*({"name": "test/beside", "data": {"n": n}} for n in range(20)))
        assert len(sent) == 20 and not slow.done()
        assert "time limit of 2000 ms" in (await slow).json()["error"]
    finally:
        await h.stop()


async def test_older_databases_gain_the_webhook_tables(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.start()
    await _create(h, name="before")
    await h.stop()
    if h.backend == "postgres":
        conn = await asyncpg.connect(backends.postgres_uri(h.schema or ""))
        try:
            await conn.execute("DROP TABLE webhooks; DROP TABLE webhook_failures; "
                               "UPDATE meta SET value = '2' WHERE key = 'schema_version'")
        finally:
            await conn.close()
    else:
        with sqlite3.connect(tmp_path / "main.db") as db:
            as_version_3(db)  # (migration 005 cannot run twice)
            db.execute("DROP TABLE webhooks")
            db.execute("DROP TABLE webhook_failures")
            db.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    # the same database opened again: the migration adds the tables
    again = type(h.service)(h.config, clock=h.clock).store
    await again.open()
    try:
        assert await again.list_webhooks() == []
        assert await again.webhook_failures(None, None, 10) == []
    finally:
        await again.close()
