"""Flow control semantics with a scripted app and the test clock."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pyngest.protocol.step_ids import hash_step_id
from tests.integration.server.harness import Call, Harness, done, function_config, ops

S = hash_step_id("s")
SEC = 1000


class InFlight:
    """Counts requests the app is handling at once, per key."""

    def __init__(self, hold_s: float = 0.03) -> None:
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.hold_s = hold_s

    async def track(self, key: str, coro_value: tuple) -> tuple:
        for k in (key, "*"):
            self.now[k] += 1
            self.peak[k] = max(self.peak[k], self.now[k])
        await asyncio.sleep(self.hold_s)
        for k in (key, "*"):
            self.now[k] -= 1
        return coro_value


async def wait_until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def test_concurrency_limits_executing_steps_per_key(harness: Harness) -> None:
    flight = InFlight()

    async def script(call: Call) -> tuple:
        key = str(call.body["event"]["data"]["k"])
        if S in call.body["steps"]:
            return await flight.track(key, done("ok"))
        return await flight.track(key, ops({"op": "StepRun", "id": S, "name": "s", "data": 1}))

    harness.app.script = script
    await harness.register(function_config(harness.app, "conc", concurrency=[
        {"limit": 1, "key": "event.data.k"}, {"limit": 3}]))
    ids = await harness.send(*[{"name": "test/conc", "data": {"k": i % 4}} for i in range(16)])
    for eid in ids:
        await harness.run_ended(eid, timeout=20)
    assert all(flight.peak[str(k)] == 1 for k in range(4)), flight.peak
    assert flight.peak["*"] <= 3


async def test_oldest_runs_go_first_even_while_they_add_steps(harness: Harness) -> None:
    """FIFO within a function is by run (guides__concurrency): a run's next step goes ahead of
    newer runs' first steps, so runs finish in the order they came, not interleaved."""
    order: list[tuple[str, int]] = []
    steps = [hash_step_id(f"s{i}") for i in range(3)]
    all_sent = asyncio.Event()

    async def script(call: Call) -> tuple:
        name, done_steps = call.body["event"]["data"]["name"], call.body["steps"]
        order.append((name, len(done_steps)))
        await all_sent.wait()  # the first request holds the slot until every run is queued
        todo = [s for s in steps if s not in done_steps]
        if not todo:
            return done(name)
        return ops({"op": "StepRun", "id": todo[0], "name": todo[0], "data": 1})

    harness.app.script = script
    await harness.register(function_config(harness.app, "fifo", concurrency=1))
    ids = []
    for name in "abc":  # one event each, so the runs are created in this order
        ids += await harness.send({"name": "test/fifo", "data": {"name": name}})
        await harness.settle(2)
    all_sent.set()
    for eid in ids:
        await harness.run_ended(eid, timeout=20)
    assert order == [(name, n) for name in "abc" for n in range(4)], order


async def test_sleeping_waiting_and_invoking_runs_hold_no_concurrency_slot(harness: Harness) -> None:
    async def script(call: Call) -> tuple:
        event = call.body["event"]
        if event["name"] == "inngest/function.invoked":
            return ops({"op": "Sleep", "id": S, "name": "1h"})  # the child keeps its parent waiting
        if S in call.body["steps"]:
            return done("resumed")
        mode = event["data"]["mode"]
        if mode == "sleep":
            return ops({"op": "Sleep", "id": S, "name": "1h"})
        if mode == "wait":
            return ops({"op": "WaitForEvent", "id": S, "name": "test/never", "opts": {"event": "test/never", "timeout": "1h"}})
        if mode == "invoke":
            return ops({"op": "InvokeFunction", "id": S, "name": "inv",
                        "opts": {"function_id": "test-child", "payload": {"data": {}}, "timeout": "1h"}})
        return done("ran while the others were parked")

    harness.app.script = script
    await harness.register(function_config(harness.app, "one", concurrency=1), function_config(harness.app, "child"))
    parked = []
    for mode in ("sleep", "wait", "invoke"):
        parked += await harness.send({"name": "test/one", "data": {"mode": mode}})
        await harness.settle()
    [other] = await harness.send({"name": "test/one", "data": {"mode": "none"}})
    [run] = await harness.run_ended(other)
    assert run["output"] == "ran while the others were parked"
    assert [(await harness.runs_for(e))[0]["status"] for e in parked] == ["Running"] * 3


async def test_throttle_spaces_run_starts_and_never_drops(harness: Harness) -> None:
    starts: list[int] = []

    async def script(call: Call) -> tuple:
        starts.append(harness.clock.now_ms())
        return done("ok")

    harness.app.script = script
    await harness.register(function_config(harness.app, "thr", throttle={"limit": 2, "period": "1m", "burst": 2}))
    t0 = harness.clock.now_ms()
    ids = await harness.send(*[{"name": "test/thr", "data": {"i": i}} for i in range(6)])
    await harness.settle()
    for _ in range(4):
        await harness.advance(30 * SEC)
    for eid in ids:
        await harness.run_ended(eid)
    assert [s - t0 for s in starts] == [0, 0, 30_000, 60_000, 90_000, 120_000]


async def test_throttle_applies_to_invoked_runs(harness: Harness) -> None:
    starts: list[int] = []

    async def script(call: Call) -> tuple:
        if call.body["event"]["name"] == "inngest/function.invoked":
            starts.append(harness.clock.now_ms())
            return done("child")
        if S in call.body["steps"]:
            return done(call.body["steps"][S])
        return ops({"op": "InvokeFunction", "id": S, "name": "inv",
                    "opts": {"function_id": "test-child", "payload": {"data": {}}, "timeout": "1h"}})

    harness.app.script = script
    await harness.register(function_config(harness.app, "parent"),
                           function_config(harness.app, "child", throttle={"limit": 1, "period": "1m"}))
    t0 = harness.clock.now_ms()
    ids = await harness.send(*[{"name": "test/parent"} for _ in range(3)])
    await harness.settle(40)
    for _ in range(2):
        await harness.advance(60 * SEC)
    for eid in ids:
        await harness.run_ended(eid)
    assert [s - t0 for s in starts] == [0, 60_000, 120_000]


async def test_rate_limit_skips_and_records_the_skip(harness: Harness) -> None:
    harness.app.script = lambda call: _done("ok")
    await harness.register(function_config(harness.app, "rl", rateLimit={"limit": 2, "period": "1h", "key": "event.data.user"}))
    ids = await harness.send(*[{"name": "test/rl", "data": {"user": "a"}} for _ in range(4)],
                             {"name": "test/rl", "data": {"user": "b"}})
    await harness.settle(40)
    counts = [len(await harness.runs_for(eid)) for eid in ids]
    assert counts == [1, 1, 0, 0, 1]
    skips = await harness.service.store.skips_for_event(ids[2])
    assert [s[1] for s in skips] == ["rate_limited"]
    await harness.advance(60 * 60 * SEC)
    [later] = await harness.send({"name": "test/rl", "data": {"user": "a"}})
    await harness.run_ended(later)


async def test_debounce_runs_once_with_the_last_event_and_respects_timeout(harness: Harness) -> None:
    harness.app.script = lambda call: _done(call.body["event"]["data"])
    await harness.register(
        function_config(harness.app, "deb", debounce={"period": "10s", "key": "event.data.k"}),
        function_config(harness.app, "debt", debounce={"period": "10s", "timeout": "15s"}),
    )
    await harness.send({"name": "test/deb", "data": {"k": 1, "n": 1}}, {"name": "test/debt", "data": {"n": 1}})
    await harness.settle()
    for n in (2, 3):
        await harness.advance(6 * SEC)
        await harness.send({"name": "test/deb", "data": {"k": 1, "n": n}}, {"name": "test/debt", "data": {"n": n}})
        await harness.settle()
    # t=12s: debt's timeout (15s from its first event) is 3s away, deb's period ends at 22s
    await harness.advance(3 * SEC)
    await wait_until(lambda: len(harness.app.calls) == 1)
    assert harness.app.calls[0].body["event"]["name"] == "test/debt"
    assert harness.app.calls[0].body["event"]["data"]["n"] == 3
    await harness.advance(7 * SEC)
    await wait_until(lambda: len(harness.app.calls) == 2)
    assert harness.app.calls[1].body["event"]["data"] == {"k": 1, "n": 3}


async def test_batches_fire_at_size_or_timeout_per_key(harness: Harness) -> None:
    harness.app.script = lambda call: _done([e["data"]["n"] for e in call.body["events"]])
    await harness.register(function_config(harness.app, "bat", batchEvents={"maxSize": 3, "timeout": "10s", "key": "event.data.k"}))
    await harness.send(*[{"name": "test/bat", "data": {"k": n % 2, "n": n}} for n in range(7)])
    await wait_until(lambda: len(harness.app.calls) == 2)
    assert sorted(tuple(c.body["events"][i]["data"]["n"] for i in range(3)) for c in harness.app.calls) == [(0, 2, 4), (1, 3, 5)]
    assert all(c.body["event"] == c.body["events"][0] for c in harness.app.calls)
    await harness.advance(10 * SEC)
    await wait_until(lambda: len(harness.app.calls) == 3)
    assert [e["data"]["n"] for e in harness.app.calls[2].body["events"]] == [6]


async def test_a_batch_too_large_for_one_request_goes_through_use_api(harness: Harness) -> None:
    big = "z" * (600 * 1024)  # 8 events of 600 KiB: more than one 4 MiB request carries

    async def script(call: Call) -> tuple:
        assert call.body["use_api"] and call.body["events"] == []
        assert harness.http is not None
        events = (await harness.http.get(f"/v0/runs/{call.body['ctx']['run_id']}/batch")).json()
        return done([e["data"]["n"] for e in events])

    harness.app.script = script
    await harness.register(function_config(harness.app, "bigbat", batchEvents={"maxSize": 8, "timeout": "10s"}))
    ids = []
    for n in range(8):
        ids += await harness.send({"name": "test/bigbat", "data": {"n": n, "pad": big}})
    runs = await harness.run_ended(ids[-1], timeout=20)
    assert [r["output"] for r in runs] == [list(range(8))]


async def test_batches_due_together_read_their_events_together(harness: Harness) -> None:
    """Batches whose timeouts come due at once are read in one query, not one each: the last of
    them must not wait for every other batch's read (the 250 ms timeout goal)."""
    harness.app.script = lambda call: _done([e["data"]["n"] for e in call.body["events"]])
    await harness.register(function_config(harness.app, "due", batchEvents={"maxSize": 10, "timeout": "1s",
                                                                           "key": "event.data.k"}))
    await harness.send(*[{"name": "test/due", "data": {"k": k, "n": 10 * k + n}} for k in range(20) for n in range(3)])
    await harness.service.scheduler.idle()
    reads = []
    store = harness.service.store
    get_events = store.get_events

    async def counted(ids: list[str]) -> Any:
        reads.append(len(ids))
        return await get_events(ids)

    store.get_events = counted  # type: ignore[method-assign]
    await harness.advance(SEC)
    await wait_until(lambda: len(harness.app.calls) == 20)
    assert sorted(tuple(c.body["events"][i]["data"]["n"] for i in range(3)) for c in harness.app.calls) == [
        (10 * k, 10 * k + 1, 10 * k + 2) for k in range(20)]
    assert len(reads) <= 4 and sum(reads) == 60, reads


async def test_priority_runs_ahead_in_a_backlog(harness: Harness) -> None:
    order: list[str] = []
    gate = asyncio.Event()

    async def script(call: Call) -> tuple:
        name = call.body["event"]["data"]["name"]
        order.append(name)
        if name == "blocker":
            await gate.wait()
        return done(name)

    harness.app.script = script
    await harness.register(function_config(harness.app, "prio", concurrency=1, priority={"run": "event.data.p"}))
    await harness.send({"name": "test/prio", "data": {"name": "blocker", "p": 0}})
    await wait_until(lambda: order == ["blocker"])
    await harness.send({"name": "test/prio", "data": {"name": "low", "p": 0}})
    await harness.send({"name": "test/prio", "data": {"name": "high", "p": 120}})
    await harness.settle()
    gate.set()
    await wait_until(lambda: len(order) == 3)
    assert order == ["blocker", "high", "low"]


async def test_idempotency_and_singleton(harness: Harness) -> None:
    harness.app.script = lambda call: _sleep_then_done()
    await harness.register(
        function_config(harness.app, "idem", idempotency="event.data.cart"),
        function_config(harness.app, "skip", singleton={"key": "event.data.u", "mode": "skip"}),
        function_config(harness.app, "cancel", singleton={"mode": "cancel"}),
    )
    a = await harness.send({"name": "test/idem", "data": {"cart": 1}}, {"name": "test/idem", "data": {"cart": 1}},
                           {"name": "test/idem", "data": {"cart": 2}})
    await harness.settle(40)
    assert [len(await harness.runs_for(e)) for e in a] == [1, 0, 1]

    [s1] = await harness.send({"name": "test/skip", "data": {"u": 1}})
    await harness.settle()
    [s2, s3] = await harness.send({"name": "test/skip", "data": {"u": 1}}, {"name": "test/skip", "data": {"u": 2}})
    await harness.settle(40)
    assert [len(await harness.runs_for(e)) for e in (s1, s2, s3)] == [1, 0, 1]

    [c1] = await harness.send({"name": "test/cancel"})
    await harness.settle()
    [c2] = await harness.send({"name": "test/cancel"})
    await harness.settle(40)
    assert (await harness.runs_for(c1))[0]["status"] == "Cancelled"
    assert (await harness.runs_for(c2))[0]["status"] == "Running"


async def test_an_idempotency_key_holds_for_24_hours(harness: Harness) -> None:
    harness.app.script = lambda call: _done("ok")
    await harness.register(function_config(harness.app, "idem24", idempotency="event.data.cart"))
    [first] = await harness.send({"name": "test/idem24", "data": {"cart": 1}})
    await harness.run_ended(first)
    await harness.advance(23 * 3_600 * SEC)
    [within] = await harness.send({"name": "test/idem24", "data": {"cart": 1}})
    await harness.settle(40)
    assert await harness.runs_for(within) == []
    await harness.advance(3_600 * SEC)
    [after] = await harness.send({"name": "test/idem24", "data": {"cart": 1}})
    await harness.run_ended(after)


async def test_an_event_dropped_by_idempotency_uses_up_no_other_control(harness: Harness) -> None:
    """A duplicate key is no run: it takes no rate-limit or throttle room, and a singleton in
    cancel mode does not cancel the run it duplicates (its event id or its key)."""
    starts: list[tuple[str, int, Any]] = []

    async def script(call: Call) -> tuple:
        event = call.body["event"]
        if event["name"] == "test/single":
            if S in call.body["steps"]:
                return done("woke")
            starts.append((event["name"], harness.clock.now_ms(), event["data"]["n"]))
            return ops({"op": "Sleep", "id": S, "name": "1h"})
        starts.append((event["name"], harness.clock.now_ms(), event["data"]["n"]))
        return done("ok")

    harness.app.script = script
    await harness.register(
        function_config(harness.app, "rl", rateLimit={"limit": 2, "period": "1h"}, idempotency="event.data.n"),
        function_config(harness.app, "thr", throttle={"limit": 1, "period": "1m"}, idempotency="event.data.n"),
        function_config(harness.app, "single", singleton={"mode": "cancel"}, idempotency="event.data.n"),
    )
    t0 = harness.clock.now_ms()
    for name in ("test/rl", "test/thr"):
        await harness.send(*[{"name": name, "data": {"n": n}} for n in (1, 1, 2)])
    [first] = await harness.send({"name": "test/single", "data": {"n": 1}})
    await harness.settle(40)
    dup = await harness.send({"name": "test/single", "data": {"n": 1}},
                             {"name": "test/single", "id": "same-id", "data": {"n": 2}})
    await harness.settle(40)
    await harness.send({"name": "test/single", "id": "same-id", "data": {"n": 2}})
    await harness.settle(40)
    await harness.advance(60 * SEC)
    got = sorted((name, t - t0, n) for name, t, n in starts)
    assert got == [("test/rl", 0, 1), ("test/rl", 0, 2), ("test/single", 0, 1), ("test/single", 0, 2),
                   ("test/thr", 0, 1), ("test/thr", 60_000, 2)], got
    assert (await harness.runs_for(first))[0]["status"] == "Cancelled"  # by n=2, a new key
    assert await harness.runs_for(dup[0]) == []
    [second] = await harness.runs_for(dup[1])
    assert second["status"] == "Running", "the repeated event id must not cancel the run it repeats"


async def test_debounce_and_batch_state_survive_a_restart(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.start()
    await h.register(function_config(h.app, "deb", debounce={"period": "1m"}),
                     function_config(h.app, "bat", batchEvents={"maxSize": 10, "timeout": "30s"}))
    await h.send({"name": "test/deb", "data": {"n": 1}}, {"name": "test/bat", "data": {"n": 1}},
                 {"name": "test/bat", "data": {"n": 2}})
    await h.settle()
    now = h.clock.now_ms()
    await h.stop()

    h2 = Harness(tmp_path)
    h2.clock.set(now)
    await h2.start()
    try:
        h2.app.script = lambda call: _done(len(call.body["events"]))
        await h2.register(function_config(h2.app, "deb", debounce={"period": "1m"}),
                          function_config(h2.app, "bat", batchEvents={"maxSize": 10, "timeout": "30s"}))
        await h2.advance(30 * SEC)
        await wait_until(lambda: len(h2.app.calls) == 1)
        assert [e["data"]["n"] for e in h2.app.calls[0].body["events"]] == [1, 2]
        await h2.advance(30 * SEC)
        await wait_until(lambda: len(h2.app.calls) == 2)
        assert h2.app.calls[1].body["event"]["name"] == "test/deb"
    finally:
        await h2.stop()


async def _done(value: object) -> tuple:
    return done(value)


async def _sleep_then_done() -> tuple:
    return ops({"op": "Sleep", "id": S, "name": "1h"})


BATCH = {"batchEvents": {"maxSize": 5, "timeout": "5s"}}


@pytest.mark.parametrize(("extra", "message"), [
    ({**BATCH, "priority": {"run": "event.data.p"}}, "A function cannot specify Priority.Run and Batch together"),
    ({**BATCH, "cancel": [{"event": "test/stop"}]}, "A function cannot specify batch and cancellation together"),
    ({**BATCH, "singleton": {"mode": "skip"}}, "A function cannot specify batch and singleton together"),
    ({**BATCH, "debounce": {"period": "5s"}}, "A function cannot specify batch and debounce"),
    ({"concurrency": [{"limit": 1, "scope": "env"}]}, "concurrency[0]: a concurrency key is required for the env scope"),
    ({"concurrency": [{"limit": 1, "key": "event.data.a"}, {"limit": 2}, {"limit": 3}]},
     "There are more concurrency limits than allowed: 2"),
    ({"rateLimit": {"limit": 1, "period": "25h"}}, "rateLimit.period must be at most 24h"),
    ({"debounce": {"period": "500ms"}}, "The debounce period of '500ms' is less than the min of: 1s"),
    ({"debounce": {"period": "8d"}}, "The debounce period of '8d' is greater than the max of: 168h0m0s"),
    ({"batchEvents": {"maxSize": 5, "timeout": "500ms"}}, "batchEvents.timeout must be at least 1s"),
])
async def test_forbidden_combinations_are_refused_at_sync(harness: Harness, extra: dict[str, Any], message: str) -> None:
    assert harness.http is not None
    bad = function_config(harness.app, "bad", **extra)
    resp = await harness.http.post("/fn/register", json={"appname": "test", "url": harness.app.url, "functions": [bad]})
    body = resp.json()
    assert resp.status_code == 400, body
    assert f"function 'test-bad': {message}" in body["data"]["errors"], body
    assert "test-bad" not in harness.service.registry.by_slug


async def test_every_other_combination_works_together(harness: Harness) -> None:
    """Controls the docs call incompatible but upstream's code accepts (batch with idempotency
    and rate limit) and ones the docs say nothing about, all on one function each."""
    starts: list[tuple[str, int, Any]] = []

    async def script(call: Call) -> tuple:
        event = call.body["event"]
        starts.append((event["name"], harness.clock.now_ms(), [e["data"].get("n") for e in call.body["events"]]))
        return done("ok")

    harness.app.script = script
    await harness.register(
        # concurrency key + throttle + rate limit + idempotency + priority + cancel + timeouts
        function_config(harness.app, "all", concurrency=[{"limit": 1, "key": "event.data.k"}, {"limit": 5}],
                        throttle={"limit": 2, "period": "1m", "burst": 2}, rateLimit={"limit": 3, "period": "1h"},
                        idempotency="event.data.n", priority={"run": "event.data.p"},
                        cancel=[{"event": "test/stop", "if": "async.data.n == event.data.n"}],
                        timeouts={"start": "1h", "finish": "1h"}),
        # debounce + rate limit + idempotency + singleton + throttle
        function_config(harness.app, "deb", debounce={"period": "10s", "key": "event.data.k"},
                        rateLimit={"limit": 5, "period": "1h"}, idempotency="event.data.n",
                        singleton={"mode": "skip", "key": "event.data.k"}, throttle={"limit": 1, "period": "1m"}),
        # batch + unkeyed concurrency + throttle + rate limit + idempotency
        function_config(harness.app, "bat", batchEvents={"maxSize": 2, "timeout": "5s"}, concurrency=1,
                        throttle={"limit": 1, "period": "1m"}, rateLimit={"limit": 5, "period": "1h"},
                        idempotency="event.data.n"),
    )
    t0 = harness.clock.now_ms()
    await harness.send(*[{"name": "test/all", "data": {"n": n, "k": n % 2, "p": n}} for n in (1, 1, 2, 3, 4)],
                       {"name": "test/deb", "data": {"n": 1, "k": "a"}}, {"name": "test/deb", "data": {"n": 2, "k": "a"}},
                       *[{"name": "test/bat", "data": {"n": n}} for n in range(4)])
    await harness.settle(40)
    for _ in range(12):
        await harness.advance(10 * SEC)
    got = {name: [(t - t0, ns) for name2, t, ns in starts if name2 == name] for name in ("test/all", "test/deb", "test/bat")}
    # n=1 twice: idempotency; 3 of the 4 left: rate limit; burst 2 then one per 30 s: throttle
    assert got["test/all"] == [(0, [1]), (0, [2]), (30_000, [3])], got
    # one debounced run with the last event, 10 s after it
    assert got["test/deb"] == [(10_000, [2])], got
    # two full batches, the second a throttle interval later
    assert got["test/bat"] == [(0, [0, 1]), (60_000, [2, 3])], got
