"""Differential tests: the same functions built with the official ``inngest`` SDK and with
pyngest, fed the same execution requests, must answer alike (status, compared headers, body).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import fastapi
import flask
import pytest

import pyngest
import pyngest.experimental.ai
import pyngest.fast_api
import pyngest.flask
from pyngest.protocol import jcs

from . import scenarios
from .harness import (
    SIGNING_KEY,
    ASGIClient,
    FakeAPI,
    FlaskClient,
    assert_same,
    event,
    exec_body,
    h,
    signed_headers,
    simulate,
)
from .official import inngest


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPI]:
    fake = FakeAPI()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def _apps(api: FakeAPI, loop: asyncio.AbstractEventLoop, **kw: Any) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    kw = {"api_base_url": api.url, "event_api_base_url": api.url, **kw}
    oc, ofns = scenarios.build(inngest, inngest.experimental.ai, **kw)
    pc, pfns = scenarios.build(pyngest, pyngest.experimental.ai, **kw)
    oapp, papp = fastapi.FastAPI(), fastapi.FastAPI()
    inngest.fast_api.serve(oapp, oc, list(ofns.values()))
    pyngest.fast_api.serve(papp, pc, list(pfns.values()))
    return ASGIClient(oapp, loop), ASGIClient(papp, loop), ofns, pfns


@pytest.fixture(scope="module")
def dev(api: FakeAPI, loop: asyncio.AbstractEventLoop) -> tuple[Any, Any]:
    o, p, _, _ = _apps(api, loop, is_production=False)
    return o, p


@pytest.fixture(scope="module")
def cloud(api: FakeAPI, loop: asyncio.AbstractEventLoop) -> tuple[Any, Any]:
    o, p, _, _ = _apps(api, loop, is_production=True, signing_key=SIGNING_KEY, event_key="evkey")
    return o, p


def _resolve(op: dict[str, Any]) -> Any:
    if op["op"] == "WaitForEvent":
        if op["name"] == "app/reply":
            return {"name": "app/reply", "data": {"id": 7}, "id": "01REPLY", "ts": 1_700_000_000_500}
        return None  # timed out
    if op["op"] == "InvokeFunction":
        fid = op["opts"]["function_id"]
        if fid.endswith("missing"):
            return {"error": {"name": "Error", "message": f"could not find function with ID: {fid}"}}
        return {"data": {"invoked": fid, "payload": op["opts"]["payload"]}}
    if op["op"] == "AIGateway":
        return {"data": {"choices": [{"message": {"content": "hello"}}], "url": op["opts"]["url"]}}
    raise AssertionError(op)


RUNS = [
    ("hello", 5),
    ("steps", 3),
    ("flaky", 4),
    ("caught", 2),
    ("uncaught", 1),
    ("non-retriable", 5),
    ("fn-non-retriable", 5),
    ("retry-after", 5),
    ("fn-error", 2),
    ("sleeps", 5),
    ("waits", 5),
    ("parallel", 5),
    ("race", 5),
    ("invokes", 5),
    ("sends", 5),
    ("ai", 5),
    ("nested", 5),
    ("unserializable", 5),
    ("fn-unserializable", 5),
    ("with-failure", 1),
    ("sync-steps", 2),
    ("sync-sends", 5),
]


@pytest.mark.parametrize(("fn_id", "max_attempts"), RUNS)
def test_full_run_dev_mode(dev: tuple[Any, Any], fn_id: str, max_attempts: int) -> None:
    o, p = dev
    t = simulate(o, p, f"diff-app-{fn_id}", [event(data={"id": 7})], resolve=_resolve, max_attempts=max_attempts)
    assert t.final["status"] in (200, 500)


@pytest.mark.parametrize(("fn_id", "max_attempts"), [("steps", 3), ("parallel", 5), ("caught", 2), ("waits", 5)])
def test_full_run_signed(cloud: tuple[Any, Any], fn_id: str, max_attempts: int) -> None:
    o, p = cloud
    simulate(o, p, f"diff-app-{fn_id}", [event(data={"id": 7})], resolve=_resolve, max_attempts=max_attempts, sign_key=SIGNING_KEY)


def test_expected_outcomes(dev: tuple[Any, Any]) -> None:
    """The differential runs end where the docs say (so a shared bug cannot pass unseen)."""
    o, p = dev
    ev = [event(data={"id": 7})]
    t = simulate(o, p, "diff-app-steps", ev, resolve=_resolve, max_attempts=3)
    assert t.final["body"] == {"total": 6, "kw": [1, "x"], "none": None}
    t = simulate(o, p, "diff-app-caught", ev, resolve=_resolve, max_attempts=2)
    assert t.final["body"] == {"recovered": "KeyError", "message": "'missing'"}
    assert t.ops.count("StepError") == 1 and t.ops.count("StepFailed") == 1
    t = simulate(o, p, "diff-app-uncaught", ev, resolve=_resolve, max_attempts=1)
    assert t.final["status"] == 500 and t.final["headers"]["x-inngest-no-retry"] == "true"
    assert t.final["body"]["code"] == "step_errored" and t.final["body"]["name"] == "ZeroDivisionError"
    t = simulate(o, p, "diff-app-parallel", ev, resolve=_resolve)
    assert t.final["body"] == {"res": [1, 2, 3], "after": 6}
    t = simulate(o, p, "diff-app-race", ev, resolve=_resolve)
    assert t.final["body"] == [10, 20]
    t = simulate(o, p, "diff-app-waits", ev, resolve=_resolve)
    assert t.final["body"] == {"got": ["app/reply", {"id": 7}, "01REPLY", 1_700_000_000_500], "missed": None}
    t = simulate(o, p, "diff-app-retry-after", ev, resolve=_resolve, max_attempts=1)
    assert t.final["headers"]["retry-after"] == "<time>"
    t = simulate(o, p, "diff-app-flaky", ev, resolve=_resolve, max_attempts=4)
    assert t.final["body"] == "ok" and t.ops.count("StepError") == 2


def test_batch_and_on_failure(dev: tuple[Any, Any]) -> None:
    o, p = dev
    evs = [event(data={"i": i}, id=f"0{i}") for i in range(3)]
    t = simulate(o, p, "diff-app-batch", evs)
    assert t.final["body"] == [0, 1, 2]
    failed = event(name="inngest/function.failed", data={"function_id": "diff-app-with-failure", "error": {}})
    t = simulate(o, p, "diff-app-with-failure-failure", [failed])
    assert t.final["body"] == {"failed": "inngest/function.failed", "original": "diff-app-with-failure"}


def _post(o: Any, p: Any, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[Any, Any]:
    hdrs = headers or {"content-type": "application/json"}
    return o.request("POST", path, hdrs, body), p.request("POST", path, hdrs, body)


def test_targeted_step_and_unexpected_step(dev: tuple[Any, Any]) -> None:
    o, p = dev
    body = exec_body(events=[event()], steps={}, stack=[], die=True)
    # Targeting a step the function never reaches first: a non-deterministic function.
    ro, rp = _post(o, p, f"/api/inngest?fnId=diff-app-steps&stepId={h('kw')}", body)
    got = assert_same(ro, rp)
    assert got["body"]["code"] == "step_unexpected"
    ro, rp = _post(o, p, f"/api/inngest?fnId=diff-app-parallel&stepId={h('p2')}", body)
    assert assert_same(ro, rp)["body"][0]["data"] == 2


def test_errors_outside_functions(dev: tuple[Any, Any]) -> None:
    o, p = dev
    body = exec_body(events=[event()], steps={}, stack=[])
    # unknown function: same status and code (our message also lists the served ids)
    ro, rp = _post(o, p, "/api/inngest?fnId=nope&stepId=step", body)
    assert (ro.status, ro.json()["code"]) == (rp.status, rp.json()["code"]) == (500, "function_not_found")
    # missing fnId
    ro, rp = _post(o, p, "/api/inngest?stepId=step", body)
    assert (ro.status, ro.json()["code"]) == (rp.status, rp.json()["code"]) == (500, "query_param_missing")
    # trust probe
    ro, rp = _post(o, p, "/api/inngest?fnId=diff-app-hello&probe=trust", body)
    assert_same(ro, rp)
    # body missing required fields: both refuse (500, retriable); we say which field
    bad = json.dumps({"event": {"name": "x"}, "steps": {}}).encode()
    ro, rp = _post(o, p, "/api/inngest?fnId=diff-app-hello&stepId=step", bad)
    assert ro.status == rp.status == 500
    assert "x-inngest-no-retry" not in ro.headers and "x-inngest-no-retry" not in rp.headers
    assert rp.json()["code"] == "body_invalid" and "ctx" in rp.json()["message"]


def test_signatures(cloud: tuple[Any, Any]) -> None:
    o, p = cloud
    body = exec_body(events=[event()], steps={}, stack=[])
    path = "/api/inngest?fnId=diff-app-hello&stepId=step"
    # unsigned, wrongly signed: 401 from both
    for headers in ({"content-type": "application/json"}, signed_headers(body, "signkey-test-" + "ef" * 32)):
        ro, rp = _post(o, p, path, body, headers)
        assert_same(ro, rp)
        assert rp.status == 401
    # signed with the primary key: 200 and a response signature over our own body
    ro, rp = _post(o, p, path, body, signed_headers(body))
    assert_same(ro, rp)
    from pyngest.protocol import signing

    assert signing.verify(rp.body, rp.headers["x-inngest-signature"], [SIGNING_KEY])
    # a non-canonical rendering of the same JSON still verifies (the signature covers JCS)
    pretty = json.dumps(json.loads(body), indent=2).encode()
    ro, rp = _post(o, p, path, pretty, signed_headers(body))
    assert_same(ro, rp)
    assert rp.status == 200


def test_introspection(dev: tuple[Any, Any], cloud: tuple[Any, Any]) -> None:
    for o, p in (dev, cloud):
        ro, rp = o.request("GET", "/api/inngest"), p.request("GET", "/api/inngest")
        assert_same(ro, rp)
    o, p = cloud
    signed = signed_headers(b"")
    ro, rp = o.request("GET", "/api/inngest", signed), p.request("GET", "/api/inngest", signed)
    a, b = ro.json(), rp.json()
    assert a.pop("sdk_version") and b.pop("sdk_version")
    # we do not claim the "connect" capability (no outbound-WebSocket workers)
    assert a.pop("capabilities") == {**b.pop("capabilities"), "connect": "v1"}
    assert a == b
    # a dev-mode app asked by a cloud server: 403 from both
    od, pd = dev
    ro = od.request("GET", "/api/inngest", {"x-inngest-server-kind": "cloud"})
    rp = pd.request("GET", "/api/inngest", {"x-inngest-server-kind": "cloud"})
    assert_same(ro, rp)
    assert rp.status == 403


def test_register_payload(api: FakeAPI, dev: tuple[Any, Any]) -> None:
    o, p = dev
    api.registrations.clear()
    ro = o.request("PUT", "/api/inngest?deployId=dep-1", {"x-inngest-server-kind": "dev"})
    rp = p.request("PUT", "/api/inngest?deployId=dep-1", {"x-inngest-server-kind": "dev"})
    assert_same(ro, rp)
    (opath, oheaders, obody), (ppath, pheaders, pbody) = api.registrations
    assert opath == ppath == "/fn/register?deployId=dep-1"
    assert obody.pop("sdk").startswith("py:v") and pbody.pop("sdk").startswith("py:v")
    assert obody.pop("capabilities") == {**pbody.pop("capabilities"), "connect": "v1"}
    assert obody == pbody
    for k in ("content-type", "x-inngest-framework", "x-inngest-expected-server-kind", "x-inngest-req-version"):
        assert oheaders.get(k) == pheaders.get(k), k
    options = next(f for f in pbody["functions"] if f["id"] == "diff-app-options")
    assert options["throttle"] == {"key": "event.data.user", "limit": 3, "period": "1m", "burst": 2}
    assert any(f["id"] == "diff-app-with-failure-failure" for f in pbody["functions"])


def test_register_signed_and_kind_mismatch(api: FakeAPI, cloud: tuple[Any, Any], dev: tuple[Any, Any]) -> None:
    o, p = cloud
    api.registrations.clear()
    ro, rp = o.request("PUT", "/api/inngest"), p.request("PUT", "/api/inngest")
    assert_same(ro, rp)
    (_, oh, _), (_, ph, _) = api.registrations
    assert oh["authorization"] == ph["authorization"] and ph["authorization"].startswith("Bearer ")
    # a dev server pinging a production-mode app: refused by both
    ro = o.request("PUT", "/api/inngest", {"x-inngest-server-kind": "dev"})
    rp = p.request("PUT", "/api/inngest", {"x-inngest-server-kind": "dev"})
    assert ro.status == rp.status == 400
    assert ro.json()["code"] == rp.json()["code"] == "server_kind_mismatch"


def test_flask_adapter_matches(api: FakeAPI) -> None:
    kw = {"api_base_url": api.url, "event_api_base_url": api.url, "is_production": False}
    oc, ofns = scenarios.build(inngest, inngest.experimental.ai, **kw)
    pc, pfns = scenarios.build(pyngest, pyngest.experimental.ai, **kw)
    sync_ids = ["sync-steps", "sync-sends"]
    oapp, papp = flask.Flask("o"), flask.Flask("p")
    inngest.flask.serve(oapp, oc, [ofns[i] for i in sync_ids])
    pyngest.flask.serve(papp, pc, [pfns[i] for i in sync_ids])
    o, p = FlaskClient(oapp), FlaskClient(papp)
    simulate(o, p, "diff-app-sync-steps", [event()], resolve=_resolve, max_attempts=2)
    simulate(o, p, "diff-app-sync-sends", [event()], resolve=_resolve)
    assert_same(o.request("GET", "/api/inngest"), p.request("GET", "/api/inngest"))


def test_streaming_matches_official(api: FakeAPI, loop: asyncio.AbstractEventLoop) -> None:
    kw = {"api_base_url": api.url, "event_api_base_url": api.url, "is_production": False}
    oc, ofns = scenarios.build(inngest, inngest.experimental.ai, **kw)
    pc, pfns = scenarios.build(pyngest, pyngest.experimental.ai, **kw)
    oapp, papp = fastapi.FastAPI(), fastapi.FastAPI()
    inngest.fast_api.serve(oapp, oc, [ofns["steps"], ofns["fn-error"]], streaming=inngest.Streaming.FORCE)
    pyngest.fast_api.serve(papp, pc, [pfns["steps"], pfns["fn-error"]], streaming=pyngest.Streaming.FORCE)
    o, p = ASGIClient(oapp, loop), ASGIClient(papp, loop)
    for fn_id, steps in (("steps", {}), ("fn-error", {h("a"): {"data": 1}})):
        body = exec_body(events=[event()], steps=steps, stack=list(steps), max_attempts=2)
        ro, rp = _post(o, p, f"/api/inngest?fnId=diff-app-{fn_id}&stepId=step", body)
        assert ro.status == rp.status == 201
        eo, ep = json.loads(ro.body), json.loads(rp.body)
        assert eo["status"] == ep["status"]
        for k in ("content-type", "x-inngest-no-retry", "x-inngest-req-version", "x-inngest-framework"):
            assert eo["headers"].get(k) == ep["headers"].get(k), k
        bo, bp = json.loads(eo["body"]), json.loads(ep["body"])
        for b in (bo, bp):
            for item in b if isinstance(b, list) else [b]:
                if isinstance(item, dict) and item.get("stack"):
                    item["stack"] = "<stack>"
        assert bo == bp


def test_use_api_fetches_state(api: FakeAPI, dev: tuple[Any, Any], cloud: tuple[Any, Any]) -> None:
    """A too-large run state arrives as ``use_api: true`` with empty events/steps; both SDKs
    fetch the batch and the memos from the API (with the hashed signing key in production)."""
    run_id = "01HUSEAPIUSEAPIUSEAPIUSEAP"
    api.batches[run_id] = [event(data={"i": 1}), event(data={"i": 2})]
    api.actions[run_id] = {h("add"): {"data": 0}, h("add:1"): {"data": 1}}
    body = exec_body(events=[event(data={"i": 1})], steps={}, stack=[], use_api=True, run_id=run_id, max_attempts=3)
    for (o, p), headers in ((dev, None), (cloud, signed_headers(body))):
        ro, rp = _post(o, p, "/api/inngest?fnId=diff-app-steps&stepId=step", body, headers)
        got = assert_same(ro, rp)
        assert got["body"][0]["displayName"] == "add" and got["body"][0]["data"] == 3  # third add: 1 + 2
        ro, rp = _post(o, p, "/api/inngest?fnId=diff-app-batch&stepId=step", body, headers)
        assert assert_same(ro, rp)["body"] == [1, 2]


def test_in_band_sync(cloud: tuple[Any, Any]) -> None:
    o, p = cloud
    body = jcs.dumps({"url": "https://public.example.com/api/inngest"})  # servers send canonical JSON
    headers = {**signed_headers(body), "x-inngest-sync-kind": "in_band"}
    ro, rp = o.request("PUT", "/api/inngest", headers, body), p.request("PUT", "/api/inngest", headers, body)
    assert ro.status == rp.status == 200
    assert ro.headers["x-inngest-sync-kind"] == rp.headers["x-inngest-sync-kind"] == "in_band"
    a, b = ro.json(), rp.json()
    assert a["functions"] == b["functions"] and a["url"] == b["url"] == "https://public.example.com/api/inngest"
    assert {k for k in a if k not in ("sdk_author",)} == set(b) - {"sdk_author"}
    from pyngest.protocol import signing

    assert signing.verify(rp.body, rp.headers["x-inngest-signature"], [SIGNING_KEY])
    # unsigned in-band sync: refused by both
    ro = o.request("PUT", "/api/inngest", {"x-inngest-sync-kind": "in_band"}, body)
    rp = p.request("PUT", "/api/inngest", {"x-inngest-sync-kind": "in_band"}, body)
    assert ro.status == rp.status == 401


def test_flask_runs_async_functions(api: FakeAPI) -> None:
    c = pyngest.Inngest(app_id="fa", is_production=False, event_api_base_url=api.url)

    @c.create_function(fn_id="f", trigger=pyngest.TriggerEvent(event="e"))
    async def f(ctx: pyngest.Context) -> Any:
        ids = await ctx.step.send_event("s", pyngest.Event(name="from-flask"))
        return await ctx.step.run("a", lambda: len(ids))

    app = flask.Flask("fa")
    pyngest.flask.serve(app, c, [f])
    client = FlaskClient(app)
    t = simulate(client, client, "fa-f", [event(name="e")])
    assert t.final["body"] == 1


def test_memo_formats(dev: tuple[Any, Any]) -> None:
    """Memo values in every shape PROTOCOL.md §4.3 allows, decoded alike by both SDKs."""
    o, p = dev
    steps = {
        h("a"): {"data": 1, "error": None},
        h("b"): {},
        h("c"): {"error": {"message": "no name"}},  # not a valid error: the whole value is data
        h("d"): None,
        h("f"): {"name": "app/reply", "data": {"x": 1}, "id": "01", "ts": 5},  # an event, unwrapped
        h("e"): {"error": {"name": "E", "message": "m", "stack": "s"}, "data": 5},
    }
    body = exec_body(events=[event()], steps=steps, stack=list(steps))
    ro, rp = _post(o, p, "/api/inngest?fnId=diff-app-memos&stepId=step", body)
    got = assert_same(ro, rp)
    assert got["body"] == [1, None, {"error": {"message": "no name"}}, None,
                           {"name": "app/reply", "data": {"x": 1}, "id": "01", "ts": 5}, ["E", "m", "s"]]


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini", "deepseek", "grok"])
@pytest.mark.parametrize("adapter_kw", [{}, {"base_url": "https://proxy.example.com/v9/", "headers": {"x-k": "v"}}])
def test_ai_infer_adapters(loop: asyncio.AbstractEventLoop, provider: str, adapter_kw: dict[str, Any]) -> None:
    """Every model adapter of the official SDK's ``experimental.ai`` builds the same
    ``AIGateway`` op (url, format, headers, auth key, body with the model filled in)."""
    import importlib

    apps = []
    for sdk, ai_pkg, fast_api in ((inngest, "inngest.experimental.ai", inngest.fast_api),
                                  (pyngest, "pyngest.experimental.ai", pyngest.fast_api)):
        adapters = importlib.import_module(f"{ai_pkg}.{provider}")
        client = sdk.Inngest(app_id="ai-app", is_production=False)

        @client.create_function(fn_id="infer", trigger=sdk.TriggerEvent(event="e"))
        async def infer(ctx: Any, adapters: Any = adapters) -> Any:
            return await ctx.step.ai.infer(
                "infer", adapter=adapters.Adapter(auth_key="sk-1", model="m-1", **adapter_kw),
                body={"messages": [{"role": "user", "content": "hi"}]},
            )

        app = fastapi.FastAPI()
        fast_api.serve(app, client, [infer])
        apps.append(ASGIClient(app, loop))
    o, p = apps
    body = exec_body(events=[event(name="e")], steps={}, stack=[])
    got = assert_same(*_post(o, p, "/api/inngest?fnId=ai-app-infer&stepId=step", body))
    (op,) = got["body"]
    assert op["op"] == "AIGateway" and op["opts"]["body"]["model"] == "m-1"
