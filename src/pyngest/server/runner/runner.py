"""The runner: what each stored event causes.

An accepted event is stored together with an EVENTS job in one commit (so it is durable before
``POST /e`` answers and cannot be forgotten by a crash). The job then, for each event:
1. fulfils the pauses waiting for it (waitForEvent, invoke results) and cancels the runs whose
   ``cancelOn`` it matches;
2. starts the functions it triggers (or, for ``inngest/function.invoked``, the one it targets),
   once per function per event id within 24 hours.
Processing is idempotent, so a job interrupted by a crash is simply processed again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson

from pyngest import cron
from pyngest.clock import Clock
from pyngest.protocol import jcs
from pyngest.protocol.durations import parse_ms, parse_until_or_duration, rfc3339_s
from pyngest.protocol.events import CRON_EVENT, FN_INVOKED, INTERNAL_DATA_KEY
from pyngest.protocol.ids import new_ulid
from pyngest.server.events import enqueue_events, event_dict, stored
from pyngest.server.executor.executor import Executor, execute_job
from pyngest.server.exprs import ExpressionError, compile_condition, interpolate, is_constant_false
from pyngest.server.flow.control import FlowControl, RunPlan
from pyngest.server.model import (
    AddHistory,
    AddPause,
    AddSkip,
    Batch,
    CreateRun,
    DeleteJob,
    Enqueue,
    InsertEvents,
    Job,
    JobKind,
    Op,
    Pause,
    PauseKind,
    Run,
    RunStatus,
    StoredEvent,
)
from pyngest.server.registry import Function, Registry
from pyngest.server.runner.ingest import IngestStarts
from pyngest.server.store.base import Fenced
from pyngest.server.tasks import stop_tasks

log = logging.getLogger("pyngest.runner")

IDEMPOTENCY_MS = 24 * 3_600_000
_MERGE = 256  # matching jobs merged into one commit, at most
# Events of one job matched before the consumer looks at its inbox again. A POST of 50,000
# events is one job; matched in one go, it would hold up a batch timeout or debounce firing
# meanwhile by seconds. The rest of a large job goes to the back of the inbox instead.
_CHUNK = 500
DEFAULT_CANCEL_TIMEOUT_MS = 365 * 86_400_000


class Runner:
    def __init__(self, *, executor: Executor, registry: Registry, clock: Clock) -> None:
        self.x = executor
        self.state = executor.state
        self.registry = registry
        self.clock = clock
        # Events are matched one job at a time, in arrival order, so the first of two events
        # with the same id wins its idempotency key. Only matching is serialized: each job's
        # batch is submitted in order and its commit awaited outside the lock.
        self._inbox: deque[Job] = deque()  # events jobs, in arrival order
        self._fired: deque[Job] = deque()  # debounce and batch timers that fired: not kept waiting
        self._wakeup = asyncio.Event()
        self._consumer: asyncio.Task[None] | None = None
        self.flow = FlowControl(self)
        self.shards = self.state.shards
        self.starts = IngestStarts(self)
        # Scale-out: matching jobs fed from the event log (not stored); each resolves with
        # whether its outcome, and the cursor ops ``feed_cursor`` gives for it, committed.
        self.feed_cursor: Callable[[Job], list[Op]] | None = None
        self._fed: dict[str, asyncio.Future[bool]] = {}
        # shards whose admission decisions matching changed (the feed moves their cursors with them)
        self.touched: set[int] = set()
        # Scale-out: the store's registry version the registry in memory was loaded at (the
        # cluster node sets this; runs started with their events are checked against it).
        self.registry_version: Callable[[], int | None] = lambda: None
        # The first of two events with the same id wins its idempotency keys, so an event's runs
        # may start with it only while no earlier event with its id waits for matching: the ids
        # of accepted events whose matching job is not through yet, and (after a restart) the
        # stored matching jobs not through yet, whose events are not known.
        self.awaiting: Counter[str] = Counter()
        self.recovering: set[str] = set()
        self._matched: list[str] = []  # ids of events matched in this round of the consumer

    # ------------------------------------------------------------------------ ingestion

    async def accept(self, events: list[StoredEvent]) -> None:
        """Store events durably, with the job that will act on them — or, for an event that only
        starts functions without flow control, with the runs it starts (one commit, no job).
        """
        batch = Batch()
        version = self.registry_version()
        ready = self.shards.owns_any() and not self.recovering and (version is not None or not self.shards.sharded)
        planned = self.starts.plan(events) if ready else []
        enqueue_events(batch, events, self.clock.now_ms(), self.state.listens)
        if not planned:
            await self._commit_matched_later(batch, events)
            return
        await self.starts.add(planned, batch)
        if self.shards.sharded:
            inserted = batch.ops[0]
            assert isinstance(inserted, InsertEvents)
            inserted.registry_version = version
        try:
            await self._commit_matched_later(batch, events)
        except Fenced:
            # scale-out: the shard picked for a run was taken over meanwhile, a sync through
            # another process moved the registry, or an earlier event with the same id is not
            # matched yet: store the events as any others, for the owners of their runs' shards
            # to match with the current registry, in order
            for ev in events:
                ev.started = False
            self.state.pending_runs.difference_update(
                op.run.id for op in batch.ops if isinstance(op, CreateRun))
            batch = Batch()
            enqueue_events(batch, events, self.clock.now_ms(), self.state.listens)
            await self._commit_matched_later(batch, events)

    async def _commit_matched_later(self, batch: Batch, events: list[StoredEvent]) -> None:
        """Commit an accepting batch; its events that go to a matching job are ``awaiting`` from
        its submission until the consumer has submitted what matching them decided."""
        jobs = [op.job for op in batch.ops if isinstance(op, Enqueue) and op.job.kind is JobKind.EVENTS]
        matched = {i for job in jobs for i in (job.payload or {}).get("ids", ())}
        later = [ev.event_id for ev in events if ev.internal_id in matched]
        self.awaiting.update(later)
        try:
            await self.state.commit(batch)
        except BaseException:
            self.awaiting.subtract(later)
            self.awaiting += Counter()  # drop the ids at zero
            raise

    # Matching happens in one consumer task, in arrival order: the first of two events with the
    # same id wins its idempotency key, and a debounce or batch sees its events in order. Workers
    # only hand jobs over (so they never queue up behind each other), and the consumer merges
    # the outcome of many jobs into one commit.

    async def process_events(self, job: Job) -> None:
        self._hand_over(job)

    async def fire_debounce(self, job: Job) -> None:
        self._hand_over(job)

    async def fire_batch(self, job: Job) -> None:
        self._hand_over(job)

    def feed(self, job: Job) -> asyncio.Future[bool]:
        """Match an events job that is not stored (the scale-out event log's); the future says
        whether its outcome committed."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._fed[job.id] = fut
        self._hand_over(job)
        return fut

    def _hand_over(self, job: Job) -> None:
        (self._inbox if job.kind is JobKind.EVENTS else self._fired).append(job)
        self._wakeup.set()

    def _take(self) -> list[Job]:
        """The next jobs to match: fired timers first, then events jobs in order. A large events
        job is cut: its first chunk is taken and the rest stays at the head of the inbox, so a
        timer that fires meanwhile is not held up by it, and events keep their order."""
        jobs = [self._fired.popleft() for _ in range(min(len(self._fired), _MERGE))]
        while self._inbox and len(jobs) < _MERGE:
            head, rest = _split(self._inbox.popleft())
            jobs.append(head)
            if rest is not None:
                self._inbox.appendleft(rest)
                break
        return jobs

    def start(self) -> None:
        self._consumer = asyncio.create_task(self._consume(), name="pyngest-runner")

    async def stop(self) -> None:
        await stop_tasks([self._consumer])
        self._consumer = None

    async def _consume(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._inbox or self._fired:
                jobs = self._take()
                batch = Batch()
                try:
                    await self.flow.preload(jobs)
                except Exception:
                    log.exception("reading the events of due batches failed; each batch reads its own")
                finished: list[tuple[str, bool]] = []
                for job in jobs:
                    # A chunk that is not a job's last leaves the stored job in place: matching
                    # is idempotent, so a crash before the last chunk only repeats some of it.
                    last = not (self._inbox and self._inbox[0].id == job.id)
                    fed = job.id in self._fed
                    if fed:
                        own = Batch(self.feed_cursor(job) if last and self.feed_cursor else [])
                    else:
                        own = Batch([DeleteJob(job.id)] if last else [])
                    try:
                        await self._handle(job, own)
                    except Exception:
                        log.exception("matching job %s failed; trying again in 5 s", job.id)
                        retry = replace(job, due_ms=self.clock.now_ms() + 5_000)
                        if fed:  # the feed reads these events again from its last cursor
                            own = Batch()
                            self._drop_rest(job.id)
                            finished.append((job.id, False))
                            last = False
                        elif last:
                            own = Batch([DeleteJob(job.id), Enqueue(retry)])
                        else:  # the stored job is still needed for the rest: retry this chunk apart
                            own = Batch([Enqueue(replace(retry, id=f"{job.id}:{(job.payload or {})['ids'][0]}"))])
                    batch.ops.extend(own.ops)
                    if fed and last:
                        finished.append((job.id, True))
                committed = False
                try:
                    pending = self.state.submit(batch)
                    # what matching decided is queued ahead of any later submission: events
                    # with the same ids may now start their runs with them
                    self._release([job.id for job in jobs])
                    await pending
                    committed = True
                except Exception:
                    log.exception("committing %d matched jobs failed; they run again after a restart", len(jobs))
                finally:
                    self.flow.committed()
                    for job_id, ok in finished:
                        fut = self._fed.pop(job_id, None)
                        if fut is not None and not fut.done():
                            fut.set_result(ok and committed)

    def _release(self, job_ids: list[str]) -> None:
        if self._matched:
            self.awaiting.subtract(self._matched)
            self.awaiting += Counter()  # drop the ids at zero (and any below, after a restart)
            self._matched = []
        if self.recovering:
            self.recovering.difference_update(job_ids)

    def _drop_rest(self, job_id: str) -> None:
        """A fed job failed: the rest of its chunks are not matched now (the feed re-reads them)."""
        while self._inbox and self._inbox[0].id == job_id:
            self._inbox.popleft()

    async def _handle(self, job: Job, batch: Batch) -> None:
        if job.kind is JobKind.DEBOUNCE:
            await self.flow.fire_debounce(job, batch)
        elif job.kind is JobKind.BATCH:
            await self.flow.fire_batch(job, batch)
        else:
            await self._match_events(job, batch)

    async def _match_events(self, job: Job, batch: Batch) -> None:
        ids = list((job.payload or {}).get("ids") or [])
        fresh = self.state.fresh_events
        events = [fresh.pop(i) for i in ids if i in fresh]
        if len(events) < len(ids):  # after a restart: read them back
            have = {e.internal_id for e in events}
            position = {iid: n for n, iid in enumerate(ids)}
            stored_events = await self.state.store.get_events([i for i in ids if i not in have])
            events = sorted(events + stored_events, key=lambda e: position[e.internal_id])
        for ev in events:
            data = event_dict(ev)
            await self._match_pauses(ev, data)
            if not ev.started:  # else its runs were created when it was stored
                await self._start_runs(ev, data, batch)
            self._matched.append(ev.event_id)

    async def _match_pauses(self, ev: StoredEvent, data: dict[str, Any]) -> None:
        shards = self.shards
        position = ev.position
        now = self.clock.now_ms()
        for pause in list(self.state.pauses.matching(data, position[0])):
            if pause.env_id != ev.env_id:
                continue  # an event never resumes or cancels a run of another environment
            if not shards.active(shards.of_run(pause.run_id), position):
                continue  # its shard has matched this event already (scale-out)
            if pause.expires_ms <= now:
                continue  # timed out: its timeout job ends the wait (or the cancel window)
            if pause.kind is PauseKind.CANCEL:
                await self.x.control.cancel_run(
                    pause.run_id, reason=f"cancelOn event {ev.name} ({ev.internal_id})", claim=pause.id,
                )
            elif pause.kind is PauseKind.WAIT:
                await self.x.control.resume(pause.id, ev.body, kind="StepResumed")
            elif pause.kind is PauseKind.INVOKE:
                payload = data.get("data") or {}
                if payload.get("error") is not None:
                    value = orjson.dumps({"error": payload["error"]})
                else:
                    value = orjson.dumps({"data": payload.get("result")})
                await self.x.control.resume(pause.id, jcs.canonicalize(value), kind="StepInvoked")

    async def _start_runs(self, ev: StoredEvent, data: dict[str, Any], batch: Batch) -> None:
        if ev.name == FN_INVOKED:
            meta = (data.get("data") or {}).get(INTERNAL_DATA_KEY) or {}
            fn = self.registry.find_function(str(meta.get("fn_id") or ""), ev.env_id)
            targets = [fn] if fn is not None else []
        elif self.registry.envs.archived(ev.env_id):
            targets = []  # an archived environment keeps its events but triggers nothing
        else:
            targets = self.registry.triggered_by(data, ev.env_id)
        shards = self.shards
        for fn in targets:
            shard = shards.place(fn, data, ev.internal_id)
            if not shards.active(shard, ev.position):
                continue  # another process owns where this run goes, or it was matched already
            self.touched.add(shard)
            if fn.paused:
                batch.add(AddSkip(ev.internal_id, fn.id, "function_paused", self.clock.now_ms()))
                continue
            await self.flow.on_event(fn, ev, data, batch, invoked=ev.name == FN_INVOKED, shard=shard)

    def schedule_run(
        self, fn: Function, events: list[StoredEvent], first: dict[str, Any], batch: Batch, *,
        plan: RunPlan | None = None, original_run_id: str | None = None, cron_expr: str | None = None,
    ) -> Run:
        """Add a new run of ``fn`` for ``events`` to ``batch``."""
        plan = plan or RunPlan(start_at=self.clock.now_ms())
        now = plan.decided_ms if plan.decided_ms is not None else self.clock.now_ms()
        attrs: dict[str, Any] = {"fn_slug": fn.slug, "event_name": events[0].name, **plan.attrs}
        if plan.priority:
            attrs["priority"] = plan.priority
        if "part" not in attrs:
            attrs["part"] = fn.id
        run = Run(
            id=plan.run_id or self.shards.new_run_id(now, plan.shard),
            fn_id=fn.id,
            app_id=fn.app_id,
            fn_version=fn.version,
            env_id=fn.env_id,
            status=RunStatus.QUEUED,
            event_ids=[e.internal_id for e in events],
            events=[e.body for e in events],
            queued_ms=now,
            original_run_id=original_run_id,
            cron=cron_expr,
            batch_id=plan.batch_id,
            attrs=attrs,
            state_bytes=sum(len(e.body) for e in events),
            may_have_pauses=False,  # until _cancel_pauses or a step adds one
        )
        batch.add(CreateRun(run, idempotency_key=plan.idempotency, idempotency_expires_ms=now + IDEMPOTENCY_MS,
                            extra_keys=plan.extra_keys))
        self.state.pending_runs.add(run.id)
        # a future "ts" delays the run it starts
        ts_at = min(int(first.get("ts") or now), now + 366 * 86_400_000)
        start_at = max(plan.start_at, ts_at)
        start = execute_job(run, f"{run.id}:start", "step", start_at)
        if plan.throttle is not None:
            start = replace(start, payload={**(start.payload or {}), "thr": list(plan.throttle)})
        batch.add(Enqueue(start))
        batch.add(AddHistory(run.id, now, "FunctionScheduled"))
        timeouts = fn.config.get("timeouts") or {}
        if timeouts.get("start"):
            # measured from scheduling, so it bounds how long a run may wait in a backlog
            batch.add(Enqueue(Job(
                id=f"{run.id}:timeout-start", kind=JobKind.TIMEOUT_START,
                due_ms=max(now, ts_at) + parse_ms(timeouts["start"]), run_id=run.id,
            )))
        self._cancel_pauses(fn, run, first, max(e.position[0] for e in events), batch, now)
        return run

    def _cancel_pauses(self, fn: Function, run: Run, trigger: dict[str, Any], after_seq: int,
                       batch: Batch, now: int) -> None:
        for i, c in enumerate(fn.config.get("cancel") or []):
            expression = c.get("if")
            if expression:
                expression = interpolate(expression, trigger)
                try:
                    cond = compile_condition(expression)
                except ExpressionError:
                    log.warning("cancel[%d] of %s does not compile after interpolation", i, fn.slug)
                    continue
                if is_constant_false(cond.source):
                    continue  # can never match: store nothing
            timeout = c.get("timeout")
            expires = parse_until_or_duration(timeout, now) if timeout else now + DEFAULT_CANCEL_TIMEOUT_MS
            pause = Pause(
                id=f"{run.id}:cancel:{i}", run_id=run.id, step_id=f"cancel:{i}", kind=PauseKind.CANCEL,
                expires_ms=expires, after_seq=after_seq, event_name=c["event"],
                expression=expression or None,
            ).in_env(run.env_id)
            run.may_have_pauses = True
            batch.add(AddPause(pause))
            batch.add(Enqueue(Job(
                id=f"{run.id}:t:cancel:{i}", kind=JobKind.PAUSE_TIMEOUT, due_ms=expires, run_id=run.id,
                step_id=f"cancel:{i}", payload={"pause_id": pause.id, "cancel": True},
            )))

    # ------------------------------------------------------------------------------ cron

    def cron_jobs(self, fn: Function, after_ms: int) -> list[Job]:
        jobs = []
        for trig in fn.cron_triggers:
            at = trig.schedule.next_after(after_ms)
            if at is not None:  # None: the schedule never fires again (e.g. Feb 30)
                jobs.append(self._cron_job(fn, trig.expression, at, trig.jitter_ms))
        return jobs

    def _cron_job(self, fn: Function, expression: str, scheduled_ms: int, jitter_max: int) -> Job:
        jitter = cron.jitter_ms(cron.cron_jitter_seed(fn.id, scheduled_ms), jitter_max) if jitter_max else 0
        key = f"{fn.id}:{expression}:{scheduled_ms}"
        job_id = f"cron:{key}"
        # the job lives where its run will: the shard the cron event places it in
        shard = self.shards.place(fn, cron_event(expression, scheduled_ms, scheduled_ms + jitter), job_id)
        return Job(
            id=job_id, kind=JobKind.CRON, due_ms=scheduled_ms + jitter, shard=shard,
            payload={"fn_id": fn.id, "cron": expression, "scheduled_ms": scheduled_ms, "jitter_ms": jitter_max},
        )

    async def schedule_crons(self, fns: list[Function]) -> None:
        """Enqueue the next tick of each schedule (a tick already stored is left alone, so every
        process of a cluster may do this at start)."""
        now = self.clock.now_ms()
        batch = Batch()
        for fn in fns:
            for job in self.cron_jobs(fn, now):
                batch.add(Enqueue(job, remote=not self.shards.owns(job.shard)))
        if batch:
            await self.state.commit(batch)

    async def fire_cron(self, job: Job) -> None:
        payload = job.payload or {}
        batch = Batch([DeleteJob(job.id)])
        fn = self.registry.functions.get(str(payload.get("fn_id")))
        expression = str(payload.get("cron"))
        trig = next((t for t in fn.cron_triggers if t.expression == expression), None) if fn else None
        if fn is None or trig is None:
            await self.state.commit(batch)  # the function or its schedule is gone: stop here
            return
        scheduled = int(payload["scheduled_ms"])
        now = self.clock.now_ms()
        stamp = rfc3339_s(scheduled)
        event = cron_event(expression, scheduled, job.due_ms)
        ev = stored(event, received_ms=now, internal_id=new_ulid(now), env_id=fn.env_id)
        batch.add(InsertEvents([ev]))
        if not fn.paused and not self.registry.envs.archived(fn.env_id):  # archived: ticks start nothing
            plan = RunPlan(start_at=now, idempotency=f"{fn.id}:{stamp}", shard=job.shard)
            self.schedule_run(fn, [ev], event, batch, plan=plan, cron_expr=expression)
        nxt = trig.schedule.next_after(max(scheduled, now))
        if nxt is not None:
            # the next tick's run may belong in another shard (scale-out): then its owner fires it
            following = self._cron_job(fn, expression, nxt, trig.jitter_ms)
            batch.add(Enqueue(following, remote=not self.shards.owns(following.shard)))
        await self.state.commit(batch)


def cron_event(expression: str, scheduled_ms: int, fire_ms: int) -> dict[str, Any]:
    """The ``inngest/scheduled.timer`` event of one tick."""
    stamp = rfc3339_s(scheduled_ms)
    return {
        "name": CRON_EVENT,
        "id": stamp,
        "data": {"cron": expression, "scheduledAt": stamp, "fireAt": rfc3339_s(fire_ms)},
        "ts": fire_ms,
    }


def _split(job: Job) -> tuple[Job, Job | None]:
    """An events job's first chunk, and the rest of it (None when it is small)."""
    ids = (job.payload or {}).get("ids")
    if job.kind is not JobKind.EVENTS or not isinstance(ids, list) or len(ids) <= _CHUNK:
        return job, None
    head = replace(job, payload={**(job.payload or {}), "ids": ids[:_CHUNK]})
    return head, replace(job, payload={**(job.payload or {}), "ids": ids[_CHUNK:]})
