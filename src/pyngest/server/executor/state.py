"""In-memory mirrors of durable state, kept in step with every commit.

- :class:`RunCache`: recently used runs, so a step's request is built without reading the store;
  a per-run lock serializes the "read state → decide → commit" part of handling a response.
- :class:`PauseBook`: every pending pause, indexed by event name and by run, so an incoming
  event is checked only against pauses waiting for its name.
- :class:`State`: commits a batch through the scheduler and updates both mirrors.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from pyngest.server import exprs
from pyngest.server.exprs import PauseIndex
from pyngest.server.flow.control import FlowState
from pyngest.server.model import (
    AddPause,
    Batch,
    ClaimPause,
    CommitResult,
    CreateRun,
    DeleteFlow,
    DeletePause,
    Enqueue,
    InsertEvents,
    JobKind,
    Pause,
    PauseKind,
    Run,
    StoredEvent,
    applied_ops,
)
from pyngest.server.queue.scheduler import Scheduler
from pyngest.server.shards import Sharded, SingleNode
from pyngest.server.store.base import Store

log = logging.getLogger("pyngest.server")


class RunCache:
    """Recently used runs, bounded by count and by the bytes of state they hold.

    Runs in use (locked or awaited) are never evicted, so two copies of one run never exist;
    an evicted run is simply read back from the store the next time it is needed. A run that
    has ended leaves when its lock is last released.
    """

    def __init__(self, store: Store, capacity: int = 20_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.store = store
        # Only runs this process may change are kept: a run of a shard owned by another process
        # (scale-out) is read from the store each time, so no stale copy can outlive a takeover.
        self.cacheable: Callable[[str], bool] = lambda run_id: True
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._bytes = 0
        self._locks: dict[str, asyncio.Lock] = {}
        self._lock_users: dict[str, int] = {}

    async def get(self, run_id: str) -> Run | None:
        run = self._runs.get(run_id)
        if run is not None:
            self._runs.move_to_end(run_id)
            return run
        run = await self.store.load_run(run_id)
        if run is not None and self.cacheable(run_id):
            # another coroutine may have loaded it meanwhile: keep the first copy
            existing = self._runs.get(run_id)
            if existing is not None:
                return existing
            self.put(run)
        return run

    def put(self, run: Run) -> None:
        if not self.cacheable(run.id):
            return
        old = self._runs.pop(run.id, None)
        if old is not None:
            self._bytes -= old.state_bytes
        self._runs[run.id] = run
        self._bytes += run.state_bytes
        self._evict()

    def _evict(self) -> None:
        checked = 0
        while (len(self._runs) > self.capacity or self._bytes > self.max_bytes) and checked < len(self._runs):
            run_id, run = next(iter(self._runs.items()))
            checked += 1
            if run_id in self._lock_users:
                self._runs.move_to_end(run_id)  # in use: look at the next oldest
                continue
            del self._runs[run_id]
            self._bytes -= run.state_bytes

    def peek(self, run_id: str) -> Run | None:
        """The cached run, if cached; never reads the store nor reorders the cache."""
        return self._runs.get(run_id)

    def drop(self, run_id: str) -> None:
        run = self._runs.pop(run_id, None)
        if run is not None:
            self._bytes -= run.state_bytes

    def drop_where(self, gone: Callable[[str], bool]) -> None:
        """Forget every cached run for which ``gone(run_id)`` (its shard went to another process)."""
        for run_id in [r for r in self._runs if gone(r)]:
            self.drop(run_id)

    def grew(self, run: Run, added: int) -> None:
        """A cached run's state grew by ``added`` bytes (its ``state_bytes`` already counts them)."""
        if self._runs.get(run.id) is run:
            self._bytes += added
            self._evict()

    def lock(self, run_id: str) -> _RunLock:
        return _RunLock(self, run_id)

    def __len__(self) -> int:
        return len(self._runs)

    @property
    def bytes(self) -> int:
        return self._bytes


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
            run = c._runs.get(self.run_id)
            if run is not None and run.ended:
                # An ended run is not needed again on the hot path (late jobs and API reads
                # load it from the store); keeping thousands of them would grow memory under
                # steady load until the cache's bounds, far above what in-flight runs need.
                c.drop(self.run_id)


class PauseBook:
    """Every pending pause: by id, by signal name, and in an index that finds the pauses an
    incoming event fulfils without evaluating the others (``pyngest.expr``).

    A server may hold hundreds of thousands of pauses, so each costs as little as it can:
    the step id and event name, repeated across the runs of a function, are interned, and
    equal ``data`` (``{"name": step, "race": false}``) is one shared dict; pauses are only
    read, never changed in place.
    """

    SHARED_DATA = 1_000  # distinct data dicts remembered for sharing

    def __init__(self) -> None:
        self.by_id: dict[str, Pause] = {}
        self._by_signal: dict[str, Pause] = {}
        self._index = PauseIndex(clock=exprs.clock())
        self._data: OrderedDict[tuple[object, ...], dict[str, Any]] = OrderedDict()

    def load(self, pauses: list[Pause]) -> None:
        self._index = PauseIndex(clock=exprs.clock())
        for p in pauses:
            self.add(p)

    def add(self, pause: Pause) -> None:
        self.remove(pause.id)
        self._share(pause)
        self.by_id[pause.id] = pause
        if pause.kind is PauseKind.SIGNAL and pause.signal is not None:
            self._by_signal[pause.signal] = pause
        elif pause.event_name:
            self._index.add(pause.id, pause.event_name, pause.expression or None)

    def _share(self, pause: Pause) -> None:
        pause.step_id = sys.intern(pause.step_id)
        if pause.event_name is not None:
            pause.event_name = sys.intern(pause.event_name)
        if not pause.data:
            return
        key = tuple((k, type(v), v) for k, v in pause.data.items())
        try:
            shared = self._data.get(key)
        except TypeError:  # a list or dict inside: not shared
            return
        if shared is None:
            self._data[key] = pause.data
            if len(self._data) > self.SHARED_DATA:
                self._data.popitem(last=False)
        else:
            pause.data = shared
            self._data.move_to_end(key)

    def remove(self, pause_id: str) -> Pause | None:
        pause = self.by_id.pop(pause_id, None)
        if pause is None:
            return None
        if pause.signal is not None and self._by_signal.get(pause.signal) is pause:
            del self._by_signal[pause.signal]
        if pause.event_name:
            self._index.remove(pause_id)
        return pause

    def for_signal(self, signal: str) -> Pause | None:
        return self._by_signal.get(signal)

    def listens(self, event_name: str) -> bool:
        return self._index.listens(event_name)

    def matching(self, event: dict[str, Any], seq: int) -> Iterator[Pause]:
        """Pauses this event fulfils: right name, condition true, and created before it arrived."""
        for pause_id in self._index.match(event):
            pause = self.by_id.get(str(pause_id))
            if pause is not None and seq > pause.after_seq:
                yield pause

    def __len__(self) -> int:
        return len(self.by_id)


class State:
    def __init__(self, store: Store, scheduler: Scheduler, shards: SingleNode | Sharded | None = None) -> None:
        self.store = store
        self.scheduler = scheduler
        self.shards: SingleNode | Sharded = shards or SingleNode()
        self.runs = RunCache(store)
        self.runs.cacheable = self.shards.owns_run
        # Scale-out: commits that add pauses, until the pause book has them. The event-log
        # matcher waits for these before matching events (see wait_for_pauses).
        self._pause_commits: set[asyncio.Task[CommitResult]] = set()
        self.pauses = PauseBook()
        # The newest stored event's sequence number: a pause only matches events after it.
        self.last_event_seq = 0
        # Events committed together with the job that will match them, so that job needn't
        # read them back from the store. The job takes them out.
        self.fresh_events: dict[str, StoredEvent] = {}
        self.flow = FlowState()
        # Whether an event of a given name could start or resume anything right now (set by the
        # service: triggers live in the registry). Events nobody listens for are stored without
        # a matching job.
        self.listens: Callable[[str], bool] = lambda name: True
        # Runs scheduled in a batch that is not committed yet (they exist, as far as decisions
        # like singleton go, though nothing can load them yet).
        self.pending_runs: set[str] = set()
        # Called with every committed batch (live dashboard, metrics); each must be cheap.
        self.observers: list[Callable[[Batch, CommitResult], None]] = []

    async def load(self) -> None:
        started = time.perf_counter()
        stored = await self.store.all_pauses()
        # Indexing creates objects that all stay alive: collections meanwhile would find nothing
        # to free and cost a third of the rebuild.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self.pauses.load(stored)
        finally:
            if collecting:
                gc.enable()
        del stored
        log.info("pause index rebuilt: %d pending pauses read from the store and indexed in %.3f s",
                 len(self.pauses), time.perf_counter() - started)
        self.last_event_seq = await self.store.max_event_seq()
        self.flow.load(await self.store.all_flow())

    async def commit(self, batch: Batch) -> CommitResult:
        return await self.submit(batch)

    async def commit_run(self, run_id: str, batch: Batch) -> CommitResult:
        """Commit a batch about a run whose cached copy was changed to match it. If the commit
        fails, the copy no longer matches the store: drop it, to be read back when next needed."""
        try:
            return await self.submit(batch)
        except BaseException:
            self.runs.drop(run_id)
            raise

    def submit(self, batch: Batch) -> Awaitable[CommitResult]:
        """Queue ``batch`` now, in order with every other submission; await to know it is durable."""
        mirrored = self._mirrored(batch, self.scheduler.submit(batch))
        if self.shards.sharded and any(type(op) is AddPause for op in batch.ops):
            task = asyncio.ensure_future(mirrored)
            self._pause_commits.add(task)
            task.add_done_callback(self._pause_commits.discard)
            return task
        return mirrored

    async def wait_for_pauses(self) -> None:
        """Until every pause committed so far is in the book.

        The event-log matcher calls this after reading how far the log is settled: a pause whose
        transaction committed before that point may still be on its way into the book, and the
        events after it must not be matched without it."""
        if self._pause_commits:
            await asyncio.gather(*list(self._pause_commits), return_exceptions=True)

    async def _mirrored(self, batch: Batch, pending: Awaitable[CommitResult]) -> CommitResult:
        result = await pending
        for op in applied_ops(batch, result):
            if type(op) is CreateRun:
                self.pending_runs.discard(op.run.id)
                if op.run.id not in result.skipped_runs:
                    self.runs.put(op.run)  # its first request needn't read it back
            elif type(op) is AddPause and op.pause.run_id not in result.skipped_runs:
                self.pauses.add(op.pause)
            elif type(op) is DeletePause or type(op) is ClaimPause:
                self.pauses.remove(op.pause_id)
            elif type(op) is DeleteFlow and op.only_if is not None:
                self.flow.forget_if(op.key, op.only_if)  # e.g. a singleton's run ended
        for pid in result.deleted_pauses:
            self.pauses.remove(pid)
        if result.void:
            # the pause was consumed elsewhere (another node, a signal): it is gone here too
            claim = next(op for op in batch.ops if type(op) is ClaimPause)
            self.pauses.remove(claim.pause_id)
        if result.event_seqs:
            self.last_event_seq = max(self.last_event_seq, *result.event_seqs.values())
            inserted = [e for op in batch.ops if type(op) is InsertEvents for e in op.events]
            awaited = {i for op in batch.ops if type(op) is Enqueue and op.job.kind is JobKind.EVENTS
                       and op.job.id not in result.ignored_jobs for i in (op.job.payload or {}).get("ids", ())}
            for ev in inserted:
                if ev.internal_id in awaited and ev.internal_id not in result.duplicate_events:
                    self.fresh_events[ev.internal_id] = ev
        for observe in self.observers:
            observe(batch, result)
        return result
