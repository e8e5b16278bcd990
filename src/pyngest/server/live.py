"""In-process publish/subscribe of "what just changed", for the dashboard's live views.

:class:`State` calls :meth:`LiveHub.observe` after every committed batch. When nobody watches
(the common case on a busy server) that is one truth test. When someone does, the run ids and
event names a batch touched are collected and flushed to every subscriber at most every
``interval_s``, so a burst of thousands of steps becomes a handful of small messages. Messages
say *what* changed, not its new state: a page re-reads what it shows through the public APIs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pyngest.server.model import AddHistory, Batch, CommitResult, CreateRun, InsertEvents, UpdateRun

# Above this many run ids in one flush, subscribers get "many": true instead of the list.
MAX_IDS = 500


class LiveHub:
    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._runs: set[str] = set()
        self._new_runs = 0
        self._steps = 0
        self._events: set[str] = set()
        self._scheduled: asyncio.TimerHandle | None = None
        # Scale-out: send each summary to every process's watchers (False: could not, deliver
        # here only); and whether watchers elsewhere want this process's changes.
        self.broadcast: Callable[[dict[str, Any]], bool] | None = None
        self.remote_watchers: Callable[[], bool] = lambda: False

    @property
    def watching(self) -> int:
        return len(self._subscribers)

    def observe(self, batch: Batch, result: CommitResult) -> None:
        if not self._subscribers and not self.remote_watchers():
            return
        skipped = result.skipped_runs
        for op in batch.ops:
            if isinstance(op, AddHistory):
                self._runs.add(op.run_id)
                if op.step_id is not None:
                    self._steps += 1
            elif isinstance(op, CreateRun):
                if op.run.id not in skipped:
                    self._runs.add(op.run.id)
                    self._new_runs += 1
            elif isinstance(op, UpdateRun):
                if "status" in op.fields or "ended_ms" in op.fields:
                    self._runs.add(op.run_id)
            elif isinstance(op, InsertEvents):
                self._events.update(e.name for e in op.events if e.internal_id not in result.duplicate_events)
        if (self._runs or self._events) and self._scheduled is None:
            loop = asyncio.get_running_loop()
            self._scheduled = loop.call_later(self.interval_s, self._flush)

    def _flush(self) -> None:
        self._scheduled = None
        runs, events = self._runs, self._events
        message: dict[str, Any] = {
            "runs": sorted(runs) if len(runs) <= MAX_IDS else [],
            "many": len(runs) > MAX_IDS,
            "newRuns": self._new_runs,
            "steps": self._steps,
            "events": sorted(events),
        }
        self._runs, self._events, self._new_runs, self._steps = set(), set(), 0, 0
        if self.broadcast is None or not self.broadcast(message):
            self.deliver(message)

    def deliver(self, message: dict[str, Any]) -> None:
        """Hand a summary (this process's or another's) to the watchers here."""
        for queue in list(self._subscribers):
            if queue.qsize() < 100:  # a stalled reader loses messages, not the server's memory
                queue.put_nowait(message)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    def close(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
