"""Ready jobs, grouped into partitions, handed out fairly and within concurrency limits.

A partition is a FIFO of due jobs that share their concurrency constraints: one per function
and concurrency-key value (a "virtual queue"), plus one for the server's own jobs. Inside a
partition, jobs leave in order of ``due − priority``; across partitions, in turn (round-robin),
with the server's own jobs first.

A job may carry constraints ``[(counter, limit), ...]``: it runs only while every counter is
below its limit. A partition whose head job is blocked waits on the full counter and is not
looked at again until that counter drops — so many blocked keys cost nothing per dequeue.
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


def partition_of(job: Job) -> str:
    payload = job.payload or {}
    part = payload.get("part")
    return str(part) if part else SYSTEM


class Partition:
    __slots__ = ("id", "heap", "blocked_on")

    def __init__(self, pid: str) -> None:
        self.id = pid
        self.heap: list[tuple[int, int, Job]] = []
        self.blocked_on: str | None = None


class ReadyQueue:
    def __init__(self) -> None:
        self._parts: dict[str, Partition] = {}
        self._turn: deque[str] = deque()  # partitions with ready, unblocked jobs
        self._in_turn: set[str] = set()
        self._blocked: dict[str, set[str]] = {}  # counter -> partitions waiting on it
        self._running: dict[str, int] = {}  # counter -> jobs holding a slot
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
        heapq.heappush(part.heap, (job.due_ms - job.priority * 1000, next(self._seq), job))
        self._size += 1
        if part.blocked_on is None:
            self._schedule(pid)

    def remove(self, job: Job) -> bool:
        """Take a not-yet-handed-out job out (it was deleted or replaced)."""
        part = self._parts.get(partition_of(job))
        if part is None:
            return False
        for i, (_, _, j) in enumerate(part.heap):
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
        if part.blocked_on is not None:
            waiting = self._blocked.get(part.blocked_on)
            if waiting is not None:
                waiting.discard(part.id)
                if not waiting:
                    del self._blocked[part.blocked_on]
        del self._parts[part.id]

    def pop(self) -> Job | None:
        """The next job that may run now, with its concurrency slots taken; None if none."""
        while self._turn:
            pid = self._turn.popleft()
            self._in_turn.discard(pid)
            part = self._parts.get(pid)
            if part is None or not part.heap:
                continue
            job = part.heap[0][2]
            fn_id = pid.split("|", 1)[0]
            full = f"paused:{fn_id}" if fn_id in self._paused else self._full_counter(job)
            if full is not None:
                part.blocked_on = full
                self._blocked.setdefault(full, set()).add(pid)
                continue
            heapq.heappop(part.heap)
            self._size -= 1
            for counter, _ in constraints(job):
                self._running[counter] = self._running.get(counter, 0) + 1
            if part.heap:
                self._schedule(pid)
            else:
                self._drop(part)
            return job
        return None

    def _full_counter(self, job: Job) -> str | None:
        for counter, limit in constraints(job):
            if limit > 0 and self._running.get(counter, 0) >= limit:
                return counter
        return None

    def release(self, job: Job) -> None:
        """A handed-out job finished: free its slots and wake partitions waiting on them."""
        for counter, _ in constraints(job):
            n = self._running.get(counter, 0) - 1
            if n > 0:
                self._running[counter] = n
            else:
                self._running.pop(counter, None)
            self._unblock(counter)

    def _unblock(self, counter: str) -> None:
        waiting = self._blocked.pop(counter, None)
        if waiting:
            for pid in waiting:
                part = self._parts.get(pid)
                if part is not None:
                    part.blocked_on = None
                    self._schedule(pid)

    def pause(self, fn_id: str) -> None:
        """Steps of this function's runs wait (queued, not dropped) until :meth:`resume`."""
        self._paused.add(fn_id)

    def resume(self, fn_id: str) -> None:
        self._paused.discard(fn_id)
        self._unblock(f"paused:{fn_id}")

