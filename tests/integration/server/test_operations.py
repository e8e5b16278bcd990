"""Pausing functions, bulk cancellation, replay and rerun."""

from __future__ import annotations

import asyncio

from pyngest.protocol.durations import iso_ms
from pyngest.protocol.step_ids import hash_step_id
from tests.integration.server.harness import Call, Harness, done, function_config, ops

S = hash_step_id("s")
DAY = 86_400_000


async def _wait(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def _sleeper(call: Call) -> tuple:
    if S in call.body["steps"]:
        return done({"finished": call.body["event"]["data"]})
    return ops({"op": "Sleep", "id": S, "name": "1h"})


async def test_pausing_skips_new_events_and_holds_running_runs_between_steps(harness: Harness) -> None:
    harness.app.script = _sleeper
    await harness.register(function_config(harness.app, "p"))
    http = harness.http
    assert http is not None
    [running] = await harness.send({"name": "test/p", "data": {"n": 1}})
    await harness.settle()
    resp = await http.post("/v1/functions/test-p/pause", json={})
    assert resp.json()["data"]["paused"] is True
    [skipped] = await harness.send({"name": "test/p", "data": {"n": 2}})
    await harness.settle()
    assert await harness.runs_for(skipped) == []
    assert [s[1] for s in await harness.service.store.skips_for_event(skipped)] == ["function_paused"]

    calls = len(harness.app.calls)
    await harness.advance(60 * 60_000)  # the sleep ends, but the next step must wait
    assert len(harness.app.calls) == calls
    assert (await harness.runs_for(running))[0]["status"] == "Running"

    await http.post("/v1/functions/test-p/resume")
    [run] = await harness.run_ended(running)
    assert run["output"] == {"finished": {"n": 1}}


async def test_pause_with_cancel_running_and_the_seven_day_default(harness: Harness) -> None:
    harness.app.script = _sleeper
    await harness.register(function_config(harness.app, "c"), function_config(harness.app, "w"))
    http = harness.http
    assert http is not None
    [c, w] = await harness.send({"name": "test/c"}, {"name": "test/w"})
    await harness.settle()
    await http.post("/v1/functions/test-c/pause", json={"cancel_running": True})
    [run] = await harness.run_ended(c)
    assert run["status"] == "Cancelled"

    await http.post("/v1/functions/test-w/pause", json={})
    await harness.advance(6 * DAY)
    assert (await harness.runs_for(w))[0]["status"] == "Running"
    await harness.advance(DAY)
    [run] = await harness.run_ended(w)
    assert run["status"] == "Cancelled"


async def test_bulk_cancellation_by_time_and_expression_with_history(harness: Harness) -> None:
    harness.app.script = _sleeper
    await harness.register(function_config(harness.app, "bulk"))
    http = harness.http
    assert http is not None
    t0 = harness.clock.now_ms()
    ids = await harness.send(*[{"name": "test/bulk", "data": {"user": u}} for u in ("a", "b", "a")])
    await harness.settle()
    await harness.advance(1000)
    [late] = await harness.send({"name": "test/bulk", "data": {"user": "a"}})
    await harness.settle()
    resp = await http.post("/v1/cancellations", json={
        "app_id": "test", "function_id": "bulk", "started_after": iso_ms(t0 - 1), "started_before": iso_ms(t0 + 500),
        "if": "event.data.user == 'a'"})
    body = resp.json()
    assert resp.status_code == 201 and body["function_id"] == "bulk" and body["if"] == "event.data.user == 'a'"

    async def settled() -> bool:
        history = (await http.get("/v1/cancellations", params={"function_id": "test-bulk"})).json()["data"]
        return history[0]["status"] == "completed"

    await _wait(settled)
    statuses = [(await harness.runs_for(e))[0]["status"] for e in (*ids, late)]
    assert statuses == ["Cancelled", "Running", "Cancelled", "Running"]
    history = (await http.get("/v1/cancellations")).json()["data"]
    assert history[0]["cancelled"] == 2
    bad = await http.post("/v1/cancellations", json={"app_id": "test", "function_id": "bulk", "if": "event.data =="})
    assert bad.status_code == 400 and "invalid" in bad.json()["error"]


async def test_replay_failed_and_skipped_runs_and_rerun_one(harness: Harness) -> None:
    fail = {"on": True}

    async def script(call: Call) -> tuple:
        if fail["on"]:
            return 500, {"X-Inngest-SDK": "inngest-py:v0.5.19", "x-inngest-no-retry": "true"}, {"name": "E", "message": "down"}
        return done("recovered")

    harness.app.script = script
    await harness.register(function_config(harness.app, "r"))
    http = harness.http
    assert http is not None
    t0 = harness.clock.now_ms()
    [f1, f2] = await harness.send({"name": "test/r", "data": {"n": 1}}, {"name": "test/r", "data": {"n": 2}})
    await harness.run_ended(f1)
    await harness.run_ended(f2)
    await http.post("/v1/functions/test-r/pause")
    [sk] = await harness.send({"name": "test/r", "data": {"n": 3}})
    await harness.settle()
    await http.post("/v1/functions/test-r/resume")
    fail["on"] = False

    resp = await http.post("/v1/replays", json={"function_id": "test-r", "from": iso_ms(t0 - 1),
                                                "to": iso_ms(harness.clock.now_ms() + 1), "statuses": ["Failed", "Skipped"]})
    assert resp.status_code == 201, resp.json()
    replay_id = resp.json()["data"]["id"]

    async def all_replayed() -> bool:
        op = (await http.get(f"/v1/replays/{replay_id}")).json()["data"]
        return op["status"] == "completed" and op["scheduled"] == 3

    await _wait(all_replayed)
    await harness.advance(1000)  # replays are spread out over time
    for eid in (f1, f2, sk):
        runs = await harness.run_ended(eid, count=2 if eid != sk else 1)
        assert "Completed" in [r["status"] for r in runs]
    originals = [r for r in await harness.runs_for(f1) if r["status"] == "Failed"]
    replayed = [r for r in await harness.runs_for(f1) if r["status"] == "Completed"]
    assert replayed[0]["original_run_id"] == originals[0]["run_id"]

    rerun = await http.post(f"/v1/runs/{originals[0]['run_id']}/rerun")
    assert rerun.status_code == 200
    await harness.run_ended(f1, count=3)
    bad = await http.post("/v1/replays", json={"function_id": "test-r", "from": iso_ms(t0), "to": iso_ms(t0 + 1), "statuses": ["Weird"]})
    assert bad.status_code == 400


async def test_replaying_skipped_runs_takes_only_the_events_skipped_while_paused(harness: Harness) -> None:
    """Upstream's replay status "Skipped" is ReplayRunStatusSkippedPaused: events a rate limit
    dropped are skipped too, but a replay does not bring them back."""
    harness.app.script = lambda call: _done("ok")
    await harness.register(function_config(harness.app, "rl", rateLimit={"limit": 1, "period": "1h"}))
    http = harness.http
    assert http is not None
    t0 = harness.clock.now_ms()
    [ran, limited] = await harness.send({"name": "test/rl", "data": {"n": 1}}, {"name": "test/rl", "data": {"n": 2}})
    await harness.run_ended(ran)
    await http.post("/v1/functions/test-rl/pause")
    [paused] = await harness.send({"name": "test/rl", "data": {"n": 3}})
    await harness.settle()
    await http.post("/v1/functions/test-rl/resume")
    assert [s[1] for s in await harness.service.store.skips_for_event(limited)] == ["rate_limited"]
    assert [s[1] for s in await harness.service.store.skips_for_event(paused)] == ["function_paused"]

    resp = await http.post("/v1/replays", json={"function_id": "test-rl", "from": iso_ms(t0 - 1),
                                                "to": iso_ms(harness.clock.now_ms() + 1), "statuses": ["Skipped"]})
    assert resp.status_code == 201, resp.json()
    assert resp.json()["data"]["total"] == 1
    replay_id = resp.json()["data"]["id"]

    async def replayed() -> bool:
        op = (await http.get(f"/v1/replays/{replay_id}")).json()["data"]
        return bool(op["status"] == "completed")

    await _wait(replayed)
    assert (await http.get(f"/v1/replays/{replay_id}")).json()["data"]["scheduled"] == 1
    await harness.advance(1000)
    assert len(await harness.run_ended(paused)) == 1
    assert await harness.runs_for(limited) == []


async def _done(value: object) -> tuple:
    return done(value)


async def test_retention_removes_ended_runs_and_old_events_but_keeps_live_ones(harness: Harness) -> None:
    async def script(call: Call) -> tuple:
        if S in call.body["steps"]:
            return done("ok")
        hours = call.body["event"]["data"]["hours"]
        return ops({"op": "Sleep", "id": S, "name": f"{hours}h"})

    harness.app.script = script
    await harness.register(function_config(harness.app, "old"))
    [short, long] = await harness.send({"name": "test/old", "data": {"hours": 1}},
                                       {"name": "test/old", "data": {"hours": 24 * 30}})
    await harness.settle()
    await harness.advance(60 * 60_000)
    [r1] = await harness.run_ended(short)
    assert r1["status"] == "Completed"
    await harness.advance(8 * DAY)  # past the 7-day retention; the maintenance job runs hourly
    await harness.settle(60)
    assert await harness.runs_for(short) == []
    assert await harness.service.store.get_event(short) is None
    # the month-long sleeper is still running: its run and its event are kept
    assert (await harness.runs_for(long))[0]["status"] == "Running"
    assert await harness.service.store.get_event(long) is not None


async def test_a_changed_retention_applies_at_the_next_start_and_zero_keeps_everything(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = Harness(tmp_path)  # the default 7 days: a maintenance job is stored
    await first.start()
    try:
        first.app.script = _done_script
        await first.register(function_config(first.app, "kept"))
        [event] = await first.send({"name": "test/kept", "data": {}})
        await first.run_ended(event)
    finally:
        await first.stop()

    # restarted with retention off, a month later: the stored job must not purge anything
    off = Harness(tmp_path, retention_ms=0)
    off.clock.advance(30 * DAY)
    await off.start()
    try:
        off.app.script = _done_script
        for _ in range(3):
            await off.advance(60 * 60_000)
        assert len(await off.runs_for(event)) == 1
        assert await off.service.store.get_event(event) is not None
    finally:
        await off.stop()

    # restarted with one day: applied a minute after the start, not an hour later
    short = Harness(tmp_path, retention_ms=DAY)
    short.clock.advance(31 * DAY)
    await short.start()
    try:
        await short.advance(2 * 60_000)
        await short.settle(60)
        assert await short.runs_for(event) == []
        assert await short.service.store.get_event(event) is None
    finally:
        await short.stop()


async def _done_script(call: Call) -> tuple:
    return done("ok")
