"""Time, pauses, dedup, cron, timeouts, cancellation and recovery — with the test clock."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from pyngest.protocol import ids
from pyngest.protocol.step_ids import hash_step_id
from tests.integration.server.harness import Call, Harness, done, function_config, ops

S, W, INV, G = hash_step_id("nap"), hash_step_id("wait"), hash_step_id("inv"), hash_step_id("sig")
A, B = hash_step_id("big"), hash_step_id("bigger")
MIN = 60_000


async def test_sleep_wakes_when_the_clock_says_so(harness: Harness) -> None:
    async def script(call: Call) -> tuple:
        if S in call.body["steps"]:
            return done({"slept": call.body["steps"][S]})
        return ops({"op": "Sleep", "id": S, "name": "1h", "displayName": "nap"})

    harness.app.script = script
    await harness.register(function_config(harness.app, "sleepy"))
    [eid] = await harness.send({"name": "test/sleepy"})
    await harness.settle()
    await harness.advance(59 * MIN)
    assert (await harness.runs_for(eid))[0]["status"] == "Running"
    await harness.advance(MIN)
    [run] = await harness.run_ended(eid)
    assert run["output"] == {"slept": None}


async def test_wait_for_event_matches_only_later_events_and_times_out(harness: Harness) -> None:
    async def script(call: Call) -> tuple:
        if W in call.body["steps"]:
            return done({"got": call.body["steps"][W]})
        return ops({"op": "WaitForEvent", "id": W, "name": "test/approve",
                    "opts": {"event": "test/approve", "timeout": "1h", "if": "async.data.id == event.data.id"}})

    harness.app.script = script
    await harness.register(function_config(harness.app, "waiter"))
    # an approval sent before the wait exists does not count
    [early] = await harness.send({"name": "test/approve", "data": {"id": 1}})
    [e1, e2] = await harness.send({"name": "test/waiter", "data": {"id": 1}}, {"name": "test/waiter", "data": {"id": 2}})
    await harness.settle()
    await harness.send({"name": "test/approve", "data": {"id": 3}})  # matches neither
    [approval] = await harness.send({"name": "test/approve", "data": {"id": 1, "ok": True}})
    [r1] = await harness.run_ended(e1)
    assert r1["output"]["got"]["id"] == approval and r1["output"]["got"]["data"] == {"id": 1, "ok": True}
    assert early != approval
    await harness.advance(60 * MIN)
    [r2] = await harness.run_ended(e2)
    assert r2["output"] == {"got": None}


async def test_event_id_dedups_runs_per_function_and_seeds_give_stable_ids(harness: Harness) -> None:
    harness.app.script = lambda call: _done_async("ok")
    await harness.register(function_config(harness.app, "dedup"))
    [a] = await harness.send({"name": "test/dedup", "id": "order-1"})
    [b] = await harness.send({"name": "test/dedup", "id": "order-1"})
    assert a != b
    await harness.run_ended(a)
    assert len(await harness.runs_for(a)) == 1
    assert await harness.runs_for(b) == []

    seed = f"{harness.clock.now_ms()},{base64.b64encode(bytes(10)).decode()}"
    first = await harness.send({"name": "test/dedup"}, {"name": "test/dedup"}, headers={"x-inngest-event-id-seed": seed})
    again = await harness.send({"name": "test/dedup"}, {"name": "test/dedup"}, headers={"x-inngest-event-id-seed": seed})
    assert first == again == [ids.seeded_ulid(seed, 1), ids.seeded_ulid(seed, 2)]
    await harness.run_ended(first[0])
    await harness.settle()
    assert len(await harness.runs_for(first[0])) == 1 and len(await harness.runs_for(first[1])) == 1


async def test_event_id_dedup_is_per_function_and_lasts_24_hours(harness: Harness) -> None:
    harness.app.script = lambda call: _done_async("ok")
    await harness.register(
        function_config(harness.app, "one", triggers=[{"event": "test/order"}]),
        function_config(harness.app, "two", triggers=[{"event": "test/order"}]),
    )
    [a] = await harness.send({"name": "test/order", "id": "order-7"})
    runs = await harness.run_ended(a, count=2)
    assert sorted(r["function_slug"] for r in runs) == ["test-one", "test-two"]  # each function runs once
    await harness.advance(23 * 60 * MIN)
    [b] = await harness.send({"name": "test/order", "id": "order-7"})
    await harness.settle()
    assert await harness.runs_for(b) == [], "same id within 24 h: no new run of either function"
    await harness.advance(61 * MIN)
    [c] = await harness.send({"name": "test/order", "id": "order-7"})
    runs = await harness.run_ended(c, count=2)
    assert len(runs) == 2, "after 24 h the id starts new runs again"


async def test_a_future_ts_delays_the_run(harness: Harness) -> None:
    harness.app.script = lambda call: _done_async("late")
    await harness.register(function_config(harness.app, "later"))
    [eid] = await harness.send({"name": "test/later", "ts": harness.clock.now_ms() + 10 * MIN})
    await harness.settle()
    [run] = await harness.runs_for(eid)
    assert run["status"] == "Queued" and harness.app.calls == []
    await harness.advance(10 * MIN)
    [run] = await harness.run_ended(eid)
    assert run["output"] == "late"


async def test_cron_fires_on_schedule(harness: Harness) -> None:
    harness.app.script = lambda call: _done_async(call.body["event"]["data"])
    await harness.register(function_config(harness.app, "cron", triggers=[{"cron": "*/5 * * * *"}]))
    start = harness.clock.now_ms()
    next_fire = (start // (5 * MIN) + 1) * (5 * MIN)
    await harness.advance(next_fire - start - 1)
    assert harness.app.calls == []
    await harness.advance(1)
    await harness.settle(60)
    [call] = harness.app.calls
    assert call.body["event"]["name"] == "inngest/scheduled.timer"
    assert call.body["event"]["data"]["cron"] == "*/5 * * * *"
    await harness.advance(5 * MIN)
    await harness.settle(60)
    assert len(harness.app.calls) == 2


async def test_timeouts_cancel_runs(harness: Harness) -> None:
    async def script(call: Call) -> tuple:
        return ops({"op": "Sleep", "id": S, "name": "1h"})

    harness.app.script = script
    await harness.register(function_config(harness.app, "finish", timeouts={"finish": "10m"}))
    [eid] = await harness.send({"name": "test/finish"})
    await harness.settle()
    await harness.advance(10 * MIN)
    [run] = await harness.run_ended(eid)
    assert run["status"] == "Cancelled"


async def test_cancel_on_matches_with_async_and_stops_at_its_timeout(harness: Harness) -> None:
    harness.app.script = lambda call: _ops_async({"op": "Sleep", "id": S, "name": "1h"})
    await harness.register(function_config(harness.app, "stoppable", cancel=[
        {"event": "test/stop", "if": "async.data.k == event.data.k", "timeout": "10m"}]))
    [early, late, other] = await harness.send(*({"name": "test/stoppable", "data": {"k": k}} for k in ("a", "b", "c")))
    await harness.settle()
    await harness.advance(5 * MIN)
    await harness.send({"name": "test/stop", "data": {"k": "a"}})  # within the timeout: cancels run a only
    [run] = await harness.run_ended(early)
    assert run["status"] == "Cancelled"
    await harness.advance(6 * MIN)
    await harness.send({"name": "test/stop", "data": {"k": "b"}})  # 11 min: the cancel window has closed
    await harness.settle()
    assert [r["status"] for r in await harness.runs_for(late)] == ["Running"]
    assert [r["status"] for r in await harness.runs_for(other)] == ["Running"]


async def test_invoke_times_out_with_upstreams_error(harness: Harness) -> None:
    async def script(call: Call) -> tuple:
        if call.body["event"]["name"] == "inngest/function.invoked":
            return ops({"op": "Sleep", "id": S, "name": "1h"})  # the child takes too long
        if INV in call.body["steps"]:
            return done(call.body["steps"][INV])
        return ops({"op": "InvokeFunction", "id": INV, "name": "inv",
                    "opts": {"function_id": "test-child", "payload": {"data": {"n": 1}}, "timeout": "5m"}})

    harness.app.script = script
    await harness.register(function_config(harness.app, "parent"), function_config(harness.app, "child"))
    [eid] = await harness.send({"name": "test/parent"})
    await harness.settle(40)
    await harness.advance(5 * MIN)
    [run] = await harness.run_ended(eid)
    assert run["output"]["error"]["name"] == "InngestInvokeTimeoutError"
    assert run["output"]["error"]["message"] == "Timed out waiting for invoked function to complete"


async def test_signals_resume_a_waiting_run(harness: Harness) -> None:
    async def script(call: Call) -> tuple:
        if G in call.body["steps"]:
            return done(call.body["steps"][G])
        return ops({"op": "WaitForSignal", "id": G, "name": "sig", "opts": {"signal": "go-7", "timeout": "1h"}})

    harness.app.script = script
    await harness.register(function_config(harness.app, "sig"))
    [eid] = await harness.send({"name": "test/sig"})
    await harness.settle()
    assert harness.http is not None
    missing = await harness.http.post("/v1/signals", json={"signal": "nobody", "data": 1})
    assert missing.status_code == 404
    resp = await harness.http.post("/v1/signals", json={"signal": "go-7", "data": {"v": 1}})
    assert resp.status_code == 200
    [run] = await harness.run_ended(eid)
    assert resp.json()["data"]["run_id"] == run["run_id"]
    assert run["output"] == {"data": {"signal": "go-7", "data": {"v": 1}}}


async def test_cancel_through_the_api(harness: Harness) -> None:
    harness.app.script = lambda call: _ops_async({"op": "Sleep", "id": S, "name": "1h"})
    await harness.register(function_config(harness.app, "long"))
    [eid] = await harness.send({"name": "test/long"})
    await harness.settle()
    [run] = await harness.runs_for(eid)
    assert harness.http is not None
    resp = await harness.http.delete(f"/v1/runs/{run['run_id']}")
    assert resp.json()["data"]["status"] == "Cancelled"
    events = (await harness.http.get("/v1/events", params={"name": "inngest/function.cancelled"})).json()["data"]
    assert events[0]["data"]["run_id"] == run["run_id"]


async def test_runs_survive_a_restart(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.start()
    h.app.script = lambda call: _ops_async({"op": "Sleep", "id": S, "name": "1h"})
    await h.register(function_config(h.app, "durable"))
    [eid] = await h.send({"name": "test/durable"})
    await h.settle()
    h2 = await _restarted(h, tmp_path)
    try:
        async def script(call: Call) -> tuple:
            return done("after restart") if S in call.body["steps"] else ops({"op": "Sleep", "id": S, "name": "1h"})

        h2.app.script = script
        await h2.register(function_config(h2.app, "durable"))
        await h2.advance(60 * MIN)
        [run] = await h2.run_ended(eid)
        assert run["output"] == "after restart"
    finally:
        await h2.stop()


async def _restarted(h: Harness, directory: Path) -> Harness:
    """``h`` stopped and a server started again on its data, at its clock's time, for its app
    (same address)."""
    now = h.clock.now_ms()
    await h.stop()
    h2 = Harness(directory)
    h2.clock.set(now)
    h2.app = h.app
    await h2.start()
    return h2


async def _done_async(value: object) -> tuple:
    return done(value)


async def _ops_async(*items: dict) -> tuple:
    return ops(*items)


async def test_pending_waits_and_cancel_on_survive_a_restart(tmp_path: Path) -> None:
    """Pauses live in the store: after a restart the index is rebuilt from it, so a waitForEvent
    and a cancelOn created before the restart are matched by events sent after it (and only
    by the events their conditions select)."""
    async def script(call: Call) -> tuple:
        if W in call.body["steps"]:
            return done({"got": call.body["steps"][W]})
        return ops({"op": "WaitForEvent", "id": W, "name": "test/approve",
                    "opts": {"event": "test/approve", "timeout": "1h", "if": "async.data.id == event.data.id"}})

    cancel_on = [{"event": "test/abort", "if": "async.data.id == event.data.id"}]
    h = Harness(tmp_path)
    await h.start()
    h.app.script = script
    await h.register(function_config(h.app, "waiter", cancel=cancel_on))
    eids = await h.send(*({"name": "test/waiter", "data": {"id": i}} for i in (1, 2, 3)))
    await h.settle()
    assert len(h.service.state.pauses) == 6  # a wait and a cancelOn per run
    h2 = await _restarted(h, tmp_path)
    try:
        assert len(h2.service.state.pauses) == 6
        h2.app.script = script
        await h2.register(function_config(h2.app, "waiter", cancel=cancel_on))
        await h2.send({"name": "test/approve", "data": {"id": 9}}, {"name": "test/abort", "data": {"id": 9}})
        [approval] = await h2.send({"name": "test/approve", "data": {"id": 1}})
        await h2.send({"name": "test/abort", "data": {"id": 2}})
        [r1] = await h2.run_ended(eids[0])
        assert r1["output"]["got"]["id"] == approval
        [r2] = await h2.run_ended(eids[1])
        assert r2["status"] == "Cancelled"
        await h2.settle()
        [r3] = await h2.runs_for(eids[2])
        assert r3["status"] == "Running"
        assert sorted(p.run_id for p in h2.service.state.pauses.by_id.values()) == [r3["run_id"]] * 2
    finally:
        await h2.stop()


async def test_a_wait_condition_too_long_or_invalid_fails_the_attempt_naming_why(harness: Harness) -> None:
    """An SDK's waitForEvent ``if`` is checked before it is interpolated: past 16,384 characters
    (or not CEL) the request fails as an invalid response (retried, then the run fails), with
    the reason in the run's error. Interpolating an event's long values is not limited."""
    conditions = {"long": "async.data.s == '" + "a" * 20_000 + "'", "bad": "async.data.id ==", "match": None}

    async def script(call: Call) -> tuple:
        data = call.body["event"]["data"]
        if W in call.body["steps"]:
            return done({"got": call.body["steps"][W]["data"]})
        cond = conditions.get(data.get("kind"), "async.data.s == event.data.s")
        opts = {"event": "test/reply", "timeout": "1h", "if": cond} if cond else {
            "event": "test/reply", "timeout": "1h", "match": "data.a-b"}  # not a field path
        return ops({"op": "WaitForEvent", "id": W, "name": "test/reply", "opts": opts})

    harness.app.script = script
    await harness.register(function_config(harness.app, "waiter"))
    [long, bad, match] = await harness.send({"name": "test/waiter", "data": {"kind": "long"}},
                                            {"name": "test/waiter", "data": {"kind": "bad"}},
                                            {"name": "test/waiter", "data": {"kind": "match"}})
    for event_id, reason in ((long, "characters long; the limit is 16384"), (bad, "invalid waitForEvent condition"),
                             (match, "invalid match field")):
        [run] = await harness.run_ended(event_id)
        assert run["status"] == "Failed" and reason in str(run["output"]), run
    # the event's own value, 200,000 characters with quotes and backslashes, interpolated
    value = 'x"\\y' * 50_000
    [waiting] = await harness.send({"name": "test/waiter", "data": {"s": value}})
    await harness.settle()
    await harness.send({"name": "test/reply", "data": {"s": value + "!"}})
    await harness.send({"name": "test/reply", "data": {"s": value}})
    [run] = await harness.run_ended(waiting)
    assert run["status"] == "Completed" and run["output"]["got"] == {"s": value}


async def test_a_run_reloaded_after_a_restart_knows_how_large_its_state_is(tmp_path: Path) -> None:
    """A saved step does not rewrite the run's row with its size: a run read back from the
    store counts its events and steps again, so a large state still goes through the API."""
    big = "y" * (3 * 1024 * 1024)
    h = Harness(tmp_path)
    await h.start()

    async def before(call: Call) -> tuple:
        for sid in (A, B):  # 6 MiB in all: over what a request may carry
            if not call.body["use_api"] and sid not in call.body["steps"]:
                return ops({"op": "StepRun", "id": sid, "name": sid, "data": big})
        asleep.set()
        return ops({"op": "Sleep", "id": S, "name": "1h"})

    asleep = asyncio.Event()
    h.app.script = before
    await h.register(function_config(h.app, "bigstate"))
    [eid] = await h.send({"name": "test/bigstate"})
    await asyncio.wait_for(asleep.wait(), 15)
    await h.settle()
    h2 = await _restarted(h, tmp_path)
    try:
        async def after(call: Call) -> tuple:
            assert call.body["use_api"] is True and call.body["steps"] == {}, "the state is too large to send"
            assert h2.http is not None
            actions = (await h2.http.get(f"/v0/runs/{call.body['ctx']['run_id']}/actions")).json()
            return done(sorted(actions))

        h2.app.script = after
        await h2.register(function_config(h2.app, "bigstate"))
        await h2.advance(60 * MIN)
        [run] = await h2.run_ended(eid, timeout=15)
        assert run["status"] == "Completed" and run["output"] == sorted([A, B, S]), run
    finally:
        await h2.stop()
