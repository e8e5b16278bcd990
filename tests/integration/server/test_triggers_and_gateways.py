"""Trigger matching (wildcards, several triggers, `if`), sync bookkeeping, step.fetch and
step.ai.infer performed by the server."""

from __future__ import annotations

import pytest
from aiohttp import web

from pyngest.protocol.step_ids import hash_step_id
from tests.integration.server.harness import Call, Harness, done, function_config, ops

F = hash_step_id("fetch")


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on a free loopback port: its runner (to clean up) and base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


async def _echo_event(call: Call) -> tuple:
    return done(call.body["event"]["name"])


async def test_wildcards_multiple_triggers_and_conditions(harness: Harness) -> None:
    harness.app.script = _echo_event
    await harness.register(
        function_config(harness.app, "wild", triggers=[{"event": "shop/*"}]),
        function_config(harness.app, "multi", triggers=[{"event": "a/one"}, {"event": "a/two"}]),
        function_config(harness.app, "cond", triggers=[{"event": "a/one", "expression": "event.data.vip == true"}]),
        function_config(harness.app, "both", triggers=[{"event": "shop/order.*"}, {"event": "shop/order.paid"}]),
    )
    [paid, one, one_vip, two] = await harness.send(
        {"name": "shop/order.paid"}, {"name": "a/one", "data": {"vip": False}},
        {"name": "a/one", "data": {"vip": True}}, {"name": "a/two"},
    )
    runs = await harness.run_ended(paid, count=2)
    assert sorted(r["function_slug"] for r in runs) == ["test-both", "test-wild"], "once per function per event"
    assert [r["function_slug"] for r in await harness.run_ended(one)] == ["test-multi"]
    assert sorted(r["function_slug"] for r in await harness.run_ended(one_vip, count=2)) == ["test-cond", "test-multi"]
    assert [r["function_slug"] for r in await harness.run_ended(two)] == ["test-multi"]


async def test_resync_archives_missing_functions_and_refuses_invalid_ones(harness: Harness) -> None:
    harness.app.script = _echo_event
    await harness.register(function_config(harness.app, "keep"), function_config(harness.app, "drop"))
    keep_id = harness.service.registry.by_slug["test-keep"].id
    await harness.register(function_config(harness.app, "keep"))
    assert set(harness.service.registry.by_slug) == {"test-keep"}
    assert harness.service.registry.by_slug["test-keep"].id == keep_id, "identity kept across syncs"
    stored = {f.slug: f.archived_ms for f in await harness.service.store.list_functions(include_archived=True)}
    assert stored["test-keep"] is None and stored["test-drop"] is not None

    assert harness.http is not None
    bad = function_config(harness.app, "bad", concurrency=[{"limit": 1, "scope": "account"}],
                          triggers=[{"event": "x", "expression": "event.data.x =="}])
    resp = await harness.http.post("/fn/register", json={"appname": "test", "url": harness.app.url, "functions": [bad]})
    body = resp.json()
    assert resp.status_code == 400 and body["error"] == "At least one function is invalid"
    assert any("concurrency key is required" in e for e in body["data"]["errors"])
    assert any("expression" in e for e in body["data"]["errors"])
    resp = await harness.http.post("/fn/register", json={"functions": []})
    assert resp.status_code == 400 and resp.json()["error"] == "App ID required"
    eleven = function_config(harness.app, "eleven", triggers=[{"event": f"t/{i}"} for i in range(11)])
    hourly = function_config(harness.app, "hourly", triggers=[{"cron": "@hourly"}])
    ten = function_config(harness.app, "ten", triggers=[{"event": f"t/{i}"} for i in range(9)] + [{"cron": "TZ=Europe/Paris 0 9 * * *"}])
    resp = await harness.http.post("/fn/register", json={"appName": "test", "url": harness.app.url,
                                                         "functions": [eleven, hourly, ten]})
    errors = resp.json()["data"]["errors"]
    assert resp.status_code == 400 and len(errors) == 2, errors
    assert any("max number of triggers: 10" in e for e in errors)
    assert any("descriptors like '@hourly' are not accepted" in e for e in errors)


async def test_step_fetch_and_ai_infer_are_performed_by_the_server(harness: Harness) -> None:
    provider = web.Application()

    async def upstream(request: web.Request) -> web.Response:
        # the header names as they came on the wire (aiohttp's request.headers ignores case)
        names = sorted({k.decode() for k, _ in request.raw_headers} - {"Host", "Content-Length"})
        if request.path in ("/ai", "/claude"):
            payload = await request.json()
            return web.json_response({"echo": payload, "auth": request.headers.get("Authorization"),
                                      "names": names})
        return web.Response(text=f"hello {request.method}", headers={"X-Test": "1", "X-Names": ",".join(names)})

    provider.router.add_route("*", "/{tail:.*}", upstream)
    runner, base = await _serve(provider)
    A = hash_step_id("ai")
    C = hash_step_id("claude")
    try:
        async def script(call: Call) -> tuple:
            steps = call.body["steps"]
            if F not in steps:
                return ops({"op": "Gateway", "id": F, "name": "fetch", "opts": {
                    "url": base + "/page", "method": "POST", "body": "x", "headers": {"x-my-header": "1"}}})
            if A not in steps:
                return ops({"op": "AIGateway", "id": A, "name": "ai", "opts": {
                    "url": base + "/ai", "format": "openai-chat", "auth_key": "sk-test", "body": {"prompt": "hi"},
                    "type": "step.ai.infer"}})
            if C not in steps:
                return ops({"op": "AIGateway", "id": C, "name": "claude", "opts": {
                    "url": base + "/claude", "format": "anthropic", "auth_key": "sk-ant",
                    "headers": {"anthropic-version": "2023-06-01"}, "body": {"prompt": "hi"},
                    "type": "step.ai.infer"}})
            return done({"fetch": steps[F], "ai": steps[A], "claude": steps[C]})

        harness.app.script = script
        await harness.register(function_config(harness.app, "gw"))
        [eid] = await harness.send({"name": "test/gw"})
        [run] = await harness.run_ended(eid)
        fetched = run["output"]["fetch"]["data"]
        assert fetched["status_code"] == 200 and fetched["body"] == "hello POST"
        assert fetched["headers"]["x-test"] == "1"
        ai = run["output"]["ai"]["data"]
        assert (ai["echo"], ai["auth"]) == ({"prompt": "hi"}, "Bearer sk-test")
        # header names in Go's canonical form, as upstream's requests carry them
        assert {"Authorization", "Content-Type"} <= set(ai["names"]), ai["names"]
        claude = run["output"]["claude"]["data"]["names"]
        assert {"X-Api-Key", "Anthropic-Version", "Content-Type"} <= set(claude), claude
        assert "X-My-Header" in fetched["headers"]["x-names"].split(","), fetched["headers"]
    finally:
        await runner.cleanup()


async def test_discovery_finds_serve_endpoints_on_the_scanned_ports_and_syncs_them(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dev auto-discovery: probes each scanned port x path on both loopbacks, syncs what answers
    as an SDK (with X-Inngest-SDK), ignores the rest; a refused sync is recorded with its message."""
    import asyncio

    from pyngest.server import sync

    puts: list[str] = []

    async def introspect(request: web.Request) -> web.Response:
        return web.json_response({"function_count": 1}, headers={"X-Inngest-SDK": "inngest-py:v0.5.19"})

    async def sync_put(request: web.Request) -> web.Response:
        puts.append(str(request.url))
        return web.json_response({"message": "bad signing key"}, status=401)

    async def other(request: web.Request) -> web.Response:
        return web.json_response({"not": "an sdk"})

    sdk_app = web.Application()
    sdk_app.router.add_get("/x/inngest", introspect)
    sdk_app.router.add_put("/x/inngest", sync_put)
    plain_app = web.Application()
    plain_app.router.add_get("/api/inngest", other)
    runners, ports = [], []
    # the SDK app listens on ::1 only (as a dev server bound to "localhost" may), the other on 127.0.0.1
    for app, host in ((sdk_app, "::1"), (plain_app, "127.0.0.1")):
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, 0)
        await site.start()
        runners.append(runner)
        ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    monkeypatch.setattr(sync, "DEV_DISCOVERY_PORTS", ports)
    syncer = harness.service.syncer
    harness.config.discovery = True
    try:
        await syncer.start()
        for _ in range(200):
            if puts:
                break
            await asyncio.sleep(0.02)
        found = f"http://[::1]:{ports[0]}/x/inngest"
        assert puts == [found]
        [rec] = syncer.urls.values()
        assert rec.url == found and rec.source == "discovery"
        assert rec.error is not None and "unauthorized" in rec.error and "bad signing key" in rec.error
        assert harness.http is not None
        handlers = (await harness.http.get("/dev")).json()["handlers"]
        assert handlers == [{"url": found, "error": rec.error, "app_id": None}]
    finally:
        for runner in runners:
            await runner.cleanup()


async def test_step_fetch_and_ai_infer_answers_over_the_cap_are_a_step_error(harness: Harness) -> None:
    """An endless (or declared too large) answer is read only up to the cap, then the step fails
    with a message naming the limit (issue 13, row 5)."""
    from pyngest.server.executor.gateway import MAX_RESPONSE_BYTES

    sent = [0]

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()  # chunked: no length to refuse up front
        await resp.prepare(request)
        chunk = b"x" * 65536
        try:
            while sent[0] < 100 * 1024 * 1024:
                await resp.write(chunk)
                sent[0] += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    async def declared(request: web.Request) -> web.Response:
        return web.Response(body=b"{}" + b" " * MAX_RESPONSE_BYTES, content_type="application/json")

    provider = web.Application()
    provider.router.add_get("/endless", endless)
    provider.router.add_post("/ai", declared)
    runner, base = await _serve(provider)
    A = hash_step_id("ai")
    try:
        async def script(call: Call) -> tuple:
            steps = call.body["steps"]
            if F not in steps:
                return ops({"op": "Gateway", "id": F, "name": "fetch", "opts": {"url": base + "/endless"}})
            if A not in steps:
                return ops({"op": "AIGateway", "id": A, "name": "ai", "opts": {
                    "url": base + "/ai", "format": "openai-chat", "body": {}, "type": "step.ai.infer"}})
            return done({"fetch": steps[F], "ai": steps[A]})

        harness.app.script = script
        await harness.register(function_config(harness.app, "big", retries=2))
        [eid] = await harness.send({"name": "test/big"})
        [run] = await harness.run_ended(eid, timeout=30)
        fetch_error, ai_error = run["output"]["fetch"]["error"], run["output"]["ai"]["error"]
        assert fetch_error["name"] == "GatewayError" and f"larger than {MAX_RESPONSE_BYTES} bytes" in fetch_error["message"]
        assert ai_error["name"] == "AIGatewayError" and "larger than" in ai_error["message"]
        assert sent[0] < 4 * MAX_RESPONSE_BYTES, f"{sent[0]} bytes read from an endless answer"
        assert len(harness.app.calls) == 3, "an answer over the cap is not retried"
    finally:
        await runner.cleanup()
