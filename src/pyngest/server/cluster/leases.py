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
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable

import asyncpg

from pyngest.server.shards import Sharded
from pyngest.server.store.base import StoreUnavailable
from pyngest.server.store.postgres.store import PostgresStore

log = logging.getLogger("pyngest.cluster")

LOCK_NAMESPACE = 1886287463  # the advisory-lock class of shard leases (functions.sql uses it too)
_DB_NOW = "(extract(epoch from clock_timestamp()) * 1000)::bigint"


class LeaseManager:
    def __init__(
        self, store: PostgresStore, shards: Sharded, *, node_id: str, url: str, ttl_s: float = 10.0,
        drain_s: float = 30.0,
        gained: Callable[[dict[int, tuple[int, int, int]]], Awaitable[None]],
        lost: Callable[[set[int]], Awaitable[None]],
        in_flight: Callable[[int], int],
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
        self.held: dict[int, int] = {}  # shard -> epoch: leases in the database (incl. draining)
        self._draining: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._last_renewal = time.monotonic()
        self._wake = asyncio.Event()
        self._closed = False
        self.takeovers = 0

    @property
    def period_s(self) -> float:
        return self.ttl_ms / 3000

    def _publish_leases(self) -> None:
        # a new dict object: the store re-encodes its copy only when the object changes
        self.store.leases = dict(self.held)

    async def start(self) -> None:
        await self.store.execute(
            f"INSERT INTO nodes (id, url, started_ms, seen_ms) VALUES ($1, $2, {_DB_NOW}, {_DB_NOW}) "
            "ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, seen_ms = EXCLUDED.seen_ms", self.node_id, self.url)
        self.store.node_id = self.node_id
        await self.tick()
        self._task = asyncio.create_task(self._loop(), name="pyngest-leases")

    def poke(self) -> None:
        """Look again now (another process joined or left)."""
        self._wake.set()

    async def stop(self) -> None:
        """Give every lease back at once, so the others take over without waiting for expiry."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        held = sorted(self.held)
        self.held.clear()
        self._publish_leases()
        await self._lost(set(held))
        with contextlib.suppress(Exception):
            await self.store.execute(
                "UPDATE shards SET owner = NULL, expires_ms = 0 WHERE owner = $1 AND shard = ANY($2::int[])",
                self.node_id, held)
            await self.store.execute("DELETE FROM nodes WHERE id = $1", self.node_id)

    async def _loop(self) -> None:
        while not self._closed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.period_s)
            self._wake.clear()
            try:
                await self.tick()
            except StoreUnavailable as exc:
                await self._unreachable(exc)
            except Exception:
                log.exception("renewing shard leases failed")

    async def _unreachable(self, exc: BaseException) -> None:
        """Without the database we cannot renew: before our leases may have expired, stop
        working on the shards (nobody may take them over while we still act on them)."""
        idle_s = time.monotonic() - self._last_renewal
        if self.held and idle_s > self.ttl_ms / 1000 * 0.75:
            log.warning("cannot renew shard leases for %.1f s (%s): giving up shards %s until the database is back",
                        idle_s, exc, sorted(self.held))
            gone = set(self.held)
            self.held.clear()
            self._draining.clear()
            self._publish_leases()
            await self._lost(gone)

    async def tick(self) -> None:
        """Renew, then take or give back shards towards an even share."""
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

        rows, now, live = await self.store._read(renew)
        self._last_renewal = time.monotonic()
        renewed = {r["shard"]: r["epoch"] for r in rows}
        gone = {s for s, epoch in self.held.items() if renewed.get(s) != epoch}
        if gone:
            log.warning("shards %s were taken over by another process", sorted(gone))
            for s in gone:
                self.held.pop(s, None)
                self._draining.discard(s)
            self._publish_leases()
            await self._lost(gone)
        target = math.ceil(self.shards.count / max(1, live))
        active = len(self.held) - len(self._draining)
        if active < target:
            await self._take(target - active, now)
        elif active > target:
            self._give_back(active - target)

    async def _take(self, wanted: int, now: int) -> None:
        candidates = await self.store.fetch(
            "SELECT shard FROM shards WHERE owner IS NULL OR expires_ms < $1 OR owner = $2 "
            "ORDER BY random() LIMIT $3", now, self.node_id, wanted + len(self.held))
        gained: dict[int, tuple[int, int, int]] = {}
        for row in candidates:
            shard = row["shard"]
            if shard in self.held or len(gained) >= wanted:
                continue
            taken = await self.store._read(functools.partial(self._acquire, shard=shard))
            if taken is not None:
                gained[shard] = taken
        if not gained:
            return
        for shard, (epoch, _, _) in gained.items():
            self.held[shard] = epoch
        self._publish_leases()
        log.info("took shards %s (%d held)", sorted(gained), len(self.held))
        await self._gained(gained)

    async def _acquire(self, conn: asyncpg.Connection, shard: int) -> tuple[int, int, int] | None:
        async with conn.transaction():
            # waits for commits in flight under the old lease: they land before we read the shard
            await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_NAMESPACE, shard)
            row = await conn.fetchrow(
                f"UPDATE shards SET owner = $2, epoch = epoch + 1, expires_ms = {_DB_NOW} + $3 "
                f"WHERE shard = $1 AND (owner IS NULL OR owner = $2 OR expires_ms < {_DB_NOW}) "
                "RETURNING epoch, cursor_xid, cursor_seq, "
                "(SELECT owner FROM shards o WHERE o.shard = $1) AS previous", shard, self.node_id, self.ttl_ms)
        if row is None:
            return None
        if row["previous"] not in (None, self.node_id):
            self.takeovers += 1
        return int(row["epoch"]), int(row["cursor_xid"]), int(row["cursor_seq"])

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
        try:
            await self.store.execute(
                "UPDATE shards SET owner = NULL, expires_ms = 0 WHERE shard = $1 AND owner = $2 AND epoch = $3",
                shard, self.node_id, epoch)
            log.info("gave shard %d back (%d held)", shard, len(self.held))
        except StoreUnavailable:
            pass  # it expires by itself
