"""Three nodes on one PostgreSQL and Redis behave as one server: any node takes events and API
calls, each run's work happens once, flow control counts across nodes, and a node that dies is
taken over by the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from pyngest.protocol.step_ids import hash_step_id
from pyngest.server.model import AddHistory, Batch
from pyngest.server.store.base import Fenced
from pyngest.server.store.postgres.migrate import SCHEMA_VERSION
from tests import backends
from tests.integration.cluster.harness import Cluster
from tests.integration.server.harness import Call, done, function_config, ops

S, W, G, ONE, TWO = (hash_step_id(n) for n in ("nap", "wait", "sig", "one", "two"))
MIN = 60_000


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


async def test_shards_spread_and_any_node_takes_events_and_shows_every_run(cluster: Cluster) -> None:
    seen: list[str] = []

    async def script(call: Call) -> tuple:
        seen.append(call.body["ctx"]["run_id"])
        if ONE not in call.body["steps"]:
            return ops({"op": "StepRun", "id": ONE, "name": "one", "data": call.body["event"]["data"]["n"]})
        return done(call.body["steps"][ONE]["data"] * 10)

    cluster.app.script = script
    await cluster.register(function_config(cluster.app, "spread"))
    owned = [n.owned for n in cluster.nodes]
    assert all(owned) and not (owned[0] & owned[1] or owned[1] & owned[2] or owned[0] & owned[2])
    ids = []
    for n in range(30):
        ids += await cluster.send({"name": "test/spread", "data": {"n": n}}, via=n % 3)
    for n, eid in enumerate(ids):
        run = await cluster.run_ended(eid, via=(n + 1) % 3)  # read through another node
        assert run["status"] == "Completed" and run["output"] == n * 10
    # every run's two requests, each exactly once; the runs were spread over the nodes
    assert len(seen) == 60 and len(set(seen)) == 30
    ran_on = {n.service.cluster.shards.of_run(r) for n in cluster.nodes for r in seen}  # type: ignore[union-attr]
    holders = [sum(1 for s in ran_on if s in n.owned) for n in cluster.nodes]
    assert sum(1 for h in holders if h) >= 2, holders
    listed = (await cluster.nodes[2].http.get("/v1/runs", params={"limit": "100"})).json()["data"]
    assert len(listed) == 30


async def test_a_wait_is_resumed_exactly_once_by_an_event_sent_to_any_node(cluster: Cluster) -> None:
    calls: list[Call] = []

    async def script(call: Call) -> tuple:
        calls.append(call)
        if W in call.body["steps"]:
            return done(call.body["steps"][W]["data"])
        return ops({"op": "WaitForEvent", "id": W, "name": "test/approved",
                    "opts": {"event": "test/approved", "timeout": "1h", "if": "async.data.k == event.data.k"}})

    cluster.app.script = script
    await cluster.register(function_config(cluster.app, "waiter"))
    eids = [(await cluster.send({"name": "test/waiter", "data": {"k": k}}, via=k))[0] for k in range(3)]
    await cluster.settle()
    for k in range(3):  # each approval through a different node than its run's event
        await cluster.send({"name": "test/approved", "data": {"k": k, "ok": True}}, via=(k + 1) % 3)
    for k, eid in enumerate(eids):
        run = await cluster.run_ended(eid)
        assert run["output"] == {"k": k, "ok": True}
    await cluster.settle()
    assert len(calls) == 6  # one request to wait, one to finish: never resumed twice


async def test_signals_and_cancels_through_a_node_that_does_not_own_the_run(cluster: Cluster) -> None:
    async def script(call: Call) -> tuple:
        if G in call.body["steps"]:
            return done(call.body["steps"][G])
        if call.body["event"]["data"].get("sleep"):
            return ops({"op": "Sleep", "id": S, "name": "1h"})
        return ops({"op": "WaitForSignal", "id": G, "name": "sig", "opts": {"signal": "go-1", "timeout": "1h"}})

    cluster.app.script = script
    await cluster.register(function_config(cluster.app, "remote"))
    [waiting] = await cluster.send({"name": "test/remote"})
    [sleeping] = await cluster.send({"name": "test/remote", "data": {"sleep": True}})
    await cluster.settle()
    runs = {eid: (await cluster.runs_for(eid))[0]["run_id"] for eid in (waiting, sleeping)}

    def stranger(run_id: str) -> int:
        return next(i for i, n in enumerate(cluster.nodes)
                    if not n.service.state.shards.owns_run(run_id))

    resp = await cluster.nodes[stranger(runs[waiting])].http.post("/v1/signals", json={"signal": "go-1", "data": 7})
    assert resp.status_code == 200 and resp.json()["data"]["run_id"] == runs[waiting]
    again = await cluster.nodes[stranger(runs[waiting])].http.post("/v1/signals", json={"signal": "go-1"})
    assert again.status_code == 404  # claimed once
    run = await cluster.run_ended(waiting)
    assert run["output"] == {"data": {"signal": "go-1", "data": 7}}

    resp = await cluster.nodes[stranger(runs[sleeping])].http.delete(f"/v1/runs/{runs[sleeping]}")
    assert resp.status_code == 200
    assert (await cluster.run_ended(sleeping))["status"] == "Cancelled"


async def test_cron_fires_each_tick_exactly_once(cluster: Cluster) -> None:
    fired: list[str] = []

    async def script(call: Call) -> tuple:
        fired.append(call.body["event"]["data"]["scheduledAt"])
        return done("tick")

    cluster.app.script = script
    await cluster.register(function_config(cluster.app, "cron", triggers=[{"cron": "* * * * *"}]), via=1)
    for _ in range(5):
        await cluster.advance(MIN)
    await cluster.settle()
    assert len(fired) == len(set(fired)) == 5, fired


async def test_debounce_batch_and_rate_limit_count_events_from_every_node(cluster: Cluster) -> None:
    got: dict[str, list[Any]] = {}

    async def script(call: Call) -> tuple:
        fn = call.body["ctx"]["fn_id"]
        got.setdefault(fn, []).append([e["data"]["n"] for e in call.body["events"]])
        return done("ok")

    cluster.app.script = script
    await cluster.register(
        function_config(cluster.app, "deb", debounce={"period": "10s", "key": "event.data.k"}),
        function_config(cluster.app, "bat", batchEvents={"maxSize": 6, "timeout": "1m"}),
        function_config(cluster.app, "rate", rateLimit={"limit": 1, "period": "1h"}),
    )
    for n in range(6):
        await cluster.send({"name": "test/deb", "data": {"k": "a", "n": n}}, via=n % 3)
        await cluster.send({"name": "test/bat", "data": {"n": n}}, via=(n + 1) % 3)
        await cluster.send({"name": "test/rate", "data": {"n": n}}, via=(n + 2) % 3)
        await cluster.settle()
    await cluster.advance(11_000)
    fns = {f.slug: f.id for f in cluster.nodes[0].service.registry.functions.values()}
    assert got[fns["test-deb"]] == [[5]]  # one run, with the last event
    assert got[fns["test-bat"]] == [[0, 1, 2, 3, 4, 5]]  # one batch of all six
    assert got[fns["test-rate"]] == [[0]]  # the rest were rate limited


async def test_concurrency_is_never_exceeded_across_nodes(cluster: Cluster) -> None:
    running = 0
    peak = 0

    async def script(call: Call) -> tuple:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        if ONE not in call.body["steps"]:
            return ops({"op": "StepRun", "id": ONE, "name": "one", "data": 1})
        return done("ok")

    cluster.app.script = script
    await cluster.register(function_config(cluster.app, "conc", concurrency=[{"limit": 2}]))
    ids = []
    for n in range(12):
        ids += await cluster.send({"name": "test/conc", "data": {"n": n}}, via=n % 3)
    for eid in ids:
        assert (await cluster.run_ended(eid, timeout=30))["status"] == "Completed"
    assert peak == 2


async def test_a_sync_through_one_node_is_used_by_the_others_at_once(cluster: Cluster) -> None:
    cluster.app.script = lambda call: _done("v2" if "v2" in call.body["ctx"]["fn_id"] else "?")
    await cluster.register(function_config(cluster.app, "first"), via=0)
    outcome = await cluster.nodes[1].service.registry.register({
        "appName": "test", "url": cluster.app.url, "sdk": "py:v0.5.19", "framework": "fast_api",
        "functions": [function_config(cluster.app, "first"), function_config(cluster.app, "second")],
    })
    await cluster.nodes[1].service.after_sync(outcome)
    [eid] = await cluster.send({"name": "test/second"}, via=2)  # right away, through a third node
    assert (await cluster.run_ended(eid))["status"] == "Completed"


async def _done(value: object) -> tuple:
    return done(value)


async def test_a_dead_node_is_taken_over_and_a_stale_one_cannot_commit(cluster: Cluster) -> None:
    async def script(call: Call) -> tuple:
        steps = call.body["steps"]
        if S not in steps:
            return ops({"op": "Sleep", "id": S, "name": "1m"})
        return done("woke")

    cluster.app.script = script
    await cluster.register(function_config(cluster.app, "survivor"))
    ids = [(await cluster.send({"name": "test/survivor", "data": {"n": n}}, via=n % 3))[0] for n in range(12)]
    await cluster.settle()
    victim = cluster.nodes[2]
    lost = set(victim.owned)
    assert lost
    stale_service = victim.service
    stale_epochs = dict(stale_service.cluster.leases.held)  # type: ignore[union-attr]
    await cluster.crash_node(victim)
    await cluster.balanced(timeout=20)  # within the 2 s lease and a renewal or two
    assert lost <= cluster.nodes[0].owned | cluster.nodes[1].owned
    await cluster.advance(MIN)
    for eid in ids:
        assert (await cluster.run_ended(eid))["output"] == "woke"

    # the dead node's last writes are refused: its epochs are old
    run_id = next(r for r in [(await cluster.runs_for(e))[0]["run_id"] for e in ids]
                  if stale_service.state.shards.of_run(r) in lost)
    store = type(stale_service.store)(cluster.uri, cluster.clock)
    await store.open()
    try:
        store.node_id = stale_service.cluster.node_id  # type: ignore[union-attr]
        store.leases = stale_epochs
        with pytest.raises(Fenced):
            await store.commit(Batch([AddHistory(run_id, cluster.clock.now_ms(), "Stale")]))
    finally:
        await store.close()


async def test_a_node_whose_lease_renewal_is_late_sends_no_request_under_it(cluster: Cluster) -> None:
    """A process that cannot renew in time (stalled, starved of CPU) may already have been taken
    over: it must not send the app a step to run under a lease it may have lost, as two
    processes would then run the same step at once."""
    cluster.app.script = lambda call: _done(call.body["event"]["data"]["n"])
    await cluster.register(function_config(cluster.app, "late"))
    victim = cluster.nodes[2]
    node = victim.service.cluster
    assert node is not None

    async def late() -> None:
        await asyncio.Event().wait()

    async def unnoticed(exc: BaseException) -> None:
        return None  # it has not noticed yet: it still believes it holds its shards

    node.leases.renew = late  # type: ignore[method-assign]
    node.leases._unreachable = unnoticed  # type: ignore[method-assign]
    sent_late: list[str] = []
    execute = victim.service.driver.execute

    async def watched(**kw: Any) -> Any:
        if not node.leases.fresh(node.shards.of_run(kw["run_id"])):
            sent_late.append(kw["run_id"])
        return await execute(**kw)

    victim.service.driver.execute = watched  # type: ignore[method-assign]
    deadline = asyncio.get_running_loop().time() + 10
    while any(node.leases.fresh(shard) for shard in victim.owned):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    assert set(victim.owned), "the late node still believes it holds shards"
    ids = [(await cluster.send({"name": "test/late", "data": {"n": n}}, via=n % 2))[0] for n in range(12)]
    for n, eid in enumerate(ids):
        assert (await cluster.run_ended(eid))["output"] == n
    assert sent_late == []
    assert len(cluster.app.calls) == 12  # each run's one request, sent once


async def test_the_answer_of_a_request_made_stale_by_a_shard_move_is_discarded(cluster: Cluster) -> None:
    """A request in flight while its run's shard moves away (and perhaps back) is stale: its
    checkpoints are refused, and so is its answer — the npm SDK answers a refused checkpoint
    with an error, which must not fail the run. The shard's owner runs the step again."""
    first = asyncio.Event()
    answer = asyncio.Event()

    async def script(call: Call) -> tuple:
        if not first.is_set():
            first.set()
            await answer.wait()
            return 500, {}, {"name": "StaleDispatchError", "message": "Stale dispatch: checkpoint returned 409"}
        return done("fresh")

    cluster.app.script = script
    await cluster.register(function_config(cluster.app, "stale", retries=0))
    [eid] = await cluster.send({"name": "test/stale", "data": {}})
    await asyncio.wait_for(first.wait(), 20)
    [run] = await cluster.runs_for(eid)
    owner = next(n for n in cluster.nodes if n.service.cluster is not None
                 and n.service.cluster.holds_locally(run["run_id"]))
    # as a shard lost (and taken again) does: the request in flight stops counting as live
    owner.service.executor.drop_dispatches(lambda run_id: run_id == run["run_id"])
    answer.set()
    ended = await cluster.run_ended(eid)
    assert ended["status"] == "Completed" and ended["output"] == "fresh"
    assert len(cluster.app.calls) == 2


async def test_runs_complete_when_redis_is_flushed_mid_flight(cluster: Cluster) -> None:
    async def script(call: Call) -> tuple:
        steps = call.body["steps"]
        for step in (ONE, TWO):
            if step not in steps:
                return ops({"op": "StepRun", "id": step, "name": "s", "data": len(steps)})
        return done(len(steps))

    cluster.app.script = script
    await cluster.register(function_config(cluster.app, "flush"))
    ids = []
    client = aioredis.Redis.from_url(backends.REDIS_URI)
    try:
        for n in range(20):
            ids += await cluster.send({"name": "test/flush", "data": {"n": n}}, via=n % 3)
            if n == 10:
                await client.flushall()
    finally:
        await client.aclose()
    for eid in ids:
        assert (await cluster.run_ended(eid))["output"] == 2


async def test_the_live_feed_of_any_node_shows_runs_that_others_execute(cluster: Cluster) -> None:
    cluster.app.script = lambda call: _done("ok")
    await cluster.register(function_config(cluster.app, "watched"))
    feed = cluster.nodes[0].service.live.subscribe()
    await asyncio.sleep(0.1)  # the others learn someone watches through Redis within a moment
    for node in cluster.nodes[1:]:
        assert node.service.cluster is not None
        node.service.cluster._remote_watchers_until = float("inf")  # noqa: SLF001 - skip the 5 s beacon
    ids = []
    for n in range(12):
        ids += await cluster.send({"name": "test/watched", "data": {"n": n}}, via=1 + n % 2)
    runs = {(await cluster.run_ended(eid))["run_id"] for eid in ids}
    seen: set[str] = set()
    deadline = asyncio.get_running_loop().time() + 10
    while not runs <= seen:
        timeout = deadline - asyncio.get_running_loop().time()
        assert timeout > 0, f"live feed of node 0 missed {len(runs - seen)} of {len(runs)} runs"
        message = await asyncio.wait_for(feed.get(), timeout)
        seen |= set(message["runs"])
    elsewhere = [r for r in runs if not cluster.nodes[0].service.state.shards.owns_run(r)]
    assert elsewhere  # some of them ran on the other nodes


async def _sleeper(call: Call) -> tuple:
    if S in call.body["steps"]:
        return done({"finished": call.body["event"]["data"]})
    return ops({"op": "Sleep", "id": S, "name": "1h"})


async def test_pausing_cancelling_and_replaying_through_one_node_act_on_every_node(cluster: Cluster) -> None:
    from pyngest.protocol.durations import iso_ms

    calls: list[Call] = []

    async def script(call: Call) -> tuple:
        calls.append(call)
        return await _sleeper(call)

    cluster.app.script = script
    await cluster.register(function_config(cluster.app, "held"), function_config(cluster.app, "bulk"))
    t0 = cluster.clock.now_ms()
    held = [(await cluster.send({"name": "test/held", "data": {"n": n}}, via=n % 3))[0] for n in range(9)]
    bulk = [(await cluster.send({"name": "test/bulk", "data": {"n": n}}, via=n % 3))[0] for n in range(9)]
    await cluster.settle()
    api = cluster.nodes[0].http
    assert (await api.post("/v1/functions/test-held/pause", json={})).json()["data"]["paused"] is True
    await cluster.settle()
    before = len(calls)
    await cluster.advance(60 * MIN)  # the sleeps end on every node, but paused runs wait
    held_ids = {(await cluster.runs_for(e))[0]["run_id"] for e in held}
    assert not [c for c in calls[before:] if c.body["ctx"]["run_id"] in held_ids]
    resp = await api.post("/v1/cancellations", json={
        "app_id": "test", "function_id": "bulk", "started_after": iso_ms(t0 - 1),
        "started_before": iso_ms(cluster.clock.now_ms() + 1)})
    assert resp.status_code == 201
    # the bulk runs finished their sleep meanwhile; a replay of those brings them back
    for eid in bulk:
        assert (await cluster.run_ended(eid, via=2))["status"] in ("Completed", "Cancelled")
    await api.post("/v1/functions/test-held/resume")
    for eid in held:
        assert (await cluster.run_ended(eid, via=1))["output"] == {"finished": {"n": held.index(eid)}}
    resp = await cluster.nodes[1].http.post("/v1/replays", json={
        "function_id": "test-bulk", "from": iso_ms(t0 - 1), "to": iso_ms(cluster.clock.now_ms() + 1),
        "statuses": ["Completed", "Cancelled"]})
    assert resp.status_code == 201, resp.text
    await cluster.settle()
    await cluster.advance(2_000)  # replays are spread out
    await cluster.advance(60 * MIN)
    for eid in bulk:  # each has its original and a replayed run, the replay completed
        runs = await cluster.runs_for(eid)
        assert len(runs) == 2 and any(r["status"] == "Completed" and r.get("original_run_id") for r in runs), runs


async def test_singleton_throttle_and_idempotency_hold_across_nodes(cluster: Cluster) -> None:
    started: dict[str, list[int]] = {}

    async def script(call: Call) -> tuple:
        fn = call.body["ctx"]["fn_id"]
        if S not in call.body["steps"]:
            started.setdefault(fn, []).append(call.body["event"]["data"]["n"])
            return ops({"op": "Sleep", "id": S, "name": "1m"})
        return done("ok")

    cluster.app.script = script
    await cluster.register(
        function_config(cluster.app, "single", singleton={"key": "event.data.k", "mode": "skip"}),
        function_config(cluster.app, "thr", throttle={"limit": 1, "period": "1m", "key": "event.data.k"}),
        function_config(cluster.app, "idem", idempotency="event.data.k"),
    )
    for n in range(6):
        for fn in ("single", "thr", "idem"):
            await cluster.send({"name": f"test/{fn}", "data": {"k": "x", "n": n}}, via=n % 3)
    await cluster.settle()
    fns = {f.slug: f.id for f in cluster.nodes[0].service.registry.functions.values()}
    assert started[fns["test-single"]] == [0]  # the others were skipped while it ran
    assert started[fns["test-thr"]] == [0]  # one start per minute for the key
    assert started[fns["test-idem"]] == [0]  # one run per key in 24 h
    for minute in range(1, 3):
        await cluster.advance(MIN)
        assert len(started[fns["test-thr"]]) == minute + 1


async def test_invoke_between_functions_placed_on_different_nodes(cluster: Cluster) -> None:
    inv = hash_step_id("inv")

    async def script(call: Call) -> tuple:
        event = call.body["event"]
        if event["name"] == "inngest/function.invoked":
            return done({"child": event["data"]["n"] * 2})
        if inv in call.body["steps"]:
            return done(call.body["steps"][inv])
        return ops({"op": "InvokeFunction", "id": inv, "name": "inv",
                    "opts": {"function_id": "test-child", "payload": {"data": {"n": event["data"]["n"]}}}})

    cluster.app.script = script
    await cluster.register(function_config(cluster.app, "parent"), function_config(cluster.app, "child"))
    ids = [(await cluster.send({"name": "test/parent", "data": {"n": n}}, via=n % 3))[0] for n in range(9)]
    for n, eid in enumerate(ids):
        assert (await cluster.run_ended(eid))["output"] == {"data": {"child": n * 2}}


async def test_three_processes_starting_at_once_on_an_empty_database(tmp_path: Path) -> None:
    c = Cluster(tmp_path, nodes=0)
    await backends.create_schema(c.schema)
    await c.app.start()
    try:
        await asyncio.gather(*(c.add_node() for _ in range(3)))
        await c.balanced()
        store = c.nodes[0].service.store
        assert await store.fetchval("SELECT value FROM meta WHERE key = 'schema_version'") == str(SCHEMA_VERSION)  # type: ignore[attr-defined]
        assert await store.fetchval("SELECT count(*) FROM shards") == 32  # type: ignore[attr-defined]
        assert await store.fetchval("SELECT count(DISTINCT value) FROM meta WHERE key = 'cluster_id'") == 1  # type: ignore[attr-defined]
    finally:
        await c.stop()


async def test_checkpoints_of_the_pyngest_sdk_reach_the_node_that_dispatched_the_request(cluster: Cluster) -> None:
    """The SDK app talks to node 0 only; runs placed on the other nodes' shards have their
    checkpoints forwarded to the node whose request they belong to, and complete in one request."""
    import fastapi
    import httpx

    import pyngest as inngest
    import pyngest.fast_api
    from pyngest.experimental.dev_server import serve_app

    node0 = f"http://127.0.0.1:{cluster.nodes[0].port}"
    client = inngest.Inngest(app_id="cp-cluster", is_production=False, api_base_url=node0, event_api_base_url=node0,
                             checkpointing=True)
    ran: list[tuple[str, int]] = []
    posts: list[str] = []

    @client.create_function(fn_id="three", trigger=inngest.TriggerEvent(event="test/cp"))
    async def three(ctx: inngest.Context, step: inngest.Step) -> int:
        n = ctx.event.data["n"]
        total = 0
        for s in range(3):
            total += await step.run(f"s{s}", lambda s=s: ran.append((ctx.run_id, s)) or s + n)
        return total

    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, client, [three])

    async def counting(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            posts.append(scope["path"])
        await app(scope, receive, send)

    with serve_app(counting) as base:
        async with httpx.AsyncClient(timeout=30) as http:
            res = await http.put(base + "/api/inngest")
            assert res.status_code == 200, res.text
        await cluster.settle()
        ids = [(await cluster.send({"name": "test/cp", "data": {"n": n}}, via=n % 3))[0] for n in range(12)]
        runs = [await cluster.run_ended(eid, via=1) for eid in ids]
    assert [r["output"] for r in runs] == [3 + 3 * n for n in range(12)]
    # every step body once, every run answered in one request
    assert sorted(ran) == sorted((r["run_id"], s) for r in runs for s in range(3))
    assert len(posts) == 12
    owners = [next(i for i, node in enumerate(cluster.nodes)
                   if node.service.cluster.shards.of_run(r["run_id"]) in node.owned) for r in runs]  # type: ignore[union-attr]
    assert any(o != 0 for o in owners), "some runs must be dispatched by nodes other than the SDK's"
