"""Flow control semantics with a scripted app and the test clock."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

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


async def test_sleeping_runs_hold_no_concurrency_slot(harness: Harness) -> None:
    async def script(call: Call) -> tuple:
        if call.body["event"]["data"]["sleeper"]:
            if S in call.body["steps"]:
                return done("woke")
            return ops({"op": "Sleep", "id": S, "name": "1h"})
        return done("ran while the other slept")

    harness.app.script = script
    await harness.register(function_config(harness.app, "one", concurrency=1))
    [sleeper] = await harness.send({"name": "test/one", "data": {"sleeper": True}})
    await harness.settle()
    [other] = await harness.send({"name": "test/one", "data": {"sleeper": False}})
    [run] = await harness.run_ended(other)
    assert run["output"] == "ran while the other slept"
    assert (await harness.runs_for(sleeper))[0]["status"] == "Running"


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
