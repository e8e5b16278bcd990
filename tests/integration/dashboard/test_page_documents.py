"""Every GraphQL document the dashboard's pages send, taken verbatim from their modules in
``ui/static/`` and run against an in-process server with a run that has every kind of step.

The other dashboard API tests check the fields' meaning with hand-written queries; this one makes
sure the pages' own documents (their exact fields, arguments and variable types) are answered
without errors, and it fails when a page gains a document that no test here sends.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from graphql import OperationDefinitionNode, parse

import pyngest.server.ui
from pyngest.protocol.durations import iso_ms
from pyngest.protocol.step_ids import hash_step_id
from pyngest.server.registry import normalize_url
from tests.integration.dashboard.conftest import SyncableApp
from tests.integration.server.harness import Call, Harness, done, function_config, ops

UI = Path(pyngest.server.ui.__file__).parent / "static"
HOUR = 3_600_000
WORK, NAP, APPROVAL, CHILD = (hash_step_id(s) for s in ("work", "nap", "approval", "child"))


def page_documents() -> dict[str, list[str]]:
    """``"<operation> <root fields>"`` -> the documents of that shape the pages send, with the
    modules' ``${CONST}`` interpolations (the run page's span fields) filled in."""
    found: dict[str, list[str]] = {}
    for path in sorted(UI.glob("*.js")):
        text = path.read_text()
        consts = dict(re.findall(r"const (\w+) = `([^`]*)`", text))
        for m in re.finditer(r"`(\s*(?:query\b|mutation\b|\{)[^`]*)`", text):
            doc = re.sub(r"\$\{(\w+)\}", lambda g, c=consts: c[g.group(1)], m.group(1))
            op = parse(doc).definitions[0]
            assert isinstance(op, OperationDefinitionNode)
            roots = sorted(f.name.value for f in op.selection_set.selections)  # type: ignore[attr-defined]
            found.setdefault(f"{op.operation.value} {' '.join(roots)}", []).append(doc)
    return found


DOCS = page_documents()


async def script(call: Call) -> tuple:
    """``test/flow``: a step, a sleep, a wait for ``test/approve``, an invoke of ``test-child``."""
    event = call.body["event"]
    steps = call.body["steps"]
    if event["name"] == "inngest/function.invoked":
        return done({"child": event["data"].get("n")})
    if event["name"] == "test/work":
        if WORK in steps:
            return done({"ok": True, "n": event["data"].get("n")})
        return ops({"op": "StepRun", "id": WORK, "name": "work", "displayName": "work", "data": {"step": 1}})
    if WORK not in steps:
        return ops({"op": "StepRun", "id": WORK, "name": "work", "displayName": "work", "data": {"reserved": 3}})
    if NAP not in steps:
        return ops({"op": "Sleep", "id": NAP, "name": "1s", "displayName": "nap"})
    if APPROVAL not in steps:
        return ops({"op": "WaitForEvent", "id": APPROVAL, "name": "test/approve", "displayName": "approval",
                    "opts": {"event": "test/approve", "timeout": "1h", "if": "event.data.k == async.data.k"}})
    if CHILD not in steps:
        return ops({"op": "InvokeFunction", "id": CHILD, "name": "child", "displayName": "child",
                    "opts": {"function_id": "test-child", "payload": {"data": {"n": 5}}}})
    return done({"flow": "done", "child": steps[CHILD]})


class Pages:
    """Sends the pages' documents and keeps count of which shapes were sent."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.sent: set[str] = set()

    async def send(self, key: str, **variables: Any) -> list[dict[str, Any]]:
        """Every document of shape ``key`` with ``variables``; their answers."""
        assert self.h.http is not None
        out = []
        for doc in DOCS[key]:
            resp = await self.h.http.post("/v0/gql", json={"query": doc, "variables": variables})
            body = resp.json()
            assert resp.status_code == 200 and not body.get("errors"), (key, body)
            out.append(body["data"])
        self.sent.add(key)
        return out

    async def one(self, key: str, **variables: Any) -> dict[str, Any]:
        [data] = await self.send(key, **variables)
        return data

    async def finished(self, key: str, fn_id: str) -> dict[str, Any]:
        """The only operation in a function's cancellation or replay history, once it finished."""
        for _ in range(200):
            [item] = (await self.one(key, fn=fn_id))["items"]
            if item["finishedAt"]:
                return item
            await asyncio.sleep(0.02)
        raise AssertionError(f"{key}: {item}")


@pytest.fixture
async def flow(tmp_path: Path) -> AsyncIterator[tuple[Harness, dict[str, Any]]]:
    h = Harness(tmp_path)
    await h.start()
    h.app.script = script
    await h.register(function_config(h.app, "work"), function_config(h.app, "flow"),
                     function_config(h.app, "child"))
    try:
        [eid] = await h.send({"name": "test/flow", "data": {"k": "a1", "orderId": "o-1"}})
        await h.settle(40)
        await h.advance(1000)  # the sleep
        await h.settle(40)
        await h.send({"name": "test/approve", "data": {"k": "a1"}})
        [run] = await h.run_ended(eid)
        assert run["status"] == "Completed", run
        yield h, run
    finally:
        await h.stop()


async def wait_until(check: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(200):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met")


async def test_every_document_the_pages_send(flow: tuple[Harness, dict[str, Any]]) -> None:
    h, flow_run = flow
    pages = Pages(h)
    now = h.clock.now_ms()
    since = iso_ms(now - HOUR)
    run_id = flow_run["run_id"]

    # ---------------------------------------------------------------- run page
    data = await pages.one("query run runTrigger", id=run_id)
    run, trigger = data["run"], data["runTrigger"]
    assert run["status"] == "COMPLETED" and run["eventName"] == "test/flow"
    assert run["function"]["slug"] == "test-flow" and run["app"]["name"] == "test"
    assert orjson.loads(run["output"])["flow"] == "done" and run["triggerIDs"] == [flow_run["event_id"]]
    spans = {s["name"]: s for s in run["trace"]["childrenSpans"]}
    assert run["trace"]["isRoot"] and set(spans) >= {"work", "nap", "approval", "child"}
    assert [spans[n]["stepOp"] for n in ("work", "nap", "approval", "child")] == \
        ["RUN", "SLEEP", "WAIT_FOR_EVENT", "INVOKE"]
    info = {n: spans[n]["stepInfo"] for n in ("nap", "approval", "child")}
    assert info["nap"]["__typename"] == "SleepStepInfo" and info["nap"]["sleepUntil"]
    assert info["approval"]["__typename"] == "WaitForEventStepInfo"
    assert info["approval"]["eventName"] == "test/approve" and info["approval"]["timedOut"] is False
    assert info["approval"]["expression"] == '"a1" == async.data.k'  # interpolated, as it was matched
    assert info["child"]["__typename"] == "InvokeStepInfo" and info["child"]["functionID"] == "test-child"
    for span in spans.values():  # drawn to scale: every span has its times
        assert span["startedAt"] and span["endedAt"] and span["status"] == "COMPLETED", span
    # Time is RFC 3339, as upstream's scalar; the sleep lasted the second the clock moved
    assert spans["nap"]["startedAt"] == iso_ms(now - 1000) and spans["nap"]["endedAt"] == iso_ms(now)
    assert info["nap"]["sleepUntil"] == iso_ms(now) and run["queuedAt"].endswith("Z")
    assert trigger["eventName"] == "test/flow" and trigger["IDs"] == [flow_run["event_id"]]
    assert orjson.loads(trigger["payloads"][0])["data"]["orderId"] == "o-1" and trigger["isBatch"] is False

    out = await pages.one("query runTraceSpanOutputByID", id=spans["work"]["outputID"])
    assert orjson.loads(out["runTraceSpanOutputByID"]["data"]) == {"reserved": 3}
    assert out["runTraceSpanOutputByID"]["error"] is None

    # ---------------------------------------------------------------- runs list and its filters
    [opts] = await pages.send("query apps functions")
    fn_ids = {f["slug"]: f["id"] for f in opts["functions"]}
    [app] = opts["apps"]
    assert set(fn_ids) == {"test-work", "test-flow", "test-child"}
    [work_event] = await h.send({"name": "test/work", "data": {"n": 2}})
    await h.run_ended(work_event)
    by_filter = {
        "all": {"from": since},
        "function": {"from": since, "functionIDs": [fn_ids["test-flow"]]},
        "app": {"from": since, "appIDs": [app["id"]]},
        "status": {"from": since, "status": ["COMPLETED"]},
        "search": {"from": since, "query": 'event.data.orderId == "o-1"'},
        "later": {"from": iso_ms(h.clock.now_ms() + 1000)},
    }
    found: dict[str, set[str]] = {}
    for name, f in by_filter.items():
        answers = await pages.send("query runs", first=40, filter=f)
        assert len({orjson.dumps(a) for a in answers}) == 1  # the runs page and the function page agree
        found[name] = {e["node"]["function"]["slug"] for e in answers[0]["runs"]["edges"]}
    assert found["all"] == found["app"] == found["status"] == {"test-work", "test-flow", "test-child"}
    assert found["function"] == found["search"] == {"test-flow"}
    assert found["later"] == set()

    # ---------------------------------------------------------------- functions
    data = await pages.one("query functionStats functions", **{"from": since})
    stats = {s["functionID"]: s for s in data["functionStats"]}
    listed = {f["slug"]: f for f in data["functions"]}
    assert listed["test-flow"]["triggers"] == [{"type": "EVENT", "value": "test/flow", "condition": None}]
    assert stats[fn_ids["test-flow"]]["total"] == 1 and stats[fn_ids["test-flow"]]["failureRate"] == 0
    page = await pages.one("query functionBySlug functionMetrics", slug="test-flow", buckets=48, **{"from": since})
    fn = page["functionBySlug"]
    assert fn["id"] == fn_ids["test-flow"] and orjson.loads(fn["config"])["id"] == "test-flow"
    metrics = page["functionMetrics"]
    assert metrics["bucketMS"] == HOUR // 48 and len(metrics["runs"]["completed"]) == 48
    assert metrics["status"]["completed"] == 1 and sum(metrics["runs"]["completed"]) == 1
    assert sum(metrics["steps"]["completed"]) >= 1 and metrics["runs"]["backlog"][-1] == 0
    # a chosen time range: the last minute holds no run of it
    recent = await pages.one("query functionBySlug functionMetrics", slug="test-flow", buckets=48,
                             **{"from": iso_ms(h.clock.now_ms() - 60_000 + 1)})
    assert recent["functionMetrics"]["bucketMS"] < metrics["bucketMS"]

    invoked = await pages.one("mutation invokeFunction", slug="test-work", data={"n": 42}, user=None)
    assert invoked["invokeFunction"] is True

    async def invoked_ran() -> bool:
        [d, _] = await pages.send("query runs", first=40, filter={"from": since, "query": "event.data.n == 42"})
        return any(e["node"]["status"] == "COMPLETED" for e in d["runs"]["edges"])
    await wait_until(invoked_ran)

    paused = await pages.one("mutation pauseFunction", id=fn_ids["test-work"], c=False)
    assert paused["pauseFunction"] == {"id": fn_ids["test-work"], "paused": True}
    resumed = await pages.one("mutation unpauseFunction", id=fn_ids["test-work"])
    assert resumed["unpauseFunction"]["paused"] is False

    # bulk cancel: two flows wait for approval, one of them matches the expression
    held = await h.send({"name": "test/flow", "data": {"k": "b1"}}, {"name": "test/flow", "data": {"k": "b2"}})
    await h.settle(40)
    await h.advance(1000)
    await h.settle(40)
    span = {"fn": fn_ids["test-flow"], "a": since, "b": iso_ms(h.clock.now_ms() + 60_000)}
    count = await pages.one("query cancellationRunCount", **span, e='event.data.k == "b2"')
    assert count["cancellationRunCount"] == 1
    created = await pages.one("mutation createCancellation", i={
        "functionID": fn_ids["test-flow"], "name": "stop b2", "queuedAfter": span["a"], "queuedBefore": span["b"],
        "expression": 'event.data.k == "b2"'})
    assert created["createCancellation"]["matched"] == 1
    record = await pages.finished("query cancellations", fn_ids["test-flow"])
    assert (record["name"], record["matched"], record["cancelled"]) == ("stop b2", 1, 1)
    assert [r["status"] for r in await h.runs_for(held[1])] == ["Cancelled"]

    # replay the cancelled one
    replay_vars = {"fn": fn_ids["test-flow"], "a": span["a"], "b": span["b"], "s": ["CANCELLED"]}
    assert (await pages.one("query replayRunCount", **replay_vars))["replayRunCount"] == 1
    replay = await pages.one("mutation createFunctionReplay", i={
        "functionID": fn_ids["test-flow"], "name": "again", "fromRange": span["a"], "toRange": span["b"],
        "statuses": ["CANCELLED"]})
    assert replay["createFunctionReplay"]["total"] == 1
    rec = await pages.finished("query replays", fn_ids["test-flow"])
    assert (rec["name"], rec["total"], rec["scheduled"], rec["statuses"]) == ("again", 1, 1, ["CANCELLED"])

    # ---------------------------------------------------------------- run actions
    waiting = (await h.runs_for(held[0]))[0]["run_id"]
    cancel = await pages.one("mutation cancelRun", id=waiting)
    assert cancel["cancelRun"]["id"] == waiting
    await wait_until(lambda: _status(h, held[0], "Cancelled"))
    rerun = await pages.one("mutation rerun", id=run_id)
    assert rerun["rerun"] != run_id
    again = await pages.one("query run runTrigger", id=rerun["rerun"])
    assert again["run"]["function"]["slug"] == "test-flow"

    # ---------------------------------------------------------------- events
    sent = await pages.one("mutation sendEvents", e=[{"name": "test/work", "data": {"n": 9}, "user": {}}])
    [sent_id] = sent["sendEvents"]
    await h.run_ended(sent_id)
    names = {n["name"]: n for n in (await pages.one("query eventNames", internal=False, **{"from": since}))["eventNames"]}
    assert names["test/work"]["volume"] == 2 and names["test/work"]["lastReceivedAt"]
    assert [f["slug"] for f in names["test/work"]["functions"]] == ["test-work"]
    assert not any(n.startswith("inngest/") for n in names)
    internal = (await pages.one("query eventNames", internal=True, **{"from": since}))["eventNames"]
    assert "inngest/function.invoked" in {n["name"] for n in internal}
    recent = await pages.one("query eventsV2", names=["test/work"], first=25, internal=False, **{"from": since})
    nodes = [e["node"] for e in recent["eventsV2"]["edges"]]
    assert nodes[0]["id"] == sent_id and nodes[0]["runs"][0]["function"]["name"] == "work"
    assert len(nodes) == 2
    everything = await pages.one("query eventsV2", names=None, first=25, internal=False, **{"from": since})
    assert {e["node"]["name"] for e in everything["eventsV2"]["edges"]} == {"test/work", "test/flow", "test/approve"}
    t = await pages.one("query eventThroughput", n="test/work", **{"from": since})
    assert sum(t["eventThroughput"]["counts"]) == 2 and len(t["eventThroughput"]["counts"]) == 48
    ev = (await pages.one("query eventV2", id=sent_id))["eventV2"]
    assert orjson.loads(ev["raw"])["data"] == {"n": 9} and ev["receivedAt"] and ev["occurredAt"]
    assert [r["status"] for r in ev["runs"]] == ["COMPLETED"] and ev["skippedFunctions"] == []

    # ---------------------------------------------------------------- apps (last: they end the app)
    await h.service.syncer.start()  # the harness registers apps directly; these go over HTTP
    listed_apps = await pages.one("query appURLs apps")
    [app] = listed_apps["apps"]
    assert (app["sdkLanguage"], app["sdkVersion"], app["framework"]) == ("py", "0.5.19", "fast_api")
    assert app["functionCount"] == 3 and {f["slug"] for f in app["functions"]} == set(fn_ids)
    # the app's serve URL (normalized as upstream does), not one of its functions' step URLs
    assert app["url"] == normalize_url(h.app.url) == f"http://localhost:{h.app.port}/api/inngest"
    assert app["error"] is None
    assert (await pages.one("mutation deleteApp", id=app["id"]))["deleteApp"] == app["id"]
    assert (await pages.one("query appURLs apps"))["apps"] == []

    async with SyncableApp(h, "work", "flow", "child") as url:
        created = await pages.one("mutation createApp", url=url)
        assert created["createApp"]["name"] == "test"
        [app] = (await pages.one("query appURLs apps"))["apps"]
        assert app["url"] == normalize_url(url) and app["functionCount"] == 3 and app["error"] is None
        other = url + "?env=b"
        updated = await pages.one("mutation updateApp", id=app["id"], url=other)
        assert updated["updateApp"] == {"id": app["id"], "url": normalize_url(other)}
        synced = await pages.one("mutation syncApp", id=app["id"])
        assert synced["syncApp"] == {"id": app["id"], "error": None}
        urls = {u["url"]: u for u in (await pages.one("query appURLs apps"))["appURLs"]}
        assert urls[other]["appID"] == app["id"] and urls[other]["syncedAt"] and urls[other]["error"] is None
        assert url not in urls  # the URL it moved away from is forgotten
        # the same URL spelled another way (the app's url reads localhost): it keeps its URL record
        assert app["url"] != other and normalize_url(other) == (await pages.one("query appURLs apps"))["apps"][0]["url"]
        await pages.one("mutation updateApp", id=app["id"], url=other)
        urls = {normalize_url(u["url"]): u for u in (await pages.one("query appURLs apps"))["appURLs"]}
        assert urls[normalize_url(other)]["appID"] == app["id"], urls
    # once the app is gone: a resync says so, an edit to a dead URL and a new dead URL are refused
    gone = await pages.one("mutation syncApp", id=app["id"])
    assert "could not reach" in gone["syncApp"]["error"]
    dead = "http://127.0.0.1:9/api/inngest"
    assert "could not reach" in await _gql_fails(h, DOCS["mutation updateApp"][0], id=app["id"], url=dead)
    assert "could not reach" in await _gql_fails(h, DOCS["mutation createApp"][0], url=dead)
    urls = {u["url"]: u for u in (await pages.one("query appURLs apps"))["appURLs"]}
    assert urls[dead]["error"] and urls[dead]["appID"] is None

    await _webhook_documents(h, pages)
    assert pages.sent == set(DOCS) - ENV_DOCS, set(DOCS) - ENV_DOCS - pages.sent


# The start-mode pages' documents (environments and keys): sent by the next test.
ENV_FIELDS = {"environments", "eventKeys", "signingKeys", "createEnvironment", "archiveEnvironment",
              "setEnvironmentAutoArchive", "createEventKey",
              "updateEventKey", "rotateEventKey", "deleteEventKey", "createSigningKey", "rotateSigningKey",
              "deleteSigningKey"}
ENV_DOCS = {key for key in DOCS if set(key.split()[1:]) <= ENV_FIELDS}


async def test_every_environment_document_the_pages_send(tmp_path: Path) -> None:
    h = Harness(tmp_path, mode="start", signing_key="signkey-prod-" + "ab" * 32, event_keys=["k1"])
    await h.start()
    try:
        pages = Pages(h)
        envs = (await pages.one("query environments"))["environments"]
        assert [e["type"] for e in envs] == ["production"]
        created = (await pages.one("mutation createEnvironment", name="staging"))["createEnvironment"]
        assert created["environment"]["name"] == "staging" and created["signingKey"]
        archived = await pages.one("mutation archiveEnvironment", id=created["environment"]["id"], a=True)
        assert archived["archiveEnvironment"]["id"] == created["environment"]["id"]
        assert h.http is not None
        assert (await h.http.post("/e/k1?x-inngest-env=preview", json={"name": "a/b"})).status_code == 200
        branch = next(e for e in (await pages.one("query environments"))["environments"] if e["name"] == "preview")
        assert branch["autoArchive"] is True and branch["autoArchiveAt"] and branch["deployedAt"] is None
        toggled = await pages.one("mutation setEnvironmentAutoArchive", id=branch["id"], on=False)
        assert toggled["setEnvironmentAutoArchive"]["id"] == branch["id"]
        branch = next(e for e in (await pages.one("query environments"))["environments"] if e["name"] == "preview")
        assert branch["autoArchive"] is False and branch["autoArchiveAt"] is None
        key = (await pages.one("mutation createEventKey", name="web", filter={"events": {"mode": "deny",
                                                                                        "names": ["x/*"]}}))
        key_id = key["createEventKey"]["id"]
        assert key["createEventKey"]["key"]
        await pages.one("mutation updateEventKey", id=key_id, name="web-2", filter=None, clear=True)
        listed = await pages.one("query eventKeys signingKeys")
        web = next(k for k in listed["eventKeys"] if k["id"] == key_id)
        assert web["name"] == "web-2" and web["filter"] is None
        assert [k["state"] for k in listed["signingKeys"]] == ["active"]
        rotated = (await pages.one("mutation rotateEventKey", id=key_id))["rotateEventKey"]["key"]
        assert rotated and rotated != key["createEventKey"]["key"]
        listed = await pages.one("query eventKeys signingKeys")
        await pages.one("mutation deleteEventKey", id=next(k["id"] for k in listed["eventKeys"] if k["name"] == "web-2"))
        assert (await pages.one("mutation createSigningKey"))["createSigningKey"]["state"] == "next"
        await pages.one("mutation rotateSigningKey")
        previous = [k for k in (await pages.one("query eventKeys signingKeys"))["signingKeys"] if k["state"] == "previous"]
        assert len(previous) == 1
        assert h.http is not None
        new_key = next(k["key"] for k in (await pages.one("query eventKeys signingKeys"))["signingKeys"]
                       if k["state"] == "active")
        h.http.headers["Authorization"] = f"Bearer {new_key}"  # the harness's key is about to be retired
        await pages.one("mutation deleteSigningKey", id=previous[0]["id"])
        assert pages.sent == ENV_DOCS, ENV_DOCS - pages.sent
    finally:
        await h.stop()


async def _webhook_documents(h: Harness, pages: Pages) -> None:
    """The webhooks page: create, list, test a transform, save it, a failed request and its replay."""
    made = (await pages.one("mutation createWebhook", i={"name": "Stripe"}))["createWebhook"]
    listed = await pages.one("query defaultWebhookTransform webhooks")
    assert [w["id"] for w in listed["webhooks"]] == [made["id"]] and listed["webhooks"][0]["transform"] is None
    strict = "function transform(e) { if (!e.type) throw new Error('no type'); return {name: 'stripe/' + e.type, data: e} }"
    tested = (await pages.one("mutation testWebhookTransform", t=strict, p='{"type": "a"}', h={"X-A": "1"}))
    assert tested["testWebhookTransform"]["events"][0]["name"] == "stripe/a"
    await pages.one("mutation updateWebhook", id=made["id"], i={"name": "Stripe", "transform": strict})
    assert h.http is not None
    assert (await h.http.post(listed["webhooks"][0]["path"], json={})).status_code == 400
    [failure] = (await pages.one("query webhook", id=made["id"]))["webhook"]["failures"]
    replayed = (await pages.one("mutation replayWebhookFailure", id=failure["id"]))["replayWebhookFailure"]
    assert replayed["ids"] == [] and "no type" in replayed["error"]
    assert (await pages.one("mutation deleteWebhook", id=made["id"]))["deleteWebhook"] == made["id"]


async def _status(h: Harness, event_id: str, status: str) -> bool:
    return [r["status"] for r in await h.runs_for(event_id)] == [status]


async def _gql_fails(h: Harness, doc: str, **variables: Any) -> str:
    assert h.http is not None
    body = (await h.http.post("/v0/gql", json={"query": doc, "variables": variables})).json()
    assert body.get("errors"), body
    return str(body["errors"][0]["message"])
