"""The execution protocol against a scripted app: request shapes, opcodes, retries, limits."""

from __future__ import annotations

import orjson

from pyngest.protocol import jcs, signing
from pyngest.protocol.step_ids import hash_step_id
from tests.integration.server.harness import Call, Harness, done, error_op, function_config, ops

A, B, C = hash_step_id("a"), hash_step_id("b"), hash_step_id("c")


async def test_steps_are_memoized_and_requests_carry_what_sdks_require(harness: Harness) -> None:
    async def script(call: Call) -> tuple:
        steps = call.body["steps"]
        if A not in steps:
            return ops({"op": "StepRun", "id": A, "name": "a", "data": {"n": 1}})
        return done({"sum": steps[A]["data"]["n"] + 1})

    harness.app.script = script
    await harness.register(function_config(harness.app, "memo"))
    [eid] = await harness.send({"name": "test/memo", "data": {"x": 1}})
    [run] = await harness.run_ended(eid)
    assert run["status"] == "Completed" and run["output"] == {"sum": 2}

    first, second = harness.app.calls
    for call in (first, second):
        ctx = call.body["ctx"]
        assert isinstance(ctx["attempt"], int) and ctx["disable_immediate_execution"] is False
        assert ctx["run_id"] == run["run_id"] and isinstance(ctx["stack"]["stack"], list)
        assert call.body["use_api"] is False and ctx["use_api"] is False
        assert call.body["event"]["name"] == "test/memo" and isinstance(call.body["event"]["ts"], int)
        assert call.raw == jcs.canonicalize(call.raw), "bodies are canonical JSON"
        assert call.step_id == "step" and call.headers["X-Run-ID"] == run["run_id"]
    assert first.body["version"] == -1 and first.body["steps"] == {}
    assert second.body["version"] == 2  # learned from the first response's x-inngest-req-version
    assert second.body["steps"] == {A: {"data": {"n": 1}}}
    assert second.body["ctx"]["stack"] == {"stack": [A], "current": 1}


async def test_parallel_plans_fan_in_to_one_discovery(harness: Harness) -> None:
    async def script(call: Call) -> tuple:
        steps = call.body["steps"]
        if call.step_id == "step":
            if A in steps and B in steps:
                return done([steps[A]["data"], steps[B]["data"]])
            return ops({"op": "StepPlanned", "id": A, "name": "a"}, {"op": "StepPlanned", "id": B, "name": "b"})
        return ops({"op": "StepRun", "id": call.step_id, "name": call.step_id, "data": call.step_id[:4]})

    harness.app.script = script
    await harness.register(function_config(harness.app, "par"))
    [eid] = await harness.send({"name": "test/par"})
    [run] = await harness.run_ended(eid)
    assert run["output"] == [A[:4], B[:4]]
    kinds = [c.step_id for c in harness.app.calls]
    assert sorted(kinds[1:3]) == sorted([A, B])
    assert kinds.count("step") == 2, "v2: one discovery after both planned steps finish"
    planned = [c for c in harness.app.calls if c.step_id in (A, B)]
    assert all(c.body["ctx"]["disable_immediate_execution"] for c in planned)


async def test_race_mode_resumes_the_run_when_the_first_parallel_step_finishes(harness: Harness) -> None:
    import asyncio

    release_b = asyncio.Event()
    race = {"parallelMode": "race"}

    async def script(call: Call) -> tuple:
        steps = call.body["steps"]
        if call.step_id == "step":
            if A in steps or B in steps:
                return done({"winner": "a" if A in steps else "b", "both": A in steps and B in steps})
            return ops({"op": "StepPlanned", "id": A, "name": "a", "opts": race},
                       {"op": "StepPlanned", "id": B, "name": "b", "opts": race})
        if call.step_id == B:
            await release_b.wait()  # the slow contender
        return ops({"op": "StepRun", "id": call.step_id, "name": call.step_id, "data": 1, "opts": race})

    harness.app.script = script
    await harness.register(function_config(harness.app, "race"))
    [eid] = await harness.send({"name": "test/race"})
    try:
        [run] = await harness.run_ended(eid)
    finally:
        release_b.set()
    assert run["output"] == {"winner": "a", "both": False}, "race: discovery right after the first step, not after both"


async def test_step_errors_retry_then_fail_into_user_code(tmp_path) -> None:
    h = Harness(tmp_path, retry_interval_s=1)
    await h.start()
    try:
        async def script(call: Call) -> tuple:
            steps = call.body["steps"]
            if A in steps:
                return done({"caught": steps[A]["error"]["message"]})
            return ops(error_op(A, f"attempt {call.body['ctx']['attempt']}"))

        h.app.script = script
        await h.register(function_config(h.app, "retry", retries=2))
        [eid] = await h.send({"name": "test/retry"})
        await h.settle()
        for _ in range(2):
            await h.advance(1000)
        [run] = await h.run_ended(eid)
        assert run["output"] == {"caught": "attempt 2"}
        attempts = [c.body["ctx"]["attempt"] for c in h.app.calls if A not in c.body["steps"]]
        assert attempts == [0, 1, 2]
        assert all(c.body["ctx"]["max_attempts"] == 3 for c in h.app.calls)
    finally:
        await h.stop()


async def test_default_backoff_follows_upstreams_table_and_retry_after_overrides_it(harness: Harness) -> None:
    seen: dict[str, list[int]] = {"test/table": [], "test/later": []}

    async def script(call: Call) -> tuple:
        name, attempt = call.body["event"]["name"], call.body["ctx"]["attempt"]
        seen[name].append(harness.clock.now_ms())
        if name == "test/later":
            if attempt == 0:
                return 500, {"X-Inngest-SDK": "inngest-py:v0.5.19", "Retry-After": "120"}, {
                    "name": "Error", "message": "busy"}
            return done("after retry-after")
        if attempt < 2:
            return ops(error_op(A, f"attempt {attempt}"))
        return done({"attempts": attempt + 1})

    harness.app.script = script
    await harness.register(function_config(harness.app, "table", retries=4),
                           function_config(harness.app, "later", retries=4))
    [eid, late] = await harness.send({"name": "test/table"}, {"name": "test/later"})
    await harness.settle()
    step = 5_000
    for _ in range(130_000 // step):
        await harness.advance(step)
    [run] = await harness.run_ended(eid)
    assert run["output"] == {"attempts": 3}
    t0, t1, t2 = seen["test/table"]
    # a call is seen at the first clock step at or after its due time: up to `step` late
    assert 15_000 <= t1 - t0 <= 45_000 + step, "first retry: 15 s plus 0-30 s of jitter"
    assert 30_000 <= t2 - t1 <= 60_000 + step, "second retry: 30 s plus 0-30 s of jitter"
    [run] = await harness.run_ended(late)
    assert run["output"] == "after retry-after"
    r0, r1 = seen["test/later"]
    assert 120_000 <= r1 - r0 <= 120_000 + step, "Retry-After: 120 replaces the table"


async def test_function_errors_honour_no_retry_and_not_an_sdk(harness: Harness) -> None:
    async def script(call: Call) -> tuple:
        if call.body["event"]["name"] == "test/plain":
            return 200, {}, {"not": "an sdk"}  # no X-Inngest-SDK header
        return 500, {"X-Inngest-SDK": "inngest-py:v0.5.19", "x-inngest-no-retry": "true"}, {
            "name": "ValueError", "message": "bad input", "stack": "trace"}

    harness.app.script = script
    await harness.register(
        function_config(harness.app, "noretry", retries=5),
        function_config(harness.app, "plain", retries=0),
    )
    [e1, e2] = await harness.send({"name": "test/noretry"}, {"name": "test/plain"})
    [r1] = await harness.run_ended(e1)
    assert r1["status"] == "Failed"
    # the SDK's error object, unchanged (upstream's run output); no "error" key added
    assert r1["output"] == {"name": "ValueError", "message": "bad input", "stack": "trace"}
    [r2] = await harness.run_ended(e2)
    assert r2["status"] == "Failed" and "did not come from an Inngest SDK" in r2["output"]["message"]


async def test_streaming_envelope_is_unwrapped(harness: Harness) -> None:
    async def script(call: Call) -> tuple:
        envelope = {"status": 200, "headers": {"X-Inngest-SDK": "inngest-py:v0.5.19"}, "body": orjson.dumps({"ok": 1}).decode()}
        return 201, {"X-Inngest-SDK": "inngest-py:v0.5.19"}, b"   \n  " + orjson.dumps(envelope)

    harness.app.script = script
    await harness.register(function_config(harness.app, "stream"))
    [eid] = await harness.send({"name": "test/stream"})
    [run] = await harness.run_ended(eid)
    assert run["status"] == "Completed" and run["output"] == {"ok": 1}


async def test_limits_output_too_large_and_too_many_ops(harness: Harness) -> None:
    async def script(call: Call) -> tuple:
        if call.body["event"]["name"] == "test/many":
            return ops(*[{"op": "StepPlanned", "id": hash_step_id(str(i))} for i in range(1001)])
        if A in call.body["steps"]:
            return done(call.body["steps"][A])
        return ops({"op": "StepRun", "id": A, "name": "a", "data": "x" * (4 * 1024 * 1024 + 10)})

    harness.app.script = script
    await harness.register(function_config(harness.app, "big"), function_config(harness.app, "many"))
    [e1, e2] = await harness.send({"name": "test/big"}, {"name": "test/many"})
    [r1] = await harness.run_ended(e1)
    assert r1["output"]["error"]["name"] == "OutputTooLargeError"
    [r2] = await harness.run_ended(e2)
    assert r2["status"] == "Failed" and "step limit of 1000" in r2["output"]["message"]


async def test_requests_are_signed_with_the_signing_key(tmp_path) -> None:
    key = "signkey-test-" + "ab" * 32
    h = Harness(tmp_path, signing_key=key)
    await h.start()
    try:
        async def script(call: Call) -> tuple:
            signing.verify(call.raw, call.headers.get("X-Inngest-Signature"), [key])
            return done("signed")

        h.app.script = script
        await h.register(function_config(h.app, "signed"))
        resp = await h.http.post("/e/key", json={"name": "test/signed"})  # type: ignore[union-attr]
        [run] = await h.run_ended(resp.json()["ids"][0])
        assert run["output"] == "signed"
    finally:
        await h.stop()


async def test_large_state_switches_to_use_api(harness: Harness) -> None:
    big = "y" * (3 * 1024 * 1024)

    async def script(call: Call) -> tuple:
        if call.body["use_api"]:
            assert call.body["steps"] == {} and call.body["events"] == []
            assert harness.http is not None
            run_id = call.body["ctx"]["run_id"]
            actions = (await harness.http.get(f"/v0/runs/{run_id}/actions")).json()
            batch = (await harness.http.get(f"/v0/runs/{run_id}/batch")).json()
            return done({"steps": sorted(actions), "events": len(batch)})
        steps = call.body["steps"]
        for sid in (A, B):
            if sid not in steps:
                return ops({"op": "StepRun", "id": sid, "name": sid, "data": big})
        raise AssertionError("state should have been fetched through the API")

    harness.app.script = script
    await harness.register(function_config(harness.app, "useapi"))
    [eid] = await harness.send({"name": "test/useapi"})
    [run] = await harness.run_ended(eid, timeout=15)
    assert run["output"] == {"steps": sorted([A, B]), "events": 1}


async def test_checkpoints_from_a_dispatch_no_longer_in_flight_are_refused(harness: Harness) -> None:
    """A JS execution orphaned by a restart keeps checkpointing; only the live dispatch may."""
    seen: dict[str, object] = {}

    async def script(call: Call) -> tuple:
        assert harness.http is not None
        run_id = call.body["ctx"]["run_id"]
        generation = call.body["ctx"]["generation_id"]
        assert call.headers["x-inngest-generation-id"] == str(generation)
        step = {"op": "StepRun", "id": A, "name": "a", "data": 7}
        stale = await harness.http.post(f"/v1/checkpoint/{run_id}/async",
                                        json={"run_id": run_id, "generation_id": generation - 1, "steps": [step]})
        live = await harness.http.post(f"/v1/checkpoint/{run_id}/async",
                                       json={"run_id": run_id, "generation_id": generation, "steps": [step]})
        seen.update(stale=stale.status_code, live=live.status_code)
        return ops({"op": "RunComplete", "id": hash_step_id("complete"), "data": "done"})

    harness.app.script = script
    await harness.register(function_config(harness.app, "ckpt"))
    [eid] = await harness.send({"name": "test/ckpt"})
    [run] = await harness.run_ended(eid)
    assert seen == {"stale": 409, "live": 200}
    assert run["output"] == "done"
    assert harness.http is not None
    actions = (await harness.http.get(f"/v0/runs/{run['run_id']}/actions")).json()
    assert actions == {A: {"data": 7}}


async def test_system_events_are_canonical_and_carry_the_run(harness: Harness) -> None:
    """function.finished / failed bodies are assembled from stored fragments: still canonical."""
    async def script(call: Call) -> tuple:
        if call.body["event"]["data"].get("fail"):
            return 500, {"X-Inngest-SDK": "inngest-py:v0.5.19", "x-inngest-no-retry": "true"}, {
                "name": "E", "message": "no", "stack": "s"}
        return done({"n": 1.5})

    harness.app.script = script
    await harness.register(function_config(harness.app, "sys"))
    [ok, bad] = await harness.send({"name": "test/sys", "data": {"x": 1.0}, "meta": {"k": "v"}},
                                   {"name": "test/sys", "data": {"fail": True}})
    [r_ok] = await harness.run_ended(ok)
    [r_bad] = await harness.run_ended(bad)
    store = harness.service.store
    finished = {e.body for e in await store.list_events("inngest/function.finished", 10)}
    failed = await store.list_events("inngest/function.failed", 10)
    assert len(finished) == 2 and len(failed) == 1
    for body in [*finished, failed[0].body]:
        assert jcs.canonicalize(body) == body
    by_run = {orjson.loads(b)["data"]["run_id"]: orjson.loads(b) for b in finished}
    done_event = by_run[r_ok["run_id"]]
    assert done_event["data"]["result"] == {"n": 1.5} and done_event["meta"] == {"k": "v"}
    assert done_event["data"]["event"]["data"] == {"x": 1} and done_event["data"]["_inngest"] == {"status": "Completed"}
    failed_event = orjson.loads(failed[0].body)
    assert failed_event["id"] == r_bad["run_id"] and failed_event["data"]["error"]["message"] == "no"
    assert "result" not in failed_event["data"]
