"""One process of a cluster: the single-node engine, run for the shards this process owns.

:class:`ClusterNode` ties the engine (scheduler, state, runner, registry) to the shared backend:
- leases (:mod:`.leases`): shards come and go; a gained shard's jobs, pauses, flow-control
  state and match cursor are loaded before the shard is active, and a lost one's are dropped;
- the event log (:mod:`.feed`): events any process stored are matched by the owners of the
  shards they concern;
- jobs one process enqueues for another's shard (an API cancel, a signal, a replayed run) are
  found by a poll of the store, and at once when Redis says so;
- the registry is reloaded when its version in the store moves;
- the dashboard's live feed is shared through Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from pyngest.protocol.ids import new_ulid
from pyngest.server.cluster.feed import EventFeed
from pyngest.server.cluster.leases import LeaseManager
from pyngest.server.cluster.notify import Notifier
from pyngest.server.model import Batch, CommitResult, Enqueue, InsertEvents, Job
from pyngest.server.shards import Sharded
from pyngest.server.store.base import StoreUnavailable
from pyngest.server.store.postgres.store import PostgresStore
from pyngest.server.tasks import stop_tasks

if TYPE_CHECKING:
    from pyngest.server.service import Service

log = logging.getLogger("pyngest.cluster")

REMOTE_POLL_S = 1.0
REGISTRY_POLL_S = 1.0
_LIVE_WATCH_S = 5.0
_HELD_S = 0.25


class ClusterNode:
    def __init__(self, service: Service, store: PostgresStore, shards: Sharded) -> None:
        self.s = service
        self.store = store
        self.shards = shards
        cfg = service.config
        self.node_id = new_ulid()
        self.url = cfg.advertise_url or f"http://{_url_host(cfg.host, cfg.postgres_uri)}:{cfg.port}"
        self.notifier = Notifier(cfg.redis_uri, "pending")
        self.leases = LeaseManager(
            store, shards, node_id=self.node_id, url=self.url, ttl_s=cfg.lease_ttl_s, drain_s=cfg.shutdown_grace_s,
            gained=self._gained, lost=self._lost, in_flight=self._in_flight,
            changed=lambda: self.notifier.publish("nodes", {"changed": self.node_id}),
        )
        self.feed = EventFeed(
            store, shards, service.runner, wait_for_pauses=service.state.wait_for_pauses,
            registry_changed=self._registry_changed, poll_s=self._poll_s,
        )
        # runs started with their events are checked against the registry version loaded here
        service.runner.registry_version = lambda: self.feed.registry_version if self.feed.registry_version >= 0 else None
        self._tasks: list[asyncio.Task[None]] = []
        self._remote_wake = asyncio.Event()
        self._remote_shards: set[int] = set()
        self._remote_watchers_until = 0.0
        # requests forwarded to the process owning a run (api/cluster.py), on kept-alive connections
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0))

    # ------------------------------------------------------------------------ lifecycle

    async def prepare(self) -> None:
        """Before the scheduler starts: it holds only the jobs of shards this process owns."""
        s = self.s
        self.notifier.prefix = self.store.cluster_id
        self.shards.count = self.store.shard_count
        s.scheduler.shards = lambda: sorted(self.shards.owned)
        s.scheduler.shard_of = self.job_shard
        s.scheduler.owns = lambda job: self.job_shard(job) in self.shards.owned
        s.executor.may_dispatch = lambda run_id: self.holds_locally(run_id) and self.leases.fresh(self.shards.of_run(run_id))

    async def start(self) -> None:
        s = self.s
        self.store.committed.append(self._after_commit)
        self.store.lost.append(self._store_lost)
        self.notifier.on("events", lambda m: self.feed.poke())
        self.notifier.on("jobs", self._jobs_message)
        self.notifier.on("registry", lambda m: self.feed.poke())
        self.notifier.on("nodes", lambda m: self.leases.poke())
        self.notifier.on("live", self._live_message)
        s.live.broadcast = self._broadcast_live
        s.live.remote_watchers = lambda: time.monotonic() < self._remote_watchers_until
        await self.notifier.start()
        self.feed.registry_version = await self.store.registry_version()
        await self.leases.start()
        self.notifier.publish("nodes", {"joined": self.node_id})
        self.feed.start()
        self._tasks = [asyncio.create_task(self._remote_loop(), name="pyngest-remote-jobs"),
                       asyncio.create_task(self._registry_loop(), name="pyngest-registry-watch"),
                       asyncio.create_task(self._live_watch_loop(), name="pyngest-live-watch")]

    async def stop(self) -> None:
        """After the workers stopped: give the shards back, then stop listening."""
        await stop_tasks(self._tasks)
        await self.feed.stop()
        await self.leases.stop()
        self.notifier.publish("nodes", {"left": self.node_id})
        await asyncio.sleep(0)
        await self.notifier.stop()
        await self.http.aclose()

    def _store_lost(self, exc: BaseException) -> None:
        asyncio.get_running_loop().create_task(self.leases.reset(exc))

    def job_shard(self, job: Job) -> int:
        return self.shards.of_run(job.run_id) if job.run_id else job.shard

    def _poll_s(self) -> float:
        # with Redis, a message wakes the matcher; polling is only a safety net
        return 0.25 if self.notifier.connected else 0.02

    def _in_flight(self, shard: int) -> int:
        return self.s.scheduler.leased_in(lambda job: self.job_shard(job) == shard)

    # --------------------------------------------------------------------- shards move

    async def _gained(self, gained: dict[int, tuple[int, int, int]]) -> None:
        """Load what the engine keeps in memory for these shards, then start working on them."""
        s = self.s
        ids = sorted(gained)
        async with self.feed.lock:  # not in the middle of a matching round
            pauses = await self.store.all_pauses(ids)
            flows = {shard: await self.store.all_flow([shard]) for shard in ids}
            for pause in pauses:
                s.state.pauses.add(pause)
            for shard, rows in flows.items():
                s.state.flow.load(rows, shard=shard)
            for shard, (epoch, xid, seq) in gained.items():
                if self.leases.held.get(shard) != epoch:
                    continue  # lost again while loading
                self.shards.cursors[shard] = (xid, seq)
                self.shards.owned[shard] = epoch
            s.state.runs.drop_where(lambda run_id: self.shards.of_run(run_id) in gained)
        await s.scheduler.load(lambda until: self.store.jobs_due_before(until, 1_000_000, ids))
        self.feed.poke()

    async def _lost(self, lost: set[int]) -> None:
        """Another process works on these shards now (or will): forget them here.

        A shard taken over is let go at once: every commit to it is refused from now on, so a
        matching round in flight cannot advance its cursor. A shard we give back (draining; its
        lease still ours) only between matching rounds: a round must not advance its cursor
        past events it did not match for it."""
        s = self.s
        draining = lost & set(self.leases.held)
        for shard in lost - draining:
            self.shards.owned.pop(shard, None)
        # requests in flight for runs of shards taken from us are no longer ours to accept
        # checkpoints for (a drained shard's are: its lease is ours until they end)
        gone = lost - draining
        s.executor.drop_dispatches(lambda run_id: self.shards.of_run(run_id) in gone)
        if draining:
            async with self.feed.lock:
                for shard in draining:
                    self.shards.owned.pop(shard, None)
        s.scheduler.drop_shards(lost)
        s.state.runs.drop_where(lambda run_id: self.shards.of_run(run_id) in lost)
        for pause in [p for p in s.state.pauses.by_id.values() if self.shards.of_run(p.run_id) in lost]:
            s.state.pauses.remove(pause.id)
        s.state.flow.drop_shards(lost)

    # ----------------------------------------------------------------- notifications

    def _after_commit(self, done: list[tuple[Batch, CommitResult]]) -> None:
        events = False
        remote: set[int] = set()
        for batch, _ in done:
            for op in batch.ops:
                if isinstance(op, InsertEvents):
                    events = True
                elif isinstance(op, Enqueue) and op.remote:
                    remote.add(self.job_shard(op.job))
        if events:
            self.notifier.publish("events", {})
            self.feed.poke()
        if remote:
            self.notifier.publish("jobs", {"shards": sorted(remote)})
            self._jobs_message({"shards": sorted(remote)})

    def _jobs_message(self, message: Any) -> None:
        mine = {int(x) for x in message.get("shards", ())} & set(self.shards.owned)
        if mine:
            self._remote_shards |= mine
            self._remote_wake.set()

    async def _remote_loop(self) -> None:
        """Jobs other processes enqueued for our shards: at once when told, else every second."""
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._remote_wake.wait(), REMOTE_POLL_S)
            self._remote_wake.clear()
            shards = sorted(self._remote_shards or self.shards.owned)
            self._remote_shards = set()
            if not shards:
                continue
            try:
                await self.s.scheduler.load(functools.partial(self._remote_jobs, shards=shards))
            except StoreUnavailable:
                pass
            except Exception:
                log.exception("reading jobs enqueued by other processes failed")

    async def _remote_jobs(self, until: int, shards: list[int]) -> list[Job]:
        return await self.store.remote_jobs(until, shards)

    async def _registry_loop(self) -> None:
        while True:
            await asyncio.sleep(REGISTRY_POLL_S)
            try:
                version = await self.store.registry_version()
                if version != self.feed.registry_version:
                    async with self.feed.lock:
                        if version != self.feed.registry_version:
                            await self._registry_changed(version)
                            self.feed.registry_version = version
            except StoreUnavailable:
                pass
            except Exception:
                log.exception("reloading the registry failed")

    async def _registry_changed(self, version: int) -> None:
        """Apps or functions changed (a sync on another process, a pause): reload them."""
        s = self.s
        before = {f.id: f for f in s.registry.functions.values()}
        await s.registry.reload()
        for fn in s.registry.functions.values():
            old = before.get(fn.id)
            if fn.paused and (old is None or not old.paused):
                s.scheduler.pause_function(fn.id)
            elif not fn.paused and old is not None and old.paused:
                s.scheduler.resume_function(fn.id)
        changed = [f for f in s.registry.cron_functions() if f.id not in before or before[f.id].config != f.config]
        if changed:
            await s.runner.schedule_crons(changed)

    def registry_bumped(self) -> None:
        """This process changed the registry: tell the others now."""
        self.notifier.publish("registry", {})

    # ------------------------------------------------------------------ live dashboard

    def _broadcast_live(self, message: dict[str, Any]) -> bool:
        if not self.notifier.connected:
            return False
        self.notifier.publish("live", {"node": self.node_id, "message": message})
        return True

    def _live_message(self, message: Any) -> None:
        if "watching" in message:
            self._remote_watchers_until = time.monotonic() + 2 * _LIVE_WATCH_S
        elif "message" in message:
            self.s.live.deliver(message["message"])

    async def _live_watch_loop(self) -> None:
        """While someone watches the dashboard here, ask the others to report their changes."""
        while True:
            if self.s.live.watching:
                self.notifier.publish("live", {"watching": self.node_id})
            await asyncio.sleep(_LIVE_WATCH_S)

    async def quiesce(self, timeout_s: float = 30.0) -> None:
        """For tests and benchmarks: wait (in real time) until every stored event is matched,
        nothing due waits for a free worker, nothing waits to be committed and no job finished
        or started, three looks in a row."""
        deadline = time.monotonic() + timeout_s
        calm = 0
        last: tuple[int, int] | None = None
        since = time.monotonic()
        while calm < 3:
            matched = await self.feed.round()
            await asyncio.sleep(0.005)
            # Progress: jobs finished or handed out. A request in flight may be one an app holds
            # on purpose: once nothing else moved for a while, it does not count as work.
            now = (self.s.workers.processed, self.s.scheduler.leased)
            if now != last:
                last, since = now, time.monotonic()
            held = now[1] > 0 and time.monotonic() - since < _HELD_S
            busy = (matched or not self.s.scheduler.is_quiet() or self.store.writing or held
                    or await self.feed.behind())
            calm = 0 if busy else calm + 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster node not quiet after {timeout_s}s")

    # --------------------------------------------------------------------- forwarding

    def holds_locally(self, run_id: str) -> bool:
        """Is the run's shard's lease ours (owned, or being given back after its work in flight)?"""
        return self.shards.of_run(run_id) in self.leases.held

    async def holds_shard_of(self, run_id: str) -> bool:
        """Does the database say this process holds the lease of the run's shard right now?
        (Asked before an answer only the owner may give, such as "that dispatch is stale".)"""
        shard = self.shards.of_run(run_id)
        epoch = self.leases.held.get(shard)
        if epoch is None:
            return False
        rows = await self.store.fetch("SELECT owner, epoch FROM shards WHERE shard = $1", shard)
        return bool(rows) and rows[0]["owner"] == self.node_id and rows[0]["epoch"] == epoch

    async def owner_url(self, run_id: str) -> str | None:
        """Where the process owning this run's shard listens (None: nobody owns it now)."""
        rows = await self.store.fetch(
            "SELECT n.url FROM shards s JOIN nodes n ON n.id = s.owner WHERE s.shard = $1",
            self.shards.of_run(run_id))
        return rows[0]["url"] if rows else None


def _url_host(host: str | None, postgres_uri: str | None) -> str:
    """How the other processes reach this one, by default: the address it listens on; when it
    listens on every interface, the one it reaches PostgreSQL from (the others reach PostgreSQL
    too, so they are likely on that network); loopback for a loopback database."""
    if host in (None, ""):
        return "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        target = urlsplit(postgres_uri or "").hostname or "127.0.0.1"
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((target, 5432))  # no packet is sent: this only picks a route
                return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"
    return f"[{host}]" if ":" in str(host) else str(host)

