"""Ready jobs, grouped into partitions, handed out fairly and within concurrency limits.

A partition is a FIFO of due jobs that share their concurrency constraints: one per function
and concurrency-key value (a "virtual queue"), plus one for the server's own jobs. Inside a
partition, jobs leave in order of ``run created − priority``: the oldest run first, even while
it keeps adding steps (upstream scores a run's queue items by its run ID's time the same way);
jobs of no run in order of ``due``. Across partitions, in turn (round-robin), with the server's
own jobs first.

A job may carry constraints ``[(counter, limit), ...]``: it runs only while every counter is
below its limit. A partition whose head job is blocked waits on the full counter and is not
looked at again until that counter drops — so many blocked keys cost nothing per dequeue.
A freed slot wakes exactly one waiting partition (the longest waiting), not all of them: with
a million keys queued behind one env-scoped limit, a release stays O(1). If the woken partition
cannot use the slot after all (emptied, or its head now waits on another counter), the next
waiter is woken instead, so a free slot is never left unused while someone waits on it.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque

from pyngest.server.model import Job

SYSTEM = "_system"


def constraints(job: Job) -> list[tuple[str, int]]:
    raw = (job.payload or {}).get("ck")
    if not raw:
        return []
    return [(str(k), int(limit)) for k, limit in raw]


def place(job: Job) -> tuple[int, str]:
    """Where a due job stands in its partition: its run's creation time (``o``, set on every
    request job of a run) shifted by the run's priority, else its due time; then the run id
    (a monotonic ULID: runs created in the same millisecond keep their order)."""
    payload = job.payload or {}
    return int(payload.get("o", job.due_ms)) - job.priority * 1000, job.run_id or ""


def partition_of(job: Job) -> str:
    payload = job.payload or {}
    part = payload.get("part")
    return str(part) if part else SYSTEM


class Partition:
    __slots__ = ("id", "heap", "blocked_on", "woken_by")

    def __init__(self, pid: str) -> None:
        self.id = pid
        self.heap: list[tuple[int, str, int, Job]] = []  # (place, run id, seq, job)
        self.blocked_on: str | None = None
        self.woken_by: str | None = None  # the counter whose freed slot put it back in turn


class ReadyQueue:
    def __init__(self) -> None:
        self._parts: dict[str, Partition] = {}
        self._turn: deque[str] = deque()  # partitions with ready, unblocked jobs
        self._in_turn: set[str] = set()
        # counter -> partitions waiting on it, longest waiting first. Entries are dropped
        # lazily: one whose partition is gone or no longer waits on that counter is skipped.
        self._blocked: dict[str, deque[str]] = {}
        self._running: dict[str, int] = {}  # counter -> jobs holding a slot
        self._limits: dict[str, int] = {}  # counter -> its limit, as last seen on a job
        self._seq = itertools.count()
        self._size = 0
        self._paused: set[str] = set()  # functions whose steps must not start

    def __len__(self) -> int:
        return self._size

    def has_candidates(self) -> bool:
        """Some partition may have a runnable job (it is checked on pop)."""
        return bool(self._turn)

    def running(self, counter: str) -> int:
        return self._running.get(counter, 0)

    @property
    def partitions(self) -> int:
        return len(self._parts)

    def add(self, job: Job) -> None:
        pid = partition_of(job)
        part = self._parts.get(pid)
        if part is None:
            part = self._parts[pid] = Partition(pid)
        heapq.heappush(part.heap, (*place(job), next(self._seq), job))
        self._size += 1
        if part.blocked_on is None:
            self._schedule(pid)

    def remove(self, job: Job) -> bool:
        """Take a not-yet-handed-out job out (it was deleted or replaced)."""
        part = self._parts.get(partition_of(job))
        if part is None:
            return False
        for i, (_, _, _, j) in enumerate(part.heap):
            if j is job:
                part.heap[i] = part.heap[-1]
                part.heap.pop()
                heapq.heapify(part.heap)
                self._size -= 1
                if not part.heap:
                    self._drop(part)
                return True
        return False

    def _schedule(self, pid: str) -> None:
        if pid not in self._in_turn:
            self._in_turn.add(pid)
            if pid == SYSTEM:
                self._turn.appendleft(pid)
            else:
                self._turn.append(pid)

    def _drop(self, part: Partition) -> None:
        del self._parts[part.id]  # its entry in _blocked (if any) is skipped when reached
        if part.woken_by is not None:
            self._pass_on(part.woken_by)

    def pop(self) -> Job | None:
        """The next job that may run now, with its concurrency slots taken; None if none."""
        while self._turn:
            pid = self._turn.popleft()
            self._in_turn.discard(pid)
            part = self._parts.get(pid)
            if part is None or not part.heap:
                continue
            woken_by, part.woken_by = part.woken_by, None
            job = part.heap[0][3]
            fn_id = pid.split("|", 1)[0]
            full = f"paused:{fn_id}" if fn_id in self._paused else self._full_counter(job)
            if full is not None:
                part.blocked_on = full
                self._blocked.setdefault(full, deque()).append(pid)
                if woken_by is not None and woken_by != full:
                    self._pass_on(woken_by)  # it can't use the slot it was woken for
                continue
            heapq.heappop(part.heap)
            self._size -= 1
            for counter, _ in constraints(job):
                self._running[counter] = self._running.get(counter, 0) + 1
            if woken_by is not None:
                self._pass_on(woken_by)  # room left (a raised limit): the next waiter may use it
            if part.heap:
                self._schedule(pid)
            else:
                self._drop(part)
            return job
        return None

    def _full_counter(self, job: Job) -> str | None:
        for counter, limit in constraints(job):
            self._limits[counter] = limit
            if limit > 0 and self._running.get(counter, 0) >= limit:
                return counter
        return None

    def _has_room(self, counter: str) -> bool:
        limit = self._limits.get(counter, 0)
        return limit <= 0 or self._running.get(counter, 0) < limit

    def release(self, job: Job) -> None:
        """A handed-out job finished: free its slots and wake partitions waiting on them."""
        for counter, _ in constraints(job):
            n = self._running.get(counter, 0) - 1
            if n > 0:
                self._running[counter] = n
            else:
                self._running.pop(counter, None)
                self._limits.pop(counter, None)  # seen again on the next job that uses it
            self._wake_one(counter)

    def _wake_one(self, counter: str) -> bool:
        """Put the longest-waiting partition blocked on ``counter`` back in turn."""
        waiting = self._blocked.get(counter)
        while waiting:
            pid = waiting.popleft()
            part = self._parts.get(pid)
            if part is None or part.blocked_on != counter:
                continue  # stale entry
            part.blocked_on = None
            part.woken_by = counter
            self._schedule(pid)
            if not waiting:
                del self._blocked[counter]
            return True
        self._blocked.pop(counter, None)
        return False

    def _pass_on(self, counter: str) -> None:
        """A partition woken for a slot of ``counter`` did not take it: wake the next waiter."""
        if self._has_room(counter):
            self._wake_one(counter)

    def _unblock_all(self, counter: str) -> None:
        while self._wake_one(counter):
            pass

    def pause(self, fn_id: str) -> None:
        """Steps of this function's runs wait (queued, not dropped) until :meth:`resume`."""
        self._paused.add(fn_id)

    def resume(self, fn_id: str) -> None:
        self._paused.discard(fn_id)
        self._unblock_all(f"paused:{fn_id}")

