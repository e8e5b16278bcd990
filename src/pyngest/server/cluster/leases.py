"""Shard leases: which process runs which shards, and taking over from a dead one.

Every process renews its leases every ``ttl/3`` in PostgreSQL (the database's clock decides
expiry, so machines need not agree on the time). Each aims at an even share of the shards among
the processes alive (those that renewed within ``ttl``): it takes free or expired shards up to
its share, and gives back what is above it (after the work in flight on them finishes, bounded
by ``drain_s``). A process that died keeps its shards until their leases expire: takeover
happens within ``ttl`` plus one renewal period.

A lease is fenced: taking a shard increments its ``epoch`` under an exclusive advisory lock
that every commit to the shard takes shared (functions.sql). So a process that was only slow
cannot commit over the one that took over: its batch names the old epoch and is refused.
A process that cannot renew for ``ttl`` (lost the database) stops working on its shards by
itself, before anyone else may take them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable

import asyncpg

from pyngest.server.shards import Sharded
from pyngest.server.store.base import StoreUnavailable
from pyngest.server.store.postgres.store import PostgresStore
from pyngest.server.tasks import stop_tasks

log = logging.getLogger("pyngest.cluster")

LOCK_NAMESPACE = 1886287463  # the advisory-lock class of shard leases (functions.sql uses it too)
FRESH_SHARE = 0.75  # of the ttl after a renewal began: leases acted on only within it
_DB_NOW = "(extract(epoch from clock_timestamp()) * 1000)::bigint"


class LeaseManager:
    def __init__(
        self, store: PostgresStore, shards: Sharded, *, node_id: str, url: str, ttl_s: float = 10.0,
        drain_s: float = 30.0,
        gained: Callable[[dict[int, tuple[int, int, int]]], Awaitable[None]],
        lost: Callable[[set[int]], Awaitable[None]],
        in_flight: Callable[[int], int],
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.shards = shards
        self.node_id = node_id
        self.url = url
        self.ttl_ms = int(ttl_s * 1000)
        self.drain_s = drain_s
        self._gained = gained  # shard -> (epoch, cursor xid, cursor seq); load and activate them
        self._lost = lost  # deactivate these shards
        self._in_flight = in_flight  # jobs of a shard running right now
        self._changed = changed  # tell the others: shards were given back or taken
        self.held: dict[int, int] = {}  # shard -> epoch: leases in the database (incl. draining)
        self._draining: set[int] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_renewal = time.monotonic()
        self._fresh_until: dict[int, float] = {}  # shard -> until when we may act on its lease
        self._db_now = 0
        self.live = 1  # processes that renewed within the ttl, as of the last renewal
        self._wake = asyncio.Event()
        self._closed = False
        self.takeovers = 0

    @property
    def period_s(self) -> float:
        return self.ttl_ms / 3000

    def fresh(self, shard: int) -> bool:
        """May this process still act on its lease of ``shard``? A renewal (or a take) that began
        at ``t`` keeps it until at least ``t + ttl`` by the database's clock; past 3/4 of that,
        another process may soon take it, so no new request goes out under it (commits are
        fenced anyway, but a request sent to an app runs its step whatever becomes of its result)."""
        return self._fresh_until.get(shard, 0.0) > time.monotonic()

    def _extend(self, shards: Iterable[int], started: float) -> None:
        until = started + self.ttl_ms / 1000 * FRESH_SHARE
        for shard in shards:
            self._fresh_until[shard] = until

    def _left_s(self) -> float:
        return self._last_renewal + self.ttl_ms / 1000 * FRESH_SHARE - time.monotonic()

    def _publish_leases(self) -> None:
        # a new dict object: the store re-encodes its copy only when the object changes
        self.store.leases = dict(self.held)

    async def start(self) -> None:
        await self.store.execute(
            f"INSERT INTO nodes (id, url, started_ms, seen_ms) VALUES ($1, $2, {_DB_NOW}, {_DB_NOW}) "
            "ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, seen_ms = EXCLUDED.seen_ms", self.node_id, self.url)
        self.store.node_id = self.node_id
        await self.renew()
        await self.balance()
        self._tasks = [asyncio.create_task(self._renew_loop(), name="pyngest-lease-renewal"),
                       asyncio.create_task(self._balance_loop(), name="pyngest-lease-balance")]

    def poke(self) -> None:
        """Look again now (another process joined or left)."""
        self._wake.set()

    async def _cancel_tasks(self) -> None:
        await stop_tasks(self._tasks)
        self._tasks = []

    async def stop(self) -> None:
        """Give every lease back at once, so the others take over without waiting for expiry."""
        self._closed = True
        await self._cancel_tasks()
        held = sorted(self.held)
        self.held.clear()
        self._publish_leases()
        await self._lost(set(held))
        with contextlib.suppress(Exception):
            await self.store.execute(
                "UPDATE shards SET owner = NULL, expires_ms = 0 WHERE owner = $1 AND shard = ANY($2::int[])",
                self.node_id, held)
            await self.store.execute("DELETE FROM nodes WHERE id = $1", self.node_id)

    async def _renew_loop(self) -> None:
        """Renewal runs on its own, so loading a large shard never lets our other leases lapse."""
        while not self._closed:
            await asyncio.sleep(self.period_s)
            try:
                # a renewal still waiting when our leases may lapse counts as a lost database
                await asyncio.wait_for(self.renew(), max(self._left_s(), self.period_s))
            except (TimeoutError, StoreUnavailable) as exc:
                await self._unreachable(exc)
            except Exception:
                log.exception("renewing shard leases failed")

    async def _balance_loop(self) -> None:
        while not self._closed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.period_s)
            self._wake.clear()
            try:
                await self.balance()
            except StoreUnavailable:
                pass  # the renewal loop notices and says so
            except Exception:
                log.exception("balancing shards failed")

    async def _unreachable(self, exc: BaseException) -> None:
        """Without the database we cannot renew: before our leases may have expired, stop
        working on the shards (nobody may take them over while we still act on them)."""
        idle_s = time.monotonic() - self._last_renewal
        if self.held and self._left_s() <= 0:
            log.warning("cannot renew shard leases for %.1f s (%s): giving up shards %s until the database is back",
                        idle_s, exc, sorted(self.held))
            gone = set(self.held)
            self.held.clear()
            self._draining.clear()
            self._publish_leases()
            await self._lost(gone)

    async def reset(self, exc: BaseException) -> None:
        """A commit could not reach the database: what this process holds in memory may differ
        from the record now. Drop every shard; they are taken anew (and reloaded) once the
        database answers again."""
        if not self.held:
            return
        log.warning("lost the database while committing (%s): dropping shards %s until it is back",
                    exc, sorted(self.held))
        gone = set(self.held)
        self.held.clear()
        self._draining.clear()
        self._publish_leases()
        await self._lost(gone)
        self.poke()

    async def renew(self) -> None:
        """Extend our leases; notice any another process took over; count the live processes."""
        async def renew(conn: asyncpg.Connection) -> tuple[list[asyncpg.Record], int, int]:
            async with conn.transaction():
                now = await conn.fetchval(
                    f"UPDATE nodes SET seen_ms = {_DB_NOW}, url = $2 WHERE id = $1 RETURNING seen_ms",
                    self.node_id, self.url)
                if now is None:  # our row was tidied away while we could not renew
                    now = await conn.fetchval(
                        f"INSERT INTO nodes (id, url, started_ms, seen_ms) VALUES ($1, $2, {_DB_NOW}, {_DB_NOW}) "
                        "RETURNING seen_ms", self.node_id, self.url)
                rows = await conn.fetch(
                    "UPDATE shards SET expires_ms = $2::bigint + $3::bigint WHERE owner = $1 RETURNING shard, epoch",
                    self.node_id, now, self.ttl_ms)
                live = await conn.fetchval("SELECT count(*) FROM nodes WHERE seen_ms > $1", now - self.ttl_ms)
                await conn.execute("DELETE FROM nodes WHERE seen_ms < $1", now - 10 * self.ttl_ms)
                return rows, int(now), int(live)

        started = time.monotonic()
        before = dict(self.held)  # shards taken while we renew are not ours to judge here
        rows, self._db_now, self.live = await self.store._read(renew)
        self._last_renewal = started
        renewed = {r["shard"]: r["epoch"] for r in rows}
        self._extend(renewed, started)
        gone = {s for s, epoch in before.items() if renewed.get(s) != epoch and self.held.get(s) == epoch}
        if gone:
            log.warning("shards %s were taken over by another process", sorted(gone))
            for s in gone:
                self.held.pop(s, None)
                self._draining.discard(s)
            self._publish_leases()
            await self._lost(gone)

    async def balance(self) -> None:
        """Take free or expired shards, or give some back, towards an even share."""
        target = math.ceil(self.shards.count / max(1, self.live))
        active = len(self.held) - len(self._draining)
        if active < target:
            await self._take(target - active)
        elif active > target:
            self._give_back(active - target)

    async def _take(self, wanted: int) -> None:
        async def take(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            async with conn.transaction():
                now = await conn.fetchval(f"SELECT {_DB_NOW}")
                # free, expired, or ours from before we lost the database (taken anew: a new epoch)
                free = [r["shard"] for r in await conn.fetch(
                    "SELECT shard FROM shards WHERE (owner IS NULL OR expires_ms < $1 OR owner = $4) "
                    "AND NOT (shard = ANY($2::int[])) ORDER BY (owner = $4) IS TRUE DESC, random() LIMIT $3",
                    now, list(self.held), wanted, self.node_id)]
                if not free:
                    return []
                free.sort()  # locks in one order: two processes taking shards never deadlock
                for shard in free:
                    # waits for commits in flight under the old lease: they land before our reads
                    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_NAMESPACE, shard)
                rows: list[asyncpg.Record] = await conn.fetch(
                    f"WITH old AS (SELECT shard, owner FROM shards WHERE shard = ANY($1::int[])) "
                    f"UPDATE shards s SET owner = $2, epoch = s.epoch + 1, expires_ms = {_DB_NOW} + $3 FROM old "
                    f"WHERE s.shard = old.shard AND (s.owner IS NULL OR s.owner = $2 OR s.expires_ms < {_DB_NOW}) "
                    "RETURNING s.shard, s.epoch, s.cursor_xid, s.cursor_seq, old.owner AS previous",
                    free, self.node_id, self.ttl_ms)
                return rows

        started = time.monotonic()
        rows = await self.store._read(take)
        if not rows:
            return
        gained = {int(r["shard"]): (int(r["epoch"]), int(r["cursor_xid"]), int(r["cursor_seq"])) for r in rows}
        self.takeovers += sum(1 for r in rows if r["previous"] not in (None, self.node_id))
        for shard, (epoch, _, _) in gained.items():
            self.held[shard] = epoch
        self._extend(gained, started)
        self._publish_leases()
        log.info("took shards %s (%d held)", sorted(gained), len(self.held))
        try:
            await self._gained(gained)
        except BaseException:
            # not loaded: holding them would keep them from everyone; the next balance takes
            # them again (ours in the database until then)
            for shard, (epoch, _, _) in gained.items():
                if self.held.get(shard) == epoch:
                    del self.held[shard]
            self._publish_leases()
            await self._lost(set(gained))
            raise
        self._changed()

    def _give_back(self, count: int) -> None:
        """Stop taking new work on ``count`` shards; release each once its work in flight ends."""
        candidates = [s for s in sorted(self.held, reverse=True) if s not in self._draining][:count]
        for shard in candidates:
            self._draining.add(shard)
            asyncio.get_running_loop().create_task(self._drain(shard))

    async def _drain(self, shard: int) -> None:
        await self._lost({shard})  # no new work here; commits of work in flight still land
        deadline = time.monotonic() + self.drain_s
        while self._in_flight(shard) and time.monotonic() < deadline and not self._closed:
            await asyncio.sleep(0.05)
        if shard not in self._draining:
            return  # lost meanwhile
        self._draining.discard(shard)
        epoch = self.held.pop(shard, None)
        self._publish_leases()
        if epoch is None:
            return
        await self._lost({shard})  # no longer held: what is still in flight is not ours
        try:
            await self.store.execute(
                "UPDATE shards SET owner = NULL, expires_ms = 0 WHERE shard = $1 AND owner = $2 AND epoch = $3",
                shard, self.node_id, epoch)
            log.info("gave shard %d back (%d held)", shard, len(self.held))
            self._changed()
        except StoreUnavailable:
            pass  # it expires by itself

    async def abandon(self) -> None:
        """Stop renewing without giving anything back, as a process that hangs or dies would
        (for tests of takeover and fencing)."""
        self._closed = True
        await self._cancel_tasks()
