"""In-process publish/subscribe of "what just changed", for the dashboard's live views.

:class:`State` calls :meth:`LiveHub.observe` after every committed batch. When nobody watches
(the common case on a busy server) that is one truth test. When someone does, the run ids and
event names a batch touched are collected per environment and flushed at most every
``interval_s``, so a burst of thousands of steps becomes a handful of small messages. Messages
say *what* changed, not its new state: a page re-reads what it shows through the public APIs.

A watcher sees one environment (the dashboard's selected one): each message carries ``env`` and
goes only to that environment's watchers. A run's environment is its ``CreateRun``'s, or the
cached run's; a run this process neither created nor holds (rare: evicted from the cache while
a batch about it commits) is left out rather than shown to every environment.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyngest.server.model import (
    DEFAULT_ENV,
    AddHistory,
    Batch,
    CommitResult,
    CreateRun,
    InsertEvents,
    UpdateRun,
)

# Above this many run ids in one flush, subscribers get "many": true instead of the list.
MAX_IDS = 500
# Runs created while someone watched, remembered with their environment.
RECENT_RUNS = 10_000


@dataclass(slots=True)
class _Changes:
    """One environment's changes since the last flush."""

    runs: set[str] = field(default_factory=set)
    new_runs: int = 0
    steps: int = 0
    events: set[str] = field(default_factory=set)


class LiveHub:
    def __init__(self, interval_s: float = 0.1, env_of_run: Callable[[str], str | None] = lambda run_id: None) -> None:
        self.interval_s = interval_s
        # env_of_run: the environment of a run the server holds in memory, if it does
        self.env_of_run = env_of_run
        self._subscribers: dict[asyncio.Queue[dict[str, Any]], str] = {}  # each with its environment
        self._changes: dict[str, _Changes] = {}
        self._run_envs: OrderedDict[str, str] = OrderedDict()
        self._scheduled: asyncio.TimerHandle | None = None
        # Scale-out: send each summary to every process's watchers (False: could not, deliver
        # here only); and whether watchers elsewhere want this process's changes.
        self.broadcast: Callable[[dict[str, Any]], bool] | None = None
        self.remote_watchers: Callable[[], bool] = lambda: False

    @property
    def watching(self) -> int:
        return len(self._subscribers)

    def _of(self, env_id: str) -> _Changes:
        changes = self._changes.get(env_id)
        if changes is None:
            changes = self._changes[env_id] = _Changes()
        return changes

    def _run_env(self, run_id: str) -> str | None:
        return self._run_envs.get(run_id) or self.env_of_run(run_id)

    def observe(self, batch: Batch, result: CommitResult) -> None:
        if not self._subscribers and not self.remote_watchers():
            return
        skipped = result.skipped_runs
        for op in batch.ops:
            if type(op) is AddHistory:
                env = self._run_env(op.run_id)
                if env is not None:
                    changes = self._of(env)
                    changes.runs.add(op.run_id)
                    if op.step_id is not None:
                        changes.steps += 1
            elif type(op) is CreateRun:
                if op.run.id not in skipped:
                    env = op.run.env_id
                    self._run_envs[op.run.id] = env
                    if len(self._run_envs) > RECENT_RUNS:
                        self._run_envs.popitem(last=False)
                    changes = self._of(env)
                    changes.runs.add(op.run.id)
                    changes.new_runs += 1
            elif type(op) is UpdateRun:
                if "status" in op.fields or "ended_ms" in op.fields:
                    env = self._run_env(op.run_id)
                    if env is not None:
                        self._of(env).runs.add(op.run_id)
            elif type(op) is InsertEvents:
                for e in op.events:
                    if e.internal_id not in result.duplicate_events:
                        self._of(e.env_id).events.add(e.name)
        if self._changes and self._scheduled is None:
            loop = asyncio.get_running_loop()
            self._scheduled = loop.call_later(self.interval_s, self._flush)

    def _flush(self) -> None:
        self._scheduled = None
        pending, self._changes = self._changes, {}
        for env, changes in pending.items():
            runs = changes.runs
            message: dict[str, Any] = {
                "env": env,
                "runs": sorted(runs) if len(runs) <= MAX_IDS else [],
                "many": len(runs) > MAX_IDS,
                "newRuns": changes.new_runs,
                "steps": changes.steps,
                "events": sorted(changes.events),
            }
            if self.broadcast is None or not self.broadcast(message):
                self.deliver(message)

    def deliver(self, message: dict[str, Any]) -> None:
        """Hand a summary (this process's or another's) to the watchers of its environment."""
        env = message.get("env") or DEFAULT_ENV  # a process from before environments sends none
        for queue, watched in list(self._subscribers.items()):
            if watched == env and queue.qsize() < 100:  # a stalled reader loses messages, not memory
                queue.put_nowait(message)

    def subscribe(self, env_id: str = DEFAULT_ENV) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers[queue] = env_id
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.pop(queue, None)

    def close(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
