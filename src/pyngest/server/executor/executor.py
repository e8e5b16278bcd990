"""The executor: runs a run's next request against its app and acts on the answer.

One EXECUTE job = one request. Under the run's lock, the response becomes one batch: step
results saved, follow-up jobs enqueued, pauses created, or the run finalized — committed
atomically before anything else about the run happens, so a step's output is durable before the
next request for that run leaves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from pyngest.clock import Clock
from pyngest.protocol import jcs
from pyngest.protocol.execution import build_body
from pyngest.protocol.opcodes import MAX_OPS_PER_RESPONSE, MAX_SDK_REQUEST_BYTES
from pyngest.server.executor import ops as opsmod
from pyngest.server.executor.backoff import next_retry_ms
from pyngest.server.executor.control import RunControl
from pyngest.server.executor.driver import Driver, DriverResponse, sdk_error_output, standard_error
from pyngest.server.executor.finalize import finalize
from pyngest.server.executor.gateway import GatewayRunner
from pyngest.server.executor.starts import StartRecords
from pyngest.server.executor.state import State
from pyngest.server.model import (
    AddHistory,
    Batch,
    DeleteJob,
    Enqueue,
    Job,
    JobKind,
    Run,
    RunStatus,
    SaveStep,
    UpdateRun,
)
from pyngest.server.registry import Function, Registry
from pyngest.server.store.base import Fenced, LeaseUnsure

log = logging.getLogger("pyngest.executor")

# Above this much state, requests carry none and SDKs fetch it through the API (use_api).
USE_API_THRESHOLD = MAX_SDK_REQUEST_BYTES - 1024


@dataclass(slots=True)
class ExecutorConfig:
    retry_interval_s: int | None = None  # fixed retry delay instead of the backoff table
    env: str = ""


class Executor:
    def __init__(
        self, *, state: State, registry: Registry, driver: Driver, clock: Clock,
        config: ExecutorConfig | None = None,
    ) -> None:
        self.state = state
        self.registry = registry
        self.driver = driver
        self.clock = clock
        self.config = config or ExecutorConfig()
        self.ops = opsmod.OpHandlers(self)
        self.control = RunControl(self)
        self.gateway = GatewayRunner(self)
        self.starts = StartRecords(state, clock.now_ms)
        # Each request to an app is a dispatch with its own generation. A checkpoint from a
        # dispatch that is no longer in flight (e.g. one orphaned by a server restart) is stale
        # and refused. Generations start from the boot time, so none repeats across restarts.
        self._generation = clock.now_ms() * 1000
        self._dispatches: dict[str, set[int]] = {}
        # Several processes (scale-out): a request goes out only while this process surely holds
        # the run's shard (the cluster node sets this).
        self.may_dispatch: Callable[[str], bool] = lambda run_id: True

    # --------------------------------------------------------------------- EXECUTE jobs

    async def execute(self, job: Job) -> None:
        assert job.run_id is not None
        run = await self.state.runs.get(job.run_id)
        if run is None or run.ended:
            await self.state.commit(Batch([DeleteJob(job.id)]))
            return
        fn = self.function_for(run)
        if fn is None:
            await self._fail_missing_function(run, job)
            return
        if not self.may_dispatch(run.id):
            # the lease of the run's shard may be another process's by now: send nothing under it
            raise LeaseUnsure(f"run {run.id}: not sent, this process's lease of its shard may have lapsed")
        if run.status is RunStatus.QUEUED:
            self.starts.begin(run, fn)  # committed with the run's next commit (executor/starts.py)
        self._generation += 1
        generation = self._generation
        self._dispatches.setdefault(run.id, set()).add(generation)
        try:
            body = self.request_body(run, fn, job, generation)
            resp = await self.driver.execute(
                url=fn.url, step_id=job.step_id, body=body, run_id=run.id, job_id=job.id,
                request_version=run.version, generation=generation,
                signing_key=self.registry.envs.signing_key(run.env_id), env_id=run.env_id,
            )
        except BaseException:
            self.starts.flush(run.id)  # cut short: its start lands all the same
            raise
        finally:
            live = self._dispatches.get(run.id)
            dropped = live is None or generation not in live
            if live is not None:
                live.discard(generation)
                if not live:
                    del self._dispatches[run.id]
        if dropped:
            # The run's shard changed hands while the app answered (drop_dispatches): as its
            # checkpoints were refused, so is its answer (an npm app answers a refused checkpoint
            # with an error, which would fail the run). The shard's owner runs the job.
            raise Fenced(f"run {run.id}: the answer of a request made stale by a shard move is discarded")
        async with self.state.runs.lock(run.id):
            run = await self.state.runs.get(job.run_id)
            batch = Batch([DeleteJob(job.id)])
            if run is None or run.ended:
                await self.state.commit(batch)
                return
            self.starts.take(run.id, batch)
            try:
                self.handle_response(run, fn, job, resp, batch)
            except Exception:
                self.state.runs.drop(run.id)  # in-memory state may be half-updated
                raise
            await self.state.commit_run(run.id, batch)

    def finish(self, run: Run, fn_slug: str, status: RunStatus, batch: Batch, now_ms: int, **kw: Any) -> None:
        """End ``run`` (see :func:`finalize`); its system events get a matching job only if
        something listens for them."""
        self.starts.take(run.id, batch)
        finalize(run, fn_slug, status, batch, now_ms, listens=self.state.listens, **kw)

    def function_for(self, run: Run) -> Function | None:
        return self.registry.functions.get(run.fn_id)

    def drop_dispatches(self, which: Callable[[str], bool]) -> None:
        """Requests in flight for these runs no longer count as live: their shard went to another
        process, so their checkpoints are refused (as stale) even if it comes back here."""
        for run_id in [r for r in self._dispatches if which(r)]:
            del self._dispatches[run_id]

    def dispatch_is_live(self, run_id: str, generation: int | None) -> bool:
        """May a checkpoint from this dispatch be accepted? (No generation: an older SDK.)"""
        return generation is None or generation in self._dispatches.get(run_id, ())

    def request_body(self, run: Run, fn: Function, job: Job, generation: int = 0) -> bytes:
        use_api = run.state_bytes > USE_API_THRESHOLD
        ctx: dict[str, Any] = {
            "fn_id": fn.id,
            "run_id": run.id,
            "env": self.config.env,
            "step_id": job.step_id,
            "attempt": job.attempt,
            "max_attempts": fn.max_attempts,
            "stack": {"stack": run.stack, "current": len(run.stack)},
            "disable_immediate_execution": run.force_step_plan,
            "use_api": use_api,
            "qi_id": job.id,
        }
        if generation:
            ctx["generation_id"] = generation
        if use_api:
            return build_body(ctx=ctx, event_json=run.events[0], events_json=[], steps_json={},  # type: ignore[arg-type]
                              version=run.version, use_api=True)
        return build_body(
            ctx=ctx,  # type: ignore[arg-type]
            event_json=run.events[0] if run.events else b"{}",
            events_json=run.events,
            steps_json=run.steps,
            version=run.version,
            use_api=False,
        )

    async def _fail_missing_function(self, run: Run, job: Job) -> None:
        async with self.state.runs.lock(run.id):
            batch = Batch([DeleteJob(job.id)])
            error = {
                "error": "Error: the function of this run no longer exists (its app was deleted or re-synced without it)",
                "name": "Error",
                "message": "the function of this run no longer exists (its app was deleted or re-synced without it)",
            }
            self.finish(run, run.attrs.get("fn_slug", ""), RunStatus.FAILED, batch, self.clock.now_ms(), error=error)
            await self.state.commit(batch)

    # ------------------------------------------------------------------------ responses

    def handle_response(self, run: Run, fn: Function, job: Job, resp: DriverResponse, batch: Batch) -> None:
        ok = resp.is_sdk and resp.status in (200, 206) and resp.transport_error is None
        if not ok:
            self.function_error(run, fn, job, resp, batch)
            return
        if run.version == -1:
            run.version = resp.request_version if resp.request_version is not None else 0
            batch.add(UpdateRun(run.id, {"version": run.version}))
        now = self.clock.now_ms()
        if resp.status == 200:
            self.finish(run, fn.slug, RunStatus.COMPLETED, batch, now, output=_canonical_output(resp.body))
            return
        try:
            parsed = resp.json()
        except orjson.JSONDecodeError as exc:
            self._invalid_response(run, fn, job, batch, f"the app's 206 response is not JSON: {exc}")
            return
        ops = parsed if isinstance(parsed, list) else [parsed]
        if len(ops) > MAX_OPS_PER_RESPONSE:
            error = {
                "error": f"Error: The function run exceeded the step limit of {MAX_OPS_PER_RESPONSE} steps.",
                "name": "Error",
                "message": f"The function run exceeded the step limit of {MAX_OPS_PER_RESPONSE} steps.",
            }
            self.finish(run, fn.slug, RunStatus.FAILED, batch, now, error=error)
            return
        try:
            self.ops.handle(run, fn, job, resp, ops, batch)
        except opsmod.InvalidOp as exc:
            self._invalid_response(run, fn, job, batch, str(exc))

    def function_error(self, run: Run, fn: Function, job: Job, resp: DriverResponse, batch: Batch) -> None:
        """A non-206 error (or no SDK answer at all): retry the same request, or fail the run."""
        error = standard_error(resp)
        now = self.clock.now_ms()
        retryable = not resp.no_retry and job.attempt + 1 < fn.max_attempts
        batch.add(AddHistory(
            run.id, now, "FunctionErrored" if retryable else "FunctionErroredFinal",
            step_id=job.step_id, attempt=job.attempt,
            data=orjson.dumps({"error": error, "status": resp.status, "started_ms": resp.started_ms,
                               "ended_ms": resp.ended_ms, "retrying": retryable}),
        ))
        if retryable:
            self.retry(job, batch, resp.retry_at)
            return
        self.finish(run, fn.slug, RunStatus.FAILED, batch, now, error=error, output=sdk_error_output(resp))

    def retry(self, job: Job, batch: Batch, retry_at: int | None) -> None:
        now = self.clock.now_ms()
        due = retry_at if retry_at is not None else next_retry_ms(
            job.attempt, now, fixed_interval_s=self.config.retry_interval_s
        )
        batch.add(Enqueue(replace(job, attempt=job.attempt + 1, due_ms=due)))

    def _invalid_response(self, run: Run, fn: Function, job: Job, batch: Batch, message: str) -> None:
        resp = DriverResponse(status=500, transport_error=message)
        self.function_error(run, fn, job, resp, batch)

    # ------------------------------------------------------------------ discovery & steps

    def save_step(self, run: Run, step_id: str, value: bytes, batch: Batch) -> bool | None:
        """Memoize a step result. Returns whether other parallel steps are still pending, or
        None if the step was already saved (a duplicate response, nothing to do)."""
        if step_id in run.steps:
            return None
        pos = len(run.stack)
        run.steps[step_id] = value
        run.stack.append(step_id)
        run.state_bytes += len(value)
        self.state.runs.grew(run, len(value))
        batch.add(SaveStep(run.id, step_id, pos, value))
        # (state_bytes is not written: a run loaded from the store counts its events and steps)
        if run.pending is not None and step_id in run.pending:
            run.pending = [p for p in run.pending if p != step_id] or None
            batch.add(UpdateRun(run.id, {"pending": run.pending}))
        return bool(run.pending)

    def enqueue_discovery(self, run: Run, batch: Batch, due_ms: int | None = None, *,
                          after_step: bool = True) -> None:
        """Ask the SDK what comes next. ``after_step``: the discovery follows a step result
        (the SDK's, or a fetch/AI request's); then, as upstream, a v2 run may execute steps
        immediately again, parallelism being over. A discovery after a sleep, a wait or an
        invoke keeps the flag as it is: upstream resets it only where it saves a step result
        and enqueues the discovery (``maybeResetForceStepPlan``), so after a parallel group
        whose last branch sleeps the SDK still plans the next step instead of running it."""
        now = self.clock.now_ms()
        if after_step and run.force_step_plan and run.version >= 2:
            run.force_step_plan = False
            batch.add(UpdateRun(run.id, {"force_step_plan": False}))
        batch.add(Enqueue(execute_job(run, f"{run.id}:d:{len(run.stack)}", "step", due_ms or now)))


def execute_job(run: Run, job_id: str, step_id: str, due_ms: int, *, priority: int | None = None) -> Job:
    """A request job for ``run``, in the run's queue (function and concurrency keys) with its
    concurrency constraints, priority and the run's creation time (its place in the queue)."""
    payload: dict[str, Any] = {"part": run.attrs.get("part") or run.fn_id, "o": run.queued_ms}
    if run.attrs.get("ck"):
        payload["ck"] = run.attrs["ck"]
    return Job(id=job_id, kind=JobKind.EXECUTE, due_ms=due_ms, run_id=run.id, step_id=step_id,
               priority=int(run.attrs.get("priority") or 0) if priority is None else priority, payload=payload)


def _canonical_output(body: bytes) -> bytes:
    if not body.strip():
        return b"null"
    try:
        return jcs.canonicalize(body)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return jcs.dumps(body.decode("utf-8", "replace"))
