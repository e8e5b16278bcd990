"""The PostgreSQL backend: the record of a cluster of pyngest processes.

Writes go through one writer connection per process with group commit, as on SQLite: batches
queue up while a commit is in flight, and the next commit applies all of them in submission
order, in one transaction and one round trip (the ``pyngest_apply`` function, functions.sql).
Each batch is fenced: it only commits if this process still holds the lease of every shard it
writes to (the lease manager keeps :attr:`node_id` and :attr:`leases` current).

Reads use a small pool. Losing the database makes every call raise :class:`StoreUnavailable`;
the pool reconnects by itself once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import orjson

from pyngest.clock import Clock
from pyngest.protocol.ids import low_bits
from pyngest.server.model import (
    AddHistory,
    AddPause,
    AddSkip,
    Batch,
    ClaimPause,
    CommitResult,
    CreateRun,
    DeleteFlow,
    DeleteJob,
    DeletePause,
    DeleteRunJobs,
    DeleteRunPauses,
    Enqueue,
    InsertEvents,
    Job,
    JobKind,
    Pause,
    PauseKind,
    Run,
    RunStatus,
    SaveStep,
    SetCursor,
    SetFlow,
    StoredEvent,
    UpdateRun,
    compact,
    op_run_id,
)
from pyngest.server.store.base import (
    AppRecord,
    AppUrlRecord,
    Fenced,
    FunctionRecord,
    HistoryRow,
    OperationRecord,
    RunQuery,
    StoreUnavailable,
    SyncRecord,
)
from pyngest.server.store.postgres.envs import PostgresEnvTables
from pyngest.server.store.postgres.migrate import DEFAULT_SHARDS, SchemaError, migrate
from pyngest.server.store.postgres.reads import PostgresDashboardReads, placeholders, run_where
from pyngest.server.store.postgres.setwise import named_shards, setwise
from pyngest.server.store.postgres.webhooks import PostgresWebhooks
from pyngest.server.store.sqlite.reads import event_where
from pyngest.server.tasks import stop_tasks

log = logging.getLogger("pyngest.store")
T = TypeVar("T")

_MAX_GROUP = 500  # batches in one commit, at most
# Our statements are small and planned once: PostgreSQL's JIT compiler, which starts above a
# cost estimate that a jsonb expansion reaches at once, spent ~13 ms compiling each commit.
SESSION = {"jit": "off", "application_name": "pyngest"}
FENCED = "PYF01"
CLOSE_TIMEOUT_S = 5.0  # closing connections at shutdown, at most

_RUN_COLUMNS = (
    "id, fn_id, app_id, fn_version, status, event_ids, batch_id, cron, original_run_id, "
    "queued_ms, started_ms, ended_ms, output, version, force_step_plan, pending, state_bytes, attrs, env_id"
)
_JOB_COLUMNS = "id, run_id, kind, due_ms, priority, step_id, attempt, payload, shard"
_PAUSE_COLUMNS = "id, run_id, step_id, kind, event_name, expression, signal, after_seq, expires_ms, data"
_EVENT_COLUMNS = "seq, internal_id, name, event_id, ts, received_ms, source, body, env_id"
_JSON_RUN_FIELDS = {"event_ids", "pending", "attrs"}

# Errors that mean "the database is not there (or cannot write) right now", not "this is wrong".
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError, asyncio.TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError, asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.CannotConnectNowError,
)


def unavailable(exc: BaseException) -> bool:
    return isinstance(exc, _UNAVAILABLE)


def _loads(value: str | None) -> Any:
    return orjson.loads(value) if value is not None else None


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def run_from_row(row: asyncpg.Record) -> Run:
    return Run(
        id=row["id"], fn_id=row["fn_id"], app_id=row["app_id"], fn_version=row["fn_version"],
        status=RunStatus(row["status"]), event_ids=orjson.loads(row["event_ids"]), events=[],
        batch_id=row["batch_id"], cron=row["cron"], original_run_id=row["original_run_id"],
        queued_ms=row["queued_ms"], started_ms=row["started_ms"], ended_ms=row["ended_ms"],
        output=row["output"], version=row["version"], force_step_plan=row["force_step_plan"],
        pending=_loads(row["pending"]), state_bytes=row["state_bytes"], attrs=_loads(row["attrs"]) or {},
        env_id=row["env_id"],
    )


def job_from_row(row: asyncpg.Record) -> Job:
    return Job(id=row["id"], run_id=row["run_id"], kind=JobKind(row["kind"]), due_ms=row["due_ms"],
               priority=row["priority"], step_id=row["step_id"], attempt=row["attempt"],
               payload=_loads(row["payload"]), shard=row["shard"])


def pause_from_row(row: asyncpg.Record) -> Pause:
    return Pause(id=row["id"], run_id=row["run_id"], step_id=row["step_id"], kind=PauseKind(row["kind"]),
                 event_name=row["event_name"], expression=row["expression"], signal=row["signal"],
                 after_seq=row["after_seq"], expires_ms=row["expires_ms"], data=_loads(row["data"]))


def event_from_row(row: asyncpg.Record) -> StoredEvent:
    return StoredEvent(seq=row["seq"], internal_id=row["internal_id"], name=row["name"], event_id=row["event_id"],
                       ts=row["ts"], received_ms=row["received_ms"], source=row["source"], body=row["body"],
                       env_id=row["env_id"])


class _Pending:
    __slots__ = ("batch", "future")

    def __init__(self, batch: Batch, future: asyncio.Future[CommitResult]) -> None:
        self.batch = batch
        self.future = future


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A pooled connection goes back as it is (asyncpg still rolls back a transaction left
    open). pyngest keeps no session state on them — no LISTEN, session advisory locks, cursors
    or SET — so the default reset query (RESET ALL, CLOSE ALL, UNLISTEN *, unlock all) was a
    round trip per read for nothing (four per run with two processes, one run at a time)."""


class PostgresStore(PostgresDashboardReads, PostgresEnvTables, PostgresWebhooks):
    def __init__(self, dsn: str, clock: Clock, *, shards: int = DEFAULT_SHARDS, pool_size: int = 8) -> None:
        self.dsn = dsn
        self.clock = clock
        self._want_shards = shards
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._writer_conn: asyncpg.Connection | None = None
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._in_commit = False
        self._shards = 1
        self.meta: dict[str, str] = {}
        # Set by the lease manager: who we are and which shard leases we hold (shard -> epoch).
        self.node_id = ""
        self.leases: dict[int, int] = {}
        self._leases_json = "{}"
        self._leases_seen: dict[int, int] | None = None
        # Called after each commit with its batches and results (notifications to other processes).
        self.committed: list[Callable[[list[tuple[Batch, CommitResult]]], None]] = []
        # Batches sent rows by kind (setwise.py), of all batches written: their statements are
        # one per batch instead of one or more per op (bench/writes.py reports the share).
        self.setwise_batches = 0
        # Called when the database could not be reached while committing.
        self.lost: list[Callable[[BaseException], None]] = []

    @property
    def shard_count(self) -> int:
        return int(self.meta.get("shards", "1"))

    @property
    def cluster_id(self) -> str:
        return self.meta.get("cluster_id", "")

    # ------------------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        try:
            conn = await asyncpg.connect(self.dsn, server_settings=SESSION)
        except Exception as exc:
            if unavailable(exc):
                raise StoreUnavailable(f"cannot reach PostgreSQL at {_redact(self.dsn)}: {exc}") from exc
            raise SchemaError(_refused(self.dsn, exc)) from exc
        try:
            self.meta = await migrate(conn, shards=self._want_shards)
            self._shards = int(self.meta.get("shards", "1"))
        finally:
            await conn.close()
        self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self._pool_size,
                                               server_settings=SESSION, reset=_keep_session)
        self._writer = asyncio.create_task(self._write_loop(), name="pyngest-pg-writer")

    async def close(self) -> None:
        await stop_tasks([self._writer])
        self._writer = None
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(StoreUnavailable("the store is closed"))
        # bounded: a connection still busy (a read cut off by shutdown) must not hold it up
        if self._writer_conn is not None:
            with contextlib.suppress(Exception):
                await self._writer_conn.close(timeout=CLOSE_TIMEOUT_S)
            self._writer_conn = None
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), CLOSE_TIMEOUT_S)
            except Exception:  # a timeout included
                self._pool.terminate()
            self._pool = None

    async def _read(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        if self._pool is None:
            raise StoreUnavailable("the store is not open")
        try:
            async with self._pool.acquire() as conn:
                return await fn(conn)
        except Exception as exc:
            if unavailable(exc):
                raise StoreUnavailable(f"PostgreSQL is unavailable: {exc}") from exc
            raise

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self._read(lambda c: c.fetch(sql, *args))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._read(lambda c: c.fetchval(sql, *args))

    async def execute(self, sql: str, *args: Any) -> str:
        return await self._read(lambda c: c.execute(sql, *args))

    # ---------------------------------------------------------------------------- writes

    def submit(self, batch: Batch) -> asyncio.Future[CommitResult]:
        fut: asyncio.Future[CommitResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(batch, fut))
        return fut

    @property
    def writing(self) -> bool:
        """Batches are queued or being committed."""
        return not self._queue.empty() or self._in_commit

    async def commit(self, batch: Batch) -> CommitResult:
        return await self.submit(batch)

    async def _write_loop(self) -> None:
        while True:
            group = [await self._queue.get()]
            while not self._queue.empty() and len(group) < _MAX_GROUP:
                group.append(self._queue.get_nowait())
            self._in_commit = True
            try:
                await self._commit_group(group)
            finally:
                self._in_commit = False

    async def _commit_group(self, group: list[_Pending]) -> None:
        try:
            results = await self._apply([p.batch for p in group])
        except StoreUnavailable as exc:
            for pending in group:
                if not pending.future.done():
                    pending.future.set_exception(StoreUnavailable(str(exc)))
            return
        except Exception as exc:
            # one of them is refused (fenced: it writes to a shard we lost; or it is invalid):
            # apply them one by one, so only that one fails
            log.debug("a group of %d batches was refused (%s); committing them one by one", len(group), exc)
            for pending in group:
                await self._apply_alone(pending)
            return
        self._resolve(group, results)

    async def _apply_alone(self, pending: _Pending) -> None:
        try:
            results = await self._apply([pending.batch])
        except Exception as exc:
            if not pending.future.done():
                pending.future.set_exception(exc)
            return
        self._resolve([pending], results)

    def _resolve(self, group: list[_Pending], results: list[CommitResult]) -> None:
        done = list(zip((p.batch for p in group), results, strict=True))
        for pending, result in zip(group, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(result)
        for listener in self.committed:
            try:
                listener(done)
            except Exception:
                log.exception("a commit listener failed")

    async def _writer_connection(self) -> asyncpg.Connection:
        if self._writer_conn is None or self._writer_conn.is_closed():
            self._writer_conn = await asyncpg.connect(self.dsn, server_settings=SESSION)
        return self._writer_conn

    async def _apply(self, batches: list[Batch]) -> list[CommitResult]:
        # An empty batch (a matching round that decided nothing) writes nothing: it resolves with
        # its group, in order, without a round trip of its own (two per event with two processes).
        written = [b for b in batches if b.ops]
        results = iter(await self._apply_written(written) if written else [])
        return [next(results) if b.ops else CommitResult() for b in batches]

    async def _apply_written(self, batches: list[Batch]) -> list[CommitResult]:
        blobs: list[bytes | None] = []
        encoded: list[list[dict[str, Any]]] = []
        spans: list[tuple[int, int]] = []  # each batch's values in ``blobs``
        for b in batches:
            start = len(blobs)
            encoded.append(self._encode(b, blobs))
            spans.append((start, len(blobs)))
        # each batch as rows by kind when it can be written set-wise (setwise.py), else its ops
        rows = [setwise(ops) for ops in encoded]
        for r, (start, end) in zip(rows, spans, strict=True):
            if r is not None:
                r["b0"], r["b1"] = start, end
                self.setwise_batches += 1
        sent = [_dumps(r if r is not None else ops) for r, ops in zip(rows, encoded, strict=True)]
        if self.leases is not self._leases_seen:
            self._leases_json = _dumps({str(k): v for k, v in self.leases.items()})
            self._leases_seen = self.leases
        try:
            conn = await self._writer_connection()
            raw = await conn.fetchval(
                "SELECT pyngest_apply($1::jsonb[], $2::bytea[], $3::integer[], $4, $5::jsonb, $6)",
                sent, blobs, named_shards(encoded), self.node_id, self._leases_json, self.clock.now_ms(),
            )
        except asyncpg.PostgresError as exc:
            if exc.sqlstate == FENCED:
                raise Fenced(str(exc)) from exc
            if unavailable(exc):
                self._lost(exc)
                raise StoreUnavailable(f"PostgreSQL is unavailable: {exc}") from exc
            raise
        except Exception as exc:
            if unavailable(exc):
                self._lost(exc)
                if self._writer_conn is not None:
                    self._writer_conn.terminate()
                    self._writer_conn = None
                raise StoreUnavailable(f"PostgreSQL is unavailable: {exc}") from exc
            raise
        return [self._result(b, r) for b, r in zip(batches, orjson.loads(raw), strict=True)]

    def _lost(self, exc: BaseException) -> None:
        for listener in self.lost:
            listener(exc)

    def _blob(self, blobs: list[bytes | None], value: bytes | None) -> int | None:
        if value is None:
            return None
        blobs.append(value)
        return len(blobs)  # PostgreSQL arrays count from 1

    def _run_shard(self, run_id: str) -> int:
        try:
            return low_bits(run_id) % self._shards
        except ValueError:
            return 0

    def _job_shard(self, job: Job) -> int:
        return self._run_shard(job.run_id) if job.run_id else job.shard

    def _encode(self, batch: Batch, blobs: list[bytes | None]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for op in compact(batch.ops):  # a run's several updates in one batch: one UPDATE
            rid = op_run_id(op)
            enc: dict[str, Any]
            if type(op) is SaveStep:
                enc = {"t": "step", "s": op.step_id, "p": op.pos, "v": self._blob(blobs, op.value)}
            elif type(op) is Enqueue:
                j = op.job
                shard = self._job_shard(j)
                enc = {"t": "enq", "id": j.id, "js": shard, "k": j.kind._value_, "d": j.due_ms, "pr": j.priority,
                       "s": j.step_id, "a": j.attempt, "pl": j.payload, "rm": op.remote}
                if not op.remote:
                    enc["sh"] = shard
            elif type(op) is DeleteJob:
                enc = {"t": "djob", "id": op.job_id}
            elif type(op) is UpdateRun:
                fields: dict[str, Any] = {}
                for key, value in op.fields.items():
                    if key == "status":  # (``.value`` and ``RunStatus(member)`` are slow in Python 3.11)
                        value = (value if type(value) is RunStatus else RunStatus(value))._value_
                    elif key == "output":
                        value = self._blob(blobs, value)
                    elif key == "force_step_plan":
                        value = bool(value)
                    fields[key] = value
                enc = {"t": "upd", "f": fields}
            elif type(op) is AddHistory:
                enc = {"t": "hist", "at": op.at_ms, "k": op.kind, "s": op.step_id, "n": op.name, "a": op.attempt,
                       "v": self._blob(blobs, op.data)}
            elif type(op) is InsertEvents:
                enc = {"t": "ev", "e": [[e.internal_id, e.name, e.event_id, e.ts, e.received_ms, e.source,
                                         self._blob(blobs, e.body), e.env_id, e.started] for e in op.events]}
                if op.registry_version is not None:
                    enc["rv"] = op.registry_version
            elif type(op) is CreateRun:
                r = op.run
                keys = ([op.idempotency_key] if op.idempotency_key is not None else []) + op.extra_keys
                enc = {"t": "run", "k": keys, "x": op.idempotency_expires_ms, "r": {
                    "fn_id": r.fn_id, "app_id": r.app_id, "fn_version": r.fn_version, "status": r.status._value_,
                    "event_ids": r.event_ids, "batch_id": r.batch_id, "cron": r.cron,
                    "original_run_id": r.original_run_id, "queued_ms": r.queued_ms, "started_ms": r.started_ms,
                    "ended_ms": r.ended_ms, "output": self._blob(blobs, r.output), "version": r.version,
                    "force_step_plan": r.force_step_plan, "pending": r.pending, "state_bytes": r.state_bytes,
                    "attrs": r.attrs or None, "env_id": r.env_id}}
            elif type(op) is AddPause:
                p = op.pause
                enc = {"t": "pause", "p": {"id": p.id, "step_id": p.step_id, "kind": p.kind._value_,
                                           "event_name": p.event_name, "expression": p.expression,
                                           "signal": p.signal, "expires_ms": p.expires_ms, "data": p.data}}
            elif type(op) is DeletePause:
                enc = {"t": "dp", "id": op.pause_id}
            elif type(op) is ClaimPause:
                enc = {"t": "claim", "id": op.pause_id}
            elif type(op) is DeleteRunPauses:
                enc = {"t": "drp"}
            elif type(op) is DeleteRunJobs:
                enc = {"t": "drj", "keep": op.keep}
            elif type(op) is SetFlow:
                enc = {"t": "sf", "k": op.key, "v": op.value, "x": op.expires_ms, "sh": op.shard}
            elif type(op) is DeleteFlow:
                enc = {"t": "df", "k": op.key}
                if op.only_if is not None:
                    enc["if"] = op.only_if
            elif type(op) is AddSkip:
                enc = {"t": "skip", "e": op.event_internal_id, "fn": op.fn_id, "why": op.reason, "at": op.at_ms}
            elif type(op) is SetCursor:
                enc = {"t": "cur", "shards": op.shards, "x": op.xid, "s": op.seq}
            else:  # pragma: no cover - a new op type without an encoding is a programming error
                raise TypeError(f"unknown batch operation {type(op).__name__}")
            if rid is not None:
                enc["rid"] = rid
                if type(op) is not Enqueue and type(op) is not ClaimPause:
                    enc["sh"] = self._run_shard(rid)
            out.append(enc)
        return out

    def _result(self, batch: Batch, raw: dict[str, Any]) -> CommitResult:
        result = CommitResult(
            created_runs=raw["created"], skipped_runs=raw["skipped"], event_seqs=raw["seqs"],
            duplicate_events=set(raw["dups"]), ignored_jobs=set(raw["ignored"]), deleted_jobs=set(raw["djobs"]),
            deleted_pauses=set(raw["dpauses"]), void=raw["void"],
        )
        after = int(raw["xid"]) - 1
        for op in batch.ops:
            if type(op) is InsertEvents:
                for ev in op.events:
                    ev.seq = int(result.event_seqs.get(ev.internal_id, 0))
            elif type(op) is AddPause:
                op.pause.after_seq = after  # events of later transactions match it
        return result

    # -------------------------------------------------------------------------- run reads

    async def load_run(self, run_id: str) -> Run | None:
        async def q(conn: asyncpg.Connection) -> Run | None:
            row = await conn.fetchrow(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = $1", run_id)
            if row is None:
                return None
            run = run_from_row(row)
            for step in await conn.fetch("SELECT step_id, value FROM steps WHERE run_id = $1 ORDER BY pos", run_id):
                run.steps[step["step_id"]] = step["value"]
                run.stack.append(step["step_id"])
            if run.event_ids:
                bodies = dict(await conn.fetch(
                    "SELECT internal_id, body FROM events WHERE internal_id = ANY($1::text[])", run.event_ids))
                run.events = [bodies[e] for e in run.event_ids if e in bodies]
            return run.counted()

        return await self._read(q)

    async def list_runs(self, query: RunQuery) -> list[Run]:
        where, args = run_where(query)
        sql = f"SELECT {_RUN_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        return [run_from_row(r) for r in await self.fetch(placeholders(sql), *args, query.limit)]

    async def runs_for_event(self, internal_id: str) -> list[Run]:
        rows = await self.fetch(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE id IN "
            "(SELECT run_id FROM run_events WHERE event_internal_id = $1) ORDER BY id", internal_id)
        return [run_from_row(r) for r in rows]

    async def history(self, run_id: str) -> list[HistoryRow]:
        rows = await self.fetch(
            "SELECT seq, run_id, at_ms, kind, step_id, name, attempt, data FROM history "
            "WHERE run_id = $1 ORDER BY seq", run_id)
        return [HistoryRow(*r) for r in rows]

    async def jobs_due_before(self, until_ms: int, limit: int, shards: list[int] | None = None) -> list[Job]:
        rows = await self.fetch(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE due_ms < $1 AND ($3::int[] IS NULL OR shard = ANY($3::int[])) "
            "ORDER BY due_ms LIMIT $2", until_ms, limit, shards)
        return [job_from_row(r) for r in rows]

    async def jobs_due_between(self, from_ms: int, until_ms: int, shards: list[int] | None = None) -> list[Job]:
        rows = await self.fetch(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE due_ms >= $1 AND due_ms < $2 "
            "AND ($3::int[] IS NULL OR shard = ANY($3::int[]))", from_ms, until_ms, shards)
        return [job_from_row(r) for r in rows]

    async def remote_jobs(self, until_ms: int, shards: list[int]) -> list[Job]:
        """Jobs other processes enqueued for these shards (a cancel, a signal, a replayed run)."""
        rows = await self.fetch(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE remote AND shard = ANY($1::int[]) AND due_ms < $2",
            shards, until_ms)
        return [job_from_row(r) for r in rows]

    async def jobs_for_run(self, run_id: str) -> list[Job]:
        return [job_from_row(r) for r in await self.fetch(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE run_id = $1", run_id)]

    async def all_pauses(self, shards: list[int] | None = None) -> list[Pause]:
        rows = await self.fetch(
            f"SELECT {_PAUSE_COLUMNS} FROM pauses WHERE $1::int[] IS NULL OR shard = ANY($1::int[])", shards)
        return [pause_from_row(r) for r in rows]

    async def pause_for_signal(self, signal: str) -> Pause | None:
        rows = await self.fetch(f"SELECT {_PAUSE_COLUMNS} FROM pauses WHERE signal = $1", signal)
        return pause_from_row(rows[0]) if rows else None

    async def all_flow(self, shards: list[int] | None = None) -> list[tuple[str, Any, int]]:
        rows = await self.fetch(
            "SELECT key, value, expires_ms FROM flow WHERE expires_ms > $1 "
            "AND ($2::int[] IS NULL OR shard = ANY($2::int[]))", self.clock.now_ms(), shards)
        return [(r["key"], orjson.loads(r["value"]), r["expires_ms"]) for r in rows]

    async def skips_for_event(self, internal_id: str) -> list[tuple[str, str, int]]:
        rows = await self.fetch("SELECT fn_id, reason, at_ms FROM skips WHERE event_internal_id = $1", internal_id)
        return [(r[0], r[1], r[2]) for r in rows]

    async def idempotency_taken(self, keys: list[str], now_ms: int) -> bool:
        if not keys:
            return False
        return bool(await self.fetchval(
            "SELECT EXISTS (SELECT 1 FROM idempotency WHERE key = ANY($1::text[]) AND expires_ms > $2)", keys, now_ms))

    # ----------------------------------------------------------------------------- events

    async def get_event(self, internal_id: str) -> StoredEvent | None:
        events = await self.get_events([internal_id])
        return events[0] if events else None

    async def get_events(self, internal_ids: list[str]) -> list[StoredEvent]:
        if not internal_ids:
            return []
        rows = await self.fetch(f"SELECT {_EVENT_COLUMNS} FROM events WHERE internal_id = ANY($1::text[])",
                                internal_ids)
        by_id = {r["internal_id"]: event_from_row(r) for r in rows}
        return [by_id[i] for i in internal_ids if i in by_id]

    async def list_events(
        self, name: str | None, limit: int, before_seq: int | None = None,
        from_ms: int | None = None, until_ms: int | None = None, *, internal: bool = True,
        env_id: str | None = None,
    ) -> list[StoredEvent]:
        where, args = event_where([name] if name else None, from_ms, until_ms, internal=internal, env_id=env_id)
        if before_seq is not None:
            where.append("seq < ?")
            args.append(before_seq)
        sql = f"SELECT {_EVENT_COLUMNS} FROM events{' WHERE ' + ' AND '.join(where) if where else ''} " \
            "ORDER BY seq DESC LIMIT ?"
        rows = await self.fetch(placeholders(sql), *args, limit)
        return [event_from_row(r) for r in rows]

    async def max_event_seq(self) -> int:
        return int(await self.fetchval("SELECT COALESCE(MAX(seq), 0) FROM events"))

    # -------------------------------------------------------------------------- retention

    async def purge(self, before_ms: int, limit: int) -> int:
        now = self.clock.now_ms()

        async def w(conn: asyncpg.Connection) -> int:
            async with conn.transaction():
                runs = [r[0] for r in await conn.fetch(
                    "SELECT id FROM runs WHERE ended_ms IS NOT NULL AND ended_ms < $1 LIMIT $2", before_ms, limit)]
                if runs:
                    for table in ("steps", "history", "run_events"):
                        await conn.execute(f"DELETE FROM {table} WHERE run_id = ANY($1::text[])", runs)
                    await conn.execute("DELETE FROM runs WHERE id = ANY($1::text[])", runs)
                events = [r[0] for r in await conn.fetch(
                    "SELECT internal_id FROM events e WHERE received_ms < $1 AND NOT EXISTS "
                    "(SELECT 1 FROM run_events re JOIN runs r ON r.id = re.run_id "
                    " WHERE re.event_internal_id = e.internal_id AND r.ended_ms IS NULL) LIMIT $2",
                    before_ms, limit)]
                if events:
                    for table in ("run_events", "skips"):
                        await conn.execute(f"DELETE FROM {table} WHERE event_internal_id = ANY($1::text[])", events)
                    await conn.execute("DELETE FROM events WHERE internal_id = ANY($1::text[])", events)
                # up to `limit` of each per slice too, found through their indexes (migration 002)
                for sql, arg in (
                    ("DELETE FROM idempotency WHERE key IN "
                     "(SELECT key FROM idempotency WHERE expires_ms < $1 LIMIT $2)", now),
                    ("DELETE FROM flow WHERE key IN (SELECT key FROM flow WHERE expires_ms < $1 LIMIT $2)", now),
                    ("DELETE FROM syncs WHERE id IN (SELECT id FROM syncs WHERE created_ms < $1 LIMIT $2)",
                     before_ms),
                    ("DELETE FROM operations WHERE id IN (SELECT id FROM operations "
                     "WHERE ended_ms IS NOT NULL AND ended_ms < $1 LIMIT $2)", before_ms),
                    ("DELETE FROM webhook_failures WHERE id IN (SELECT id FROM webhook_failures "
                     "WHERE received_ms < $1 LIMIT $2)", before_ms),
                ):
                    await conn.execute(sql, arg, limit)
                return len(runs) + len(events)

        return await self._read(w)

    async def reclaim(self, pages: int) -> int:
        # PostgreSQL's autovacuum makes the deleted rows' space reusable inside the tables; only
        # VACUUM FULL (an exclusive lock) would shrink the files, which an operator chooses to run
        return 0

    # ------------------------------------------------------------------- bulk operations

    async def save_operation(self, op: OperationRecord) -> None:
        await self.execute(
            "INSERT INTO operations (id, kind, fn_id, app_id, name, spec, status, total, done, created_ms, ended_ms) "
            "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11) ON CONFLICT (id) DO UPDATE SET "
            "name = EXCLUDED.name, spec = EXCLUDED.spec, status = EXCLUDED.status, total = EXCLUDED.total, "
            "done = EXCLUDED.done, ended_ms = EXCLUDED.ended_ms",
            op.id, op.kind, op.fn_id, op.app_id, op.name, _dumps(op.spec), op.status, op.total, op.done,
            op.created_ms, op.ended_ms)

    async def get_operation(self, op_id: str) -> OperationRecord | None:
        ops = await self._operations("WHERE id = $1", [op_id], 1)
        return ops[0] if ops else None

    async def list_operations(self, fn_id: str | None, kind: str | None, limit: int) -> list[OperationRecord]:
        return await self._operations("WHERE ($1::text IS NULL OR fn_id = $1) AND ($2::text IS NULL OR kind = $2)",
                                      [fn_id, kind], limit)

    async def _operations(self, where: str, args: list[Any], limit: int) -> list[OperationRecord]:
        rows = await self.fetch(
            "SELECT id, kind, fn_id, app_id, name, spec, status, total, done, created_ms, ended_ms "
            f"FROM operations {where} ORDER BY created_ms DESC LIMIT ${len(args) + 1}", *args, limit)
        return [OperationRecord(r[0], r[1], r[2], r[3], r[4], orjson.loads(r[5]), *r[6:]) for r in rows]

    async def skipped_events(self, fn_id: str, from_ms: int, until_ms: int, after_event: str | None,
                             limit: int) -> list[str]:
        rows = await self.fetch(
            "SELECT event_internal_id FROM skips WHERE fn_id = $1 AND reason = 'function_paused' "
            "AND at_ms >= $2 AND at_ms < $3 AND event_internal_id > $4 ORDER BY event_internal_id LIMIT $5",
            fn_id, from_ms, until_ms, after_event or "", limit)
        return [r[0] for r in rows]

    # --------------------------------------------------------------------------- registry

    async def registry_version(self) -> int:
        """Bumped by every change of apps and functions, so other processes know to reload."""
        return int(await self.fetchval("SELECT value FROM meta WHERE key = 'registry_version'"))

    _BUMP = "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'registry_version'"

    async def list_apps(self) -> list[AppRecord]:
        rows = await self.fetch(
            "SELECT id, name, url, sdk_language, sdk_version, framework, app_version, checksum, error, "
            "created_ms, updated_ms, env_id FROM apps ORDER BY name")
        return [AppRecord(*r) for r in rows]

    async def save_app(self, app: AppRecord) -> None:
        async def w(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO apps (id, name, url, sdk_language, sdk_version, framework, app_version, checksum, "
                    "error, created_ms, updated_ms, env_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
                    "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, url = EXCLUDED.url, "
                    "sdk_language = EXCLUDED.sdk_language, sdk_version = EXCLUDED.sdk_version, "
                    "framework = EXCLUDED.framework, app_version = EXCLUDED.app_version, "
                    "checksum = EXCLUDED.checksum, error = EXCLUDED.error, updated_ms = EXCLUDED.updated_ms",
                    app.id, app.name, app.url, app.sdk_language, app.sdk_version, app.framework, app.app_version,
                    app.checksum, app.error, app.created_ms, app.updated_ms, app.env_id)
                await conn.execute(self._BUMP)

        await self._read(w)

    async def delete_app(self, app_id: str, now_ms: int) -> None:
        async def w(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute("DELETE FROM apps WHERE id = $1", app_id)
                await conn.execute(
                    "UPDATE functions SET archived_ms = $1 WHERE app_id = $2 AND archived_ms IS NULL", now_ms, app_id)
                await conn.execute(self._BUMP)

        await self._read(w)

    async def list_functions(self, include_archived: bool = False) -> list[FunctionRecord]:
        sql = ("SELECT id, app_id, slug, name, config, version, created_ms, updated_ms, archived_ms, paused_ms, "
               "env_id FROM functions")
        if not include_archived:
            sql += " WHERE archived_ms IS NULL"
        sql += " ORDER BY slug"
        return [FunctionRecord(r[0], r[1], r[2], r[3], orjson.loads(r[4]), *r[5:]) for r in await self.fetch(sql)]

    async def save_functions(self, app_id: str, functions: list[FunctionRecord], now_ms: int) -> list[str]:
        async def w(conn: asyncpg.Connection) -> list[str]:
            async with conn.transaction():
                await conn.executemany(
                    "INSERT INTO functions (id, app_id, slug, name, config, version, created_ms, updated_ms, "
                    "archived_ms, env_id) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, NULL, $9) "
                    "ON CONFLICT (id) DO UPDATE "
                    "SET app_id = EXCLUDED.app_id, slug = EXCLUDED.slug, name = EXCLUDED.name, "
                    "config = EXCLUDED.config, version = EXCLUDED.version, updated_ms = EXCLUDED.updated_ms, "
                    "archived_ms = NULL",
                    [(fn.id, app_id, fn.slug, fn.name, _dumps(fn.config), fn.version, fn.created_ms, fn.updated_ms,
                      fn.env_id) for fn in functions])
                keep = [fn.id for fn in functions]
                archived = [r[0] for r in await conn.fetch(
                    "UPDATE functions SET archived_ms = $1 WHERE app_id = $2 AND archived_ms IS NULL "
                    "AND NOT (id = ANY($3::text[])) RETURNING id", now_ms, app_id, keep)]
                await conn.execute(self._BUMP)
                return archived

        return await self._read(w)

    async def set_function_paused(self, fn_id: str, paused_ms: int | None) -> None:
        async def w(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute("UPDATE functions SET paused_ms = $1 WHERE id = $2", paused_ms, fn_id)
                await conn.execute(self._BUMP)

        await self._read(w)

    async def add_sync(self, sync: SyncRecord) -> None:
        await self.execute(
            "INSERT INTO syncs (id, app_id, url, status, error, modified, functions, created_ms) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)",
            sync.id, sync.app_id, sync.url, sync.status, sync.error, sync.modified, _dumps(sync.functions),
            sync.created_ms)

    async def list_syncs(self, app_id: str, limit: int) -> list[SyncRecord]:
        rows = await self.fetch(
            "SELECT id, app_id, url, status, error, modified, functions, created_ms FROM syncs "
            "WHERE app_id = $1 ORDER BY created_ms DESC LIMIT $2", app_id, limit)
        return [SyncRecord(r[0], r[1], r[2], r[3], r[4], r[5], orjson.loads(r[6]), r[7]) for r in rows]

    async def list_app_urls(self) -> list[AppUrlRecord]:
        rows = await self.fetch("SELECT url, source, error, app_id, created_ms, synced_ms FROM app_urls ORDER BY url")
        return [AppUrlRecord(*r) for r in rows]

    async def save_app_url(self, rec: AppUrlRecord) -> None:
        await self.execute(
            "INSERT INTO app_urls (url, source, error, app_id, created_ms, synced_ms) VALUES ($1, $2, $3, $4, $5, $6) "
            "ON CONFLICT (url) DO UPDATE SET error = EXCLUDED.error, "
            "app_id = COALESCE(EXCLUDED.app_id, app_urls.app_id), "
            "synced_ms = COALESCE(EXCLUDED.synced_ms, app_urls.synced_ms)",
            rec.url, rec.source, rec.error, rec.app_id, rec.created_ms, rec.synced_ms)

    async def delete_app_url(self, url: str) -> None:
        await self.execute("DELETE FROM app_urls WHERE url = $1", url)

    async def revoke_session(self, session_id: str, expires_ms: int, now_ms: int) -> None:
        await self.execute("DELETE FROM revoked_sessions WHERE expires_ms < $1", now_ms)
        await self.execute("INSERT INTO revoked_sessions (session_id, expires_ms) VALUES ($1, $2) "
                           "ON CONFLICT (session_id) DO NOTHING", session_id, expires_ms)

    async def session_revoked(self, session_id: str) -> bool:
        return bool(await self.fetchval("SELECT EXISTS (SELECT 1 FROM revoked_sessions WHERE session_id = $1)",
                                        session_id))


def _refused(dsn: str, exc: Exception) -> str:
    """What to do when PostgreSQL answered but would not let us in (or the URI is not one it
    reads): a missing database or role, a wrong password, a setting it does not know."""
    where = _redact(dsn)
    if isinstance(exc, asyncpg.exceptions.InvalidCatalogNameError):
        return f"{exc} at {where}: create it (createdb, or CREATE DATABASE) or name another in --postgres-uri"
    if isinstance(exc, (asyncpg.exceptions.InvalidAuthorizationSpecificationError,
                        asyncpg.exceptions.InvalidPasswordError)):
        return f"PostgreSQL at {where} refused the login: {exc}; check the user and password in --postgres-uri"
    if isinstance(exc, asyncpg.PostgresError):
        return f"PostgreSQL at {where} refused the connection: {exc}"
    return f"cannot connect to PostgreSQL with --postgres-uri {where}: {exc}"


def _redact(dsn: str) -> str:
    """The URI without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return dsn
