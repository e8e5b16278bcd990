"""PostgreSQL's set-wise batches (store/postgres/setwise.py, ``pyngest_apply_setwise``) write and
answer exactly what the same batches applied op by op do: the same batches go to fresh
databases, one of them with the set-wise path turned off, and their results and every table
they write are compared — idempotency skips and reclaimed keys, duplicate events, ignored jobs,
a run's job deletes with and without a kept job, run updates, steps and history among them, in
every statement form (store/postgres/forms.py) and without one (as a writer before the forms sent
them); and batches whose runs cannot start with their events are refused on both paths alike."""

from __future__ import annotations

from typing import Any

import pytest

from pyngest.clock import TestClock
from pyngest.server.model import (
    AddHistory,
    Batch,
    CommitResult,
    CreateRun,
    DeleteJob,
    DeleteRunJobs,
    Enqueue,
    InsertEvents,
    Job,
    JobKind,
    Run,
    RunStatus,
    SaveStep,
    StoredEvent,
    UpdateRun,
)
from pyngest.server.store.base import Fenced
from pyngest.server.store.postgres import store as pg_store
from pyngest.server.store.postgres.forms import FORMS
from pyngest.server.store.postgres.setwise import setwise
from pyngest.server.store.postgres.store import PostgresStore
from tests import backends

NOW = 1_800_000_000_000
R1, R2, R3, R4, R5, R6 = (f"01J{n:023d}" for n in range(1, 7))
TABLES = {
    "runs": "SELECT * FROM runs ORDER BY id",
    "steps": "SELECT * FROM steps ORDER BY run_id, step_id",
    "history": "SELECT seq, run_id, at_ms, kind, step_id, name, attempt, data FROM history ORDER BY seq",
    "jobs": "SELECT * FROM jobs ORDER BY id",
    "idempotency": "SELECT * FROM idempotency ORDER BY key",
    "run_events": "SELECT * FROM run_events ORDER BY run_id, event_internal_id",
    "events": "SELECT seq, internal_id, name, event_id, ts, received_ms, source, body, env_id, started "
              "FROM events ORDER BY seq",
}


def event(n: int, started: bool = True) -> StoredEvent:
    return StoredEvent(internal_id=f"e{n}", name="shop/order", event_id=f"id{n}", ts=NOW, received_ms=NOW,
                       body=b'{"n":%d}' % n, started=started)


def run(rid: str, *events: str) -> Run:
    return Run(id=rid, fn_id="f1", app_id="a1", status=RunStatus.QUEUED, event_ids=list(events), events=[],
               queued_ms=NOW)


def job(rid: str, name: str, due: int = NOW) -> Enqueue:
    return Enqueue(Job(id=f"{rid}:{name}", kind=JobKind.EXECUTE, due_ms=due, run_id=rid, payload={"n": name}))


def hist(rid: str, kind: str, data: bytes | None = None) -> AddHistory:
    return AddHistory(rid, NOW, kind, step_id="s", name="s", attempt=0, data=data)


BATCHES = [
    # events with the runs they start, each with its idempotency key (one expiring at once)
    Batch([InsertEvents([event(1), event(2)], registry_version=0),
           CreateRun(run(R1, "e1"), idempotency_key="k1", idempotency_expires_ms=NOW + 60_000),
           job(R1, "start"), hist(R1, "FunctionScheduled"),
           CreateRun(run(R2, "e2"), idempotency_key="k2", idempotency_expires_ms=NOW),
           job(R2, "start"), hist(R2, "FunctionScheduled")]),
    # a key still held (skipped, with everything about it), an expired one (taken over), an
    # event stored already and a new one, a run without a key
    Batch([InsertEvents([event(1), event(3, started=False)]),
           CreateRun(run(R3, "e1"), idempotency_key="k1", idempotency_expires_ms=NOW + 60_000),
           job(R3, "start"), hist(R3, "FunctionScheduled"), SaveStep(R3, "s", 0, b"1"),
           CreateRun(run(R4, "e2"), idempotency_key="k2", idempotency_expires_ms=NOW + 60_000),
           CreateRun(run(R5, "e3")), job(R5, "start")]),
    # a step with the run's start: its other jobs but the one kept go, the next is queued, one
    # queued already is ignored
    Batch([DeleteRunJobs(R1, keep=f"{R1}:start"), SaveStep(R1, "a", 0, b'"out"'),
           UpdateRun(R1, {"status": RunStatus.RUNNING, "started_ms": NOW, "version": 1}),
           hist(R1, "FunctionStarted"), hist(R1, "StepCompleted", b'"out"'),
           job(R1, "next"), job(R2, "start"), SaveStep(R1, "a", 0, b'"again"')]),
    # ends: every job of two runs, outputs, the end's event
    Batch([DeleteRunJobs(R1), DeleteRunJobs(R4, keep="none"), DeleteRunJobs(R4),
           UpdateRun(R1, {"status": RunStatus.COMPLETED, "ended_ms": NOW + 5, "output": b'{"ok":1}',
                          "pending": None, "attrs": {"a": 1}}),
           UpdateRun(R4, {"status": RunStatus.FAILED, "ended_ms": NOW + 6, "output": b'"boom"'}),
           hist(R1, "FunctionCompleted"), hist(R4, "FunctionFailed"),
           InsertEvents([event(4)])]),
    # the classic protocol's step: the job that ran goes by id, the next is queued; a job of
    # another shard, queued to be deleted alone below
    Batch([UpdateRun(R5, {"status": RunStatus.RUNNING, "started_ms": NOW}), hist(R5, "FunctionStarted"),
           DeleteJob(f"{R5}:start"), SaveStep(R5, "a", 0, b"2"), hist(R5, "StepCompleted"), job(R5, "next"),
           Enqueue(Job(id="cron:3", kind=JobKind.CRON, due_ms=NOW + 60_000, shard=3))]),
    # deletes by id and by run of the same jobs, in both orders, and of a job that is not there
    Batch([job(R5, "x"), job(R5, "y")]),
    Batch([DeleteRunJobs(R5, keep=f"{R5}:next"), DeleteJob(f"{R5}:next"), DeleteJob("gone"),
           hist(R5, "StepCompleted")]),
    # a job of a shard no other op names: its shard is fenced after the delete
    Batch([DeleteJob("cron:3")]),
    Batch([job(R5, "z")]),
    Batch([DeleteRunJobs(R5), DeleteJob(f"{R5}:z"), hist(R5, "FunctionCompleted")]),
    # one batch of each statement form not used above (forms.py): an event alone; an event with
    # a run without a key; a run's first checkpointed step (its start) and a later one; a step
    # that sends an event; a last step with the end
    Batch([InsertEvents([event(5, started=False)])]),
    Batch([InsertEvents([event(6)], registry_version=0), CreateRun(run(R6, "e6")), job(R6, "start"),
           hist(R6, "FunctionScheduled")]),
    Batch([SaveStep(R6, "c", 0, b"3"), UpdateRun(R6, {"status": RunStatus.RUNNING, "started_ms": NOW}),
           hist(R6, "StepCompleted")]),
    Batch([SaveStep(R6, "c2", 1, b"6"), hist(R6, "StepCompleted")]),
    Batch([DeleteJob(f"{R6}:start"), SaveStep(R6, "d", 2, b"4"), UpdateRun(R6, {"version": 2}),
           hist(R6, "StepCompleted"), job(R6, "next"), InsertEvents([event(7, started=False)])]),
    Batch([DeleteRunJobs(R6), SaveStep(R6, "e", 3, b"5"),
           UpdateRun(R6, {"status": RunStatus.COMPLETED, "ended_ms": NOW + 9, "output": b"1"}),
           hist(R6, "FunctionCompleted"), InsertEvents([event(8, started=False)])]),
]
# Batches whose runs cannot start with their events (registry check): the registry has moved
# since the runs were decided; an earlier event with the same id is still to be matched (e3).
REFUSED = [
    Batch([InsertEvents([event(9)], registry_version=5), CreateRun(run("01JX", "e9")), job("01JX", "start")]),
    Batch([InsertEvents([StoredEvent(internal_id="e10", name="shop/order", event_id="id3", ts=NOW, received_ms=NOW,
                                     body=b"{}", started=True)], registry_version=0),
           CreateRun(run("01JY", "e10")), job("01JY", "start")]),
]


async def open_store() -> PostgresStore:
    schema = backends.new_schema_name()
    await backends.create_schema(schema)
    store = PostgresStore(backends.postgres_uri(schema), TestClock(start_ms=NOW), shards=4)
    await store.open()
    await store.execute("UPDATE shards SET owner = 'n1', epoch = 1")
    store.node_id = "n1"
    store.leases = {s: 1 for s in range(4)}
    return store


async def apply_all(store: PostgresStore) -> tuple[list[CommitResult], dict[str, list[dict[str, Any]]], int]:
    """BATCHES' results, then REFUSED's refusals; the tables; how many of BATCHES went set-wise."""
    results = [await store.commit(Batch(list(b.ops))) for b in BATCHES]
    setwise_batches = store.setwise_batches
    for b in REFUSED:
        with pytest.raises(Fenced):
            await store.commit(Batch(list(b.ops)))
    tables = {name: [dict(r) for r in await store.fetch(sql)] for name, sql in TABLES.items()}
    return results, tables, setwise_batches


def formless(ops: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A batch's rows without the form they name, as a writer before the forms sent them."""
    rows = setwise(ops)
    if rows is not None:
        del rows["f"]
    return rows


async def test_set_wise_batches_write_and_answer_what_op_by_op_ones_do(monkeypatch: pytest.MonkeyPatch) -> None:
    setwise_store, formless_store, by_op_store = await open_store(), await open_store(), await open_store()
    forms: list[int] = []

    def recorded(ops: list[dict[str, Any]]) -> dict[str, Any] | None:
        rows = setwise(ops)
        if rows is not None:
            forms.append(rows["f"])
        return rows

    try:
        monkeypatch.setattr(pg_store, "setwise", recorded)
        setwise_results, setwise_tables, setwise_batches = await apply_all(setwise_store)
        assert setwise_batches == len(BATCHES), "every batch here is of a set-wise shape"
        assert setwise_store.setwise_batches > len(BATCHES), "the refused batches too"
        assert set(forms) == set(range(len(FORMS))), "every statement form is compared"
        monkeypatch.setattr(pg_store, "setwise", formless)
        formless_results, formless_tables, _ = await apply_all(formless_store)
        monkeypatch.setattr(pg_store, "setwise", lambda ops: None)
        by_op_results, by_op_tables, _ = await apply_all(by_op_store)
        assert by_op_store.setwise_batches == 0
    finally:
        await setwise_store.close()
        await formless_store.close()
        await by_op_store.close()

    # what the batches did, as a check that the comparison below covers something
    first, second, third, fourth, fifth, _, seventh, _, _, tenth = by_op_results[:10]
    assert first.created_runs == [R1, R2]
    assert second.skipped_runs == {R3: R1} and second.created_runs == [R4, R5]
    assert second.duplicate_events == {"e1"}
    assert third.ignored_jobs == {f"{R2}:start"} and third.deleted_jobs == set()
    assert fourth.deleted_jobs == {f"{R1}:start", f"{R1}:next"}
    assert [r["key"] for r in by_op_tables["idempotency"]] == ["k1", "k2"]
    assert fifth.deleted_jobs == set() and seventh.deleted_jobs == {f"{R5}:x", f"{R5}:y"}
    assert tenth.deleted_jobs == {f"{R5}:z"}  # by its run, which comes first
    assert [r["id"] for r in by_op_tables["jobs"]] == [f"{R2}:start"]
    assert by_op_results[-1].deleted_jobs == {f"{R6}:next"}
    assert [r["id"] for r in by_op_tables["runs"]] == [R1, R2, R4, R5, R6]  # none of REFUSED

    for results, tables in ((setwise_results, setwise_tables), (formless_results, formless_tables)):
        for mine, theirs in zip(results, by_op_results, strict=True):
            assert mine == theirs
        for name in TABLES:
            assert tables[name] == by_op_tables[name], name


async def test_a_set_wise_job_delete_in_a_shard_not_held_is_fenced() -> None:
    store = await open_store()
    try:
        await store.commit(Batch([Enqueue(Job(id="cron:3", kind=JobKind.CRON, due_ms=NOW, shard=3))]))
        store.leases = {0: 1, 1: 1, 2: 1}  # shard 3 lost
        before = store.setwise_batches
        with pytest.raises(Fenced):
            await store.commit(Batch([DeleteJob("cron:3")]))
        assert store.setwise_batches > before
        assert [r["id"] for r in await store.fetch("SELECT id FROM jobs")] == ["cron:3"]
    finally:
        await store.close()
