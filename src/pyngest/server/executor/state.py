"""In-memory mirrors of durable state, kept in step with every commit.

- :class:`RunCache`: recently used runs, so a step's request is built without reading the store;
  a per-run lock serializes the "read state → decide → commit" part of handling a response.
- :class:`PauseBook`: every pending pause, indexed by event name and by run, so an incoming
  event is checked only against pauses waiting for its name.
- :class:`State`: commits a batch through the scheduler and updates both mirrors.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from pyngest.server.exprs import Condition, compile_condition
from pyngest.server.model import (
    AddPause,
    Batch,
    CommitResult,
    DeletePause,
    Enqueue,
    InsertEvents,
    JobKind,
    Pause,
    PauseKind,
    Run,
    StoredEvent,
)
from pyngest.server.queue.scheduler import Scheduler
from pyngest.server.store.base import Store


class RunCache:
    def __init__(self, store: Store, capacity: int = 20_000) -> None:
        self.store = store
        self.capacity = capacity
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._lock_users: dict[str, int] = {}

    async def get(self, run_id: str) -> Run | None:
        run = self._runs.get(run_id)
        if run is not None:
            self._runs.move_to_end(run_id)
            return run
        run = await self.store.load_run(run_id)
        if run is not None:
            # another coroutine may have loaded it meanwhile: keep the first copy
            existing = self._runs.get(run_id)
            if existing is not None:
                return existing
            self.put(run)
        return run

    def put(self, run: Run) -> None:
        self._runs[run.id] = run
        self._runs.move_to_end(run.id)
        while len(self._runs) > self.capacity:
            old_id, _ = self._runs.popitem(last=False)
            if old_id in self._lock_users:
                # in use: keep it (re-insert at the end) rather than fork its state
                self._runs[old_id] = _
                break

    def peek(self, run_id: str) -> Run | None:
        """The cached run, if cached; never reads the store nor reorders the cache."""
        return self._runs.get(run_id)

    def drop(self, run_id: str) -> None:
        self._runs.pop(run_id, None)

    def lock(self, run_id: str) -> _RunLock:
        return _RunLock(self, run_id)

    def __len__(self) -> int:
        return len(self._runs)


class _RunLock:
    """``async with cache.lock(run_id):`` — a lock that disappears when nobody holds or waits."""

    __slots__ = ("cache", "run_id")

    def __init__(self, cache: RunCache, run_id: str) -> None:
        self.cache = cache
        self.run_id = run_id

    async def __aenter__(self) -> None:
        c = self.cache
        lock = c._locks.get(self.run_id)
        if lock is None:
            lock = c._locks[self.run_id] = asyncio.Lock()
        c._lock_users[self.run_id] = c._lock_users.get(self.run_id, 0) + 1
        await lock.acquire()

    async def __aexit__(self, *exc: Any) -> None:
        c = self.cache
        c._locks[self.run_id].release()
        n = c._lock_users[self.run_id] - 1
        if n:
            c._lock_users[self.run_id] = n
        else:
            del c._lock_users[self.run_id]
            del c._locks[self.run_id]


class PauseBook:
    def __init__(self) -> None:
        self.by_id: dict[str, Pause] = {}
        self._by_event: dict[str, dict[str, Pause]] = {}
        self._by_run: dict[str, set[str]] = {}
        self._by_signal: dict[str, Pause] = {}
        self._conditions: dict[str, Condition | None] = {}

    def load(self, pauses: list[Pause]) -> None:
        for p in pauses:
            self.add(p)

    def add(self, pause: Pause) -> None:
        self.remove(pause.id)
        self.by_id[pause.id] = pause
        self._by_run.setdefault(pause.run_id, set()).add(pause.id)
        if pause.kind is PauseKind.SIGNAL and pause.signal is not None:
            self._by_signal[pause.signal] = pause
        elif pause.event_name:
            self._by_event.setdefault(pause.event_name, {})[pause.id] = pause
            self._conditions[pause.id] = (
                compile_condition(pause.expression) if pause.expression else None
            )

    def remove(self, pause_id: str) -> Pause | None:
        pause = self.by_id.pop(pause_id, None)
        if pause is None:
            return None
        ids = self._by_run.get(pause.run_id)
        if ids is not None:
            ids.discard(pause_id)
            if not ids:
                del self._by_run[pause.run_id]
        if pause.signal is not None and self._by_signal.get(pause.signal) is pause:
            del self._by_signal[pause.signal]
        if pause.event_name:
            group = self._by_event.get(pause.event_name)
            if group is not None:
                group.pop(pause_id, None)
                if not group:
                    del self._by_event[pause.event_name]
        self._conditions.pop(pause_id, None)
        return pause

    def for_run(self, run_id: str) -> list[Pause]:
        return [self.by_id[i] for i in self._by_run.get(run_id, ())]

    def for_signal(self, signal: str) -> Pause | None:
        return self._by_signal.get(signal)

    def matching(self, event: dict[str, Any], seq: int) -> Iterator[Pause]:
        """Pauses this event fulfils: right name, arrived after the pause, condition true."""
        group = self._by_event.get(event.get("name", ""))
        if not group:
            return
        for pause in list(group.values()):
            if seq <= pause.after_seq:
                continue
            cond = self._conditions.get(pause.id)
            if cond is None or cond.matches(event=event, async_=event):
                yield pause

    def __len__(self) -> int:
        return len(self.by_id)


class State:
    def __init__(self, store: Store, scheduler: Scheduler) -> None:
        self.store = store
        self.scheduler = scheduler
        self.runs = RunCache(store)
        self.pauses = PauseBook()
        # The newest stored event's sequence number: a pause only matches events after it.
        self.last_event_seq = 0
        # Events committed together with the job that will match them, so that job needn't
        # read them back from the store. The job takes them out.
        self.fresh_events: dict[str, StoredEvent] = {}
        # Called with every committed batch (live dashboard, metrics); each must be cheap.
        self.observers: list[Callable[[Batch, CommitResult], None]] = []

    async def load(self) -> None:
        self.pauses.load(await self.store.all_pauses())
        self.last_event_seq = await self.store.max_event_seq()

    async def commit(self, batch: Batch) -> CommitResult:
        return await self.submit(batch)

    def submit(self, batch: Batch) -> Awaitable[CommitResult]:
        """Queue ``batch`` now, in order with every other submission; await to know it is durable."""
        return self._mirrored(batch, self.scheduler.submit(batch))

    async def _mirrored(self, batch: Batch, pending: Awaitable[CommitResult]) -> CommitResult:
        result = await pending
        for op in batch.ops:
            if isinstance(op, AddPause) and op.pause.run_id not in result.skipped_runs:
                self.pauses.add(op.pause)
            elif isinstance(op, DeletePause):
                self.pauses.remove(op.pause_id)
        for pid in result.deleted_pauses:
            self.pauses.remove(pid)
        if result.event_seqs:
            self.last_event_seq = max(self.last_event_seq, *result.event_seqs.values())
            inserted = [e for op in batch.ops if isinstance(op, InsertEvents) for e in op.events]
            awaited = {i for op in batch.ops if isinstance(op, Enqueue) and op.job.kind is JobKind.EVENTS
                       and op.job.id not in result.ignored_jobs for i in (op.job.payload or {}).get("ids", ())}
            for ev in inserted:
                if ev.internal_id in awaited and ev.internal_id not in result.duplicate_events:
                    self.fresh_events[ev.internal_id] = ev
        for observe in self.observers:
            observe(batch, result)
        return result
