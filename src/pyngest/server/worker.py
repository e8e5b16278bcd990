"""Workers: take due jobs from the scheduler and hand each to the handler for its kind.

A job that makes a request for an app (see :mod:`pyngest.server.queue.slots`) does not keep its
worker while the app answers: it runs in a task of its own once its app and function have a free
slot, and waits parked (leased, holding no worker) until then. So an app that hangs or floods
holds at most its own slots, never the workers every other app's jobs need."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from pyngest.clock import Clock
from pyngest.server.model import Batch, DeleteJob, Enqueue, Job, JobKind
from pyngest.server.queue.scheduler import Scheduler
from pyngest.server.queue.slots import RequestSlots
from pyngest.server.store.base import Fenced, LeaseUnsure, StoreUnavailable
from pyngest.server.tasks import stop_tasks

log = logging.getLogger("pyngest.worker")

Handler = Callable[[Job], Awaitable[None]]
_BUG_RETRY_MS = 5_000
_UNAVAILABLE_RETRY_MS = 1_000
_LEASE_UNSURE_RETRY_MS = 200  # a late lease renewal settles within a fraction of the ttl


class WorkerPool:
    def __init__(
        self, scheduler: Scheduler, clock: Clock, handlers: dict[JobKind, Handler], *, size: int = 100,
        commit: Callable[[Batch], Awaitable[object]], slots: RequestSlots | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.clock = clock
        self.handlers = handlers
        self.size = size
        self._commit = commit
        self._tasks: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[None]] = set()
        self.slots = slots
        self._requests: set[asyncio.Task[None]] = set()  # request jobs, each in its own task
        self._stopping = False
        self.processed = 0

    @property
    def running(self) -> int:
        """Jobs executing now: those holding a worker and the app requests in their own tasks."""
        return len(self._busy) + len(self._requests)

    def start(self) -> None:
        for i in range(self.size):
            self._tasks.append(asyncio.create_task(self._loop(), name=f"pyngest-worker-{i}"))

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                job = await self.scheduler.get()
            except asyncio.CancelledError:
                return
            if self._stopping:
                self.scheduler.release(job)
                return
            key = self.slots.key_of(job) if self.slots is not None else None
            if key is not None:
                assert self.slots is not None
                if self.slots.admit(job, key):
                    self._start_request(job)
                continue  # else parked: it starts when a slot of its app frees
            task = asyncio.current_task()
            assert task is not None
            self._busy.add(task)
            try:
                await self._run(job)
            finally:
                self._busy.discard(task)
                self.processed += 1

    def _start_request(self, job: Job) -> None:
        task = asyncio.create_task(self._request(job), name=f"pyngest-request-{job.id}")
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    async def _request(self, job: Job) -> None:
        try:
            await self._run(job)
        finally:
            self.processed += 1
            self._request_ended(job)

    def _request_ended(self, job: Job) -> None:
        assert self.slots is not None
        ready = self.slots.release(job)
        while ready:
            nxt = ready.pop(0)
            if self._stopping:
                ready += self.slots.release(nxt)
                self.scheduler.release(nxt)
            elif not self.scheduler.owns(nxt):
                # parked while its shard went to another process: that process runs it
                ready += self.slots.release(nxt)
                self.scheduler.abandon(nxt)
            else:
                self._start_request(nxt)

    async def _run(self, job: Job) -> None:
        handler = self.handlers.get(job.kind)
        try:
            if handler is None:
                raise RuntimeError(f"no handler for job kind {job.kind}")
            await handler(job)
        except asyncio.CancelledError:
            self.scheduler.release(job)
            raise
        except Fenced:
            log.info("job %s: its shard moved to another process, which runs it now", job.id)
            self.scheduler.abandon(job)
        except LeaseUnsure:
            self.scheduler.release(job, delay_ms=_LEASE_UNSURE_RETRY_MS)
        except StoreUnavailable as exc:
            log.warning("job %s (%s) not finished, the store is unavailable (%s); trying again in %d s",
                        job.id, job.kind.value, exc, _UNAVAILABLE_RETRY_MS // 1000)
            self.scheduler.release(job, delay_ms=_UNAVAILABLE_RETRY_MS)
        except Exception:
            log.exception("job %s (%s) failed; trying again in %d s", job.id, job.kind.value, _BUG_RETRY_MS // 1000)
            retry = replace(job, due_ms=self.clock.now_ms() + _BUG_RETRY_MS)
            try:
                await self._commit(Batch([DeleteJob(job.id), Enqueue(retry)]))
            except Fenced:
                self.scheduler.abandon(job)
            except Exception:
                log.exception("could not reschedule job %s", job.id)
                self.scheduler.release(job, delay_ms=_BUG_RETRY_MS)

    async def stop(self, grace_s: float) -> None:
        """Take no new jobs; give jobs in flight ``grace_s`` to finish, then cancel them (their
        jobs stay stored and run again after a restart)."""
        self._stopping = True
        if self.slots is not None:
            for job in self.slots.drain():
                self.scheduler.release(job)
        idle = [t for t in self._tasks if t not in self._busy]
        for t in idle:
            t.cancel()
        busy = list(self._busy) + list(self._requests)
        if busy:
            done, pending = await asyncio.wait(busy, timeout=grace_s)
            for t in pending:
                t.cancel()
        await stop_tasks([*self._tasks, *busy])
        self._tasks.clear()

    @property
    def in_flight(self) -> int:
        return len(self._busy) + len(self._requests)
