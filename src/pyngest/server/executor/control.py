"""Moving runs along outside of an SDK response: a sleep ends, a pause is fulfilled or times
out, a run is cancelled, a run timeout fires."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from pyngest.protocol import jcs
from pyngest.protocol.ids import new_ulid
from pyngest.protocol.opcodes import INVOKE_TIMEOUT_ERROR
from pyngest.server.model import (
    AddHistory,
    Batch,
    ClaimPause,
    DeleteJob,
    DeletePause,
    Enqueue,
    Job,
    JobKind,
    Op,
    PauseKind,
    RunStatus,
)

if TYPE_CHECKING:
    from pyngest.server.executor.executor import Executor

log = logging.getLogger("pyngest.executor")

# Results that a step produced (a fetch or AI request the server made), as opposed to a sleep
# ending or a pause being fulfilled or timing out.
_STEP_RESULTS = frozenset({"StepCompleted"})


class RunControl:
    def __init__(self, executor: Executor) -> None:
        self.x = executor

    async def sleep_done(self, job: Job) -> None:
        """A step.sleep ends: its step result is ``null``."""
        assert job.run_id is not None
        payload = job.payload or {}
        await self.complete_step(job.run_id, job.step_id, b"null", [DeleteJob(job.id)],
                                  str(payload.get("name") or ""), "StepSlept", bool(payload.get("race")))

    async def pause_timeout(self, job: Job) -> None:
        pause_id = (job.payload or {}).get("pause_id", "")
        pause = self.x.state.pauses.by_id.get(pause_id)
        if pause is None:
            await self.x.state.commit(Batch([DeleteJob(job.id)]))
            return
        if pause.kind is PauseKind.CANCEL:
            # a cancelOn window closed without a matching event: nothing happens to the run
            await self.x.state.commit(Batch([DeletePause(pause_id), DeleteJob(job.id)]))
            return
        if pause.kind is PauseKind.INVOKE:
            value = jcs.dumps({"error": INVOKE_TIMEOUT_ERROR})
        else:
            value = b"null"  # waitForEvent / waitForSignal time out with null
        await self.resume(pause_id, value, kind="StepTimedOut", cleanup=[DeleteJob(job.id)])

    async def resume(self, pause_id: str, value: bytes, *, kind: str = "StepResumed",
                     cleanup: list[Op] | None = None) -> str | None:
        """Fulfil a pause with ``value`` (its step's result). Returns the run id, or None if
        the pause was already consumed (by a timeout, another event, a signal or a
        cancellation, here or on another node). ``cleanup`` is committed either way."""
        pause = self.x.state.pauses.by_id.get(pause_id)
        if pause is None:
            if cleanup:
                await self.x.state.commit(Batch(list(cleanup)))
            return None
        data = pause.data or {}
        done = await self.complete_step(pause.run_id, pause.step_id, value,
                                         [DeleteJob(f"{pause.run_id}:t:{pause.step_id}")],
                                         str(data.get("name") or ""), kind, bool(data.get("race")),
                                         claim=pause_id, cleanup=cleanup)
        return pause.run_id if done else None

    async def resume_job(self, job: Job) -> None:
        """A pause of one of our runs was claimed elsewhere (a signal sent to another node):
        the job carries the step's result."""
        assert job.run_id is not None
        payload = job.payload or {}
        pause_id = str(payload.get("pause_id") or "")
        self.x.state.pauses.remove(pause_id)
        await self.complete_step(job.run_id, job.step_id, str(payload["value"]).encode(),
                                  [DeleteJob(f"{job.run_id}:t:{job.step_id}")], str(payload.get("name") or ""),
                                  str(payload.get("kind") or "StepResumed"), bool(payload.get("race")),
                                  cleanup=[DeleteJob(job.id)])

    async def complete_step(self, run_id: str, step_id: str, value: bytes, ops: list[Op], name: str,
                             kind: str, race: bool, claim: str | None = None,
                             cleanup: list[Op] | None = None) -> bool:
        """Save a step's result and move the run on. With ``claim``, only if that pause is
        still there to be consumed (atomically, in the same commit)."""
        x = self.x
        cleanup = list(cleanup or [])
        async with x.state.runs.lock(run_id):
            if claim is not None and claim not in x.state.pauses.by_id:
                # consumed while we waited for the lock: only tidy up our own job
                if cleanup:
                    await x.state.commit(Batch(cleanup))
                return False
            run = await x.state.runs.get(run_id)
            batch = Batch([*cleanup, *([ClaimPause(claim)] if claim is not None else []), *ops])
            if run is None or run.ended:
                await x.state.commit(batch)
                return False
            pending = x.save_step(run, step_id, value, batch)
            batch.add(AddHistory(run_id, x.clock.now_ms(), kind, step_id=step_id, name=name))
            if pending is not None and (race or not pending):
                x.enqueue_discovery(run, batch, after_step=kind in _STEP_RESULTS)
            result = await x.state.commit_run(run_id, batch)
            if result.void:
                x.state.runs.drop(run_id)  # the copy took the step; the store did not
            return not result.void

    async def cancel_run(self, run_id: str, *, reason: str = "", keep_job: str | None = None,
                         extra: list[Op] | None = None, claim: str | None = None) -> bool:
        """Cancel a run between steps: a request in flight finishes, its results are dropped.
        With ``claim`` (a cancelOn pause), only if that pause is still there."""
        x = self.x
        async with x.state.runs.lock(run_id):
            run = await x.state.runs.get(run_id)
            batch = Batch([*(extra or []), *([ClaimPause(claim)] if claim is not None else [])])
            if run is None or run.ended:
                if batch:
                    await x.state.commit(batch)
                return False
            fn = x.registry.functions.get(run.fn_id)
            now = x.clock.now_ms()
            batch.add(AddHistory(run_id, now, "CancelRequested", data=orjson.dumps({"reason": reason})))
            x.finish(run, fn.slug if fn else "", RunStatus.CANCELLED, batch, now, keep_job=keep_job)
            result = await x.state.commit_run(run_id, batch)
            if result.void:
                x.state.runs.drop(run_id)
            return not result.void

    async def signal(self, name: str, value: bytes, reaches: Callable[[str], bool] = lambda env: True) -> str | None:
        """Resume the run waiting for signal ``name``; its run id, or None if none waits (or the
        run is of an environment the caller does not ``reach``).

        A pause of one of our shards is resumed here. One of another process's shards is claimed
        in the store and its owner gets a RESUME job with the value."""
        x = self.x
        pause = x.state.pauses.for_signal(name)
        if pause is not None and not reaches(pause.env_id):
            return None
        if pause is not None:
            run_id = await self.resume(pause.id, value, kind="StepSignalled")
            if run_id is not None or not x.state.shards.sharded:
                return run_id
            # consumed or replaced elsewhere meanwhile: a newer wait may be in another shard
        elif not x.state.shards.sharded:
            return None
        pause = await x.state.store.pause_for_signal(name)
        if pause is None or not reaches(pause.env_id):
            return None
        data = pause.data or {}
        job = Job(id=f"{pause.run_id}:resume:{pause.step_id}", kind=JobKind.RESUME, due_ms=x.clock.now_ms(),
                  run_id=pause.run_id, step_id=pause.step_id,
                  payload={"pause_id": pause.id, "value": value.decode(), "kind": "StepSignalled",
                           "name": data.get("name") or "", "race": bool(data.get("race"))})
        result = await x.state.commit(Batch([ClaimPause(pause.id), Enqueue(job, remote=True)]))
        return None if result.void else pause.run_id

    async def request_cancel(self, run_id: str, reason: str) -> bool:
        """Cancel a run from an API: here if this process owns its shard, else through a job
        the owner picks up. Returns whether the cancellation took effect here."""
        x = self.x
        if x.state.shards.owns_run(run_id):
            return await self.cancel_run(run_id, reason=reason)
        run = await x.state.store.load_run(run_id)
        if run is None or run.ended:
            return False
        job = Job(id=f"{run_id}:cancel:{new_ulid()}", kind=JobKind.CANCEL, due_ms=x.clock.now_ms(),
                  run_id=run_id, payload={"reason": reason}, shard=x.state.shards.of_run(run_id))
        await x.state.commit(Batch([Enqueue(job, remote=True)]))
        return True

    async def cancel_job(self, job: Job) -> None:
        assert job.run_id is not None
        reason = str((job.payload or {}).get("reason") or "cancelled")
        await self.cancel_run(job.run_id, reason=reason, extra=[DeleteJob(job.id)])

    async def timeout_start(self, job: Job) -> None:
        assert job.run_id is not None
        run = await self.x.state.runs.get(job.run_id)
        if run is not None and run.status is RunStatus.QUEUED:
            await self.cancel_run(job.run_id, reason="timeouts.start: the run did not start in time",
                                  extra=[DeleteJob(job.id)])
        else:
            await self.x.state.commit(Batch([DeleteJob(job.id)]))

    async def timeout_finish(self, job: Job) -> None:
        assert job.run_id is not None
        await self.cancel_run(job.run_id, reason="timeouts.finish: the run did not finish in time",
                              extra=[DeleteJob(job.id)])
