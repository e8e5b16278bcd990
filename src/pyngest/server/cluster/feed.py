"""The event log matcher: each process matches stored events for the shards it owns.

Events are inserted by whichever process receives them, with the id (``xid``) of the inserting
transaction. Reading the log in ``(xid, seq)`` order, only below the oldest transaction still
running (the snapshot's ``xmin``), sees every committed event exactly once and in an order
consistent with causality: an event sent after another was acknowledged has a larger xid.

Each round:
1. read the settled bound ``xmin`` and the registry version (reloading functions if it moved);
2. wait until every pause this process committed is in its pause book (a pause must be there
   before the events after it are matched);
3. read the events after the round's cursor and below ``xmin``; the runner matches them, for
   each owned shard whose cursor is behind (triggers placed there, pauses of its runs), and
   commits the outcome together with the new cursors. A crash between matching and that commit
   only repeats matching, which is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from pyngest.server.model import Job, JobKind, Op, SetCursor, StoredEvent
from pyngest.server.runner.runner import Runner
from pyngest.server.shards import Sharded
from pyngest.server.store.base import StoreUnavailable
from pyngest.server.store.postgres.store import PostgresStore
from pyngest.server.tasks import stop_tasks

log = logging.getLogger("pyngest.cluster")

PAGE = 500
DURABLE_EVERY_S = 1.0  # stored cursors of shards a round did not change move this often


class EventFeed:
    def __init__(self, store: PostgresStore, shards: Sharded, runner: Runner, *,
                 wait_for_pauses: Callable[[], Awaitable[None]],
                 registry_changed: Callable[[int], Awaitable[None]],
                 poll_s: Callable[[], float]) -> None:
        self.store = store
        self.shards = shards
        self.runner = runner
        self._wait_for_pauses = wait_for_pauses
        self._registry_changed = registry_changed
        self._poll_s = poll_s
        self.registry_version = -1
        # Held for a whole round: shards change hands only between rounds.
        self.lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._round_shards: list[int] = []
        self._round_end: tuple[int, int] = (0, 0)
        self._all_advanced = 0.0
        self.runner.feed_cursor = self._cursor_ops
        self.matched = 0
        self.unsettled = False  # the last round saw events after its cursor not settled yet

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="pyngest-feed")

    async def stop(self) -> None:
        await stop_tasks([self._task])
        self._task = None

    def poke(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        failures = 0
        unsettled = 0  # rounds in a row that found events not yet settled
        while True:
            # Events stored but not yet below the settled point (a transaction that started
            # before theirs is still open) are looked at again shortly, not at the next poll.
            wait = min(self._poll_s(), 0.002 * 2 ** unsettled) if unsettled else self._poll_s()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()
            try:
                while await self.round() >= PAGE:
                    pass  # more waiting: read on at once
                unsettled = min(unsettled + 1, 8) if self.unsettled else 0
                failures = 0
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:
                failures += 1
                if failures == 1:
                    log.warning("event matching paused, the store is unavailable: %s", exc)
                await asyncio.sleep(min(2.0, 0.1 * failures))
            except Exception:
                log.exception("an event matching round failed; trying again")
                await asyncio.sleep(0.5)

    async def round(self) -> int:
        """Match the next page of settled events; returns how many were read."""
        async with self.lock:
            owned = sorted(self.shards.owned)
            if not owned:
                return 0
            cursors = self.shards.cursors
            start = min(cursors.get(s, (0, 0)) for s in owned)
            # One round trip: the settled point, the registry's version, the events below the
            # settled point, and whether any event after the cursor is not settled yet.
            rows = await self.store.fetch(
                "SELECT b.version, b.unsettled, e.xid, e.seq, e.internal_id, e.name, e.event_id, e.ts, "
                "e.received_ms, e.source, e.body, e.started, e.env_id FROM (SELECT s.settled, "
                "(SELECT value::bigint FROM meta WHERE key = 'registry_version') AS version, "
                "EXISTS (SELECT 1 FROM events WHERE xid >= s.settled AND (xid, seq) > ($1, $2)) AS unsettled "
                "FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS settled) AS s) AS b "
                "LEFT JOIN LATERAL (SELECT * FROM events WHERE (xid, seq) > ($1, $2) AND xid < b.settled "
                "ORDER BY xid, seq LIMIT $3) AS e ON true",
                start[0], start[1], PAGE)
            version = int(rows[0]["version"])
            self.unsettled = bool(rows[0]["unsettled"])
            if version != self.registry_version:
                await self._registry_changed(version)
                self.registry_version = version
            rows = [r for r in rows if r["xid"] is not None]
            if not rows:
                return 0
            # Pauses committed before the settled point must be in the book before matching.
            await self._wait_for_pauses()
            events = [StoredEvent(internal_id=r["internal_id"], name=r["name"], event_id=r["event_id"], ts=r["ts"],
                                  received_ms=r["received_ms"], body=r["body"], source=r["source"],
                                  seq=r["seq"], log=(r["xid"], r["seq"]), started=r["started"],
                                  env_id=r["env_id"]) for r in rows]
            end = (rows[-1]["xid"], rows[-1]["seq"])
            self._round_shards = [s for s in owned if cursors.get(s, (0, 0)) < end]
            self._round_end = end
            fresh = self.runner.state.fresh_events
            for ev in events:
                fresh[ev.internal_id] = ev
            job = Job(id=f"log:{end[0]}:{end[1]}", kind=JobKind.EVENTS, due_ms=self.runner.clock.now_ms(),
                      payload={"ids": [e.internal_id for e in events]})
            self.runner.touched.clear()
            ok = await self.runner.feed(job)
            for ev in events:
                fresh.pop(ev.internal_id, None)
            if not ok:
                raise RuntimeError(f"matching events up to {end} did not commit; they are read again")
            for s in self._round_shards:
                if s in self.shards.owned:
                    cursors[s] = max(cursors.get(s, (0, 0)), end)
            self.matched += len(events)
            return len(rows)

    async def behind(self) -> bool:
        """Are there stored events not matched yet here (settled or not)? True while this
        process owns no shard at all."""
        owned = list(self.shards.owned)
        if not owned:
            return True
        start = min(self.shards.cursors.get(s, (0, 0)) for s in owned)
        return bool(await self.store.fetchval(
            "SELECT EXISTS (SELECT 1 FROM events WHERE (xid, seq) > ($1, $2))", start[0], start[1]))

    def _cursor_ops(self, job: Job) -> list[Op]:
        """The durable cursors to move with this round's outcome.

        A shard whose admission state this round changed (a run, a debounce, a batch, a rate
        limit...) must have its cursor moved in the same commit: matching those events again
        would change it twice. The others' stored cursors only say where a process taking the
        shard over starts (matching an event again that did nothing there does nothing again),
        so they move once a second, not with every round: one row update instead of one per
        shard per round. The process's own cursors (``shards.cursors``) move every round."""
        if not self._round_shards:
            return []
        now = time.monotonic()
        if now - self._all_advanced >= DURABLE_EVERY_S:
            moved = list(self._round_shards)
            self._all_advanced = now
        else:
            moved = [s for s in self._round_shards if s in self.runner.touched]
        return [SetCursor(moved, self._round_end[0], self._round_end[1])] if moved else []
