"""Start-mode authentication, Prometheus metrics, and the live feed."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pyngest.protocol import signing
from pyngest.protocol.step_ids import hash_step_id
from pyngest.server.api.app import build_app
from tests.integration.dashboard.conftest import running
from tests.integration.dashboard.test_rest_and_openapi import _routes
from tests.integration.server.harness import Call, Harness, done, error_op, function_config, ops

KEY = "signkey-test-" + "ab" * 32


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Harness]:
    async for h in running(tmp_path, mode="start", signing_key=KEY, event_keys=["ek"], dashboard_password="s3cret"):
        yield h


def client(h: Harness, **kw: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(h.service)),
                             base_url="http://localhost", **kw)  # type: ignore[arg-type]


async def test_start_mode_requires_a_session_or_the_signing_key(secured: Harness) -> None:
    async with client(secured) as anon:
        page = await anon.get("/runs?status=FAILED")
        assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fruns%3Fstatus%3DFAILED"
        assert (await anon.get("/login")).status_code == 200
        assert (await anon.post("/v0/gql", json={"query": "{ apps { id } }"})).status_code == 401
        for path in ("/v1/apps", "/v1/runs", "/metrics", "/openapi.json", "/v0/live"):
            assert (await anon.get(path)).status_code == 401, path
        assert (await anon.get("/static/app.js")).status_code == 200
        assert (await anon.get("/health")).status_code == 200
        # the Event API keeps its event keys
        assert (await anon.post("/e/wrong", json={"name": "a/b"})).status_code == 401
        assert (await anon.post("/e/ek", json={"name": "a/b"})).status_code == 200
        status = (await anon.get("/auth/status")).json()
        assert status == {"authRequired": True, "authenticated": False, "user": None}

        wrong = await anon.post("/auth/login", data={"username": "admin", "password": "nope", "next": "/apps"})
        assert wrong.status_code == 303 and "error=1" in wrong.headers["location"]
        assert "pyngest_session" not in wrong.cookies
        ok = await anon.post("/auth/login", data={"username": "admin", "password": "s3cret", "next": "//evil.example"})
        assert ok.status_code == 303 and ok.headers["location"] == "/"
        assert "samesite=strict" in ok.headers["set-cookie"].lower() and "httponly" in ok.headers["set-cookie"].lower()
        cookie = ok.cookies["pyngest_session"]

    async with client(secured, cookies={"pyngest_session": cookie}) as user:
        assert (await user.get("/runs")).status_code == 200
        data = (await user.post("/v0/gql", json={"query": "{ apps { name } }"})).json()
        assert data["data"]["apps"] == [{"name": "test"}]
        assert (await user.get("/v1/apps")).status_code == 200
        assert (await user.get("/auth/status")).json()["authenticated"] is True
        cross = await user.post("/v0/gql", json={"query": "{ apps { name } }"},
                                headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403
        out = await user.post("/auth/logout")
        assert out.status_code == 303 and 'pyngest_session=""' in out.headers["set-cookie"]

    forged = cookie[:-4] + ("0000" if not cookie.endswith("0000") else "1111")
    async with client(secured, cookies={"pyngest_session": forged}) as bad:
        assert (await bad.post("/v0/gql", json={"query": "{ apps { name } }"})).status_code == 401

    bearer = {"Authorization": f"Bearer {signing.hash_signing_key(KEY)}"}
    async with client(secured, headers=bearer) as api:
        assert (await api.post("/v0/gql", json={"query": "{ apps { name } }"})).status_code == 200
        assert (await api.get("/v1/functions")).status_code == 200
        assert (await api.get("/runs")).status_code == 303  # pages are for people: they sign in


async def test_dev_mode_stays_open(harness: Harness) -> None:
    async with client(harness) as anon:
        assert (await anon.get("/runs")).status_code == 200
        assert (await anon.post("/v0/gql", json={"query": "{ apps { name } }"})).status_code == 200
        assert (await anon.get("/auth/status")).json()["authRequired"] is False
        assert (await anon.get("/login")).status_code == 303


async def test_prometheus_metrics_use_upstreams_names(harness: Harness) -> None:
    ids = await harness.send({"name": "test/work", "data": {"n": 1}}, {"name": "test/work", "data": {"fail": True}})
    for eid in ids:
        await harness.run_ended(eid)
    assert harness.http is not None
    resp = await harness.http.get("/metrics")
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    date = time.strftime("%Y-%m-%d", time.gmtime(harness.clock.now_ms() / 1000))
    fn = 'fn="test-work"'
    assert f'inngest_function_run_scheduled_total{{date="{date}",{fn}}} 2' in text
    assert f'inngest_function_run_started_total{{date="{date}",{fn}}} 2' in text
    assert f'inngest_function_run_ended_total{{date="{date}",{fn},status="Completed"}} 1' in text
    assert f'inngest_function_run_ended_total{{date="{date}",{fn},status="Failed"}} 1' in text
    # each run: a discovery request (the step) and a second request (the end)
    assert f'inngest_sdk_req_started_total{{date="{date}",{fn}}} 4' in text
    assert f'inngest_sdk_req_ended_total{{date="{date}",{fn},status="success"}} 3' in text
    assert f'inngest_sdk_req_ended_total{{date="{date}",{fn},status="failed"}} 1' in text
    assert f'inngest_sdk_req_scheduled_total{{date="{date}",{fn}}} 4' in text
    assert "inngest_step_output_bytes_total" in text
    for name in ("inngest_steps_scheduled", "inngest_steps_running"):
        assert f"# TYPE {name} gauge" in text


async def test_live_hub_reports_new_runs_and_steps_within_its_interval(harness: Harness) -> None:
    hub = harness.service.live
    queue = hub.subscribe()
    try:
        [eid] = await harness.send({"name": "test/work", "data": {"n": 1}})
        [run] = await harness.run_ended(eid)
        seen: set[str] = set()
        names: set[str] = set()
        new = steps = 0
        while run["run_id"] not in seen or not steps:
            msg = await asyncio.wait_for(queue.get(), 1.0)
            seen.update(msg["runs"])
            names.update(msg["events"])
            new += msg["newRuns"]
            steps += msg["steps"]
        assert new == 1 and "test/work" in names
    finally:
        hub.unsubscribe(queue)
    assert hub.watching == 0


async def test_prometheus_gauges_and_errored_requests(tmp_path: Path) -> None:
    """Steps running (a request the app holds), steps scheduled (a retry waiting for its time),
    and a request that errored (to be retried) counted as ``status="errored"``."""
    h = Harness(tmp_path)
    await h.start()
    release = asyncio.Event()
    step = hash_step_id("work")
    tries: list[Call] = []

    async def script(call: Call) -> tuple:
        if call.body["event"]["data"].get("hold"):
            await release.wait()
            return done("held")
        if step in call.body["steps"]:
            return done("retried")
        tries.append(call)
        if len(tries) == 1:
            return ops(error_op(step, "try again"))
        return ops({"op": "StepRun", "id": step, "name": "work", "displayName": "work", "data": 1})

    h.app.script = script
    await h.register(function_config(h.app, "work", retries=3), function_config(h.app, "hold"))
    try:
        [held] = await h.send({"name": "test/hold", "data": {"hold": True}})
        [flaky] = await h.send({"name": "test/work"})
        await h.settle(40)
        assert h.http is not None
        text = (await h.http.get("/metrics")).text
        date = time.strftime("%Y-%m-%d", time.gmtime(h.clock.now_ms() / 1000))
        assert 'inngest_steps_running{fn="test-hold"} 1' in text
        assert 'inngest_steps_scheduled{fn="test-work"} 1' in text  # its retry, not yet due
        assert f'inngest_sdk_req_ended_total{{date="{date}",fn="test-work",status="errored"}} 1' in text
        release.set()
        await h.run_ended(held)
        await h.advance(60_000)
        [run] = await h.run_ended(flaky)
        assert run["status"] == "Completed"
        text = (await h.http.get("/metrics")).text
        assert "inngest_steps_running{" not in text and "inngest_steps_scheduled{" not in text
        assert f'inngest_sdk_req_ended_total{{date="{date}",fn="test-work",status="success"}} 2' in text
    finally:
        release.set()
        await h.stop()


# Routes anyone may call in start mode, and what guards them instead of a session or the key.
PUBLIC = {
    ("get", "/health"): "a liveness probe",
    ("post", "/e/{key}"): "the Event API: its event keys",
    ("get", "/dev"): "dev mode only (404 in start mode)",
    ("get", "/login"): "the sign-in page",
    ("post", "/auth/login"): "signing in",
    ("post", "/auth/logout"): "signing out",
    ("get", "/auth/status"): "whether one is signed in",
}


async def test_start_mode_every_other_route_needs_a_session_or_the_signing_key(secured: Harness) -> None:
    """Every route the router has, called without credentials: the APIs answer 401 and the
    pages send to the sign-in page, except the few that are public on purpose (PUBLIC)."""
    async with client(secured) as anon:
        routes = sorted(_routes(build_app(secured.service)))
        assert len(routes) > 40
        for method, path in routes:
            if (method, path) in PUBLIC or path.startswith("/static"):
                continue
            url = re.sub(r"\{(\w+)(:path)?\}", "01J0000000000000000000000X", path)
            resp = await anon.request(method.upper(), url, json={})
            if method == "get" and not path.startswith(("/v0/", "/v1/", "/metrics", "/openapi")):
                assert resp.status_code == 303 and resp.headers["location"].startswith("/login"), (method, path)
            else:
                assert resp.status_code == 401, (method, path, resp.status_code)
        assert (await anon.get("/dev")).status_code == 404
