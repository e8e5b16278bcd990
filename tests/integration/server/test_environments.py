"""Environments in start mode (issue 15): isolation, keys selecting the environment, branch
environments by ``x-inngest-env``, archiving, and the keys managed in the product.

Runs on both stores (``PYNGEST_TEST_BACKEND=postgres``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pyngest.protocol import signing
from pyngest.server.model import DEFAULT_ENV
from tests.integration.server.harness import Call, Harness, Reply, done, function_config, ops

SIGNING_KEY = "signkey-prod-" + "ab" * 32
EVENT_KEY = "event-key-one"


def signed_by(call: Call, key: str) -> bool:
    try:
        signing.verify(call.raw, call.headers.get("X-Inngest-Signature"), [key])
    except signing.SignatureError:
        return False
    return True


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {signing.hash_signing_key(key)}"}


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path, mode="start", signing_key=SIGNING_KEY, event_keys=[EVENT_KEY])
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


def client(h: Harness) -> httpx.AsyncClient:
    assert h.http is not None
    return h.http


async def sync(h: Harness, key: str = SIGNING_KEY, env: str | None = None, app: str = "shop",
               triggers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What the SDK does on a sync: POST its configuration with the signing key as Bearer."""
    headers = bearer(key)
    if env:
        headers["x-inngest-env"] = env
    fn = function_config(h.app, "order", triggers=triggers or [{"event": "shop/order"}])
    resp = await client(h).post("/fn/register", headers=headers, json={
        "appName": app, "url": h.app.url, "sdk": "py:v0.5.19", "framework": "fast_api", "v": "0.1",
        "deployType": "ping", "functions": [fn]})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def send(h: Harness, name: str, key: str = EVENT_KEY, env: str | None = None,
               data: dict[str, Any] | None = None) -> httpx.Response:
    url = f"/e/{key}" + (f"?x-inngest-env={env}" if env else "")
    return await client(h).post(url, json={"name": name, "data": data or {}})


async def runs_of(h: Harness, event_id: str, key: str = SIGNING_KEY, env: str | None = None) -> list[dict[str, Any]]:
    headers = bearer(key)
    if env:
        headers["x-inngest-env"] = env
    resp = await client(h).get(f"/v1/events/{event_id}/runs", headers=headers)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


async def until(cond: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.01)


async def ended(h: Harness, event_id: str, env: str | None = None) -> list[dict[str, Any]]:
    async def check() -> bool:
        runs = await runs_of(h, event_id, env=env)
        return bool(runs) and all(r["status"] not in ("Queued", "Running") for r in runs)

    await until(check, f"the runs of {event_id} end")
    return await runs_of(h, event_id, env=env)


async def test_branch_environment_is_isolated(h: Harness) -> None:
    async def script(call: Call) -> Reply:
        return done({"env": call.headers.get("X-Inngest-Signature", "") != ""})

    h.app.script = script
    prod = await sync(h)
    branch = await sync(h, env="feature-1")  # the same app and function, synced into a branch
    assert prod["app_id"] != branch["app_id"]
    envs = h.service.registry.envs
    feature = envs.by_name("feature-1", DEFAULT_ENV)
    assert feature is not None and feature.kind == "branch"
    fns = sorted(h.service.registry.functions.values(), key=lambda f: f.env_id)
    assert [f.slug for f in fns] == ["test-order", "test-order"]  # one slug, two environments
    assert {f.env_id for f in fns} == {DEFAULT_ENV, feature.id} and fns[0].id != fns[1].id

    # an event of the branch starts the branch's function only, and the other way round
    resp = await send(h, "shop/order", env="feature-1")
    assert resp.status_code == 200, resp.text
    branch_event = resp.json()["ids"][0]
    resp = await send(h, "shop/order")
    prod_event = resp.json()["ids"][0]
    branch_runs = await ended(h, branch_event, env="feature-1")
    prod_runs = await ended(h, prod_event)
    assert len(branch_runs) == 1 and branch_runs[0]["environment_id"] == feature.id
    assert branch_runs[0]["function_id"] == next(f.id for f in fns if f.env_id == feature.id)
    assert len(prod_runs) == 1 and prod_runs[0]["environment_id"] == DEFAULT_ENV
    # reads are per environment: the default environment does not see the branch's event or runs
    assert await runs_of(h, branch_event) == []
    resp = await client(h).get(f"/v1/events/{branch_event}", headers=bearer(SIGNING_KEY))
    assert resp.status_code == 404
    resp = await client(h).get("/v1/runs", headers={**bearer(SIGNING_KEY), "x-inngest-env": "feature-1"})
    assert [r["run_id"] for r in resp.json()["data"]] == [branch_runs[0]["run_id"]]
    # the branch shares its parent's keys: its requests are signed with the parent's signing key
    calls = [c for c in h.app.calls if c.body["event"]["name"] == "shop/order"]
    assert len(calls) == 2
    for call in calls:
        assert signed_by(call, SIGNING_KEY)


async def test_wait_for_event_never_resumed_from_another_environment(h: Harness) -> None:
    waits: dict[str, int] = {}

    async def script(call: Call) -> Reply:
        if "wait" in call.body["steps"]:
            return done({"got": call.body["steps"]["wait"]})
        run_id = call.body["ctx"]["run_id"]
        waits[run_id] = waits.get(run_id, 0) + 1
        return ops({"id": "wait", "op": "WaitForEvent", "name": "shop/paid",
                    "opts": {"event": "shop/paid", "timeout": "1h"}})

    h.app.script = script
    await sync(h)
    await sync(h, env="feature-1")
    prod_event = (await send(h, "shop/order")).json()["ids"][0]
    await until(lambda: _true(len(waits) == 1), "the default environment's run waits")
    await h.settle()
    # the same event name in the branch: it must not resume the default environment's wait
    resp = await send(h, "shop/paid", env="feature-1", data={"branch": True})
    assert resp.status_code == 200
    await h.settle(60)
    runs = await runs_of(h, prod_event)
    assert runs[0]["status"] == "Running"
    await send(h, "shop/paid", data={"prod": True})
    runs = await ended(h, prod_event)
    assert runs[0]["status"] == "Completed"
    assert runs[0]["output"]["got"]["data"] == {"prod": True}


async def _true(value: bool) -> bool:
    return value


async def test_signing_key_selects_the_environment_on_sync_and_apis(h: Harness) -> None:
    h.app.script = lambda call: _done()
    resp = await client(h).post("/v1/envs", json={"name": "staging"}, headers=bearer(SIGNING_KEY))
    assert resp.status_code == 201, resp.text
    staging = resp.json()["data"]
    staging_key = staging["signing_key"]
    assert staging_key.startswith("signkey-test-")
    out = await sync(h, key=staging_key)
    app = h.service.registry.apps[out["app_id"]]
    assert app.env_id == staging["id"]
    # the staging key reads staging only; its apps' functions are not the default environment's
    resp = await client(h).get("/v1/apps/shop/functions", headers=bearer(staging_key))
    assert [f["slug"] for f in resp.json()["data"]] == ["test-order"]
    resp = await client(h).get("/v1/apps/shop/functions", headers=bearer(SIGNING_KEY))
    assert resp.status_code == 404
    # staging needs an event key of its own: the default environment's key sends to production
    resp = await client(h).post("/v1/keys/event", json={"name": "staging events"}, headers=bearer(staging_key))
    assert resp.status_code == 201, resp.text
    staging_event_key = resp.json()["data"]["key"]
    resp = await send(h, "shop/order", key=staging_event_key)
    event_id = resp.json()["ids"][0]

    async def staging_ran() -> bool:
        got = await runs_of(h, event_id, key=staging_key)
        return bool(got) and got[0]["status"] == "Completed"

    await until(staging_ran, "the staging run completes")
    # requests to staging's apps are signed with staging's key
    call = h.app.calls[-1]
    assert signed_by(call, staging_key)
    assert not signed_by(call, SIGNING_KEY)
    # an unknown key is refused
    resp = await client(h).get("/v1/runs", headers=bearer("signkey-prod-" + "cd" * 32))
    assert resp.status_code == 401


async def _done() -> Reply:
    return done("ok")


async def test_archived_branch_refuses_events_as_upstream(h: Harness) -> None:
    h.app.script = lambda call: _done()
    await sync(h, env="old-branch")
    branch = h.service.registry.envs.by_name("old-branch", DEFAULT_ENV)
    assert branch is not None
    resp = await client(h).post(f"/v1/envs/{branch.id}/archive", headers=bearer(SIGNING_KEY))
    assert resp.status_code == 200 and resp.json()["data"]["archived"] is True
    resp = await send(h, "shop/order", env="old-branch")
    assert resp.status_code == 401
    assert resp.json() == {"status": 401, "message": "", "error": "Event key not found"}
    resp = await client(h).post(f"/v1/envs/{branch.id}/unarchive", headers=bearer(SIGNING_KEY))
    assert resp.json()["data"]["archived"] is False
    resp = await send(h, "shop/order", env="old-branch")
    assert resp.status_code == 200
    # the default environment cannot be archived
    resp = await client(h).post(f"/v1/envs/{DEFAULT_ENV}/archive", headers=bearer(SIGNING_KEY))
    assert resp.status_code == 400


async def test_event_keys_are_managed_and_filtered(h: Harness) -> None:
    c = client(h)
    auth = bearer(SIGNING_KEY)
    resp = await c.post("/v1/keys/event", headers=auth, json={
        "name": "billing", "filter": {"events": {"mode": "allow", "names": ["billing/*"]}}})
    assert resp.status_code == 201, resp.text
    created = resp.json()["data"]
    key = created["key"]
    assert created["hint"] == "…" + key[-4:]
    assert (await send(h, "billing/paid", key=key)).status_code == 200
    resp = await send(h, "shop/order", key=key)
    assert resp.status_code == 403
    assert "does not allow sending events named 'shop/order'" in resp.json()["error"]
    # the key itself is not stored, only its hash
    listed = (await c.get("/v1/keys/event", headers=auth)).json()["data"]
    assert {k["name"] for k in listed} == {"--event-key 1", "billing"}
    assert all("key" not in k for k in listed)
    stored = await h.service.store.list_event_keys()
    assert all(key not in (k.hash, k.hint, k.name) for k in stored)
    # rename and refilter: deny an IP range that holds the test client's address
    resp = await c.patch(f"/v1/keys/event/{created['id']}", headers=auth, json={
        "name": "billing-2", "filter": {"ips": {"mode": "deny", "ranges": ["127.0.0.0/8"]}}})
    assert resp.status_code == 200 and resp.json()["data"]["name"] == "billing-2"
    resp = await send(h, "billing/paid", key=key)
    assert resp.status_code == 403 and "does not allow sending from" in resp.json()["error"]
    # a bad filter is a clear 400
    resp = await c.patch(f"/v1/keys/event/{created['id']}", headers=auth, json={
        "filter": {"ips": {"mode": "deny", "ranges": ["not-an-ip"]}}})
    assert resp.status_code == 400 and "not-an-ip" in resp.json()["error"]
    # rotate: a new secret, the old one stops working
    resp = await c.post(f"/v1/keys/event/{created['id']}/rotate", headers=auth)
    new_key = resp.json()["data"]["key"]
    assert new_key != key
    resp = await c.patch(f"/v1/keys/event/{resp.json()['data']['id']}", headers=auth, json={"filter": None})
    assert (await send(h, "shop/order", key=new_key)).status_code == 200
    assert (await send(h, "shop/order", key=key)).status_code == 401
    # delete
    resp = await c.delete(f"/v1/keys/event/{resp.json()['data']['id']}", headers=auth)
    assert resp.status_code == 200
    assert (await send(h, "shop/order", key=new_key)).status_code == 401


async def test_signing_key_rotation_keeps_the_old_key_as_fallback(h: Harness) -> None:
    h.app.script = lambda call: _done()
    c = client(h)
    resp = await c.post("/v1/keys/signing", headers=bearer(SIGNING_KEY))
    assert resp.status_code == 201, resp.text
    new = resp.json()["data"]
    assert new["state"] == "next"
    # the new key is accepted at once (apps add it as their fallback first) ...
    await sync(h, key=new["key"])
    # ... requests are still signed with the old one until the rotation
    resp = await send(h, "shop/order")
    await ended(h, resp.json()["ids"][0])
    assert signed_by(h.app.calls[-1], SIGNING_KEY)
    resp = await c.post("/v1/keys/signing/rotate", headers=bearer(SIGNING_KEY))
    assert resp.status_code == 200 and resp.json()["data"]["id"] == new["id"]
    resp = await send(h, "shop/order")
    await ended(h, resp.json()["ids"][0])
    assert signed_by(h.app.calls[-1], new["key"])
    # the old key still works while apps move, until it is retired
    keys = (await c.get("/v1/keys/signing", headers=bearer(SIGNING_KEY))).json()["data"]
    old = next(k for k in keys if k["state"] == "previous")
    assert old["key"] == SIGNING_KEY
    resp = await c.delete(f"/v1/keys/signing/{old['id']}", headers=bearer(new["key"]))
    assert resp.status_code == 200
    assert (await c.get("/v1/runs", headers=bearer(SIGNING_KEY))).status_code == 401
    assert (await c.get("/v1/runs", headers=bearer(new["key"]))).status_code == 200
    # the active key cannot be deleted
    resp = await c.delete(f"/v1/keys/signing/{new['id']}", headers=bearer(new["key"]))
    assert resp.status_code == 409


async def test_dev_mode_stays_one_environment(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.start()
    try:
        h.app.script = lambda call: _done()
        await h.register(function_config(h.app, "order", triggers=[{"event": "shop/order"}]))
        resp = await client(h).post("/e/anything", json={"name": "shop/order"}, headers={"x-inngest-env": "b1"})
        assert resp.status_code == 200
        runs = await h.run_ended(resp.json()["ids"][0])
        assert runs[0]["environment_id"] == DEFAULT_ENV
        assert list(h.service.registry.envs.envs) == [DEFAULT_ENV]
    finally:
        await h.stop()


async def gql(h: Harness, query: str, variables: dict[str, Any] | None = None, key: str = SIGNING_KEY,
              env: str | None = None) -> dict[str, Any]:
    headers = bearer(key)
    if env:
        headers["x-inngest-env"] = env
    resp = await client(h).post("/v0/gql", json={"query": query, "variables": variables or {}}, headers=headers)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def test_graphql_reads_per_environment_and_manages_keys(h: Harness) -> None:
    h.app.script = lambda call: _done()
    await sync(h, app="shop")
    await sync(h, app="branch-only", env="feature-2")
    out = await gql(h, "{ apps { name } functions { slug } }", env="feature-2")
    assert out["data"] == {"apps": [{"name": "branch-only"}], "functions": [{"slug": "test-order"}]}
    out = await gql(h, "{ apps { name } }")
    assert out["data"]["apps"] == [{"name": "shop"}]
    out = await gql(h, "{ environments { name type parentID archived } }")
    assert {(e["name"], e["type"]) for e in out["data"]["environments"]} == {("Production", "production"),
                                                                             ("feature-2", "branch")}
    # event keys: create with a filter, refilter, rotate, delete
    out = await gql(h, "mutation($f: Map) { createEventKey(name: \"gql\", filter: $f) { id key hint filter } }",
                    {"f": {"events": {"mode": "deny", "names": ["shop/order"]}}})
    created = out["data"]["createEventKey"]
    assert (await send(h, "shop/order", key=created["key"])).status_code == 403
    assert (await send(h, "shop/other", key=created["key"])).status_code == 200
    out = await gql(h, "mutation($id: ID!) { updateEventKey(id: $id, clearFilter: true) { filter } }",
                    {"id": created["id"]})
    assert out["data"]["updateEventKey"]["filter"] is None
    assert (await send(h, "shop/order", key=created["key"])).status_code == 200
    out = await gql(h, "mutation($id: ID!) { rotateEventKey(id: $id) { id key } }", {"id": created["id"]})
    rotated = out["data"]["rotateEventKey"]
    assert (await send(h, "shop/order", key=created["key"])).status_code == 401
    out = await gql(h, "mutation($id: ID!) { deleteEventKey(id: $id) }", {"id": rotated["id"]})
    assert out["data"]["deleteEventKey"] is True
    assert (await send(h, "shop/order", key=rotated["key"])).status_code == 401
    # signing keys: a branch shares its parent's, and says so
    out = await gql(h, "mutation { createSigningKey { state } }", env="feature-2")
    assert "share" in out["errors"][0]["message"]
    out = await gql(h, "mutation { createSigningKey { state key } }")
    assert out["data"]["createSigningKey"]["state"] == "next"
    out = await gql(h, "{ signingKeys { state } }")
    assert sorted(k["state"] for k in out["data"]["signingKeys"]) == ["active", "next"]
    # an environment that is not there is a clear error
    resp = await client(h).post("/v0/gql", json={"query": "{ apps { name } }"},
                                headers={**bearer(SIGNING_KEY), "x-inngest-env": "no-such-branch"})
    assert resp.status_code == 404 and "not found" in resp.json()["errors"][0]["message"]


async def test_another_environments_key_reaches_neither_its_runs_nor_its_signals(h: Harness) -> None:
    async def script(call: Call) -> Reply:
        if "sig" in call.body["steps"]:
            return done({"got": call.body["steps"]["sig"]})
        return ops({"id": "sig", "op": "WaitForSignal", "name": "sig", "opts": {"signal": "order-1", "timeout": "1h"}})

    h.app.script = script
    await sync(h)
    staging_key = (await client(h).post("/v1/envs", json={"name": "staging"}, headers=bearer(SIGNING_KEY))
                   ).json()["data"]["signing_key"]
    event_id = (await send(h, "shop/order")).json()["ids"][0]

    async def waiting() -> bool:
        runs = await runs_of(h, event_id)
        return bool(runs) and bool(h.service.state.pauses.for_signal("order-1"))

    await until(waiting, "the run waits for its signal")
    run_id = (await runs_of(h, event_id))[0]["run_id"]
    # staging's key: the production run's state and signal are not there for it
    resp = await client(h).get(f"/v0/runs/{run_id}/actions", headers=bearer(staging_key))
    assert resp.status_code == 410
    resp = await client(h).post("/v1/signals", json={"signal": "order-1", "data": 1}, headers=bearer(staging_key))
    assert resp.status_code == 404
    resp = await client(h).get(f"/v1/runs/{run_id}", headers=bearer(staging_key))
    assert resp.status_code == 404
    # production's key does
    resp = await client(h).post("/v1/signals", json={"signal": "order-1", "data": 2}, headers=bearer(SIGNING_KEY))
    assert resp.status_code == 200 and resp.json()["data"]["run_id"] == run_id
    runs = await ended(h, event_id)
    assert runs[0]["output"]["got"]["data"]["data"] == 2
