"""How many store writes a run costs (issue 16): each is a group commit the run waits for.

A run's writes are counted as the batches committed about it — any op naming the run, or the
insert of the event that started it. Each of a run's stages waits for the commit of the one
before, so no two of these batches can share a commit: the count is the number of commits
the run takes part in, on either store.
"""

from __future__ import annotations

from collections import Counter

from pyngest.protocol.step_ids import hash_step_id
from pyngest.server.model import Batch, CommitResult, InsertEvents, op_run_id
from tests.integration.server.harness import Call, Harness, done, function_config, ops

A = hash_step_id("a")
COMPLETE = {"op": "RunComplete", "id": hash_step_id("complete"), "data": "done"}


class WriteLog:
    """Every committed batch, kept to count those about one run afterwards."""

    def __init__(self, harness: Harness) -> None:
        self.batches: list[Batch] = []
        harness.service.state.observers.append(self._observe)

    def _observe(self, batch: Batch, result: CommitResult) -> None:
        self.batches.append(batch)

    def about(self, run_id: str, event_id: str) -> list[Batch]:
        def touches(batch: Batch) -> bool:
            return any(op_run_id(op) == run_id
                       or (isinstance(op, InsertEvents) and any(e.internal_id == event_id for e in op.events))
                       for op in batch.ops)
        return [b for b in self.batches if touches(b)]


def kinds(batch: Batch) -> Counter[str]:
    return Counter(type(op).__name__ for op in batch.ops)


async def one_run(harness: Harness, writes: WriteLog, name: str) -> tuple[dict, list[Batch]]:
    await harness.register(function_config(harness.app, name))
    # (on several processes, runs start with their event once this process has read the
    # registry version its sync made; an event sent before that is matched from the log)
    await harness.settle()
    [eid] = await harness.send({"name": f"test/{name}"})
    [run] = await harness.run_ended(eid)
    await harness.settle()
    return run, writes.about(run["run_id"], eid)


async def test_a_one_step_run_answered_in_one_request_is_two_writes(harness: Harness) -> None:
    """The event with its run; the step with the run's start, its end and its system events."""
    writes = WriteLog(harness)

    async def script(call: Call) -> tuple:
        return ops({"op": "StepRun", "id": A, "name": "a", "data": 1}, COMPLETE)

    harness.app.script = script
    run, batches = await one_run(harness, writes, "onereq")
    assert run["status"] == "Completed" and run["output"] == "done"
    assert len(batches) == 2, [kinds(b) for b in batches]
    first, last = batches
    assert kinds(first)["InsertEvents"] == 1 and kinds(first)["CreateRun"] == 1
    assert not any(op.job.kind.value == "events" for op in first.ops if type(op).__name__ == "Enqueue"), \
        "an event that only triggers functions needs no matching job"
    assert kinds(last)["SaveStep"] == 1 and kinds(last)["InsertEvents"] == 1  # inngest/function.finished
    assert kinds(last)["UpdateRun"] >= 2, "the start, the step and the end are all in this batch"
    history = [h.kind for h in await harness.service.store.history(run["run_id"])]
    assert history[:2] == ["FunctionScheduled", "FunctionStarted"] and history[-1] == "FunctionCompleted"


async def test_a_one_step_run_over_two_requests_is_three_writes(harness: Harness) -> None:
    """A step's output is committed before the next request leaves, so a step answered alone
    costs a write of its own: event with run, step (with the start), end."""
    writes = WriteLog(harness)

    async def script(call: Call) -> tuple:
        if A not in call.body["steps"]:
            return ops({"op": "StepRun", "id": A, "name": "a", "data": 1})
        return done(1)

    harness.app.script = script
    run, batches = await one_run(harness, writes, "tworeq")
    assert run["status"] == "Completed"
    assert len(batches) == 3, [kinds(b) for b in batches]
    assert kinds(batches[1])["SaveStep"] == 1
    assert any(getattr(op, "kind", None) == "FunctionStarted" for op in batches[1].ops), \
        "the run's start is committed with its first step, not alone"


async def test_a_checkpointed_step_carries_the_runs_start(harness: Harness) -> None:
    """The npm SDK's checkpoint (awaited before the function goes on, so it must be durable when
    answered) is the run's second write and records its start; the end is the third."""
    writes = WriteLog(harness)

    async def script(call: Call) -> tuple:
        assert harness.http is not None
        run_id = call.body["ctx"]["run_id"]
        resp = await harness.http.post(f"/v1/checkpoint/{run_id}/async", json={
            "run_id": run_id, "generation_id": call.body["ctx"]["generation_id"],
            "steps": [{"op": "StepRun", "id": A, "name": "a", "data": 7}]})
        assert resp.status_code == 200
        return ops(COMPLETE)

    harness.app.script = script
    run, batches = await one_run(harness, writes, "ckptwrites")
    assert run["status"] == "Completed"
    assert len(batches) == 3, [kinds(b) for b in batches]
    assert kinds(batches[1])["SaveStep"] == 1
    assert any(getattr(op, "kind", None) == "FunctionStarted" for op in batches[1].ops)


async def test_an_event_a_pause_waits_for_still_gets_a_matching_job(harness: Harness) -> None:
    """Only events nothing else acts on skip the matching job: with a wait pending for the
    event's name, the event is matched in order (and resumes the wait)."""
    async def script(call: Call) -> tuple:
        if call.body["event"]["name"] == "test/waiter":
            if A not in call.body["steps"]:
                return ops({"op": "WaitForEvent", "id": A, "name": "a", "opts": {"event": "test/both", "timeout": "1h"}})
            return done(call.body["steps"][A] is not None)
        return done("started")

    harness.app.script = script
    await harness.register(function_config(harness.app, "waiter"),
                           function_config(harness.app, "both", triggers=[{"event": "test/both"}]))
    [wid] = await harness.send({"name": "test/waiter"})
    await harness.settle()
    [eid] = await harness.send({"name": "test/both"})
    [waited] = await harness.run_ended(wid)
    [started] = await harness.run_ended(eid)
    assert waited["output"] is True and started["output"] == "started"
