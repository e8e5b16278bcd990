"""Acting on many runs at once: pausing a function, bulk cancellation, replay, and rerunning one
run (FEATURES.md §9.3, §9.4, §12; guides__pause-functions, platform__replay).

Bulk work is an *operation*: a stored record with its progress, advanced by OPERATION jobs that
each handle one chunk and enqueue the next, so an operation over many runs survives restarts
and never holds the server up.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson

from pyngest.protocol.ids import new_ulid
from pyngest.server.events import event_dict
from pyngest.server.exprs import ExpressionError, compile_condition
from pyngest.server.flow.control import RunPlan
from pyngest.server.model import Batch, DeleteJob, Enqueue, Job, JobKind, Run, RunStatus
from pyngest.server.registry import Function
from pyngest.server.store.base import OperationRecord, RunQuery

if TYPE_CHECKING:
    from pyngest.server.service import Service

log = logging.getLogger("pyngest.operations")

CHUNK = 200
PAUSE_CANCEL_AFTER_MS = 7 * 86_400_000
# Replayed runs are spread out so the app isn't flooded: this many per second.
REPLAY_RATE_PER_S = 20
REPLAYABLE = {"Failed", "Cancelled", "Completed", "Skipped"}


class OperationError(ValueError):
    """A request for a bulk operation that cannot be carried out (the message says why)."""


class Operations:
    def __init__(self, service: Service) -> None:
        self.s = service

    # ------------------------------------------------------------------------- pausing

    async def pause_function(self, fn: Function, *, cancel_running: bool = False) -> OperationRecord | None:
        """No new runs start (events are kept and recorded as skipped); running runs wait
        between steps. They are cancelled now (``cancel_running``) or after 7 days if the
        function is still paused then."""
        if fn.paused:
            return None
        await self.s.registry.set_paused(fn, True)
        self.s.scheduler.pause_function(fn.id)
        now = self.s.clock.now_ms()
        spec: dict[str, Any] = {"statuses": [RunStatus.QUEUED.value, RunStatus.RUNNING.value],
                                "reason": "the function was paused and its running runs cancelled"}
        if cancel_running:
            return await self._create("cancellation", fn, "Cancel running runs on pause", spec, due_ms=now)
        spec["only_if_paused"] = True
        spec["reason"] = "the function stayed paused for 7 days"
        return await self._create("cancellation", fn, "Cancel runs paused for 7 days", spec,
                                  due_ms=now + PAUSE_CANCEL_AFTER_MS)

    async def resume_function(self, fn: Function) -> None:
        """New events trigger it again; paused runs continue with their next step."""
        if not fn.paused:
            return
        await self.s.registry.set_paused(fn, False)
        self.s.scheduler.resume_function(fn.id)
        for op in await self.s.store.list_operations(fn.id, "cancellation", 100):
            if op.status == "running" and op.spec.get("only_if_paused"):
                await self._finish(op, "stopped")

    # ---------------------------------------------------------------------- cancellation

    async def create_cancellation(self, fn: Function, *, started_after: int | None, started_before: int | None,
                                  expression: str | None, name: str = "", total: int = 0) -> OperationRecord:
        if expression:
            try:
                compile_condition(expression)
            except ExpressionError as exc:
                raise OperationError(f"the 'if' expression is invalid: {exc}") from exc
        spec = {"from_ms": started_after, "until_ms": started_before, "if": expression or None,
                "statuses": [RunStatus.QUEUED.value, RunStatus.RUNNING.value],
                "reason": f"bulk cancellation {name}".strip()}
        return await self._create("cancellation", fn, name, spec, due_ms=self.s.clock.now_ms(), total=total)

    # ---------------------------------------------------------------------------- replay

    async def create_replay(self, fn: Function, *, from_ms: int, until_ms: int, statuses: list[str],
                            name: str = "", total: int = 0) -> OperationRecord:
        wanted = {status_name(s) for s in statuses}
        if not wanted or not wanted <= REPLAYABLE:
            raise OperationError(f"statuses must be some of {sorted(REPLAYABLE)}; got {statuses}")
        if until_ms <= from_ms:
            raise OperationError("the time range is empty: 'to' must be after 'from'")
        spec = {"from_ms": from_ms, "until_ms": until_ms, "statuses": sorted(wanted), "spread_ms": 0}
        return await self._create("replay", fn, name, spec, due_ms=self.s.clock.now_ms(), total=total)

    async def rerun(self, run_id: str) -> str:
        """A new run of the same function from the original run's events."""
        run = await self.s.store.load_run(run_id)
        if run is None:
            raise OperationError(f"run {run_id} not found")
        fn = self.s.registry.functions.get(run.fn_id)
        if fn is None:
            raise OperationError("the run's function no longer exists")
        events = await self.s.store.get_events(run.event_ids)
        if not events:
            raise OperationError("the run's events are no longer stored")
        batch = Batch()
        new_id = self._replay_run(fn, events, batch, original_run_id=run.id, start_at=self.s.clock.now_ms())
        await self.s.state.commit(batch)
        return new_id

    # -------------------------------------------------------------------- the machinery

    async def stop(self, op_id: str) -> OperationRecord | None:
        op = await self.s.store.get_operation(op_id)
        if op is not None and op.status == "running":
            await self._finish(op, "stopped")
        return op

    async def _create(self, kind: str, fn: Function, name: str, spec: dict[str, Any], *, due_ms: int,
                      total: int = 0) -> OperationRecord:
        """``total`` is an estimate made when it starts (the dashboard's preview count)."""
        now = self.s.clock.now_ms()
        op = OperationRecord(id=new_ulid(now), kind=kind, fn_id=fn.id, app_id=fn.app_id, name=name,
                             spec=spec, status="running", total=total, done=0, created_ms=now)
        await self.s.store.save_operation(op)
        shard = self.s.state.shards.for_key(f"op:{op.id}")
        await self.s.state.commit(Batch([Enqueue(Job(id=f"op:{op.id}:0", kind=JobKind.OPERATION, due_ms=due_ms,
                                                     payload={"op": op.id, "cursor": None, "n": 0}, shard=shard),
                                                 remote=not self.s.state.shards.owns(shard))]))
        return op

    async def _finish(self, op: OperationRecord, status: str) -> None:
        op.status = status
        op.ended_ms = self.s.clock.now_ms()
        await self.s.store.save_operation(op)

    async def process(self, job: Job) -> None:
        """One chunk of an operation; enqueues the next chunk until nothing is left."""
        payload = job.payload or {}
        op = await self.s.store.get_operation(str(payload.get("op")))
        batch = Batch([DeleteJob(job.id)])
        if op is None or op.status != "running":
            await self.s.state.commit(batch)
            return
        fn = self.s.registry.functions.get(op.fn_id)
        if fn is None or (op.spec.get("only_if_paused") and not fn.paused):
            await self.s.state.commit(batch)
            await self._finish(op, "stopped" if fn is None or not fn.paused else "completed")
            return
        cursor = payload.get("cursor")
        if op.kind == "cancellation":
            cursor, handled = await self._cancel_chunk(op, cursor)
        else:
            cursor, handled = await self._replay_chunk(op, fn, cursor)
        op.done += handled
        if cursor is None:
            await self._finish(op, "completed")
        else:
            await self.s.store.save_operation(op)
            n = int(payload.get("n", 0)) + 1
            batch.add(Enqueue(Job(id=f"op:{op.id}:{n}", kind=JobKind.OPERATION, due_ms=self.s.clock.now_ms(),
                                  payload={"op": op.id, "cursor": cursor, "n": n}, shard=job.shard)))
        await self.s.state.commit(batch)

    async def _runs_chunk(self, op: OperationRecord, cursor: str | None, statuses: list[str]) -> list[Run]:
        spec = op.spec
        return await self.s.store.list_runs(RunQuery(
            fn_ids=[op.fn_id], statuses=statuses, from_ms=spec.get("from_ms"), until_ms=spec.get("until_ms"),
            before_id=cursor, limit=CHUNK,
        ))

    async def _cancel_chunk(self, op: OperationRecord, cursor: str | None) -> tuple[str | None, int]:
        runs = await self._runs_chunk(op, cursor, list(op.spec["statuses"]))
        cond = compile_condition(op.spec["if"]) if op.spec.get("if") else None
        handled = 0
        for run in runs:
            if cond is not None:
                first = orjson.loads(run.events[0]) if run.events else None
                if first is None:
                    events = await self.s.store.get_events(run.event_ids[:1])
                    first = event_dict(events[0]) if events else {}
                if not cond.matches(event=first):
                    continue
            if await self.s.executor.control.request_cancel(run.id, str(op.spec.get("reason") or "cancelled")):
                handled += 1
        return (runs[-1].id if len(runs) == CHUNK else None), handled

    async def _replay_chunk(self, op: OperationRecord, fn: Function, cursor: Any) -> tuple[Any, int]:
        """Runs in the statuses asked for, newest first; then events that skipped the function."""
        spec = op.spec
        statuses = [s for s in spec["statuses"] if s != "Skipped"]
        phase, position = (cursor or [("runs" if statuses else "skips"), None])
        batch = Batch()
        handled = 0
        start = self.s.clock.now_ms()
        spread = int(spec.get("spread_ms", 0))
        step = 1000 // REPLAY_RATE_PER_S
        next_cursor: Any = None
        if phase == "runs":
            runs = await self._runs_chunk(op, position, statuses)
            for run in runs:
                events = await self.s.store.get_events(run.event_ids)
                if events:
                    self._replay_run(fn, events, batch, original_run_id=run.id, start_at=start + spread + handled * step)
                    handled += 1
            if len(runs) == CHUNK:
                next_cursor = ["runs", runs[-1].id]
            elif "Skipped" in spec["statuses"]:
                next_cursor = ["skips", None]
        else:
            ids = await self.s.store.skipped_events(op.fn_id, int(spec["from_ms"]), int(spec["until_ms"]), position, CHUNK)
            for ev in await self.s.store.get_events(ids):
                self._replay_run(fn, [ev], batch, original_run_id=None, start_at=start + spread + handled * step)
                handled += 1
            if len(ids) == CHUNK:
                next_cursor = ["skips", ids[-1]]
        spec["spread_ms"] = spread + handled * step  # later chunks continue the spacing
        if batch:
            await self.s.state.commit(batch)
        return next_cursor, handled

    def _replay_run(self, fn: Function, events: list[Any], batch: Batch, *, original_run_id: str | None,
                    start_at: int) -> str:
        """A new run of ``fn`` for ``events`` (flow control is skipped, concurrency kept). If
        another process owns the shard the run belongs in, it gets a START job to create it."""
        first = event_dict(events[0])
        shards = self.s.state.shards
        shard = shards.place(fn, first, events[0].internal_id)
        if shards.owns(shard):
            return self.start_run(fn, events, first, batch, original_run_id=original_run_id,
                                  start_at=start_at, shard=shard).id
        run_id = shards.new_run_id(self.s.clock.now_ms(), shard)
        batch.add(Enqueue(Job(
            id=f"start:{run_id}", kind=JobKind.START, due_ms=self.s.clock.now_ms(), shard=shard,
            payload={"fn_id": fn.id, "events": [e.internal_id for e in events], "run_id": run_id,
                     "original_run_id": original_run_id, "start_at": start_at},
        ), remote=True))
        return run_id

    def start_run(self, fn: Function, events: list[Any], first: dict[str, Any], batch: Batch, *,
                  original_run_id: str | None, start_at: int, shard: int, run_id: str | None = None) -> Run:
        plan = RunPlan(start_at=start_at, shard=shard, run_id=run_id)
        self.s.runner.flow.plan_concurrency(fn, first, plan)
        plan.attrs["replay"] = True
        return self.s.runner.schedule_run(fn, events, first, batch, plan=plan, original_run_id=original_run_id)

    async def start_job(self, job: Job) -> None:
        """A replayed or rerun run created in this process's shard (see ``_replay_run``)."""
        payload = job.payload or {}
        batch = Batch([DeleteJob(job.id)])
        fn = self.s.registry.functions.get(str(payload.get("fn_id")))
        events = await self.s.store.get_events(list(payload.get("events") or []))
        if fn is not None and events:
            self.start_run(fn, events, event_dict(events[0]), batch, original_run_id=payload.get("original_run_id"),
                           start_at=int(payload.get("start_at") or self.s.clock.now_ms()), shard=job.shard,
                           run_id=str(payload["run_id"]))
        await self.s.state.commit(batch)


def status_name(value: str) -> str:
    value = value.strip()
    aliases = {"succeeded": "Completed", "completed": "Completed", "failed": "Failed",
               "cancelled": "Cancelled", "canceled": "Cancelled", "skipped": "Skipped"}
    return aliases.get(value.lower(), value)


def as_json(op: OperationRecord, fn_slug: str | None = None) -> dict[str, Any]:
    """The REST shape of a bulk cancellation (as the cancellation guide shows it) or a replay."""
    from pyngest.protocol.durations import iso_ms

    spec = op.spec
    out: dict[str, Any] = {
        "id": op.id, "name": op.name, "function_id": fn_slug or op.fn_id, "app_id": op.app_id,
        "status": op.status, "created_at": iso_ms(op.created_ms),
        "finished_at": iso_ms(op.ended_ms) if op.ended_ms else None,
    }
    if op.kind == "cancellation":
        out["environment_id"] = "00000000-0000-4000-b000-000000000000"
        out["started_after"] = iso_ms(spec["from_ms"]) if spec.get("from_ms") is not None else None
        out["started_before"] = iso_ms(spec["until_ms"]) if spec.get("until_ms") is not None else None
        out["if"] = spec.get("if")
        out["matched"] = max(op.total, op.done)
        out["cancelled"] = op.done
    else:
        out["from"] = iso_ms(spec["from_ms"])
        out["until"] = iso_ms(spec["until_ms"])
        out["statuses"] = spec["statuses"]
        out["total"] = max(op.total, op.done)
        out["scheduled"] = op.done
    return out
