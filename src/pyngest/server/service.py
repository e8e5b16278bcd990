"""The server as one object: store, scheduler, registry, executor, runner, workers and syncer,
started and stopped in order. The HTTP layer (``api``) is built on top of it; tests can drive a
Service with a test clock and no HTTP at all."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

from pyngest.clock import Clock, RealClock
from pyngest.protocol.events import FN_INVOKED
from pyngest.server import exprs
from pyngest.server.awake import KeepAwake
from pyngest.server.cluster.node import ClusterNode
from pyngest.server.config import ServerConfig
from pyngest.server.connect.hub import ConnectHub
from pyngest.server.connect.peers import ConnectPeers
from pyngest.server.environments import Environments
from pyngest.server.executor.driver import Driver
from pyngest.server.executor.executor import Executor, ExecutorConfig
from pyngest.server.executor.state import State
from pyngest.server.live import LiveHub
from pyngest.server.metrics import Metrics
from pyngest.server.model import Batch, DeleteJob, Enqueue, Job, JobKind
from pyngest.server.operations import Operations
from pyngest.server.queue.scheduler import Scheduler
from pyngest.server.queue.slots import RequestSlots
from pyngest.server.realtime.node import RealtimeNode
from pyngest.server.registry import Registry, SyncOutcome
from pyngest.server.runner.runner import Runner
from pyngest.server.shards import Sharded
from pyngest.server.store.base import Store
from pyngest.server.store.postgres.store import PostgresStore
from pyngest.server.store.sqlite.store import SqliteStore
from pyngest.server.sync import AppSyncer
from pyngest.server.worker import WorkerPool

log = logging.getLogger("pyngest.server")

MAINTENANCE_JOB = "maintenance"
MAINTENANCE_INTERVAL_MS = 3_600_000
# Retention works in slices, each one short transaction of the single writer, with a pause as
# long as the slice between two: intake's writes queue behind one slice at most, and the purge
# takes at most half the writer's time. After a few seconds of slices the job comes back soon.
PURGE_SLICE = 50  # runs (and events, and expired keys) per slice: about 1 ms
RECLAIM_SLICE_PAGES = 256  # pages given back to the file system per slice (1 MB): about 2 ms
MAINTENANCE_BUDGET_S = 2.0


class Service:
    def __init__(self, config: ServerConfig, *, clock: Clock | None = None, store: Store | None = None) -> None:
        self.config = config
        self.clock = clock or RealClock()
        exprs.set_clock(self.clock)
        self.cluster: ClusterNode | None = None
        shards: Sharded | None = None
        if store is None and config.postgres_uri:
            store = PostgresStore(config.postgres_uri, self.clock, shards=config.shards)
        if isinstance(store, PostgresStore):
            shards = Sharded(config.shards)  # the count is the database's, set at start
        self.store: Store = store or SqliteStore(config.sqlite_dir, self.clock, durability=config.durability)
        self.scheduler = Scheduler(self.store, self.clock)
        self.state = State(self.store, self.scheduler, shards)
        self.registry = Registry(self.store, self.clock)
        self.registry.envs = Environments(self.store, self.clock, signing_key=config.signing_key,
                                          signing_key_fallback=config.signing_key_fallback,
                                          event_keys=config.event_keys)
        self.driver = Driver(signing_key=config.signing_key, clock_ms=self.clock.now_ms,
                             timeout_s=config.step_timeout_s, connect_timeout_s=config.connect_timeout_s)
        self.executor = Executor(
            state=self.state, registry=self.registry, driver=self.driver, clock=self.clock,
            config=ExecutorConfig(retry_interval_s=config.retry_interval_s),
        )
        self.runner = Runner(executor=self.executor, registry=self.registry, clock=self.clock)
        self.connect = ConnectHub(self.clock, self.registry)  # connect workers (WebSocket)
        self.driver.connect = self.connect
        # the invoke event is always matched: it names its target function directly
        self.state.listens = lambda name: (name == FN_INVOKED or self.registry.listens(name)
                                           or self.state.pauses.listens(name))
        self.live = LiveHub(env_of_run=self._env_of_run)
        self.realtime = RealtimeNode(config)
        self.metrics = Metrics(self._fn_slug_of_run, self.clock.now_ms)
        self.state.observers += [self.live.observe, self.metrics.observe]
        control = self.executor.control
        self.workers = WorkerPool(
            self.scheduler,
            self.clock,
            {
                JobKind.EVENTS: self.runner.process_events,
                JobKind.EXECUTE: self.metrics.track_requests(self.executor.execute),
                JobKind.SLEEP: control.sleep_done,
                JobKind.PAUSE_TIMEOUT: control.pause_timeout,
                JobKind.GATEWAY: self.executor.gateway.run,
                JobKind.TIMEOUT_START: control.timeout_start,
                JobKind.TIMEOUT_FINISH: control.timeout_finish,
                JobKind.CRON: self.runner.fire_cron,
                JobKind.CANCEL: control.cancel_job,
                JobKind.DEBOUNCE: self.runner.fire_debounce,
                JobKind.BATCH: self.runner.fire_batch,
                JobKind.RESUME: control.resume_job,
            },
            size=config.queue_workers,
            commit=self.state.commit,
            slots=RequestSlots(per_app=config.app_request_limit, per_function=config.function_request_limit,
                               app_of=self._app_of_function),
        )
        self.operations = Operations(self)
        # the loop stays awake for an SDK's next request while few runs execute (api/lane.py)
        self.keep_awake = KeepAwake(config.spin_us / 1e6, lambda: self.workers.running)
        self.workers.handlers[JobKind.OPERATION] = self.operations.process
        self.workers.handlers[JobKind.START] = self.operations.start_job
        self.workers.handlers[JobKind.MAINTENANCE] = self.maintain
        self.syncer = AppSyncer(config, self.registry, self.store, self.clock)
        if isinstance(self.store, PostgresStore) and shards is not None:
            self.cluster = ClusterNode(self, self.store, shards)
            self.connect.peers = ConnectPeers(self.cluster, self.connect, signing_key=config.signing_key,
                                              timeout_s=config.step_timeout_s)
            # matching reads the shared event log: no EVENTS job per stored event
            self.state.listens = lambda name: False
        self.started = False
        self.api_state: dict[str, Any] = {}  # kept by the HTTP layer across its app instances

    async def start(self, *, sync_apps: bool = True) -> None:
        await self.store.open()
        await self.registry.load()
        await self.registry.envs.seed()
        if self.cluster is None:
            await self.state.load()
        await self.driver.start()
        for fn in self.registry.functions.values():
            if fn.paused:
                self.scheduler.pause_function(fn.id)
        if self.cluster is not None:
            await self.cluster.prepare()
        await self.scheduler.start()
        # matching jobs stored before a restart: events they hold may share an id with new ones
        self.runner.recovering.update(self.scheduler.waiting_of(JobKind.EVENTS))
        self.runner.start()
        if self.cluster is not None:
            await self.cluster.start()
        await self.realtime.start(self.cluster)
        await self.runner.schedule_crons(self.registry.cron_functions())
        if self.config.retention_ms > 0:
            # one maintenance job for a whole cluster, in shard 0 (a stored one is left alone);
            # alone, a stored one is brought forward: a changed --retention applies a minute
            # after the start, not at the end of the hour the job was stored for
            job = Job(id=MAINTENANCE_JOB, kind=JobKind.MAINTENANCE, due_ms=self.clock.now_ms() + 60_000)
            enqueue = Enqueue(job, remote=not self.state.shards.owns(0))
            await self.state.commit(Batch([enqueue] if self.cluster is not None else [DeleteJob(job.id), enqueue]))
        self.workers.start()
        self.registry.envs.start()  # branch auto-archive
        if sync_apps:
            await self.syncer.start()
        self.started = True

    async def stop(self) -> None:
        """Graceful: no new work; in-flight requests get the grace period; state is flushed."""
        if not self.started:
            return
        self.started = False
        self.registry.envs.close()
        await self.realtime.stop(self.clock.now_ms())
        await self.syncer.close()
        await self.workers.stop(self.config.shutdown_grace_s)
        await self.connect.close_all()
        if self.connect.peers is not None:
            await self.connect.peers.close()
        if self.cluster is not None:
            await self.cluster.stop()
        await self.runner.stop()
        self.scheduler.close()
        self.live.close()
        await self.driver.close()
        await self.store.close()

    def _app_of_function(self, fn_id: str) -> str | None:
        fn = self.registry.functions.get(fn_id)
        return fn.app_id if fn is not None else None

    async def maintain(self, job: Job) -> None:
        """Retention: remove what is older than ``retention_ms`` in short slices, give the freed
        space back to the file system, and come back in an hour (in a second while work is left)."""
        retention = self.config.retention_ms
        if retention <= 0:
            # retention was turned off since the job was stored: nothing goes, and nor does the job
            await self.state.commit(Batch([DeleteJob(job.id)]))
            return
        before = self.clock.now_ms() - retention
        deadline = time.monotonic() + MAINTENANCE_BUDGET_S
        removed, more, left, slices, longest = 0, True, 0, 0, 0.0
        while more and time.monotonic() < deadline:
            n, took = await self._slice(self.store.purge(before, PURGE_SLICE))
            removed, more, slices, longest = removed + n, n > 0, slices + 1, max(longest, took)
        while not more and time.monotonic() < deadline:
            left, took = await self._slice(self.store.reclaim(RECLAIM_SLICE_PAGES))
            slices, longest = slices + 1, max(longest, took)
            if not left:
                break
        due = self.clock.now_ms() + (1_000 if more or left else MAINTENANCE_INTERVAL_MS)
        if removed:
            log.info("retention: removed %d runs and events older than %d days (%d slices, longest %.1f ms)",
                     removed, retention // 86_400_000, slices, longest * 1000)
        await self.state.commit(Batch([DeleteJob(job.id), Enqueue(Job(
            id=MAINTENANCE_JOB, kind=JobKind.MAINTENANCE, due_ms=due))]))

    @staticmethod
    async def _slice(write: Awaitable[int]) -> tuple[int, float]:
        """One slice of maintenance, then a pause as long as it took: other writes go first."""
        started = time.monotonic()
        result = await write
        took = time.monotonic() - started
        await asyncio.sleep(took)
        return result, took

    def _env_of_run(self, run_id: str) -> str | None:
        run = self.state.runs.peek(run_id)
        return run.env_id if run is not None else None

    def _fn_slug_of_run(self, run_id: str) -> tuple[str, str] | None:
        run = self.state.runs.peek(run_id)
        fn = self.registry.functions.get(run.fn_id) if run is not None else None
        return (fn.env_id, fn.slug) if fn is not None else None

    async def after_sync(self, outcome: SyncOutcome) -> None:
        """Schedule the cron triggers of freshly synced functions."""
        if self.cluster is not None:
            self.cluster.registry_bumped()
        if outcome.modified:
            await self.runner.schedule_crons([f for f in outcome.functions if f.cron_triggers])
