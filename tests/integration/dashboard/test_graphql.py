"""The GraphQL fields and mutations the dashboard's pages use, against an in-process server."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from pyngest.protocol.durations import iso_ms
from pyngest.protocol.step_ids import hash_step_id
from tests.integration.dashboard.conftest import STEP, gql, gql_error
from tests.integration.server.harness import Call, Harness, done, error_op, ops

HOUR = 3_600_000


def since(h: Harness, ms: int = HOUR) -> str:
    return iso_ms(h.clock.now_ms() - ms)


async def ended(h: Harness, *event_ids: str) -> list[dict]:
    runs = []
    for eid in event_ids:
        runs += await h.run_ended(eid)
    return runs


async def test_runs_list_filters_search_and_event_names(harness: Harness) -> None:
    ids = await harness.send({"name": "test/work", "data": {"n": 1}}, {"name": "test/work", "data": {"n": 2}},
                             {"name": "test/work", "data": {"n": 3, "fail": True}})
    await ended(harness, *ids)
    q = """query($f: RunsFilterV2!) { runs(first: 10, orderBy: [{field: QUEUED_AT, direction: DESC}], filter: $f) {
      edges { node { id status eventName function { slug } app { name } } } pageInfo { hasNextPage endCursor } } }"""
    data = await gql(harness, q, f={"from": since(harness)})
    nodes = [e["node"] for e in data["runs"]["edges"]]
    assert len(nodes) == 3 and {n["eventName"] for n in nodes} == {"test/work"}
    assert nodes[0]["function"]["slug"] == "test-work" and nodes[0]["app"]["name"] == "test"
    failed = await gql(harness, q, f={"from": since(harness), "status": ["FAILED"]})
    assert [e["node"]["status"] for e in failed["runs"]["edges"]] == ["FAILED"]
    found = await gql(harness, q, f={"from": since(harness), "query": "event.data.n >= 2\noutput.ok == true"})
    assert len(found["runs"]["edges"]) == 1
    none = await gql(harness, q, f={"from": iso_ms(harness.clock.now_ms() + 1000)})
    assert none["runs"]["edges"] == []
    message = await gql_error(harness, q, f={"from": since(harness), "query": "event.data.n >"})
    assert "unexpected" in message and "event.data.n >" in message  # the parser points at the problem


async def test_run_trace_draws_each_attempt_with_its_error(harness: Harness) -> None:
    step = hash_step_id("flaky")
    calls = {"n": 0}

    async def script(call: Call) -> tuple:
        if step in call.body["steps"]:
            return done("fine")
        calls["n"] += 1
        if calls["n"] == 1:
            return ops(error_op(step, "card declined"))
        return ops({"op": "StepRun", "id": step, "name": "flaky", "displayName": "flaky", "data": 1})

    harness.app.script = script
    from tests.integration.server.harness import function_config

    await harness.register(function_config(harness.app, "flaky", retries=2))
    [eid] = await harness.send({"name": "test/flaky"})
    await harness.settle()
    await harness.advance(60_000)
    [run] = await harness.run_ended(eid)
    attempt = "spanID name status outputID startedAt endedAt"
    data = await gql(harness, f"""query($id: String!) {{ run(runID: $id) {{ eventName trace {{
        childrenSpans {{ name attempts childrenSpans {{ {attempt} }} }} }} }} }}""", id=run["run_id"])
    trace = data["run"]["trace"]
    assert data["run"]["eventName"] == "test/flaky"
    [flaky] = [s for s in trace["childrenSpans"] if s["name"] == "flaky"]
    assert flaky["attempts"] == 2
    assert [a["status"] for a in flaky["childrenSpans"]] == ["FAILED", "COMPLETED"]
    out = await gql(harness, 'query($id: String!) { runTraceSpanOutputByID(outputID: $id) { data error { message } } }',
                    id=flaky["childrenSpans"][0]["outputID"])
    assert out["runTraceSpanOutputByID"]["error"]["message"] == "card declined"


async def test_a_run_that_fails_before_any_step_shows_attempts_of_its_request(harness: Harness) -> None:
    async def script(call: Call) -> tuple:  # the function raises before its first step
        return 500, {"X-Inngest-SDK": "inngest-py:v0.5.19"}, {"name": "KeyError", "message": "'user'"}

    harness.app.script = script
    from tests.integration.server.harness import function_config

    await harness.register(function_config(harness.app, "early", retries=2))
    [eid] = await harness.send({"name": "test/early"})
    for _ in range(3):
        await harness.advance(120_000)
    [run] = await harness.run_ended(eid)
    assert run["status"] == "Failed"
    data = await gql(harness, """query($id: String!) { run(runID: $id) { trace {
        childrenSpans { name status attempts childrenSpans { name status outputID } } } } }""", id=run["run_id"])
    # one span, the function's request, whose three attempts are its children (not three steps)
    [request] = data["run"]["trace"]["childrenSpans"]
    assert (request["name"], request["status"], request["attempts"]) == ("Function request", "FAILED", 3)
    assert [a["name"] for a in request["childrenSpans"]] == ["Attempt 1", "Attempt 2", "Attempt 3"]
    out = await gql(harness, 'query($id: String!) { runTraceSpanOutputByID(outputID: $id) { error { name message } } }',
                    id=request["childrenSpans"][0]["outputID"])
    assert out["runTraceSpanOutputByID"]["error"] == {"name": "KeyError", "message": "'user'"}


async def test_function_stats_metrics_and_event_views(harness: Harness) -> None:
    ids = await harness.send(*({"name": "test/work", "data": {"n": i, "fail": i == 0}} for i in range(4)))
    await ended(harness, *ids)
    fns = await gql(harness, "query($f: Time!) { functionStats(from: $f) { functionID total failed completed failureRate } }",
                    f=since(harness))
    [stats] = fns["functionStats"]
    assert (stats["total"], stats["failed"], stats["completed"], stats["failureRate"]) == (4, 1, 3, 0.25)
    m = await gql(harness, """query($f: Time!) { functionMetrics(functionID: "test-work", from: $f, buckets: 12) {
        bucketMS status { total completed failed } runs { queued started completed failed backlog }
        steps { completed failed errored } } }""", f=since(harness))
    metrics = m["functionMetrics"]
    assert metrics["bucketMS"] == HOUR // 12 and metrics["status"]["total"] == 4
    assert sum(metrics["runs"]["queued"]) == 4 and sum(metrics["runs"]["completed"]) == 3
    assert sum(metrics["runs"]["failed"]) == 1 and metrics["runs"]["backlog"][-1] == 0
    assert sum(metrics["steps"]["completed"]) == 4
    names = await gql(harness, "query($f: Time!) { eventNames(from: $f) { name volume functions { slug } } }",
                      f=since(harness))
    assert names["eventNames"] == [{"name": "test/work", "volume": 4, "functions": [{"slug": "test-work"}]}]
    t = await gql(harness, 'query($f: Time!) { eventThroughput(name: "test/work", from: $f, buckets: 6) { counts } }',
                  f=since(harness))
    assert sum(t["eventThroughput"]["counts"]) == 4 and len(t["eventThroughput"]["counts"]) == 6
    ev = await gql(harness, """query($f: Time!) { eventsV2(first: 2, filter: {from: $f, eventNames: ["test/work"]}) {
        edges { node { id name runs { status } } } pageInfo { hasNextPage } } }""", f=since(harness))
    assert len(ev["eventsV2"]["edges"]) == 2 and ev["eventsV2"]["pageInfo"]["hasNextPage"]
    assert ev["eventsV2"]["edges"][0]["node"]["runs"][0]["status"] in ("COMPLETED", "FAILED")


async def test_send_events_invoke_rerun_and_cancel(harness: Harness) -> None:
    sent = await gql(harness, 'mutation { sendEvents(events: [{name: "test/work", data: {n: 7}}]) }')
    [eid] = sent["sendEvents"]
    [run] = await harness.run_ended(eid)
    rerun = await gql(harness, "mutation($id: ULID!) { rerun(runID: $id) }", id=run["run_id"])
    await harness.settle()
    new = await harness.http.get(f"/v1/runs/{rerun['rerun']}")  # type: ignore[union-attr]
    assert new.json()["data"]["original_run_id"] == run["run_id"]
    assert await gql_error(harness, 'mutation { sendEvents(events: [{data: {}}]) }')
    invoked = await gql(harness, 'mutation { invokeFunction(functionSlug: "test-work", data: {n: 9}) }')
    assert invoked["invokeFunction"] is True


async def test_pause_stops_new_runs_and_can_cancel_running_ones(harness: Harness) -> None:
    wait = hash_step_id("hold")

    async def script(call: Call) -> tuple:
        return ops({"op": "WaitForEvent", "id": wait, "name": "test/never", "opts": {"event": "test/never", "timeout": "1h"}})

    harness.app.script = script
    [eid] = await harness.send({"name": "test/work"})
    await harness.settle()
    paused = await gql(harness, 'mutation { pauseFunction(fnID: "test-work", cancelRunning: true) { paused } }')
    assert paused["pauseFunction"]["paused"] is True
    [run] = await harness.run_ended(eid)  # cancelled by the pause's cancellation operation
    assert run["status"] == "Cancelled"
    [later] = await harness.send({"name": "test/work"})
    await harness.settle()
    assert await harness.runs_for(later) == []
    resumed = await gql(harness, 'mutation { unpauseFunction(fnID: "test-work") { paused } }')
    assert resumed["unpauseFunction"]["paused"] is False


async def test_bulk_cancellation_and_replay_with_previews_and_history(harness: Harness) -> None:
    wait = hash_step_id("hold")

    async def holding(call: Call) -> tuple:
        if call.body["event"]["data"].get("fail"):
            return 500, {"X-Inngest-SDK": "inngest-py:v0.5.19", "x-inngest-no-retry": "true"}, {"message": "boom"}
        return ops({"op": "WaitForEvent", "id": wait, "name": "test/never", "opts": {"event": "test/never", "timeout": "1h"}})

    harness.app.script = holding
    held = await harness.send(*({"name": "test/work", "data": {"k": i}} for i in range(3)))
    failed = await harness.send({"name": "test/work", "data": {"fail": True}})
    await ended(harness, *failed)
    count = await gql(harness, 'query($a: Time) { cancellationRunCount(functionID: "test-work", queuedAfter: $a, expression: "event.data.k >= 1") }',
                      a=since(harness))
    assert count["cancellationRunCount"] == 2
    created = await gql(harness, """mutation($a: Time) { createCancellation(input: {functionID: "test-work", name: "stop",
        queuedAfter: $a, expression: "event.data.k >= 1"}) { id matched } }""", a=since(harness))
    assert created["createCancellation"]["matched"] == 2
    # the operation cancels its runs in the background: until its history says it finished (it
    # was looked at once after 50 ms, which a loaded machine sometimes did not reach)
    for _ in range(200):
        history = await gql(harness, 'query { cancellations(functionID: "test-work") { name matched cancelled finishedAt } }')
        if history["cancellations"][0]["finishedAt"]:
            break
        await asyncio.sleep(0.05)
    statuses = sorted([(await harness.runs_for(e))[0]["status"] for e in held])
    assert statuses == ["Cancelled", "Cancelled", "Running"]
    assert history["cancellations"][0]["cancelled"] == 2 and history["cancellations"][0]["finishedAt"]

    harness.app.script = lambda call: _done()
    preview = await gql(harness, 'query($a: Time!, $b: Time!) { replayRunCount(functionID: "test-work", fromRange: $a, toRange: $b, statuses: [FAILED, CANCELLED]) }',
                        a=since(harness), b=iso_ms(harness.clock.now_ms() + 1))
    assert preview["replayRunCount"] == 3
    replay = await gql(harness, """mutation($a: Time!, $b: Time!) { createFunctionReplay(input: {functionID: "test-work",
        name: "after the fix", fromRange: $a, toRange: $b, statuses: [FAILED, CANCELLED]}) { id total } }""",
                       a=since(harness), b=iso_ms(harness.clock.now_ms() + 1))
    assert replay["createFunctionReplay"]["total"] == 3
    for _ in range(100):
        replays = (await gql(harness, 'query { replays(functionID: "test-work") { scheduled finishedAt } }'))["replays"]
        if replays[0]["finishedAt"]:
            break
        await asyncio.sleep(0.05)
    assert replays[0]["scheduled"] == 3
    await harness.advance(1000)  # replayed runs start 50 ms apart
    runs = (await harness.http.get("/v1/runs?limit=50")).json()["data"]  # type: ignore[union-attr]
    replayed = [r for r in runs if r.get("original_run_id")]
    assert len(replayed) == 3


async def _done() -> tuple:
    return done("replayed")


async def test_apps_add_edit_sync_and_delete(harness: Harness) -> None:
    await harness.service.syncer.start()  # the harness registers apps directly; these go over HTTP
    listed = await gql(harness, "{ apps { id name url functionCount connected updatedAt } appURLs { url error } }")
    [app] = listed["apps"]
    assert app["functionCount"] == 1 and app["connected"]
    bad = await gql_error(harness, 'mutation($id: String!) { updateApp(input: {id: $id, url: "http://127.0.0.1:9/api/inngest"}) { id } }',
                          id=app["id"])
    assert "could not reach" in bad
    synced = await gql(harness, 'mutation($id: String!) { syncApp(id: $id) { id error } }', id=app["id"])
    assert synced["syncApp"]["id"] == app["id"]
    deleted = await gql(harness, 'mutation($id: String!) { deleteApp(id: $id) }', id=app["id"])
    assert deleted["deleteApp"] == app["id"]
    assert (await gql(harness, "{ apps { id } }"))["apps"] == []


async def test_events_show_the_functions_they_skipped_and_why(harness: Harness) -> None:
    await gql(harness, 'mutation { pauseFunction(fnID: "test-work") { paused } }')
    [eid] = await harness.send({"name": "test/work"})
    await harness.settle()
    q = """query($id: ULID!) { eventV2(id: $id) { runs { id } skippedFunctions { functionSlug reason skippedAt } } }"""
    data = await gql(harness, q, id=eid)
    assert data["eventV2"]["runs"] == []
    [skip] = data["eventV2"]["skippedFunctions"]
    assert skip["functionSlug"] == "test-work" and skip["reason"] == "function_paused" and skip["skippedAt"]
    assert harness.http is not None
    rest = (await harness.http.get(f"/v1/events/{eid}/skips")).json()["data"]
    assert [(s["function_slug"], s["reason"]) for s in rest] == [("test-work", "function_paused")]


async def test_the_queries_the_official_sdks_test_harnesses_send(harness: Harness) -> None:
    """Exactly the queries (and variable types) inngest-py's test helper sends, plus the fields
    the issue names: a run's trace with the user's step id as the span name, the trigger
    payloads, a step's output by id, an event's runs, eventV2, functions and apps."""
    import inngest  # the official SDK's Event model parses runTrigger payloads

    [eid] = await harness.send({"name": "test/work", "id": "idem-1", "data": {"n": 3}})
    [run] = await harness.run_ended(eid)
    run_id = run["run_id"]

    got = await gql(harness, """query GetRun($run_id: String!) {
        run(runID: $run_id) { output status }
        runTrigger(runID: $run_id) { payloads } }""", run_id=run_id)
    assert got["run"]["status"] == "COMPLETED" and orjson.loads(got["run"]["output"]) == {"ok": True, "n": 3}
    event = inngest.Event.model_validate_json(got["runTrigger"]["payloads"][0])
    assert event.name == "test/work" and event.data == {"n": 3} and event.id == "idem-1"

    got = await gql(harness, """query GetRunFromEventID($event_id: ID!) {
        event(query: {eventId: $event_id}) { functionRuns { id } } }""", event_id=eid)
    assert got["event"]["functionRuns"] == [{"id": run_id}]

    got = await gql(harness, """query($id: String!) { run(runID: $id) { status output trace { status outputID
        stepID name childrenSpans { name stepID outputID status attempts } } } }""", id=run_id)
    trace = got["run"]["trace"]
    assert trace["status"] == "COMPLETED" and trace["outputID"]
    [span] = [s for s in trace["childrenSpans"] if s["name"] == "work"]  # the user's step id
    assert span["stepID"] == STEP and span["status"] == "COMPLETED" and span["attempts"] == 1
    out = (await gql(harness, """query GetHistory($output_id: String!) {
        runTraceSpanOutputByID(outputID: $output_id) { data error { message name stack } } }""",
        output_id=span["outputID"]))["runTraceSpanOutputByID"]
    assert out["error"] is None and orjson.loads(out["data"]) == {"step": 1}
    final = (await gql(harness, "query($o: String!) { runTraceSpanOutputByID(outputID: $o) { data } }",
                       o=trace["outputID"]))["runTraceSpanOutputByID"]
    assert orjson.loads(final["data"]) == {"ok": True, "n": 3}

    got = await gql(harness, "query($id: ULID!) { eventV2(id: $id) { name raw idempotencyKey } }", id=eid)
    ev = got["eventV2"]
    assert ev["name"] == "test/work" and ev["idempotencyKey"] == "idem-1"
    assert orjson.loads(ev["raw"])["data"] == {"n": 3}

    got = await gql(harness, "{ functions { slug name app { name } } apps { name functions { slug } } }")
    assert [f["slug"] for f in got["functions"]] == ["test-work"] and got["functions"][0]["app"]["name"] == "test"
    assert got["apps"] == [{"name": "test", "functions": [{"slug": "test-work"}]}]


async def test_search_goes_on_from_its_cursor_past_the_scan_limit(harness: Harness, monkeypatch: Any) -> None:
    """A search reads at most SEARCH_SCAN runs per request; the runs page's "Search further
    back" follows the cursor, so the one match far back in the history is found."""
    from pyngest.server.api import manage

    monkeypatch.setattr(manage, "SEARCH_SCAN", 3)
    monkeypatch.setattr(manage, "PAGE", 3)
    ids = await harness.send({"name": "test/work", "data": {"n": 0, "needle": True}},
                             *({"name": "test/work", "data": {"n": i}} for i in range(1, 8)))
    await ended(harness, *ids)
    q = """query($f: RunsFilterV2!, $after: String) { runs(first: 40, after: $after,
      orderBy: [{field: QUEUED_AT, direction: DESC}], filter: $f) {
      edges { node { id } } pageInfo { hasNextPage endCursor } } }"""
    f = {"from": since(harness), "query": "event.data.needle == true"}
    after, pages, found = None, 0, []
    while True:
        page = (await gql(harness, q, f=f, after=after))["runs"]
        pages += 1
        found += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    [needle] = await harness.runs_for(ids[0])
    assert found == [needle["run_id"]] and pages == 3  # 8 runs, 3 read per request
