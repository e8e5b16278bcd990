"""Webhooks per environment (issue 15), in start mode: a webhook belongs to the environment the
caller selects, is managed only there, stores its events there (or, with ``x-inngest-env``, in a
branch of it, created on demand; an archived branch refused as upstream), and its events trigger
only that environment's functions. Failed requests stay with their webhook's environment and
replay there.

Runs on both stores (``PYNGEST_TEST_BACKEND=postgres``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pyngest.server.model import DEFAULT_ENV
from tests.integration.server.harness import Harness, Reply, done
from tests.integration.server.test_environments import (
    EVENT_KEY,
    SIGNING_KEY,
    bearer,
    runs_of,
    sync,
    until,
)

TO_ORDER = "function transform(evt) { return {name: 'shop/order', data: evt}; }"


async def _done() -> Reply:
    return done("ok")


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path, mode="start", signing_key=SIGNING_KEY, event_keys=[EVENT_KEY])
    await harness.start()
    harness.app.script = lambda call: _done()
    try:
        yield harness
    finally:
        await harness.stop()


def http(h: Harness) -> httpx.AsyncClient:
    assert h.http is not None
    return h.http


def headers(key: str, env: str | None = None) -> dict[str, str]:
    out = bearer(key)
    if env:
        out["x-inngest-env"] = env
    return out


async def staging(h: Harness) -> tuple[str, str]:
    """A custom environment: (its id, its signing key)."""
    resp = await http(h).post("/v1/envs", json={"name": "staging"}, headers=bearer(SIGNING_KEY))
    assert resp.status_code == 201, resp.text
    return resp.json()["data"]["id"], resp.json()["data"]["signing_key"]


async def create_hook(h: Harness, key: str, name: str, transform: str | None = TO_ORDER,
                      env: str | None = None) -> dict[str, Any]:
    resp = await http(h).post("/v1/webhooks", json={"name": name, "transform": transform}, headers=headers(key, env))
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["data"])


async def event_env(h: Harness, event_id: str, key: str, env: str | None = None) -> int:
    """The status reading the event gets with this key (and x-inngest-env): 200 where it is."""
    return (await http(h).get(f"/v1/events/{event_id}", headers=headers(key, env))).status_code


async def test_a_webhook_is_managed_only_within_its_environment(h: Harness) -> None:
    staging_id, staging_key = await staging(h)
    prod_hook = await create_hook(h, SIGNING_KEY, "prod hook")
    stage_hook = await create_hook(h, staging_key, "staging hook")
    assert prod_hook["environment_id"] == DEFAULT_ENV and stage_hook["environment_id"] == staging_id

    async def names(key: str, env: str | None = None) -> list[str]:
        resp = await http(h).get("/v1/webhooks", headers=headers(key, env))
        assert resp.status_code == 200, resp.text
        return [w["name"] for w in resp.json()["data"]]

    assert await names(SIGNING_KEY) == ["prod hook"]
    assert await names(staging_key) == ["staging hook"]
    # the default environment's key reaches staging by naming it, as the other management APIs do
    assert await names(SIGNING_KEY, "staging") == ["staging hook"]
    # another environment's webhook is not there: read, change, delete, its failures
    path = f"/v1/webhooks/{stage_hook['id']}"
    for method, body in (("GET", None), ("PUT", {"name": "taken"}), ("DELETE", None)):
        resp = await http(h).request(method, path, json=body, headers=bearer(SIGNING_KEY))
        assert resp.status_code == 404, (method, resp.text)
    assert (await http(h).get(f"{path}/failures", headers=bearer(SIGNING_KEY))).status_code == 404
    resp = await http(h).put(f"/v1/webhooks/{prod_hook['id']}", json={"name": "x"}, headers=bearer(staging_key))
    assert resp.status_code == 404
    # within it, all of it works
    resp = await http(h).put(path, json={"name": "renamed"}, headers=bearer(staging_key))
    assert resp.status_code == 200 and resp.json()["data"]["name"] == "renamed"
    # GraphQL: the operation's environment
    query = "{ webhooks { name environmentID path } }"
    for key, env, expected in ((SIGNING_KEY, None, ("prod hook", DEFAULT_ENV)),
                               (staging_key, None, ("renamed", staging_id)),
                               (SIGNING_KEY, "staging", ("renamed", staging_id))):
        resp = await http(h).post("/v0/gql", json={"query": query}, headers=headers(key, env))
        hooks = resp.json()["data"]["webhooks"]
        assert [(w["name"], w["environmentID"]) for w in hooks] == [expected]
    resp = await http(h).post("/v0/gql", headers=bearer(SIGNING_KEY), json={
        "query": "mutation($id: ID!) { deleteWebhook(id: $id) }", "variables": {"id": stage_hook["id"]}})
    assert resp.json()["errors"] and "no webhook" in resp.json()["errors"][0]["message"]
    resp = await http(h).delete(path, headers=bearer(staging_key))
    assert resp.status_code == 200
    assert await names(staging_key) == []
    assert await names(SIGNING_KEY) == ["prod hook"]


async def test_webhook_events_trigger_only_their_environments_functions(h: Harness) -> None:
    staging_id, staging_key = await staging(h)
    # the same app, and the same function, in both environments
    await sync(h, key=SIGNING_KEY)
    await sync(h, key=staging_key)
    prod_hook = await create_hook(h, SIGNING_KEY, "prod")
    stage_hook = await create_hook(h, staging_key, "staging")
    resp = await http(h).post(f"/e/{stage_hook['key']}", json={"order": 1})
    assert resp.status_code == 200, resp.text
    staged = resp.json()["ids"][0]

    async def completed(event_id: str, key: str) -> bool:
        runs = await runs_of(h, event_id, key=key)
        return bool(runs) and runs[0]["status"] == "Completed"

    await until(lambda: completed(staged, staging_key), "the staging run completes")
    runs = await runs_of(h, staged, key=staging_key)
    assert len(runs) == 1 and runs[0]["environment_id"] == staging_id
    # production's key (without naming staging) does not see staging's event
    assert await event_env(h, staged, SIGNING_KEY) == 404
    assert await event_env(h, staged, staging_key) == 200
    resp = await http(h).post(f"/e/{prod_hook['key']}", json={"order": 2})
    prod_event = resp.json()["ids"][0]
    await until(lambda: completed(prod_event, SIGNING_KEY), "the production run completes")
    prod_runs = await runs_of(h, prod_event, key=SIGNING_KEY)
    assert len(prod_runs) == 1 and prod_runs[0]["environment_id"] == DEFAULT_ENV
    assert await event_env(h, prod_event, staging_key) == 404


async def test_x_inngest_env_sends_to_a_branch_of_the_webhooks_environment(h: Harness) -> None:
    staging_id, staging_key = await staging(h)
    stage_hook = await create_hook(h, staging_key, "staging")
    prod_hook = await create_hook(h, SIGNING_KEY, "prod")
    # the query parameter (as in upstream's webhook URLs) creates the branch on first use
    resp = await http(h).post(f"/e/{stage_hook['key']}?x-inngest-env=feature-1", json={"a": 1})
    assert resp.status_code == 200, resp.text
    by_query = resp.json()["ids"][0]
    branch = h.service.registry.envs.by_name("feature-1", staging_id)
    assert branch is not None and branch.kind == "branch"
    assert await event_env(h, by_query, staging_key, "feature-1") == 200
    assert await event_env(h, by_query, staging_key) == 404  # not staging's own
    # the header names the same branch
    resp = await http(h).post(f"/e/{stage_hook['key']}", json={"a": 2}, headers={"x-inngest-env": "feature-1"})
    assert await event_env(h, resp.json()["ids"][0], staging_key, "feature-1") == 200
    # the same name on production's webhook is production's branch, another environment
    resp = await http(h).post(f"/e/{prod_hook['key']}?x-inngest-env=feature-1", json={"a": 3})
    prod_branch = h.service.registry.envs.by_name("feature-1", DEFAULT_ENV)
    assert prod_branch is not None and prod_branch.id != branch.id
    assert await event_env(h, resp.json()["ids"][0], SIGNING_KEY, prod_branch.id) == 200
    assert await event_env(h, resp.json()["ids"][0], staging_key, "feature-1") == 404
    # the branch's webhooks are its parent's; their URL names the branch
    resp = await http(h).get("/v1/webhooks", headers=headers(staging_key, "feature-1"))
    [listed] = resp.json()["data"]
    assert listed["id"] == stage_hook["id"] and listed["url"].endswith(f"/e/{stage_hook['key']}?x-inngest-env=feature-1")
    # an archived branch refuses, with upstream's answer, and keeps nothing
    resp = await http(h).post(f"/v1/envs/{branch.id}/archive", headers=bearer(staging_key))
    assert resp.status_code == 200, resp.text
    resp = await http(h).post(f"/e/{stage_hook['key']}?x-inngest-env=feature-1", json={"a": 4})
    assert resp.status_code == 401
    assert resp.json() == {"status": 401, "message": "", "error": "Event key not found"}
    failures = await http(h).get(f"/v1/webhooks/{stage_hook['id']}/failures", headers=bearer(staging_key))
    assert failures.json()["data"] == []
    await http(h).post(f"/v1/envs/{branch.id}/unarchive", headers=bearer(staging_key))
    resp = await http(h).post(f"/e/{stage_hook['key']}?x-inngest-env=feature-1", json={"a": 5})
    assert resp.status_code == 200
    # a name that cannot be an environment's is refused clearly
    resp = await http(h).post(f"/e/{stage_hook['key']}?x-inngest-env=" + "x" * 101, json={})
    assert resp.status_code == 400 and "x-inngest-env" in resp.json()["error"]


async def test_failures_are_kept_and_replayed_within_the_environment(h: Harness) -> None:
    staging_id, staging_key = await staging(h)
    strict = "function transform(evt) { if (!evt.ok) throw new Error('not ok'); return {name: 'shop/x', data: evt}; }"
    hook = await create_hook(h, staging_key, "strict", strict)
    resp = await http(h).post(f"/e/{hook['key']}?x-inngest-env=feature-r", json={"ok": False})
    assert resp.status_code == 400
    failure_id = resp.json()["failure_id"]
    listed = await http(h).get(f"/v1/webhooks/{hook['id']}/failures", headers=bearer(staging_key))
    assert [f["id"] for f in listed.json()["data"]] == [failure_id]
    # production's key neither sees nor replays staging's failure
    replay = f"/v1/webhooks/failures/{failure_id}/replay"
    assert (await http(h).post(replay, headers=bearer(SIGNING_KEY))).status_code == 404
    resp = await http(h).post("/v0/gql", headers=bearer(SIGNING_KEY), json={
        "query": "mutation($id: ID!) { replayWebhookFailure(id: $id) { ids error } }", "variables": {"id": failure_id}})
    assert resp.json()["errors"]
    # fixed, the replay stores its events in the branch the request named
    fixed = "function transform(evt) { return {name: 'shop/x', data: evt}; }"
    await http(h).put(f"/v1/webhooks/{hook['id']}", json={"transform": fixed}, headers=bearer(staging_key))
    resp = await http(h).post(replay, headers=bearer(staging_key))
    assert resp.status_code == 200, resp.text
    [event_id] = resp.json()["data"]["ids"]
    assert await event_env(h, event_id, staging_key, "feature-r") == 200
    assert await event_env(h, event_id, staging_key) == 404
    # an archived branch: the replay says so
    resp = await http(h).post(f"/e/{hook['key']}?x-inngest-env=feature-r", content=b"not json")
    again = resp.json()["failure_id"]
    branch = h.service.registry.envs.by_name("feature-r", staging_id)
    assert branch is not None
    await http(h).post(f"/v1/envs/{branch.id}/archive", headers=bearer(staging_key))
    resp = await http(h).post(f"/v1/webhooks/failures/{again}/replay", headers=bearer(staging_key))
    assert resp.status_code == 400 and "archived" in resp.json()["error"]


async def test_an_async_transform_is_awaited_on_the_webhook_url(h: Harness) -> None:
    _, staging_key = await staging(h)
    source = ("async function transform(evt) { await new Promise((r) => setTimeout(r, 1));"
              " return {name: 'shop/async', data: evt}; }")
    hook = await create_hook(h, staging_key, "async", source)
    resp = await http(h).post(f"/e/{hook['key']}", json={"n": 1})
    assert resp.status_code == 200, resp.text
    event = await http(h).get(f"/v1/events/{resp.json()['ids'][0]}", headers=bearer(staging_key))
    assert event.json()["data"]["name"] == "shop/async"
    rejecting = await create_hook(h, staging_key, "rejecting",
                                  "async function transform() { throw new Error('later'); }")
    resp = await http(h).post(f"/e/{rejecting['key']}", json={})
    assert resp.status_code == 400
    assert "the transform's Promise was rejected: Error: later" in resp.json()["error"]


async def test_dev_mode_webhooks_stay_in_its_one_environment(tmp_path: Path) -> None:
    dev = Harness(tmp_path / "dev")
    await dev.start()
    try:
        resp = await http(dev).post("/v1/webhooks", json={"name": "dev hook", "transform": TO_ORDER})
        hook = resp.json()["data"]
        assert hook["environment_id"] == DEFAULT_ENV
        resp = await http(dev).post(f"/e/{hook['key']}?x-inngest-env=feature-x", json={"a": 1})
        assert resp.status_code == 200, resp.text
        event = await http(dev).get(f"/v1/events/{resp.json()['ids'][0]}")
        assert event.status_code == 200
        assert list(dev.service.registry.envs.envs) == [DEFAULT_ENV]  # no branch made
    finally:
        await dev.stop()
