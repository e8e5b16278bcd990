"""Runs started in the commit that stores their event.

An event that only triggers functions without flow control needs no matching job: nothing about
starting those runs depends on other events, so the Event API's commit can carry the runs with
the event — one write where there were two (the event with its job, then the job's runs), and
the first request of each run can leave as soon as ``POST /e`` has committed.

Left to the matching job (the runner's consumer, in arrival order) is every event that something
else may act on: one a pending pause waits for, ``inngest/function.invoked``, and one triggering
any function with batching, debounce, rate limit, throttle, singleton or cancelOn (cancelOn
pauses must not see events that arrived before their run's). On several processes, runs also
need a shard this process owns; its event is marked ``started`` so that the event-log matchers
leave its triggers alone and only match pauses.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from pyngest.protocol.events import FN_INVOKED
from pyngest.server.events import event_dict
from pyngest.server.model import AddSkip, Batch, StoredEvent
from pyngest.server.shards import SERIALIZING, Sharded

if TYPE_CHECKING:
    from pyngest.server.registry import Function
    from pyngest.server.runner.runner import Runner

_YIELD_EVERY = 250  # a POST of thousands of events gives other work a turn between slices


class IngestStarts:
    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def plan(self, events: list[StoredEvent]) -> list[tuple[StoredEvent, dict[str, Any], list[Function]]]:
        """The events whose runs can start with them, each with its parsed body and the functions
        it triggers; those events are marked ``started`` (so no matching job is made for them)."""
        out = []
        later: set[str] = set()  # ids of the events of this call left to matching
        for ev in events:
            entry = None if ev.event_id in later else self._plan_one(ev)
            if entry is None:
                later.add(ev.event_id)  # a later event with this id must not overtake it
                continue
            ev.started = True
            out.append(entry)
        return out

    def _plan_one(self, ev: StoredEvent) -> tuple[StoredEvent, dict[str, Any], list[Function]] | None:
        runner = self.runner
        if ev.event_id in runner.awaiting or ev.name == FN_INVOKED:
            return None  # an earlier event with this id is matched first: it wins its keys
        if not runner.shards.sharded and runner.state.pauses.listens(ev.name):
            return None  # a pause may take it: matched in order by the consumer
        data = event_dict(ev)
        if runner.registry.envs.archived(ev.env_id):
            targets = []  # an archived environment keeps its events but triggers nothing
        else:
            targets = runner.registry.triggered_by(data, ev.env_id)
        if not targets and runner.shards.sharded:
            return None  # nothing here now, but another process may have synced a function for it
        if not all(self._startable(fn) for fn in targets):
            return None
        return ev, data, targets

    def _startable(self, fn: Function) -> bool:
        cfg = fn.config
        if any(isinstance(cfg.get(name), dict) for name in SERIALIZING) or cfg.get("cancel"):
            return False
        if self.runner.shards.sharded:
            # a concurrency limit places the run by its key: its shard may be another process's
            return not any(int(c.get("limit") or 0) > 0 for c in cfg.get("concurrency") or [])
        return True

    async def add(self, planned: list[tuple[StoredEvent, dict[str, Any], list[Function]]], batch: Batch) -> None:
        """Add the runs of the planned events to ``batch`` (after their ``InsertEvents``)."""
        runner = self.runner
        for n, (ev, data, targets) in enumerate(planned, start=1):
            for fn in targets:
                if fn.paused:
                    batch.add(AddSkip(ev.internal_id, fn.id, "function_paused", runner.clock.now_ms()))
                    continue
                await runner.flow.start(fn, [ev], data, batch, idempotency=f"{fn.id}:{data.get('id') or ev.internal_id}",
                                        shard=self._shard(fn, data, ev))
            if n % _YIELD_EVERY == 0:
                await asyncio.sleep(0)

    def _shard(self, fn: Function, data: dict[str, Any], ev: StoredEvent) -> int:
        """Where the run goes: where the event places it if this process owns that shard, else
        one of this process's shards (a run without flow control may live in any)."""
        shards = self.runner.shards
        shard = shards.place(fn, data, ev.internal_id)
        if shards.owns(shard):
            return shard
        if not isinstance(shards, Sharded):
            return shard
        owned = sorted(shards.owned)
        return owned[shard % len(owned)]
