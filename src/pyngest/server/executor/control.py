"""Moving runs along outside of an SDK response: a sleep ends, a pause is fulfilled or times
out, a run is cancelled, a run timeout fires."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import orjson

from pyngest.protocol import jcs
from pyngest.protocol.opcodes import INVOKE_TIMEOUT_ERROR
from pyngest.server.model import (
    AddHistory,
    Batch,
    DeleteJob,
    DeletePause,
    Job,
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
        await self.resume(pause_id, value, kind="StepTimedOut", extra=[DeleteJob(job.id)])

    async def resume(self, pause_id: str, value: bytes, *, kind: str = "StepResumed",
                     extra: list[Op] | None = None) -> str | None:
        """Fulfil a pause with ``value`` (its step's result). Returns the run id, or None if
        the pause was already consumed (by a timeout, another event, or a cancellation)."""
        pause = self.x.state.pauses.by_id.get(pause_id)
        if pause is None:
            if extra:
                await self.x.state.commit(Batch(list(extra)))
            return None
        data = pause.data or {}
        ops = [DeletePause(pause_id), DeleteJob(f"{pause.run_id}:t:{pause.step_id}"), *(extra or [])]
        done = await self.complete_step(pause.run_id, pause.step_id, value, ops, str(data.get("name") or ""),
                                         kind, bool(data.get("race")), guard_pause=pause_id,
                                         if_gone=list(extra or []))
        return pause.run_id if done else None

    async def complete_step(self, run_id: str, step_id: str, value: bytes, ops: list[Op], name: str,
                             kind: str, race: bool, guard_pause: str | None = None,
                             if_gone: list[Op] | None = None) -> bool:
        x = self.x
        async with x.state.runs.lock(run_id):
            if guard_pause is not None and guard_pause not in x.state.pauses.by_id:
                # consumed while we waited for the lock: only tidy up our own job
                if if_gone:
                    await x.state.commit(Batch(list(if_gone)))
                return False
            run = await x.state.runs.get(run_id)
            batch = Batch(list(ops))
            if run is None or run.ended:
                await x.state.commit(batch)
                return False
            pending = x.save_step(run, step_id, value, batch)
            batch.add(AddHistory(run_id, x.clock.now_ms(), kind, step_id=step_id, name=name))
            if pending is not None and (race or not pending):
                x.enqueue_discovery(run, batch, after_step=kind in _STEP_RESULTS)
            await x.state.commit_run(run_id, batch)
            return True

    async def cancel_run(self, run_id: str, *, reason: str = "", keep_job: str | None = None,
                         extra: list[Op] | None = None) -> bool:
        """Cancel a run between steps: a request in flight finishes, its results are dropped."""
        x = self.x
        async with x.state.runs.lock(run_id):
            run = await x.state.runs.get(run_id)
            batch = Batch(list(extra or []))
            if run is None or run.ended:
                if batch:
                    await x.state.commit(batch)
                return False
            fn = x.registry.functions.get(run.fn_id)
            now = x.clock.now_ms()
            batch.add(AddHistory(run_id, now, "CancelRequested", data=orjson.dumps({"reason": reason})))
            x.finish(run, fn.slug if fn else "", RunStatus.CANCELLED, batch, now, keep_job=keep_job)
            await x.state.commit_run(run_id, batch)
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
