"""The job scheduler: durable jobs in the store, the near future in memory.

Every job lives in the store. Jobs due within ``horizon_ms`` are also kept in an in-memory heap,
so a job that becomes due wakes a worker at once (a timer on the clock, not a polling tick).
Jobs further out (a week-long sleep) stay only in the store until the horizon reaches them, so
memory does not grow with the number of sleeping runs.

Workers ``get()`` a due job (it is then *leased*: out of the heap, still in the store) and
finish it by committing a batch that deletes or re-enqueues it. A crash loses only leases;
on start every stored job is loaded again.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace

from pyngest.clock import Clock, TimerHandle
from pyngest.server.model import Batch, CommitResult, DeleteJob, Enqueue, Job, JobKind, applied_ops
from pyngest.server.queue.partitions import ReadyQueue
from pyngest.server.queue.spacing import Spacing
from pyngest.server.store.base import Store

log = logging.getLogger("pyngest.queue")

DEFAULT_HORIZON_MS = 10 * 60_000
_REFILL_LIMIT = 50_000


class Scheduler:
    def __init__(self, store: Store, clock: Clock, *, horizon_ms: int = DEFAULT_HORIZON_MS) -> None:
        self.store = store
        self.clock = clock
        self.horizon_ms = horizon_ms
        # Scale-out: the shards whose jobs this process runs (None: all of them, one node), and
        # the shard of a job.
        self.shards: Callable[[], list[int] | None] = lambda: None
        self.shard_of: Callable[[Job], int] = lambda job: 0
        self.owns: Callable[[Job], bool] = lambda job: True
        self._refill_lock = asyncio.Lock()
        self._timers: list[tuple[int, int, Job]] = []  # not yet due, by due time
        self._ready = ReadyQueue()  # due, waiting for a worker (and for concurrency room)
        self._spacing = Spacing()  # throttled starts, spaced by when they are handed out
        self._seq = itertools.count()
        self._live: dict[str, Job] = {}  # in _timers or _ready
        self._leased: dict[str, Job] = {}  # handed to a worker, not yet finished
        self._horizon = 0  # every job due before this is in memory (or done)
        self._refill_to = 0
        self._refilling = False
        self._done_in_refill: set[str] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: TimerHandle | None = None
        self._timer_at: int | None = None
        self._refill_timer: TimerHandle | None = None
        self._closed = False

    # ------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        await self._refill()

    def close(self) -> None:
        self._closed = True
        for handle in (self._timer, self._refill_timer):
            if handle is not None:
                handle.cancel()
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.cancel()

    @property
    def leased(self) -> int:
        return len(self._leased)

    def leased_in(self, which: Callable[[Job], bool]) -> int:
        """How many jobs handed to workers satisfy ``which``."""
        return sum(1 for job in self._leased.values() if which(job))

    @property
    def in_memory(self) -> int:
        return len(self._live)

    def waiting_of(self, kind: JobKind) -> list[str]:
        """Ids of the jobs of ``kind`` waiting in memory (not handed to a worker yet)."""
        return [job.id for job in self._live.values() if job.kind is kind]

    @property
    def backlog(self) -> int:
        """Due jobs waiting for a worker or for concurrency room."""
        return len(self._ready)

    def running(self, counter: str) -> int:
        return self._ready.running(counter)

    def is_idle(self) -> bool:
        """Nothing due is waiting or being worked on (jobs due later may exist)."""
        if self._leased or len(self._ready):
            return False
        now = self.clock.now_ms()
        return not any(due <= now and self._live.get(j.id) is j for due, _, j in self._timers)

    def is_quiet(self) -> bool:
        """Nothing due could be handed to a worker now (jobs in flight, or blocked by a
        concurrency limit or a paused function, may exist)."""
        if self._ready.has_candidates():
            return False
        now = self.clock.now_ms()
        return not any(due <= now and self._live.get(j.id) is j for due, _, j in self._timers)

    async def idle(self, *, settle_s: float = 0.002, timeout_s: float = 30.0) -> None:
        """Wait (in real time) until the queue stays idle across two looks ``settle_s`` apart.

        For tests and benchmarks on a test clock: "everything that is due now has been done".
        A job finishing may enqueue another one at once, hence the second look."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        calm = 0
        while calm < 2:
            await asyncio.sleep(settle_s)
            calm = calm + 1 if self.is_idle() else 0
            if loop.time() > deadline:
                raise TimeoutError(f"queue not idle after {timeout_s}s: {self.leased} leased, {self.backlog} ready")

    def pause_function(self, fn_id: str) -> None:
        self._ready.pause(fn_id)

    def resume_function(self, fn_id: str) -> None:
        self._ready.resume(fn_id)
        if self._ready.has_candidates():
            self._wake()

    # ---------------------------------------------------------------------------- writes

    async def commit(self, batch: Batch) -> CommitResult:
        """Commit ``batch`` to the store, then reflect its jobs in memory."""
        return await self.submit(batch)

    def submit(self, batch: Batch) -> Awaitable[CommitResult]:
        """Queue ``batch`` for commit right away (keeping submission order); await the result."""
        return self._applied(batch, self.store.submit(batch))

    async def _applied(self, batch: Batch, fut: Awaitable[CommitResult]) -> CommitResult:
        result = await fut
        self.apply(batch, result)
        return result

    def apply(self, batch: Batch, result: CommitResult) -> None:
        skipped = result.skipped_runs
        for op in applied_ops(batch, result):
            if isinstance(op, Enqueue):
                job = op.job
                if job.id in result.ignored_jobs or (job.run_id in skipped) or not self.owns(job):
                    continue  # (a job for another process's shard is that process's to run)
                self._forget(job.id)
                self._push(job)
            elif isinstance(op, DeleteJob):
                self._forget(op.job_id)
        for job_id in result.deleted_jobs:
            self._forget(job_id)

    def _forget(self, job_id: str) -> None:
        job = self._live.pop(job_id, None)
        if job is not None and job.due_ms <= self.clock.now_ms():
            self._ready.remove(job)  # else it sits in _timers: dropped lazily
        leased = self._leased.pop(job_id, None)
        if leased is not None:
            self._ready.release(leased)
            if self._ready.has_candidates():
                self._wake()
        if self._refilling:
            # a refill query may have read this job before it was finished: don't revive it
            self._done_in_refill.add(job_id)

    def _push(self, job: Job) -> None:
        if job.due_ms >= max(self._horizon, self._refill_to):
            return  # the store has it; a later refill brings it in
        self._push_loaded(job)

    def _push_loaded(self, job: Job) -> None:
        self._live[job.id] = job
        if job.due_ms <= self.clock.now_ms():
            self._ready.add(job)
            self._wake()
        else:
            heapq.heappush(self._timers, (job.due_ms, next(self._seq), job))
            self._arm(job.due_ms)

    # ----------------------------------------------------------------------------- reads

    async def get(self) -> Job:
        """Wait for the next job that may run and lease it."""
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise asyncio.CancelledError("scheduler closed")
            self._promote()
            job = self._ready.pop()
            if job is not None and self._held_back(job):
                continue
            if job is not None:
                self._live.pop(job.id, None)
                self._leased[job.id] = job
                if self._ready.has_candidates():
                    self._wake()  # chain: let another worker take the next one
                return job
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            if self._timers:
                self._arm(self._timers[0][0])
            try:
                await fut
            finally:
                # A waiter woken by _wake was already taken off the deque; only an abandoned one
                # (its task cancelled) is still on it. (deque.remove of a missing item builds an
                # error message with the future's repr: a few per cent of the server's CPU when done always.)
                if not fut.done() or fut.cancelled():
                    fut.cancel()
                    try:
                        self._waiters.remove(fut)
                    except ValueError:
                        pass

    def _held_back(self, job: Job) -> bool:
        """A throttled start due too soon after its key's last starts waits for its turn."""
        thr = (job.payload or {}).get("thr")
        if not thr:
            return False
        now = self.clock.now_ms()
        hold = self._spacing.hold_ms(str(thr[0]), now, float(thr[1]), int(thr[2]))
        if not hold:
            return False
        self._ready.release(job)
        later = replace(job, due_ms=now + hold)  # in memory only: the stored due stays
        self._live[later.id] = later
        heapq.heappush(self._timers, (later.due_ms, next(self._seq), later))
        self._arm(later.due_ms)
        return True

    def release(self, job: Job, delay_ms: int = 0) -> None:
        """Give a leased job back (e.g. a worker stopping mid-way): it can be handed out again,
        after ``delay_ms`` (in memory only: the stored due time stays)."""
        if self._leased.pop(job.id, None) is not None:
            self._ready.release(job)
            if not self.owns(job):
                if self._ready.has_candidates():
                    self._wake()
                return  # its shard went elsewhere meanwhile: the new owner runs it
            self._push_loaded(replace(job, due_ms=self.clock.now_ms() + delay_ms) if delay_ms else job)

    def _promote(self) -> None:
        """Move jobs whose time has come from the timers to the ready partitions."""
        now = self.clock.now_ms()
        while self._timers and self._timers[0][0] <= now:
            _, _, job = heapq.heappop(self._timers)
            if self._live.get(job.id) is job:
                self._ready.add(job)

    # ---------------------------------------------------------------------------- timers

    def _wake(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _arm(self, when: int) -> None:
        if self._timer_at is not None and self._timer_at <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.clock.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._promote()
        if self._ready.has_candidates():
            self._wake()
        while self._timers and self._live.get(self._timers[0][2].id) is not self._timers[0][2]:
            heapq.heappop(self._timers)  # drop stale entries
        if self._timers:
            self._arm(self._timers[0][0])

    # ---------------------------------------------------------------------------- refill

    async def _refill(self) -> None:
        if self._closed:
            return
        async with self._refill_lock:
            self._refilling = True
            self._done_in_refill.clear()
            try:
                target = self.clock.now_ms() + self.horizon_ms
                self._refill_to = target
                shards = self.shards()
                jobs = await self.store.jobs_due_before(target, _REFILL_LIMIT, shards)
                if len(jobs) == _REFILL_LIMIT:
                    # Too many to hold: the window ends at the last job loaded. Jobs due exactly
                    # then are loaded in full so the window always moves forward.
                    target = jobs[-1].due_ms + 1
                    jobs = [j for j in jobs if j.due_ms < jobs[-1].due_ms]
                    jobs += await self.store.jobs_due_between(target - 1, target, shards)
                self._absorb(jobs)
                self._horizon = target
            finally:
                self._refilling = False
                self._refill_to = 0
                self._done_in_refill.clear()
        if self._refill_timer is not None:
            self._refill_timer.cancel()
        if not self._closed:
            when = max(self.clock.now_ms() + 1, self._horizon - self.horizon_ms // 2)
            self._refill_timer = self.clock.call_at(when, self._schedule_refill)

    def _absorb(self, jobs: list[Job]) -> None:
        """Hold loaded jobs in memory, except those already known or finished meanwhile."""
        for job in jobs:
            if job.id in self._live or job.id in self._leased or job.id in self._done_in_refill:
                continue
            self._push_loaded(job)

    async def load(self, jobs_query: Callable[[int], Awaitable[list[Job]]]) -> None:
        """Take in jobs the store has and memory may not (a shard this process just took over,
        or jobs another process enqueued for our shards): ``jobs_query(until_ms)`` reads them."""
        async with self._refill_lock:
            self._refilling = True
            self._done_in_refill.clear()
            try:
                until = max(self._horizon, self.clock.now_ms() + 1)
                self._absorb(await jobs_query(until))
            finally:
                self._refilling = False
                self._done_in_refill.clear()

    def drop_shards(self, shards: set[int]) -> None:
        """Another process runs these shards now: forget their jobs that are not in flight (those
        in flight finish, and their commits are refused by the store's fencing)."""
        for job in [j for j in self._live.values() if self.shard_of(j) in shards]:
            self._forget(job.id)

    def abandon(self, job: Job) -> None:
        """A leased job whose commit was refused because its shard changed hands: free its
        slots. It is not ours to run again — unless the shard came back to this process
        meanwhile (a new lease): then the job, still stored, is ours again."""
        if self._leased.pop(job.id, None) is not None:
            self._ready.release(job)
            if self.owns(job):
                self._push_loaded(job)
            if self._ready.has_candidates():
                self._wake()

    def _schedule_refill(self) -> None:
        self._refill_timer = None
        task = asyncio.get_running_loop().create_task(self._refill())
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("queue refill failed", exc_info=task.exception())
